"""Train CapsNet on MNIST with the product's engine and report accuracy and speed.

Training goes through ``core.training.Trainer`` with a ``core.config.TrainConfig``
built from the same options as ``latent-explorer train --model capsnet
--dataset mnist`` (random shifts of up to 2 pixels, Adam, lr 1e-3), on the
dataset from ``core.data.load_dataset("mnist")``. The script reports test
accuracy and PSNR, training and evaluation speed in images/s, wall time,
device, precision, torch version, CPU model, thread count and the load
average before and after.

Training speed is the steady state: it counts the time between the ends of
optimizer steps within an epoch and skips the first ``--warmup-batches``
steps of the first epoch and the first step of each later epoch. It leaves
out evaluation, snapshots and checkpoints. Evaluation speed is the test
split's size divided by the time of ``Trainer.evaluate``, which runs in
batches of 500 and includes the first call's set-up.

Run from the repository root::

    # One full epoch in bf16 (60000 training, 10000 test images).
    nice -n 10 .venv/bin/python bench/capsnet_mnist.py --epochs 1 \\
        --precision bf16 --json /tmp/capsnet-bf16.json

    # fp32 speed from a shorter run.
    nice -n 10 .venv/bin/python bench/capsnet_mnist.py --epochs 1 \\
        --train-limit 5000 --precision fp32 --json /tmp/capsnet-fp32.json

    # The run behind resources/capsnet_mnist.pt. --run-dir writes the same
    # run directory as ``latent-explorer train``, checkpoint included.
    nice -n 10 .venv/bin/python bench/capsnet_mnist.py --epochs 3 \\
        --lr-decay 0.9 --precision bf16 --run-dir /tmp/caps-runs/capsnet-mnist \\
        --json /tmp/capsnet-3-epochs.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script: make the repository's packages importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from core.cli import build_parser as build_cli_parser
from core.cli import config_from_args
from core.config import TrainConfig
from core.data import load_dataset
from core.device import (
    DEVICE_CHOICES,
    PRECISION_CHOICES,
    cpu_has_amx,
    describe_device,
)
from core.rundir import RunDirectory
from core.training import (
    BatchProgress,
    EpochResult,
    RunInfo,
    Trainer,
    TrainingCallbacks,
)

DEFAULT_WARMUP_BATCHES = 5
PROGRESS_INTERVAL_BATCHES = 100


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train CapsNet on MNIST with the product's training engine "
        "and report test accuracy, PSNR and images/s."
    )
    parser.add_argument("--epochs", type=int, default=1, help="default: %(default)s")
    parser.add_argument(
        "--train-limit",
        type=int,
        default=None,
        help="use the first N training images (default: all 60000)",
    )
    parser.add_argument(
        "--test-limit",
        type=int,
        default=None,
        help="evaluate on the first N test images (default: all 10000)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100,
        help="images per optimizer step (default: %(default)s)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="auto picks bf16 autocast on CPUs with AMX and on CUDA GPUs "
        "with bf16 (default: %(default)s)",
    )
    parser.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="auto",
        help="auto picks CUDA, then Apple MPS, then the CPU (default: %(default)s)",
    )
    parser.add_argument(
        "--lr-decay",
        type=float,
        default=1.0,
        help="learning rate multiplier after each epoch (default: %(default)s)",
    )
    parser.add_argument(
        "--augment-shift",
        type=int,
        default=2,
        help="random shifts of up to N pixels on training images, as the "
        "command line uses for capsnet (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    parser.add_argument(
        "--warmup-batches",
        type=int,
        default=DEFAULT_WARMUP_BATCHES,
        help="optimizer steps of the first epoch left out of the training "
        "speed, at least 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="also write a run directory (config, metrics, snapshots, "
        "checkpoint) to this folder, as latent-explorer train --run-dir does",
    )
    parser.add_argument(
        "--json", default=None, metavar="PATH", help="also write the results here"
    )
    return parser


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Return the configuration that ``latent-explorer train`` builds from the
    same options with ``--model capsnet --dataset mnist``.

    The options go through the command line's own parser, so the two cannot
    drift apart.
    """
    argv = ["--model", "capsnet", "--dataset", "mnist"]
    argv += ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size)]
    argv += ["--lr-decay", str(args.lr_decay), "--seed", str(args.seed)]
    argv += ["--augment-shift", str(args.augment_shift)]
    argv += ["--device", args.device, "--precision", args.precision]
    if args.train_limit is not None:
        argv += ["--train-limit", str(args.train_limit)]
    if args.test_limit is not None:
        argv += ["--test-limit", str(args.test_limit)]
    config = config_from_args(build_cli_parser().parse_args(argv))
    config.validate()
    return config


