"""Write a half-precision copy of a run's checkpoint, for shipping in resources/.

Loads the checkpoint with ``core.checkpoint.load_checkpoint``, rebuilds the
model as float32 and saves it again with ``save_checkpoint(...,
half_precision=True)``: float16 weights, no optimizer state, and the run's
epoch, history, config and extra fields kept. Prints the file's size and
SHA-256, which resources/capsnet_mnist.md records.

Run from the repository root::

    .venv/bin/python bench/export_checkpoint.py /tmp/caps-runs/capsnet-mnist \\
        resources/capsnet_mnist.pt --evaluate
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the repository's packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.data import load_dataset
from core.metrics import summarize_stats
from core.models import LatentModel
from core.rundir import CHECKPOINT_FILE

EVAL_BATCH_SIZE = 500


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_half_precision(source: Path, destination: Path) -> Path:
    """Save the checkpoint at ``source`` (a file or a run directory) to
    ``destination`` with float16 weights and no optimizer state."""
    if source.is_dir():
        source = source / CHECKPOINT_FILE
    checkpoint = load_checkpoint(source)
    model = checkpoint.build_model()
    return save_checkpoint(
        destination,
        model,
        optimizer=None,
        epoch=checkpoint.epoch,
        history=checkpoint.history,
        config=checkpoint.config,
        extra=checkpoint.extra,
        half_precision=True,
    )


@torch.no_grad()
def evaluate_on_mnist(model: LatentModel) -> dict[str, float]:
    """Return the float32 test metrics of ``model`` on the MNIST test split."""
    dataset = load_dataset("mnist")
    model.eval()
    totals: dict[str, float] = {}
    for start in range(0, len(dataset.test_images), EVAL_BATCH_SIZE):
        images = dataset.test_images[start : start + EVAL_BATCH_SIZE].float() / 255
        labels = dataset.test_labels[start : start + EVAL_BATCH_SIZE]
        for name, value in model.batch_stats(images, labels).items():
            totals[name] = totals.get(name, 0.0) + float(value)
    return summarize_stats(totals)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a float16 copy of a checkpoint without optimizer state."
    )
    parser.add_argument("source", help="a run directory or a checkpoint.pt")
    parser.add_argument("destination", help="the .pt file to write")
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help="evaluate the written copy, loaded back as float32, on the full "
        "MNIST test split",
    )
    args = parser.parse_args(argv)
    try:
        path = export_half_precision(Path(args.source), Path(args.destination))
    except CheckpointError as error:
        print(f"export_checkpoint: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path}: {path.stat().st_size:,} bytes, SHA-256 {sha256_of(path)}")
    if args.evaluate:
        metrics = evaluate_on_mnist(load_checkpoint(path).build_model())
        print(
            f"MNIST test split, float32 evaluation of the float16 weights: "
            f"accuracy {100 * metrics['accuracy']:.2f} %, "
            f"PSNR {metrics['psnr_db']:.2f} dB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
