"""``latent-explorer train``: headless training with the GUI's engine.

Imports no Qt, so it runs on servers without a display. It writes the same
run directory as the window, which can open it afterwards (or while it is
still being written).

Examples::

    latent-explorer train --dataset mnist --bottleneck 32x1x1 --epochs 10 \\
        --train-limit 10000
    latent-explorer train --resume runs/20261204-153000-autoencoder-mnist
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TextIO

from core.bottleneck import BottleneckSpecError
from core.checkpoint import CheckpointError, load_checkpoint
from core.config import TrainConfig
from core.data import DatasetError, load_dataset
from core.device import DEVICE_CHOICES, PRECISION_CHOICES
from core.models import MODEL_KINDS
from core.rundir import RunDirectory, RunDirectoryError, default_runs_root
from core.training import (
    BatchProgress,
    EpochResult,
    RunInfo,
    Trainer,
    TrainingCallbacks,
    TrainingControl,
    TrainingError,
)

logger = logging.getLogger("latent_explorer")


def format_duration(seconds: float) -> str:
    """Format seconds as m:ss or h:mm:ss."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_metrics(metrics: dict[str, float]) -> str:
    parts = []
    if "test_loss" in metrics:
        parts.append(f"test loss {metrics['test_loss']:.4f}")
    if "test_psnr_db" in metrics:
        parts.append(f"test PSNR {metrics['test_psnr_db']:.2f} dB")
    if "test_accuracy" in metrics:
        parts.append(f"test accuracy {100 * metrics['test_accuracy']:.2f}%")
    return ", ".join(parts)