class StepClock(TrainingCallbacks):
    """Records when each optimizer step ends and prints sparse progress."""

    def __init__(self, batch_size: int, stream: Any = None) -> None:
        self.batch_size = batch_size
        self.stream = stream if stream is not None else sys.stderr
        # Per epoch: the perf_counter time at the end of each step, in order.
        self.step_ends: dict[int, list[float]] = {}

    def on_start(self, info: RunInfo) -> None:
        print(info.describe(), file=self.stream, flush=True)

    def on_batch(self, progress: BatchProgress) -> None:
        self.step_ends.setdefault(progress.epoch, []).append(time.perf_counter())
        if progress.batch % PROGRESS_INTERVAL_BATCHES == 0:
            print(
                f"  epoch {progress.epoch}/{progress.epochs} batch "
                f"{progress.batch}/{progress.batches}, loss {progress.loss:.4f}, "
                f"{progress.elapsed_s:.0f} s elapsed",
                file=self.stream,
                flush=True,
            )

    def on_epoch(self, result: EpochResult) -> None:
        metrics = result.metrics
        print(
            f"epoch {result.epoch}: test accuracy "
            f"{100 * metrics['test_accuracy']:.2f}%, test PSNR "
            f"{metrics['test_psnr_db']:.2f} dB, {metrics['elapsed_s']:.1f} s elapsed",
            file=self.stream,
            flush=True,
        )

    def steady_state(self, train_images: int, warmup_batches: int) -> dict[str, Any]:
        """Return the images and seconds of the timed steps and their ratio,
        in total and per epoch.

        The interval between the ends of steps k and k+1 is the whole of step
        k+1 (batch fetch, augmentation, forward, backward, optimizer step).
        Raises ValueError when no step is left after the warm-up.
        """
        images = 0
        seconds = 0.0
        by_epoch: dict[int, float] = {}
        for epoch, ends in sorted(self.step_ends.items()):
            # The first step of an epoch has no earlier step end to time from.
            skipped = max(warmup_batches, 1) if epoch == min(self.step_ends) else 1
            if len(ends) <= skipped:
                continue
            epoch_seconds = ends[-1] - ends[skipped - 1]
            epoch_images = 0
            for batch in range(skipped + 1, len(ends) + 1):
                start = (batch - 1) * self.batch_size
                epoch_images += min(self.batch_size, train_images - start)
            images += epoch_images
            seconds += epoch_seconds
            if epoch_seconds > 0:
                by_epoch[epoch] = epoch_images / epoch_seconds
        if images == 0 or seconds <= 0:
            raise ValueError(
                f"no optimizer step is left to time after {warmup_batches} warm-up "
                "steps; raise --train-limit or lower --warmup-batches"
            )
        return {
            "timed_images": images,
            "timed_seconds": seconds,
            "images_per_s": images / seconds,
            "images_per_s_by_epoch": by_epoch,
        }


class EvaluationTimedTrainer(Trainer):
    """The product's Trainer, unchanged except that it times ``evaluate``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.evaluation_seconds: list[float] = []

    def evaluate(self) -> dict[str, float]:
        started = time.perf_counter()
        metrics = super().evaluate()
        self.evaluation_seconds.append(time.perf_counter() - started)
        return metrics


def cpu_model() -> str:
    """Return the CPU's model name from /proc/cpuinfo, else from platform."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Return the total memory in GiB from /proc/meminfo, or None elsewhere."""
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except (OSError, ValueError, IndexError):
        pass
    return None


