"""Time CapsNet's routing against a plain reference, after checking equal outputs.

Compares core.models.capsnet with bench/reference_capsnet.py, a CapsNet
written from the equations of Sabour, Frosst and Hinton (2017) in the
common broadcasting style. Both
get the same weights, copied between their layouts, so the timings compare
two ways of computing the same function:

- Capsule layer: primary capsules u (B, 1152, 8) -> u_hat -> 3 routing
  iterations -> digit capsules v (B, 10, 16). The product's path is
  ``CapsNet.prediction_vectors`` and ``route_by_agreement``.
- Whole model (``--whole-model``): the training loss on a batch of MNIST
  images, margin loss plus weighted reconstruction error.

Each row is a forward and a backward pass (gradients of the weights and of
the input), timed as the median of ``--repeats`` runs after two warm-up
runs. The reference is timed twice: with gradients through every routing
iteration, as most ports do, and with gradients through the last iteration
only, as the product does. Only the second computes the same gradients as
the product.

Before timing, the script checks in float32 that the digit capsules, the
loss and the weight gradients agree (``torch.allclose``) and prints the
largest differences. The bf16 rows run under ``torch.autocast``.

Run from the repository root::

    nice -n 10 .venv/bin/python bench/compare_routing.py --whole-model \\
        --json /tmp/compare-routing.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository's packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.reference_capsnet import ReferenceCapsNet, ReferenceDigitCaps
from core.models.capsnet import CapsNet, route_by_agreement, squash

NUM_PRIMARY = 1152
PRIMARY_DIM = 8
NUM_CLASSES = 10
DIGIT_DIM = 16
WARMUP_RUNS = 2

# Tolerances of the float32 equality checks. Both sides sum the same terms
# in different orders, which changes float32 results by a few ulp.
RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 1e-6

# The equality check multiplies the product's initial W by this factor, so
# that capsules are long and routing moves the coupling coefficients far from
# uniform. With the initial W, they stay within about 0.014 of 1/10 on
# random primary capsules, against 0.69 with the factor.
CHECK_TRANSFORM_SCALE = 10.0


# ---- weight layouts


def transforms_to_reference(transforms: torch.Tensor) -> torch.Tensor:
    """Convert CapsNet.transforms to the reference's W.

    The product stores W_ij^T as (1152, 8, 10 * 16) with entry
    [i, k, j * 16 + d] = W_ij[d, k]. The reference stores W as
    (1, 1152, 10, 16, 8) with entry [0, i, j, d, k] = W_ij[d, k].
    """
    num_primary, primary_dim, _ = transforms.shape
    per_class = transforms.view(num_primary, primary_dim, NUM_CLASSES, DIGIT_DIM)
    return per_class.permute(0, 2, 3, 1).unsqueeze(0).contiguous()


def reference_to_transforms(weights: torch.Tensor) -> torch.Tensor:
    """Convert the reference's W (1, 1152, 10, 16, 8) to CapsNet.transforms."""
    _, num_primary, num_classes, digit_dim, primary_dim = weights.shape
    per_child = weights[0].permute(0, 3, 1, 2)  # (1152, 8, 10, 16)
    return per_child.reshape(num_primary, primary_dim, num_classes * digit_dim)


def copy_product_weights(product: CapsNet, reference: ReferenceCapsNet) -> None:
    """Load the product's weights into the reference model."""
    state = {
        "conv1.weight": product.features[0].weight,
        "conv1.bias": product.features[0].bias,
        "primary_caps.weight": product.primary_conv.weight,
        "primary_caps.bias": product.primary_conv.bias,
        "digit_caps.W": transforms_to_reference(product.transforms),
    }
    for index in (0, 2, 4):
        state[f"decoder.{index}.weight"] = product.decoder[index].weight
        state[f"decoder.{index}.bias"] = product.decoder[index].bias
    reference.load_state_dict({name: value.detach() for name, value in state.items()})


def build_pair(
    seed: int = 0, detach_routing: bool = False, transform_scale: float = 1.0
) -> tuple[CapsNet, ReferenceCapsNet]:
    """Return a seeded product CapsNet and a reference with the same weights."""
    torch.manual_seed(seed)
    product = CapsNet()
    if transform_scale != 1.0:
        with torch.no_grad():
            product.transforms.mul_(transform_scale)
    reference = ReferenceCapsNet(detach_routing=detach_routing)
    copy_product_weights(product, reference)
    return product, reference