class TerminalProgress(TrainingCallbacks):
    """A one-line progress bar with ETA on stderr, one summary line per epoch."""

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self._last_draw = 0.0
        self._interactive = hasattr(self.stream, "isatty") and self.stream.isatty()

    def on_start(self, info: RunInfo) -> None:
        print(info.describe(), file=self.stream)
        if info.run_dir:
            print(f"Run directory: {info.run_dir}", file=self.stream)

    def on_batch(self, progress: BatchProgress) -> None:
        if self.quiet or not self._interactive:
            return
        now = time.monotonic()
        last = progress.batch == progress.batches
        if now - self._last_draw < 0.2 and not last:
            return
        self._last_draw = now
        fraction = progress.batch / progress.batches
        bar = "#" * int(fraction * 24)
        print(
            f"\repoch {progress.epoch}/{progress.epochs} [{bar:<24}] "
            f"{progress.batch}/{progress.batches} loss {progress.loss:.4f} "
            f"{progress.images_per_second:,.0f} img/s "
            f"ETA {format_duration(progress.eta_s)}   ",
            end="",
            file=self.stream,
            flush=True,
        )

    def on_epoch(self, result: EpochResult) -> None:
        if self._interactive:
            print("\r" + " " * 100 + "\r", end="", file=self.stream)
        metrics = result.metrics
        print(
            f"epoch {result.epoch}: {format_metrics(metrics)} "
            f"({format_duration(metrics['elapsed_s'])} elapsed)",
            file=self.stream,
            flush=True,
        )


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="latent-explorer train",
        description="Train an autoencoder or CapsNet without opening a window.",
    )
    parser.add_argument(
        "--dataset",
        default=defaults.dataset,
        help="mnist (built in), fashion-mnist, cifar10, or a folder of images "
        "with one subfolder per class (default: %(default)s)",
    )
    parser.add_argument(
        "--data-root",
        default=None,
        help="folder for torchvision's dataset files (default: "
        "$LATENT_EXPLORER_DATA or ~/.cache/latent-explorer/data)",
    )
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="fail instead of downloading a missing dataset",
    )
    parser.add_argument(
        "--model",
        choices=list(MODEL_KINDS),
        default=defaults.model,
        help="model to train (default: %(default)s)",
    )
    parser.add_argument(
        "--bottleneck",
        default=defaults.bottleneck,
        help="autoencoder bottleneck as CxHxW (32x1x1, 32x16x3) or a size "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=defaults.width,
        help="autoencoder channels in the first conv layer (default: %(default)s)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model argument, for example routing_iterations=2 (repeatable)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help="total epochs; with --resume, the epoch to stop at (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="images per optimizer step (default: %(default)s)",
    )
    parser.add_argument(
        "--lr",
        type=float,
        default=defaults.learning_rate,
        help="Adam learning rate (default: %(default)s)",
    )
    parser.add_argument(
        "--lr-decay",
        type=float,
        default=defaults.lr_decay,
        help="learning rate multiplier after each epoch (default: %(default)s)",
    )
    parser.add_argument(
        "--train-limit", type=int, default=None, help="use the first N train images"
    )
    parser.add_argument(
        "--test-limit", type=int, default=None, help="evaluate on the first N images"
    )
    parser.add_argument(
        "--augment-shift",
        type=int,
        default=None,
        help="random shifts of up to N pixels on training images "
        "(default: 2 for capsnet, 0 otherwise)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seeds weights, shuffling and augmentation (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default=defaults.device,
        help="auto picks CUDA, then Apple MPS, then the CPU (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=defaults.precision,
        help="auto uses bf16 autocast on GPUs and on CPUs with AMX "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--runs",
        default=None,
        help="parent folder of new run directories (default: $LATENT_EXPLORER_RUNS "
        "or ./runs)",
    )
    parser.add_argument(
        "--run-dir", default=None, help="exact run directory to create or reuse"
    )
    parser.add_argument(
        "--resume",
        default=None,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its checkpoint up to --epochs",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def parse_options(pairs: list[str]) -> dict[str, object]:
    """Parse KEY=VALUE pairs, reading numbers and booleans as such."""
    options: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {pair!r} must look like KEY=VALUE")
        value: object = text
        if text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            for convert in (int, float):
                try:
                    value = convert(text)
                    break
                except ValueError:
                    continue
        options[key] = value
    return options


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    shift = args.augment_shift
    if shift is None:
        shift = 2 if args.model == "capsnet" else 0
    return TrainConfig(
        dataset=args.dataset,
        data_root=args.data_root,
        model=args.model,
        bottleneck=args.bottleneck,
        width=args.width,
        model_options=parse_options(args.option),
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        lr_decay=args.lr_decay,
        train_limit=args.train_limit,
        test_limit=args.test_limit,
        augment_shift=shift,
        seed=args.seed,
        device=args.device,
        precision=args.precision,
    )


def run_name(config: TrainConfig) -> str:
    dataset = Path(config.dataset).name if "/" in config.dataset else config.dataset
    detail = config.bottleneck if config.model == "autoencoder" else "caps"
    return f"{config.model}-{dataset}-{detail}"


def _remove_if_empty(folder: Path | None) -> None:
    """Remove a run directory that this command created but never wrote to."""
    if folder is not None and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()


def train_command(argv: list[str]) -> int:
    """Run ``latent-explorer train``; return the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    run: RunDirectory | None = None
    created: Path | None = None
    try:
        resume = None
        if args.resume:
            run = RunDirectory.open(args.resume)
            config = TrainConfig.from_dict(run.read_config())
            config.epochs = args.epochs
            resume = load_checkpoint(run.checkpoint_path)
        else:
            config = config_from_args(args)
            config.validate()
            if args.run_dir:
                run = RunDirectory(args.run_dir)
                if not run.root.exists():
                    created = run.root
                run.root.mkdir(parents=True, exist_ok=True)
            else:
                parent = Path(args.runs) if args.runs else default_runs_root()
                run = RunDirectory.create(parent, run_name(config))
                created = run.root
        dataset = load_dataset(
            config.dataset, root=config.data_root, download=not args.no_download
        ).limited(config.train_limit, config.test_limit)
        trainer = Trainer(
            config,
            dataset,
            run_dir=run,
            callbacks=TerminalProgress(quiet=args.quiet),
            control=TrainingControl(),
            resume=resume,
        )
        summary = trainer.run()
    except (
        BottleneckSpecError,
        CheckpointError,
        DatasetError,
        RunDirectoryError,
        TrainingError,
        ValueError,
    ) as error:
        print(f"latent-explorer: error: {error}", file=sys.stderr)
        _remove_if_empty(created)
        return 2
    except KeyboardInterrupt:
        print(
            "\nlatent-explorer: interrupted; the last finished epoch is saved",
            file=sys.stderr,
        )
        return 130
    final = summary.final_metrics
    print(f"Finished {summary.epochs_completed} epochs: {format_metrics(final)}")
    print(f"Run directory: {run.root}")
    return 0