def load_average() -> list[float] | None:
    """Return the 1, 5 and 15 minute load averages, or None where unsupported."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def system_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_has_amx": cpu_has_amx(),
        "memory_gib": memory_gib(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
    }


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Train as configured by ``args`` and return the results as a dict."""
    started = time.perf_counter()
    started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_before = load_average()
    config = build_config(args)
    dataset = load_dataset("mnist").limited(config.train_limit, config.test_limit)
    batches_per_epoch = math.ceil(len(dataset.train_images) / config.batch_size)
    if not 1 <= args.warmup_batches < batches_per_epoch:
        raise ValueError(
            f"--warmup-batches must be at least 1 and below the {batches_per_epoch} "
            f"batches per epoch, got {args.warmup_batches}; raise --train-limit "
            "or lower --warmup-batches"
        )
    run_dir = None
    if args.run_dir:
        run_dir = RunDirectory(args.run_dir)
        run_dir.root.mkdir(parents=True, exist_ok=True)
    clock = StepClock(config.batch_size)
    trainer = EvaluationTimedTrainer(config, dataset, run_dir=run_dir, callbacks=clock)

    run_started = time.perf_counter()
    summary = trainer.run()
    run_seconds = time.perf_counter() - run_started

    speed = clock.steady_state(len(dataset.train_images), args.warmup_batches)
    evaluated_images = len(dataset.test_images) * len(trainer.evaluation_seconds)
    evaluation_seconds = sum(trainer.evaluation_seconds)
    final = summary.final_metrics
    return {
        "started_utc": started_utc,
        "model": "capsnet",
        "dataset": "mnist",
        "epochs": summary.epochs_completed,
        "train_images": len(dataset.train_images),
        "test_images": len(dataset.test_images),
        "batch_size": config.batch_size,
        "precision": args.precision,
        "device": describe_device(trainer.device, trainer.autocast_dtype),
        "test_accuracy": final["test_accuracy"],
        "test_psnr_db": final["test_psnr_db"],
        "test_loss": final["test_loss"],
        "train_images_per_s": speed["images_per_s"],
        "train_timed_images": speed["timed_images"],
        "train_timed_s": speed["timed_seconds"],
        "train_images_per_s_by_epoch": speed["images_per_s_by_epoch"],
        "eval_images_per_s": evaluated_images / evaluation_seconds,
        "eval_s": evaluation_seconds,
        "training_run_s": run_seconds,
        "wall_s": time.perf_counter() - started,
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "history": summary.history,
        "config": config.to_dict(),
        "run_dir": str(run_dir.root) if run_dir else None,
        "system": system_info(),
    }


def format_report(results: dict[str, Any]) -> str:
    system = results["system"]
    memory = system["memory_gib"]
    lines = [
        f"CapsNet on MNIST, {results['epochs']} epoch(s) of "
        f"{results['train_images']} training images, batch "
        f"{results['batch_size']}, tested on {results['test_images']} images",
        f"test accuracy     {100 * results['test_accuracy']:.2f} %",
        f"test PSNR         {results['test_psnr_db']:.2f} dB",
        f"training speed    {results['train_images_per_s']:.1f} images/s "
        f"(steady state, {results['train_timed_images']} images in "
        f"{results['train_timed_s']:.1f} s)",
        "  by epoch        "
        + ", ".join(
            f"{epoch}: {speed:.1f} images/s"
            for epoch, speed in results["train_images_per_s_by_epoch"].items()
        ),
        f"evaluation speed  {results['eval_images_per_s']:.1f} images/s "
        f"({results['eval_s']:.1f} s in total)",
        f"training run      {results['training_run_s']:.1f} s "
        "(training, evaluation, snapshots, checkpoints)",
        f"wall time         {results['wall_s']:.1f} s (including data loading)",
        f"device            {results['device']}",
        f"torch             {system['torch_version']}, "
        f"{system['torch_threads']} threads",
        f"CPU               {system['cpu_model']}, {system['cpu_count']} logical "
        f"CPUs, AMX {'yes' if system['cpu_has_amx'] else 'no'}"
        + (f", {memory:.1f} GiB memory" if memory else ""),
        f"load average      {results['load_average_before']} before, "
        f"{results['load_average_after']} after (1, 5, 15 min)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(arguments)
    try:
        results = run_benchmark(args)
        results["arguments"] = arguments
    except ValueError as error:
        print(f"capsnet_mnist: error: {error}", file=sys.stderr)
        return 2
    print(format_report(results))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
