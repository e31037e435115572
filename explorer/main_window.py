"""The main window: settings on the left, live panels in tabs, status below."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QThread, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QScrollArea,
    QTabWidget,
    QWidget,
)

from core.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from core.cli import format_duration, run_name
from core.config import TrainConfig
from core.data import DatasetError, ImageDataset, load_dataset
from core.models import LatentModel
from core.recording import GifRecorder, write_gif
from core.render import snapshot_mosaic
from core.rundir import RunDirectory, RunDirectoryError, default_runs_root
from core.training import BatchProgress, EpochResult, RunInfo, TrainingSummary
from explorer.perturb_panel import PerturbPanel
from explorer.qtimage import grab_widget
from explorer.resources import BUNDLED_CAPSNET, ICON_FILE
from explorer.settings_panel import SettingsPanel
from explorer.views import CurvesView, Snapshot, SnapshotView
from explorer.worker import TrainingWorker, start_training

logger = logging.getLogger(__name__)

RUN_POLL_INTERVAL_MS = 2000


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None) -> None:
        super().__init__()
        self.setWindowTitle("latent-explorer")
        self.setWindowIcon(QIcon(str(ICON_FILE)))
        self.resize(1280, 820)
        self.settings = settings or QSettings()
        self.thread: QThread | None = None
        self.worker: TrainingWorker | None = None
        self.run_dir: RunDirectory | None = None
        self.model: LatentModel | None = None  # CPU copy for exploring
        self.checkpoint: Checkpoint | None = None
        self.recorder: GifRecorder | None = None
        self.last_error: str | None = None
        self.last_saved: Path | None = None
        self.datasets: dict[str, ImageDataset] = {}  # loaded for exploring
        self.model_dataset: ImageDataset | None = None  # the model's test images
        self.model_source = ""
        self._perturb_stale = False
        self.model_dataset_name = "mnist"  # loaded for the Perturb tab on demand
        self._recorded_widget: QWidget | None = None

        self.panel = SettingsPanel()
        scroll = QScrollArea()
        scroll.setWidget(self.panel)
        scroll.setWidgetResizable(True)
        scroll.setMinimumWidth(300)
        dock = QDockWidget("Settings", self)
        dock.setObjectName("settingsDock")
        dock.setWidget(scroll)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)

        self.tabs = QTabWidget()
        self.snapshot_view = SnapshotView()
        self.curves_view = CurvesView()
        self.tabs.addTab(self.snapshot_view, "Snapshots")
        self.tabs.addTab(self.curves_view, "Curves")
        self.perturb_panel = PerturbPanel()
        self.tabs.addTab(self.perturb_panel, "Perturb")
        self.tabs.currentChanged.connect(lambda _index: self._refresh_perturb_panel())
        self.perturb_panel.exported.connect(
            lambda path: self.statusBar().showMessage(f"Saved {path}", 10000)
        )
        self.setCentralWidget(self.tabs)
        self.panel.mappingChanged.connect(self.snapshot_view.set_mapping)
        self.snapshot_view.set_mapping(self.panel.mapping.currentText())

        self._build_actions()
        self._build_status_bar()
        self.record_timer = QTimer(self)
        self.record_timer.timeout.connect(self._record_frame)
        self.poll_timer = QTimer(self)
        self.poll_timer.setInterval(RUN_POLL_INTERVAL_MS)
        self.poll_timer.timeout.connect(self._poll_run)

        self.panel.restore(self.settings)
        geometry = self.settings.value("window/geometry")
        state = self.settings.value("window/state")
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        self.tabs.setCurrentIndex(int(self.settings.value("window/tab", 0) or 0))
        self._update_actions()

    # ---- construction -------------------------------------------------------

    def _action(
        self, text: str, shortcut: str | QKeySequence.StandardKey, slot, tip: str
    ) -> QAction:
        action = QAction(text, self)
        action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(f"{tip} ({QKeySequence(shortcut).toString()})")
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        return action

    def _build_actions(self) -> None:
        self.train_action = self._action(
            "Train", "Ctrl+Return", self.start_training, "Start a new training run"
        )
        self.continue_action = self._action(
            "Continue",
            "Ctrl+Shift+Return",
            self.continue_training,
            "Continue the open run from its checkpoint up to the epochs set",
        )
        self.pause_action = self._action(
            "Pause", "Ctrl+P", self.toggle_pause, "Pause or resume between batches"
        )
        self.pause_action.setCheckable(True)
        self.stop_action = self._action(
            "Stop",
            "Ctrl+.",
            self.stop_training,
            "Stop after the current batch, keeping the model and all snapshots",
        )
        self.record_action = self._action(
            "Record",
            "Ctrl+R",
            self.toggle_recording,
            "Record the visible panel as a GIF; press again to save it",
        )
        self.record_action.setCheckable(True)
        self.open_action = self._action(
            "Open run…",
            QKeySequence.StandardKey.Open,
            self.choose_run,
            "Open a run directory written by the window or by latent-explorer train",
        )
        self.export_action = self._action(
            "Export snapshots as GIF…",
            "Ctrl+E",
            self.choose_snapshot_gif,
            "Write every epoch's snapshot as one frame of a GIF",
        )
        self.save_action = self._action(
            "Save checkpoint as…",
            QKeySequence.StandardKey.Save,
            self.choose_checkpoint_copy,
            "Save the current model to a checkpoint file",
        )
        self.bundled_action = self._action(
            "Load bundled CapsNet",
            "Ctrl+B",
            self.load_bundled_capsnet,
            "Explore the CapsNet shipped with the application (trained on MNIST)",
        )
        quit_action = self._action(
            "Quit", QKeySequence.StandardKey.Quit, self.close, "Close the window"
        )

        file_menu = self.menuBar().addMenu("&File")
        for action in (
            self.open_action,
            self.bundled_action,
            self.save_action,
            self.export_action,
        ):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        train_menu = self.menuBar().addMenu("&Training")
        toolbar = self.addToolBar("Training")
        toolbar.setObjectName("trainingToolbar")
        for action in (
            self.train_action,
            self.continue_action,
            self.pause_action,
            self.stop_action,
            self.record_action,
        ):
            train_menu.addAction(action)
            toolbar.addAction(action)
        self.panel.validityChanged.connect(lambda _valid: self._update_actions())

    def _build_status_bar(self) -> None:
        status = self.statusBar()
        self.device_label = QLabel("Device: not started")
        self.progress = QProgressBar()
        self.progress.setMinimumWidth(380)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress.setValue(0)
        status.addPermanentWidget(self.device_label)
        status.addPermanentWidget(self.progress)

    # ---- state --------------------------------------------------------------

    @property
    def training(self) -> bool:
        """True from the start of a run until the window has handled its end."""
        return self.worker is not None

    def _update_actions(self) -> None:
        valid = True
        try:
            self.panel.config()
        except ValueError:
            valid = False
        training = self.training
        self.train_action.setEnabled(valid and not training)
        self.continue_action.setEnabled(
            not training and self.run_dir is not None and self.checkpoint is not None
        )
        self.pause_action.setEnabled(training)
        self.stop_action.setEnabled(training)
        self.panel.set_training(training)
        has_snapshots = bool(self.snapshot_view.snapshots)
        self.export_action.setEnabled(has_snapshots)
        self.save_action.setEnabled(self.model is not None)

    def show_error(self, message: str) -> None:
        """Report an error in a non-blocking message box and the status bar."""
        logger.error("%s", message)
        self.last_error = message
        self.statusBar().showMessage(message, 15000)
        box = QMessageBox(
            QMessageBox.Icon.Critical,
            "latent-explorer",
            message,
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    # ---- training -----------------------------------------------------------

    def start_training(self) -> None:
        """Start a new run with the settings in the form."""
        if self.training:
            return
        try:
            config = self.panel.config()
        except ValueError as error:
            self.show_error(f"Cannot start training: {error}")
            return
        self.panel.save(self.settings)
        run = RunDirectory.create(default_runs_root(), run_name(config))
        self._reset_views()
        self._launch(config, run, resume=None)

    def continue_training(self) -> None:
        """Resume the open run from its checkpoint up to the form's epochs."""
        if self.training or self.run_dir is None or self.checkpoint is None:
            return
        config = TrainConfig.from_dict(self.run_dir.read_config())
        config.epochs = self.panel.epochs.value()
        if config.epochs <= self.checkpoint.epoch:
            self.show_error(
                f"The run already has {self.checkpoint.epoch} epochs; set Epochs "
                f"higher than that to continue it."
            )
            return
        self.poll_timer.stop()
        self._launch(config, self.run_dir, resume=self.checkpoint)

    def _launch(
        self, config: TrainConfig, run: RunDirectory, resume: Checkpoint | None
    ) -> None:
        self.run_dir = run
        self.last_error = None
        self.worker = TrainingWorker(config, run, resume)
        self.worker.runStarted.connect(self._on_run_started)
        self.worker.batchFinished.connect(self._on_batch)
        self.worker.epochFinished.connect(self._on_epoch)
        self.worker.statusChanged.connect(self._on_status)
        self.worker.datasetLoaded.connect(self._on_dataset_loaded)
        self.worker.downloadProgress.connect(self._on_download)
        self.worker.failed.connect(self.show_error)
        self.worker.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.progress.setFormat("starting…")
        if not self.snapshot_view.snapshots:
            self.snapshot_view.epoch_label.setText(
                "Training: the first snapshot appears after epoch 1"
            )
        self.thread = start_training(self.worker)
        self.setWindowTitle(f"latent-explorer — {run.root.name}")
        self._update_actions()

    def toggle_pause(self) -> None:
        if not self.worker:
            return
        if self.worker.control.paused:
            self.worker.control.resume()
            self.pause_action.setText("Pause")
            self.statusBar().showMessage("Resumed", 3000)
        else:
            self.worker.control.pause()
            self.pause_action.setText("Resume")
            self.progress.setFormat(self.progress.format() + " (paused)")
            self.statusBar().showMessage("Paused between batches")
        self.pause_action.setChecked(self.worker.control.paused)

    def stop_training(self) -> None:
        if self.worker:
            self.worker.control.stop()
            self.statusBar().showMessage("Stopping after the current batch…")

    def _on_run_started(self, info: RunInfo) -> None:
        self.device_label.setText(f"Device: {info.device}")
        self.progress.setRange(0, 1000)
        self.statusBar().showMessage(
            f"Training {info.parameters:,} parameters on {info.train_images} images; "
            f"run directory {info.run_dir}",
            8000,
        )

    def _on_batch(self, progress: BatchProgress) -> None:
        done = (progress.epoch - 1 + progress.batch / progress.batches) / max(
            progress.epochs, 1
        )
        self.progress.setValue(int(1000 * done))
        self.progress.setFormat(
            f"epoch {progress.epoch}/{progress.epochs} · batch "
            f"{progress.batch}/{progress.batches} · ETA "
            f"{format_duration(progress.eta_s)}"
        )
        position = progress.epoch - 1 + progress.batch / progress.batches
        self.curves_view.add_batch(position, progress.loss)

    def _on_dataset_loaded(self, dataset: ImageDataset) -> None:
        self.model_dataset = dataset

    def _on_epoch(self, result: EpochResult, model: LatentModel | None) -> None:
        self.statusBar().clearMessage()
        self.set_model(
            model, self.model_dataset, f"Live model after epoch {result.epoch}"
        )
        snapshot = Snapshot(
            result.epoch,
            result.preview,
            result.preview_images,
            result.preview_labels,
            result.metrics,
        )
        self.snapshot_view.add_snapshot(snapshot)
        self.curves_view.add_epoch(result.metrics)
        self._update_actions()

    def _on_status(self, message: str) -> None:
        self.statusBar().showMessage(message, 5000)

    def _on_download(self, done: int, total: int) -> None:
        if total:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        self.progress.setFormat(f"downloading {done / 1e6:.1f} MB")

    def _on_finished(self, summary: TrainingSummary | None) -> None:
        if self.thread is not None:
            self.thread.quit()
            self.thread.wait()
        self.thread = None
        self.worker = None
        self.pause_action.setChecked(False)
        self.pause_action.setText("Pause")
        self.progress.setRange(0, 1000)
        if summary is None:
            self.progress.setFormat("failed")
        else:
            self.progress.setValue(1000 if summary.reason == "finished" else 0)
            self.progress.setFormat(
                f"{summary.reason} after {summary.epochs_completed} epochs"
            )
            self.statusBar().showMessage(
                f"Training {summary.reason}; saved in {self.run_dir.root}", 10000
            )
        self._load_checkpoint_quietly()
        self._update_actions()

    def _load_checkpoint_quietly(self) -> None:
        if self.run_dir and self.run_dir.checkpoint_path.exists():
            try:
                self.checkpoint = load_checkpoint(self.run_dir.checkpoint_path)
            except CheckpointError as error:
                self.show_error(str(error))

    def _reset_views(self) -> None:
        self.snapshot_view.clear()
        self.curves_view.clear_curves()
        self.set_model(None, None, "")
        self.checkpoint = None

    # ---- exploring a model --------------------------------------------------

    def set_model(
        self, model: LatentModel | None, dataset: ImageDataset | None, source: str
    ) -> None:
        """Make ``model`` the one that the Perturb tab explores."""
        self.model = model
        self.model_dataset = dataset
        self.model_source = source
        self._perturb_stale = True
        self._refresh_perturb_panel()

    def _refresh_perturb_panel(self) -> None:
        """Hand the model to the Perturb tab, but only while it is visible."""
        if (
            not self._perturb_stale
            or self.tabs.currentWidget() is not self.perturb_panel
        ):
            return
        self._perturb_stale = False
        if self.run_dir is not None:
            self.perturb_panel.output_dir = self.run_dir.recordings_dir
        else:
            self.perturb_panel.output_dir = default_runs_root() / "perturbations"
        self.perturb_panel.gif_duration_ms = self.panel.gif_duration.value()
        self.perturb_panel.gif_loop = self.panel.gif_loop.value()
        if self.model is not None and self.model_dataset is None:
            self.model_dataset = self._dataset_for_exploring(self.model_dataset_name)
        try:
            self.perturb_panel.set_model(
                self.model, self.model_dataset, self.model_source
            )
        except ValueError as error:
            self.show_error(str(error))

    def _dataset_for_exploring(self, name: str) -> ImageDataset | None:
        """Load (once) the dataset whose test images the Perturb tab shows."""
        if name in self.datasets:
            return self.datasets[name]
        self.statusBar().showMessage(f"Loading {name} test images…")
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            dataset = load_dataset(name, download=False)
        except DatasetError as error:
            self.show_error(str(error))
            return None
        finally:
            QApplication.restoreOverrideCursor()
            self.statusBar().clearMessage()
        self.datasets[name] = dataset
        return dataset

    def load_bundled_capsnet(self) -> bool:
        """Load the CapsNet shipped in resources/ and open the Perturb tab."""
        if self.training:
            self.show_error("Stop training before loading another model.")
            return False
        try:
            checkpoint = load_checkpoint(BUNDLED_CAPSNET)
            model = checkpoint.build_model().eval()
        except CheckpointError as error:
            self.show_error(str(error))
            return False
        self.run_dir = None
        self.checkpoint = None
        self.model_dataset_name = checkpoint.config.get("dataset", "mnist")
        accuracy = (
            checkpoint.history[-1].get("test_accuracy") if checkpoint.history else None
        )
        source = f"Bundled CapsNet, {checkpoint.epoch} epochs on MNIST"
        if accuracy is not None:
            source += f", test accuracy {100 * accuracy:.2f}%"
        self.set_model(model, None, source)
        self.tabs.setCurrentWidget(self.perturb_panel)
        self._update_actions()
        return True

    # ---- run directories ----------------------------------------------------

    def choose_run(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Open a run directory", str(default_runs_root())
        )
        if folder:
            self.open_run(folder)

    def open_run(self, folder: str | Path) -> bool:
        """Show a run directory: its settings, curves, snapshots and model."""
        if self.training:
            self.show_error("Stop training before opening another run.")
            return False
        try:
            run = RunDirectory.open(folder)
            config = TrainConfig.from_dict(run.read_config())
        except RunDirectoryError as error:
            self.show_error(str(error))
            return False
        self._reset_views()
        self.run_dir = run
        self.panel.apply_config(config)
        self._shown_epochs: set[int] = set()
        self._poll_run()
        self._load_checkpoint_quietly()
        self.model_dataset_name = config.dataset
        if self.checkpoint is not None:
            try:
                model = self.checkpoint.build_model().eval()
            except CheckpointError as error:
                self.show_error(str(error))
            else:
                self.set_model(
                    model, None, f"{run.root.name}, epoch {self.checkpoint.epoch}"
                )
        self.setWindowTitle(f"latent-explorer — {run.root.name}")
        self.poll_timer.start()
        self._update_actions()
        return True

    def _poll_run(self) -> None:
        """Show epochs that appeared in the open run since the last look.

        This is how the window follows a run that another process writes,
        such as ``latent-explorer train`` on a server with a shared disk.
        """
        if self.run_dir is None or self.training:
            return
        inputs = self.run_dir.load_preview_inputs()
        if inputs is None:
            return
        metrics = {int(m["epoch"]): m for m in self.run_dir.read_metrics()}
        for epoch in self.run_dir.snapshot_epochs():
            if epoch in self._shown_epochs or epoch not in metrics:
                continue
            try:
                preview = self.run_dir.load_snapshot(epoch)
            except (OSError, ValueError, KeyError):
                continue  # being written right now; try again next time
            self._shown_epochs.add(epoch)
            self.snapshot_view.add_snapshot(
                Snapshot(
                    epoch, preview, inputs["images"], inputs["labels"], metrics[epoch]
                )
            )
            self.curves_view.add_epoch(metrics[epoch])
        self._update_actions()

    # ---- recording and export -----------------------------------------------

    def toggle_recording(self) -> None:
        if self.recorder is None:
            duration = self.panel.gif_duration.value()
            self.recorder = GifRecorder(duration, self.panel.gif_loop.value())
            self._recorded_widget = self.tabs.currentWidget()
            self._record_frame()
            self.record_timer.start(duration)
            self.record_action.setChecked(True)
            self.statusBar().showMessage(
                f"Recording the {self.tabs.tabText(self.tabs.currentIndex())} "
                f"panel; press Record again to save the GIF"
            )
        else:
            self.stop_recording()

    def _record_frame(self) -> None:
        if self.recorder is not None:
            self.recorder.add(grab_widget(self._recorded_widget))

    def stop_recording(self, path: str | Path | None = None) -> Path | None:
        """Stop recording and write the GIF (into the run's recordings folder)."""
        self.record_timer.stop()
        self.record_action.setChecked(False)
        recorder, self.recorder = self.recorder, None
        if recorder is None or not len(recorder):
            return None
        if path is None:
            folder = self.run_dir.recordings_dir if self.run_dir else Path.cwd()
            path = folder / f"panel-{time.strftime('%Y%m%d-%H%M%S')}.gif"
        try:
            saved = recorder.save(path)
        except (OSError, ValueError) as error:
            self.show_error(f"Could not write the GIF {path}: {error}")
            return None
        self.last_saved = saved
        self.statusBar().showMessage(f"Saved {len(recorder)} frames to {saved}", 10000)
        return saved

    def choose_snapshot_gif(self) -> None:
        default = (
            self.run_dir.recordings_dir / "snapshots.gif"
            if self.run_dir
            else Path("snapshots.gif")
        )
        path, _ = QFileDialog.getSaveFileName(
            self, "Export snapshots as GIF", str(default), "GIF images (*.gif)"
        )
        if path:
            self.export_snapshot_gif(path)

    def export_snapshot_gif(self, path: str | Path) -> Path | None:
        """Write one frame per epoch snapshot, in the current bottleneck view."""
        snapshots = self.snapshot_view.snapshots
        if not snapshots:
            self.show_error("There are no snapshots to export yet: train first.")
            return None
        mapping = self.snapshot_view.mapping
        frames = [
            snapshot_mosaic(
                s.images, s.preview.latent, s.preview.reconstruction, mapping
            )
            for s in snapshots
        ]
        try:
            saved = write_gif(
                path,
                frames,
                self.panel.gif_duration.value(),
                self.panel.gif_loop.value(),
            )
        except (OSError, ValueError) as error:
            self.show_error(f"Could not write the GIF {path}: {error}")
            return None
        self.last_saved = saved
        self.statusBar().showMessage(f"Saved {len(frames)} frames to {saved}", 10000)
        return saved

    def choose_checkpoint_copy(self) -> None:
        if self.model is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Save checkpoint", "model.pt", "Checkpoints (*.pt)"
        )
        if path:
            self.save_model_checkpoint(path)

    def save_model_checkpoint(self, path: str | Path) -> Path | None:
        """Save the explored model, its metrics and its run's config to ``path``."""
        if self.model is None:
            return None
        history = self.curves_view.epochs
        config = self.run_dir.read_config() if self.run_dir else {}
        try:
            saved = save_checkpoint(
                path, self.model, epoch=len(history), history=history, config=config
            )
        except OSError as error:
            self.show_error(f"Could not save the checkpoint {path}: {error}")
            return None
        self.statusBar().showMessage(f"Saved {saved}", 8000)
        return saved

    # ---- closing ------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop the worker cleanly, then save settings and layout."""
        if self.recorder is not None:
            self.stop_recording()
        if self.thread is not None and self.thread.isRunning():
            self.statusBar().showMessage("Stopping training…")
            self.worker.control.stop()
            self.thread.wait()
        self.panel.save(self.settings)
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        self.settings.setValue("window/tab", self.tabs.currentIndex())
        self.settings.sync()
        super().closeEvent(event)