def random_primary_capsules(batch: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return squash(torch.randn(batch, NUM_PRIMARY, PRIMARY_DIM, generator=generator))


def random_mnist_batch(batch: int, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Return random images in [0, 1] of MNIST's shape and random labels."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 1, 28, 28, generator=generator)
    labels = torch.randint(0, NUM_CLASSES, (batch,), generator=generator)
    return images, labels


# ---- equality check


def product_capsule_layer(product: CapsNet, primary: torch.Tensor) -> torch.Tensor:
    predictions = product.prediction_vectors(primary)
    return route_by_agreement(predictions, product.routing_iterations)[0]


def max_difference(first: torch.Tensor, second: torch.Tensor) -> float:
    return float((first.detach().float() - second.detach().float()).abs().max())


def is_close(first: torch.Tensor, second: torch.Tensor) -> bool:
    return torch.allclose(
        first.float(),
        second.float(),
        rtol=RELATIVE_TOLERANCE,
        atol=ABSOLUTE_TOLERANCE,
    )


def check_equivalence(batch: int = 8, seed: int = 0) -> dict[str, Any]:
    """Compare both models in float32 on the same weights and inputs.

    Returns, for each compared quantity, the largest absolute difference and
    whether ``torch.allclose`` holds, plus the largest deviation of the
    product's last coupling coefficients from uniform (1/10), which shows
    that routing did change them.
    """
    product, reference = build_pair(
        seed, detach_routing=True, transform_scale=CHECK_TRANSFORM_SCALE
    )
    product.train()
    reference.train()
    results: dict[str, Any] = {}

    # Capsule layer, forward.
    primary = random_primary_capsules(batch)
    product_capsules = product_capsule_layer(product, primary)
    reference_capsules = reference.digit_caps(primary)
    results["capsule_layer"] = {
        "max_difference": max_difference(product_capsules, reference_capsules),
        "allclose": is_close(product_capsules, reference_capsules),
    }
    with torch.no_grad():
        coupling = route_by_agreement(
            product.prediction_vectors(primary), product.routing_iterations
        )[1]
    results["coupling_max_deviation_from_uniform"] = float(
        (coupling - 1.0 / NUM_CLASSES).abs().max()
    )

    # Whole model: digit capsules, loss and the gradient of W.
    images, labels = random_mnist_batch(batch)
    product_loss, _ = product.training_loss(images, labels)
    reference_loss = reference.loss(images, labels)
    product_loss.backward()
    reference_loss.backward()
    with torch.no_grad():
        product_digits = product.encode(images)
        reference_digits = reference(images, labels).capsules
    product_gradient = product.transforms.grad
    reference_gradient = reference_to_transforms(reference.digit_caps.W.grad)
    comparisons = {
        "digit_capsules": (product_digits, reference_digits),
        "loss": (product_loss.detach(), reference_loss.detach()),
        "transform_gradient": (product_gradient, reference_gradient),
        "conv1_gradient": (
            product.features[0].weight.grad,
            reference.conv1.weight.grad,
        ),
    }
    for name, (first, second) in comparisons.items():
        results[name] = {
            "max_difference": max_difference(first, second),
            "allclose": is_close(first, second),
        }
    results["all_close"] = all(
        value["allclose"] for value in results.values() if isinstance(value, dict)
    )
    return results


# ---- timing


def median_milliseconds(step: Callable[[], None], repeats: int) -> float:
    for _ in range(WARMUP_RUNS):
        step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return 1000.0 * statistics.median(times)


def capsule_layer_step(
    layer: Callable[[torch.Tensor], torch.Tensor],
    parameters: list[torch.nn.Parameter],
    primary: torch.Tensor,
    upstream: torch.Tensor,
    dtype: torch.dtype | None,
) -> Callable[[], None]:
    """Return a function that runs one forward and backward pass of ``layer``."""

    def step() -> None:
        for parameter in parameters:
            parameter.grad = None
        primary.grad = None
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=bool(dtype)):
            capsules = layer(primary)
        (capsules.float() * upstream).sum().backward()

    return step


def whole_model_step(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    dtype: torch.dtype | None,
) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=bool(dtype)):
            value = loss(images, labels)
        value.backward()

    return step


