"""The training engine: one loop for every model, reporting through callbacks.

The loop has no notion of windows or terminals. It calls the methods of a
``TrainingCallbacks`` object (the GUI's worker turns them into Qt signals,
the command line into a progress bar) and checks a ``TrainingControl``
between batches, so pausing and stopping never interrupt an optimizer step.

Each epoch is shuffled with a generator seeded from (seed, epoch), so a run
resumed from a checkpoint gets the same batches as one that never stopped.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.augment import random_shift
from core.checkpoint import Checkpoint, save_checkpoint
from core.config import TrainConfig
from core.data import ImageDataset
from core.device import describe_device, select_device, select_precision
from core.metrics import summarize_stats
from core.models import Preview, build_model
from core.render import snapshot_mosaic
from core.rundir import RunDirectory

logger = logging.getLogger(__name__)

EVAL_BATCH_SIZE = 500
PROGRESS_FILE_INTERVAL_S = 1.0


class TrainingError(Exception):
    """Training cannot continue. The message states why and what to change."""


@dataclass
class RunInfo:
    """The plan of a run, reported once before the first batch."""

    device: str
    train_images: int
    test_images: int
    batches_per_epoch: int
    start_epoch: int
    epochs: int
    parameters: int
    run_dir: str | None

    def describe(self) -> str:
        """Return one line naming the device, image counts and model size."""
        return (
            f"Training on {self.device}: {self.train_images} training and "
            f"{self.test_images} test images, {self.batches_per_epoch} batches "
            f"per epoch, {self.parameters:,} parameters"
        )


@dataclass
class BatchProgress:
    """Reported after every optimizer step."""

    epoch: int  # 1-based epoch being trained
    epochs: int
    batch: int  # 1-based batch within the epoch
    batches: int
    loss: float
    images_per_second: float
    elapsed_s: float  # since this run started
    eta_s: float  # estimated time left for the whole run, evaluations included

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class EpochResult:
    """Reported after each epoch: metrics and the preview of the fixed images."""

    epoch: int
    metrics: dict[str, float]
    preview: Preview
    preview_images: np.ndarray  # (B, C, H, W) uint8, the fixed test images
    preview_labels: np.ndarray


@dataclass
class TrainingSummary:
    reason: str  # "finished" or "stopped"
    epochs_completed: int
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def final_metrics(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


class TrainingCallbacks:
    """Receives the engine's reports. Every method is optional to override."""

    def on_start(self, info: RunInfo) -> None:
        """Called once, before the first batch."""

    def on_batch(self, progress: BatchProgress) -> None:
        """Called after every optimizer step."""

    def on_epoch(self, result: EpochResult) -> None:
        """Called after every epoch's evaluation and snapshot."""

    def on_status(self, message: str) -> None:
        """Called with short human-readable status messages."""


class TrainingControl:
    """Thread-safe pause, resume and stop requests, honoured between batches."""

    def __init__(self) -> None:
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused loop so it can exit

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def proceed(self) -> bool:
        """Block while paused; return False when the loop must stop."""
        self._running.wait()
        return not self._stop.is_set()


def choose_preview_indices(labels: torch.Tensor, count: int) -> np.ndarray:
    """Pick ``count`` test indices, one per class in class order, then repeat.

    The choice depends only on the labels, so every run on the same test
    split shows the same images and runs can be compared side by side.
    """
    labels_np = labels.cpu().numpy()
    classes = np.unique(labels_np)
    picked: list[int] = []
    rank = 0
    while len(picked) < min(count, len(labels_np)):
        for cls in classes:
            where = np.flatnonzero(labels_np == cls)
            if rank < len(where) and len(picked) < count:
                picked.append(int(where[rank]))
        rank += 1
    return np.array(picked, dtype=np.int64)


