"""Measure how the width of CapsNet's decoder input changes CIFAR-10 quality.

The paper's decoder sees one 16-value capsule (the others zeroed). On
CIFAR-10 that gives blurry reconstructions. This script trains the same
CapsNet with wider alternatives and reports test accuracy and test PSNR for
each, so the effect of the bottleneck's width can be read off one table:

- ``16 masked``: the paper, 10 x 16 capsules, decoder sees one capsule.
- ``32 masked`` and ``64 masked``: wider capsules, 10 x 32 and 10 x 64.
- ``16 all``: 10 x 16 capsules, decoder sees all of them unmasked.

It uses the paper's single-conv front end for speed on a CPU; pass
``--front-end deep`` for the three-conv BatchNorm variant. CIFAR-10 is read
from a folder holding ``cifar10-train/`` and ``cifar10-test/`` with one
subfolder per class (such as ``../shared/data``), through symbolic links in
a temporary folder so that the image-folder loader finds ``train/`` and
``test/``. ``--dataset mnist`` runs the same comparison on the built-in
MNIST, where CapsNet converges within one short epoch.

Run from the repository root::

    nice -n 10 .venv/bin/python bench/capsnet_decoder_width.py \\
        --data ../shared/data --train-limit 10000 --test-limit 2000 --epochs 1
    nice -n 10 .venv/bin/python bench/capsnet_decoder_width.py \\
        --dataset mnist --train-limit 10000 --test-limit 2000 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import TrainConfig
from core.data import load_dataset
from core.training import Trainer

VARIANTS = {
    "16 masked": {"digit_dim": 16, "decoder_input": "masked"},
    "32 masked": {"digit_dim": 32, "decoder_input": "masked"},
    "64 masked": {"digit_dim": 64, "decoder_input": "masked"},
    "16 all": {"digit_dim": 16, "decoder_input": "all"},
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("cifar10", "mnist"), default="cifar10")
    parser.add_argument(
        "--data",
        default="../shared/data",
        type=Path,
        help="folder with cifar10-train/ and cifar10-test/ (CIFAR-10 only)",
    )
    parser.add_argument("--train-limit", type=int, default=10000)
    parser.add_argument("--test-limit", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--front-end", choices=("paper", "deep"), default="paper")
    parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS)
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser


def load_cifar10(folder: Path):
    """Load CIFAR-10 from ``folder/cifar10-{train,test}`` via linked train/test."""
    for split in ("cifar10-train", "cifar10-test"):
        if not (folder / split).is_dir():
            raise SystemExit(
                f"{folder / split} not found: --data must name a folder with "
                "cifar10-train/ and cifar10-test/ class folders"
            )
    linked = Path(tempfile.mkdtemp(prefix="cifar10-"))
    (linked / "train").symlink_to((folder / "cifar10-train").resolve())
    (linked / "test").symlink_to((folder / "cifar10-test").resolve())
    return load_dataset(str(linked))


def main(argv: list[str] | None = None) -> list[dict]:
    args = build_parser().parse_args(argv)
    if args.dataset == "mnist":
        dataset = load_dataset("mnist")
    else:
        dataset = load_cifar10(args.data)
    dataset = dataset.limited(args.train_limit, args.test_limit)
    results = []
    for name in args.variants:
        options = {"front_end": args.front_end, **VARIANTS[name]}
        config = TrainConfig(
            dataset=args.dataset,
            model="capsnet",
            model_options=options,
            epochs=args.epochs,
            batch_size=args.batch_size,
            augment_shift=2,
        )
        trainer = Trainer(config, dataset)
        started = time.perf_counter()
        summary = trainer.run()
        seconds = time.perf_counter() - started
        metrics = summary.final_metrics
        result = {
            "variant": name,
            **options,
            "parameters": sum(p.numel() for p in trainer.model.parameters()),
            "test_accuracy": metrics["test_accuracy"],
            "test_psnr_db": metrics["test_psnr_db"],
            "seconds": seconds,
        }
        results.append(result)
        print(
            f"{name:>10}: accuracy {100 * result['test_accuracy']:.2f}%, "
            f"PSNR {result['test_psnr_db']:.2f} dB, "
            f"{result['parameters']:,} parameters, {seconds:.0f} s",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
