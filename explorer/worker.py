"""Run the core training engine on a QThread and turn its reports into signals.

The worker owns no model math: it loads the dataset and runs
``core.training.Trainer``, whose callbacks it forwards as Qt signals. Signals
cross to the GUI thread as queued connections, so slots there may touch
widgets freely.
"""

from __future__ import annotations

import copy
import logging
import time
import traceback

import torch
from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot

from core.checkpoint import Checkpoint
from core.config import TrainConfig
from core.data import load_dataset
from core.rundir import RunDirectory
from core.training import (
    BatchProgress,
    EpochResult,
    RunInfo,
    Trainer,
    TrainingCallbacks,
    TrainingControl,
    TrainingSummary,
)

logger = logging.getLogger(__name__)

# Batch reports faster than this are dropped, so a small model training at
# thousands of batches per second cannot flood the GUI's event queue.
BATCH_SIGNAL_INTERVAL_S = 0.05


class _SignalCallbacks(TrainingCallbacks):
    def __init__(self, worker: TrainingWorker) -> None:
        self.worker = worker
        self._last_batch_signal = 0.0

    def on_start(self, info: RunInfo) -> None:
        self.worker.runStarted.emit(info)

    def on_batch(self, progress: BatchProgress) -> None:
        now = time.monotonic()
        last = progress.batch == progress.batches
        if last or now - self._last_batch_signal >= BATCH_SIGNAL_INTERVAL_S:
            self._last_batch_signal = now
            self.worker.batchFinished.emit(progress)

    def on_epoch(self, result: EpochResult) -> None:
        # A CPU copy in eval mode, so the GUI can decode perturbed latents
        # while the worker goes on changing the live weights.
        trainer = self.worker.trainer
        model_copy = copy.deepcopy(trainer.model).cpu().eval() if trainer else None
        self.worker.epochFinished.emit(result, model_copy)

    def on_status(self, message: str) -> None:
        self.worker.statusChanged.emit(message)


class TrainingWorker(QObject):
    """Loads data and trains in a background thread; see ``start_training``."""

    runStarted = Signal(object)  # RunInfo
    batchFinished = Signal(object)  # BatchProgress
    epochFinished = Signal(object, object)  # EpochResult, model copy
    statusChanged = Signal(str)
    datasetLoaded = Signal(object)  # ImageDataset, as limited for this run
    downloadProgress = Signal(int, int)  # bytes done, bytes total (0: unknown)
    failed = Signal(str)
    finished = Signal(object)  # TrainingSummary or None after a failure

    def __init__(
        self,
        config: TrainConfig,
        run_dir: RunDirectory,
        resume: Checkpoint | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.control = TrainingControl()
        self.trainer: Trainer | None = None

    @Slot()
    def run(self) -> None:
        summary: TrainingSummary | None = None
        try:
            self.statusChanged.emit(f"Loading {self.config.dataset}")
            dataset = load_dataset(
                self.config.dataset,
                root=self.config.data_root,
                progress=lambda done, total: self.downloadProgress.emit(
                    int(done), int(total or 0)
                ),
            ).limited(self.config.train_limit, self.config.test_limit)
            self.datasetLoaded.emit(dataset)
            if self.control.stop_requested:
                self.finished.emit(None)
                return
            self.trainer = Trainer(
                self.config,
                dataset,
                run_dir=self.run_dir,
                callbacks=_SignalCallbacks(self),
                control=self.control,
                resume=self.resume,
            )
            summary = self.trainer.run()
        except torch.OutOfMemoryError as error:
            logger.exception("out of memory during training")
            self.failed.emit(
                f"Out of memory: {error}. Lower the batch size "
                f"(now {self.config.batch_size}) or choose a smaller model; the "
                f"last finished epoch is saved in {self.run_dir.root}."
            )
        except Exception as error:  # noqa: BLE001 - every failure must reach the window
            logger.error("training failed: %s\n%s", error, traceback.format_exc())
            self.failed.emit(f"{type(error).__name__}: {error}")
        self.finished.emit(summary)


def start_training(worker: TrainingWorker) -> QThread:
    """Move ``worker`` to a new thread, start it and return the thread.

    The thread quits when the worker finishes; the caller keeps both objects
    alive and waits on the thread before deleting them.
    """
    thread = QThread()
    thread.setObjectName("training")
    worker.moveToThread(thread)
    thread.started.connect(worker.run)
    # QThread.quit is thread-safe; calling it directly from the worker thread
    # lets a GUI thread that is blocked in wait() (closing the window) return.
    worker.finished.connect(thread.quit, Qt.ConnectionType.DirectConnection)
    thread.start()
    return thread