class Trainer:
    """Train one model on one dataset, writing a run directory if given one."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: ImageDataset,
        run_dir: RunDirectory | None = None,
        callbacks: TrainingCallbacks | None = None,
        control: TrainingControl | None = None,
        resume: Checkpoint | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.dataset = dataset
        self.run_dir = run_dir
        self.callbacks = callbacks or TrainingCallbacks()
        self.control = control or TrainingControl()
        self.device = select_device(config.device)
        self.autocast_dtype = select_precision(config.precision, self.device)
        self.history: list[dict[str, float]] = []
        self.start_epoch = 0

        torch.manual_seed(config.seed)
        if resume is not None:
            self.model = resume.build_model()
        else:
            kwargs = config.model_kwargs(dataset.image_shape)
            self.model = build_model(config.model, **kwargs)
        self.model.to(self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=config.learning_rate
        )
        if resume is not None:
            if resume.optimizer_state:
                self.optimizer.load_state_dict(resume.optimizer_state)
            self.start_epoch = resume.epoch
            self.history = [h for h in resume.history if h["epoch"] <= resume.epoch]
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizer, gamma=config.lr_decay
        )

        self.train_images = dataset.train_images.to(self.device)
        self.train_labels = dataset.train_labels.to(self.device)
        self.test_images = dataset.test_images.to(self.device)
        self.test_labels = dataset.test_labels.to(self.device)
        self.preview_indices = choose_preview_indices(
            dataset.test_labels, config.preview_count
        )
        self._last_progress_write = 0.0
        self._eval_seconds = 0.0  # time spent evaluating, left out of step speed
        self._last_eval_s = 0.0
        self._train_epoch_stats: dict[str, float] = {}

    # ---- helpers ------------------------------------------------------------

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_images) / self.config.batch_size)

    def _to_float(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().div_(255.0)

    # ---- the loop -----------------------------------------------------------

    def run(self) -> TrainingSummary:
        """Train from ``start_epoch`` to ``config.epochs``; return a summary."""
        config = self.config
        self._prepare_run_dir()
        info = RunInfo(
            device=describe_device(self.device, self.autocast_dtype),
            train_images=len(self.train_images),
            test_images=len(self.test_images),
            batches_per_epoch=self.batches_per_epoch,
            start_epoch=self.start_epoch,
            epochs=config.epochs,
            parameters=sum(p.numel() for p in self.model.parameters()),
            run_dir=str(self.run_dir.root) if self.run_dir else None,
        )
        logger.info("training started: %s", info)
        self.callbacks.on_start(info)
        self._started = time.perf_counter()
        self._steps_done = 0

        summary = TrainingSummary("finished", config.epochs, self.history)
        for epoch in range(self.start_epoch + 1, config.epochs + 1):
            completed = self._train_epoch(epoch)
            if not completed:
                self._save(epoch - 1, stopped_mid_epoch=True)
                logger.info("training stopped during epoch %d", epoch)
                summary = TrainingSummary("stopped", epoch - 1, self.history)
                break
            self.scheduler.step()
            self._finish_epoch(epoch)
            if self.control.stop_requested:
                summary = TrainingSummary("stopped", epoch, self.history)
                break
        logger.info(
            "training %s after %d epochs", summary.reason, summary.epochs_completed
        )
        if self.run_dir:
            # The last word for anyone watching the run directory.
            self.run_dir.write_progress(
                {"status": summary.reason, "epochs_completed": summary.epochs_completed}
            )
        return summary

    def _train_epoch(self, epoch: int) -> bool:
        """Train one epoch; return False if a stop was requested part-way."""
        config = self.config
        self.model.train()
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        order = torch.randperm(len(self.train_images), generator=generator)
        order = order.to(self.device)
        batches = self.batches_per_epoch
        totals: dict[str, torch.Tensor] = {}
        for batch in range(1, batches + 1):
            if not self.control.proceed():
                return False
            step_started = time.perf_counter()

            # 1. Fetch the batch from the in-memory uint8 tensors.
            index = order[(batch - 1) * config.batch_size : batch * config.batch_size]
            images = self.train_images[index]
            if config.augment_shift:
                images = random_shift(images, config.augment_shift, generator)
            images = self._to_float(images)
            labels = self.train_labels[index]

            # 2. Forward pass and loss, in bf16 autocast where chosen.
            with self._autocast():
                loss, stats = self.model.training_loss(images, labels)

            # 3. Refuse a non-finite loss before it reaches the weights.
            loss_value = float(loss.detach())
            if not math.isfinite(loss_value):
                raise TrainingError(
                    f"loss became {loss_value} at epoch {epoch}, batch {batch}; "
                    f"the weights from the previous step are kept. Lower the "
                    f"learning rate (now {self.optimizer.param_groups[0]['lr']:g}) "
                    f"or use --precision fp32"
                )

            # 4. Backward pass and optimizer step.
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

            # 5. Accumulate the epoch's statistics and report.
            for name, value in stats.items():
                totals[name] = totals.get(name, 0.0) + value.detach().cpu().double()
            self._steps_done += 1
            self._report_batch(epoch, batch, loss_value, len(index), step_started)
        self._train_epoch_stats = summarize_stats(
            {name: float(value) for name, value in totals.items()}
        )
        return True

    def _report_batch(
        self, epoch: int, batch: int, loss: float, size: int, started: float
    ) -> None:
        now = time.perf_counter()
        elapsed = now - self._started
        seconds_per_step = (elapsed - self._eval_seconds) / self._steps_done
        steps_left = (self.config.epochs - epoch) * self.batches_per_epoch + (
            self.batches_per_epoch - batch
        )
        evals_left = self.config.epochs - epoch + 1
        progress = BatchProgress(
            epoch=epoch,
            epochs=self.config.epochs,
            batch=batch,
            batches=self.batches_per_epoch,
            loss=loss,
            images_per_second=size / max(now - started, 1e-9),
            elapsed_s=elapsed,
            eta_s=steps_left * seconds_per_step + evals_left * self._last_eval_s,
        )
        self.callbacks.on_batch(progress)
        if self.run_dir and now - self._last_progress_write > PROGRESS_FILE_INTERVAL_S:
            self._last_progress_write = now
            self.run_dir.write_progress({"status": "training", **progress.to_dict()})

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Return test-set metrics (loss, psnr_db, accuracy where defined)."""
        self.model.eval()
        totals: dict[str, float] = {}
        for start in range(0, len(self.test_images), EVAL_BATCH_SIZE):
            images = self._to_float(self.test_images[start : start + EVAL_BATCH_SIZE])
            labels = self.test_labels[start : start + EVAL_BATCH_SIZE]
            with self._autocast():
                stats = self.model.batch_stats(images, labels)
            for name, value in stats.items():
                totals[name] = totals.get(name, 0.0) + float(value)
        return summarize_stats(totals)

    @torch.no_grad()
    def preview(self) -> tuple[Preview, np.ndarray, np.ndarray]:
        """Return the eval-mode preview of the fixed test images."""
        self.model.eval()
        index = torch.as_tensor(self.preview_indices, device=self.device)
        images_u8 = self.test_images[index]
        labels = self.test_labels[index]
        preview = self.model.preview(self._to_float(images_u8), labels)
        return preview, images_u8.cpu().numpy(), labels.cpu().numpy()

    def _finish_epoch(self, epoch: int) -> None:
        eval_started = time.perf_counter()
        self.callbacks.on_status(f"Evaluating epoch {epoch} on the test split")
        metrics = {"epoch": epoch}
        metrics.update({f"test_{k}": v for k, v in self.evaluate().items()})
        metrics.update({f"train_{k}": v for k, v in self._train_epoch_stats.items()})
        metrics["elapsed_s"] = round(time.perf_counter() - self._started, 3)
        preview, images, labels = self.preview()
        self.history.append(metrics)
        if self.run_dir:
            picture = snapshot_mosaic(images, preview.latent, preview.reconstruction)
            self.run_dir.save_snapshot(epoch, preview, picture)
            self.run_dir.append_metrics(metrics)
            self._save(epoch)
        self._last_eval_s = time.perf_counter() - eval_started
        self._eval_seconds += self._last_eval_s
        self.callbacks.on_epoch(EpochResult(epoch, metrics, preview, images, labels))

    def _save(self, epoch: int, stopped_mid_epoch: bool = False) -> None:
        if self.run_dir is None:
            return
        save_checkpoint(
            self.run_dir.checkpoint_path,
            self.model,
            self.optimizer,
            epoch=epoch,
            history=self.history,
            config=self.config.to_dict(),
            extra={"stopped_mid_epoch": stopped_mid_epoch},
        )

    def _prepare_run_dir(self) -> None:
        if self.run_dir is None:
            return
        self.run_dir.write_config(self.config.to_dict())
        self.run_dir.rewrite_metrics(self.history)
        index = self.preview_indices
        self.run_dir.save_preview_inputs(
            self.dataset.test_images[index].numpy(),
            self.dataset.test_labels[index].numpy(),
            index,
        )