def time_capsule_layers(
    batch: int, repeats: int, dtype: torch.dtype | None
) -> dict[str, float]:
    product, _ = build_pair()
    full_backprop = ReferenceDigitCaps()
    last_iteration_backprop = ReferenceDigitCaps(detach_routing=True)
    with torch.no_grad():
        weights = transforms_to_reference(product.transforms)
        full_backprop.W.copy_(weights)
        last_iteration_backprop.W.copy_(weights)
    primary = random_primary_capsules(batch).requires_grad_(True)
    upstream = torch.randn(batch, NUM_CLASSES, DIGIT_DIM)

    steps = {
        "reference": capsule_layer_step(
            full_backprop, [full_backprop.W], primary, upstream, dtype
        ),
        "reference, last-iteration gradients": capsule_layer_step(
            last_iteration_backprop,
            [last_iteration_backprop.W],
            primary,
            upstream,
            dtype,
        ),
        "core.models.capsnet": capsule_layer_step(
            lambda u: product_capsule_layer(product, u),
            [product.transforms],
            primary,
            upstream,
            dtype,
        ),
    }
    return {name: median_milliseconds(step, repeats) for name, step in steps.items()}


def time_whole_models(
    batch: int, repeats: int, dtype: torch.dtype | None
) -> dict[str, float]:
    product, full_backprop = build_pair()
    _, last_iteration_backprop = build_pair(detach_routing=True)
    for model in (product, full_backprop, last_iteration_backprop):
        model.train()
    images, labels = random_mnist_batch(batch)

    def product_loss(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return product.training_loss(images, labels)[0]

    steps = {
        "reference": whole_model_step(
            full_backprop.loss, full_backprop, images, labels, dtype
        ),
        "reference, last-iteration gradients": whole_model_step(
            last_iteration_backprop.loss,
            last_iteration_backprop,
            images,
            labels,
            dtype,
        ),
        "core.models.capsnet": whole_model_step(
            product_loss, product, images, labels, dtype
        ),
    }
    return {name: median_milliseconds(step, repeats) for name, step in steps.items()}


# ---- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Check that core.models.capsnet and a plain reference CapsNet "
        "compute the same digit capsules, then time forward and backward passes "
        "of both."
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="default: %(default)s"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=10,
        help="timed runs per row; the median is reported (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16", "both"),
        default="both",
        help="bf16 runs under torch.autocast (default: %(default)s)",
    )
    parser.add_argument(
        "--whole-model",
        action="store_true",
        help="also time the whole model's training loss, not only the capsule layer",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the results here"
    )
    return parser


def timing_rows(
    part: str, milliseconds: dict[str, float], precision: str, batch: int
) -> list[dict[str, Any]]:
    baseline = milliseconds["reference"]
    return [
        {
            "part": part,
            "precision": precision,
            "implementation": name,
            "ms_per_batch": value,
            "images_per_s": 1000.0 * batch / value,
            "speedup_vs_reference": baseline / value,
        }
        for name, value in milliseconds.items()
    ]


def format_equivalence(check: dict[str, Any]) -> str:
    lines = ["float32 equality check (torch.allclose, rtol 1e-4, atol 1e-6):"]
    for name, value in check.items():
        if isinstance(value, dict):
            verdict = "equal" if value["allclose"] else "DIFFERENT"
            lines.append(
                f"  {name:<20} {verdict:<9} max |difference| "
                f"{value['max_difference']:.2e}"
            )
    lines.append(
        "  coupling coefficients differ from uniform by up to "
        f"{check['coupling_max_deviation_from_uniform']:.3f}"
    )
    return "\n".join(lines)


def format_rows(rows: list[dict[str, Any]], batch: int) -> str:
    lines = [
        f"forward + backward, batch {batch}, median of the timed runs:",
        f"  {'part':<14} {'precision':<9} {'implementation':<37} "
        f"{'ms/batch':>9} {'images/s':>9} {'speedup':>8}",
    ]
    for row in rows:
        lines.append(
            f"  {row['part']:<14} {row['precision']:<9} "
            f"{row['implementation']:<37} {row['ms_per_batch']:>9.1f} "
            f"{row['images_per_s']:>9.0f} {row['speedup_vs_reference']:>7.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check = check_equivalence()
    print(format_equivalence(check))
    if not check["all_close"]:
        print(
            "compare_routing: error: the two implementations disagree, so their "
            "timings would not compare the same math",
            file=sys.stderr,
        )
        return 1

    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    rows: list[dict[str, Any]] = []
    for precision in precisions:
        dtype = torch.bfloat16 if precision == "bf16" else None
        layer = time_capsule_layers(args.batch_size, args.repeats, dtype)
        rows += timing_rows("capsule layer", layer, precision, args.batch_size)
        if args.whole_model:
            whole = time_whole_models(args.batch_size, args.repeats, dtype)
            rows += timing_rows("whole model", whole, precision, args.batch_size)
    print(format_rows(rows, args.batch_size))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {[round(value, 2) for value in os.getloadavg()]}"
    )

    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        results = {
            "equivalence": check,
            "rows": rows,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average_after": list(os.getloadavg()),
        }
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
