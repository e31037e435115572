"""The benchmark scripts in bench/, run on tiny inputs."""

import json

import torch

from bench import capsnet_mnist, compare_routing
from bench.reference_capsnet import ReferenceDigitCaps
from core.checkpoint import load_checkpoint
from core.cli import build_parser as build_cli_parser
from core.cli import config_from_args, train_command


def test_capsnet_benchmark_writes_json(tmp_path, capsys):
    output = tmp_path / "results.json"
    code = capsnet_mnist.main(
        [
            "--train-limit",
            "300",
            "--test-limit",
            "200",
            "--warmup-batches",
            "1",
            "--json",
            str(output),
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "images/s" in printed.out
    results = json.loads(output.read_text())
    assert results["train_images"] == 300
    assert results["test_images"] == 200
    assert results["epochs"] == 1
    # 3 batches of 100, the first left out as warm-up.
    assert results["train_timed_images"] == 200
    assert results["train_images_per_s"] > 0
    assert results["eval_images_per_s"] > 0
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert results["test_psnr_db"] > 0
    assert results["system"]["torch_version"] == torch.__version__
    assert results["system"]["torch_threads"] >= 1


def test_capsnet_benchmark_rejects_too_much_warmup(capsys):
    code = capsnet_mnist.main(
        ["--train-limit", "200", "--test-limit", "100", "--warmup-batches", "5"]
    )
    assert code == 2
    assert "raise --train-limit" in capsys.readouterr().err


def test_capsnet_benchmark_config_matches_cli():
    options = ["--epochs", "3", "--batch-size", "100", "--lr-decay", "0.9"]
    options += ["--precision", "bf16", "--train-limit", "5000", "--device", "cpu"]
    cli_args = build_cli_parser().parse_args(
        ["--model", "capsnet", "--dataset", "mnist", *options]
    )
    bench_args = capsnet_mnist.build_parser().parse_args(options)
    cli_config = config_from_args(cli_args).to_dict()
    bench_config = capsnet_mnist.build_config(bench_args).to_dict()
    assert bench_config == cli_config


def test_capsnet_benchmark_weights_match_cli(tmp_path):
    # On the CPU, training is bit-reproducible. CUDA convolutions may not be.
    options = ["--epochs", "1", "--batch-size", "100", "--lr-decay", "0.9"]
    options += ["--train-limit", "200", "--test-limit", "100", "--device", "cpu"]
    cli_options = ["--model", "capsnet", "--dataset", "mnist", "--quiet"]
    cli_options += ["--run-dir", str(tmp_path / "cli")]
    cli_code = train_command([*cli_options, *options])
    assert cli_code == 0
    bench_code = capsnet_mnist.main(
        [*options, "--warmup-batches", "1", "--run-dir", str(tmp_path / "bench")]
    )
    assert bench_code == 0
    cli_checkpoint = load_checkpoint(tmp_path / "cli" / "checkpoint.pt")
    bench_checkpoint = load_checkpoint(tmp_path / "bench" / "checkpoint.pt")
    assert cli_checkpoint.config == bench_checkpoint.config
    assert cli_checkpoint.model_state.keys() == bench_checkpoint.model_state.keys()
    for name, tensor in cli_checkpoint.model_state.items():
        assert torch.equal(tensor, bench_checkpoint.model_state[name]), name


def test_transform_layouts_round_trip():
    transforms = torch.randn(1152, 8, 160)
    reference = compare_routing.transforms_to_reference(transforms)
    assert reference.shape == (1, 1152, 10, 16, 8)
    # Entry [i, k, j * 16 + d] of the product's layout is W_ij[d, k].
    assert reference[0, 5, 3, 7, 2] == transforms[5, 2, 3 * 16 + 7]
    back = compare_routing.reference_to_transforms(reference)
    assert torch.equal(back, transforms)


def test_routing_equivalence_check_passes():
    check = compare_routing.check_equivalence(batch=4)
    for name in ("capsule_layer", "digit_capsules", "loss", "transform_gradient"):
        assert check[name]["allclose"], (name, check[name])
    assert check["conv1_gradient"]["allclose"], check["conv1_gradient"]
    assert check["all_close"]
    # Routing moved the coupling coefficients away from uniform, so the
    # comparison covers the agreement updates and not only the first sum.
    assert check["coupling_max_deviation_from_uniform"] > 0.05


def test_routing_equivalence_detects_wrong_layout():
    product, _ = compare_routing.build_pair(
        transform_scale=compare_routing.CHECK_TRANSFORM_SCALE
    )
    layer = ReferenceDigitCaps()
    with torch.no_grad():
        # Reshaping without the permutation mixes up the entries of W.
        layer.W.copy_(product.transforms.reshape(1, 1152, 10, 16, 8))
    primary = compare_routing.random_primary_capsules(4)
    with torch.no_grad():
        expected = compare_routing.product_capsule_layer(product, primary)
        wrong = layer(primary)
    assert not compare_routing.is_close(expected, wrong)


def test_reference_full_backprop_changes_only_gradients():
    _, full_backprop = compare_routing.build_pair(
        transform_scale=compare_routing.CHECK_TRANSFORM_SCALE
    )
    _, last_iteration = compare_routing.build_pair(
        detach_routing=True, transform_scale=compare_routing.CHECK_TRANSFORM_SCALE
    )
    primary = compare_routing.random_primary_capsules(4)
    full_output = full_backprop.digit_caps(primary)
    last_output = last_iteration.digit_caps(primary)
    assert torch.equal(full_output, last_output)
    full_output.square().sum().backward()
    last_output.square().sum().backward()
    full_gradient = full_backprop.digit_caps.W.grad
    last_gradient = last_iteration.digit_caps.W.grad
    assert not torch.allclose(full_gradient, last_gradient, rtol=1e-3, atol=0)
