"""Live panels: the snapshot view (images, bottlenecks, reconstructions) and
the loss curves. They display arrays rendered by ``core.render``; they do
no model math.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from core.models import Preview
from core.render import image_row, images_to_rgb, latent_images, latent_levels

CELL_PX = 84


@dataclass
class Snapshot:
    """One epoch's preview of the fixed test images."""

    epoch: int
    preview: Preview
    images: np.ndarray  # (B, C, H, W) uint8
    labels: np.ndarray
    metrics: dict[str, float]


def make_image_item() -> pg.ImageItem:
    """Return an ImageItem for row-major (H, W, 3) uint8 arrays, row 0 at the top."""
    return pg.ImageItem(axisOrder="row-major")


def make_image_box(
    layout: pg.GraphicsLayout, title: str
) -> tuple[pg.ImageItem, pg.LabelItem, pg.ViewBox]:
    """Add a titled, aspect-locked, non-interactive ViewBox holding one image."""
    label = layout.addLabel(title, justify="left")
    layout.nextRow()
    box = layout.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
    box.setMenuEnabled(False)
    item = make_image_item()
    box.addItem(item)
    layout.nextRow()
    return item, label, box


def show_image(item: pg.ImageItem, image: np.ndarray) -> None:
    """Show a uint8 RGB image with explicit levels and fit the view to it."""
    item.setImage(np.ascontiguousarray(image), levels=(0, 255), autoLevels=False)
    box = item.getViewBox()
    if box is not None:
        box.autoRange(padding=0.02)


class SnapshotView(QWidget):
    """Three image rows for one epoch, with a slider to scrub through epochs."""

    snapshotShown = Signal(int)  # epoch

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.snapshots: list[Snapshot] = []
        self.mapping = "rgb"
        layout = QVBoxLayout(self)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#181a1f")
        rows = self.graphics.ci
        self.original_item, _, _ = make_image_box(rows, "Test images")
        self.latent_item, self.latent_title, _ = make_image_box(rows, "Bottleneck")
        self.reconstruction_item, self.reconstruction_title, _ = make_image_box(
            rows, "Reconstructions"
        )
        # CapsNet only: primary capsule lengths and digit capsule lengths.
        self.primary_item, self.primary_title, self.primary_box = make_image_box(
            rows, "Primary capsules: length per type (tiles) and grid position"
        )
        self.lengths_plot = rows.addPlot(title="Digit capsule lengths")
        self.lengths_plot.setYRange(0, 1)
        self.lengths_plot.setMouseEnabled(x=False, y=False)
        self.lengths_plot.setLabel("bottom", "class (colour: test image)")
        self._capsule_widgets = (
            self.primary_title,
            self.primary_box,
            self.lengths_plot,
        )
        self._show_capsule_rows(False)
        layout.addWidget(self.graphics, 1)

        scrub = QHBoxLayout()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        self.slider.setToolTip(
            "Scrub through the snapshots taken after each epoch; at the right "
            "end the view follows training"
        )
        self.slider.valueChanged.connect(self._show_index)
        self.epoch_label = QLabel("No snapshot yet: press Train")
        self.epoch_label.setMinimumWidth(320)
        scrub.addWidget(QLabel("Epoch"))
        scrub.addWidget(self.slider, 1)
        scrub.addWidget(self.epoch_label)
        layout.addLayout(scrub)

    def _show_capsule_rows(self, visible: bool) -> None:
        for widget in self._capsule_widgets:
            widget.setVisible(visible)
            widget.setMaximumHeight(10_000 if visible else 0)

    def clear(self) -> None:
        self.snapshots.clear()
        self.slider.setRange(0, 0)
        self.slider.setEnabled(False)
        for item in (
            self.original_item,
            self.latent_item,
            self.reconstruction_item,
            self.primary_item,
        ):
            item.clear()
        self.lengths_plot.clear()
        self.epoch_label.setText("No snapshot yet: press Train")

    def add_snapshot(self, snapshot: Snapshot) -> None:
        """Append a snapshot; follow it if the slider was at the newest one."""
        following = self.slider.value() == len(self.snapshots) - 1 or not (
            self.snapshots
        )
        self.snapshots.append(snapshot)
        self.slider.setEnabled(True)
        self.slider.setRange(0, len(self.snapshots) - 1)
        if following:
            self.slider.setValue(len(self.snapshots) - 1)
            self._show_index(len(self.snapshots) - 1)

    def set_mapping(self, mapping: str) -> None:
        self.mapping = mapping
        if self.snapshots:
            self._show_index(self.slider.value())

    def current(self) -> Snapshot | None:
        if not self.snapshots:
            return None
        return self.snapshots[self.slider.value()]

    def rendered_rows(self, snapshot: Snapshot) -> tuple[np.ndarray, ...]:
        """Return the three row images of a snapshot in the current mapping."""
        latents = snapshot.preview.latent
        return (
            image_row(list(images_to_rgb(snapshot.images)), CELL_PX),
            image_row(latent_images(latents, self.mapping), CELL_PX),
            image_row(list(images_to_rgb(snapshot.preview.reconstruction)), CELL_PX),
        )

    def _show_capsules(self, snapshot: Snapshot) -> None:
        extras = snapshot.preview.extras
        is_capsnet = "lengths" in extras
        self._show_capsule_rows(is_capsnet)
        if not is_capsnet:
            self.latent_title.setText("Bottleneck")
            self.reconstruction_title.setText("Reconstructions")
            return
        classes, dims = snapshot.preview.latent.shape[1:]
        self.latent_title.setText(f"Digit capsules ({classes} x {dims})")
        predictions = extras["prediction"]
        lengths = extras["lengths"]
        guesses = " ".join(
            f"{int(p)} ({lengths[i, int(p)]:.2f})" for i, p in enumerate(predictions)
        )
        self.reconstruction_title.setText(
            f"Reconstructions from the predicted capsule — predicted: {guesses}"
        )
        if "primary_lengths" in extras:
            show_image(
                self.primary_item,
                image_row(latent_images(extras["primary_lengths"], "tiles"), CELL_PX),
            )
        self.lengths_plot.clear()
        count = len(lengths)
        width = 0.8 / count
        for index in range(count):
            colour = pg.intColor(index, hues=max(count, 2), alpha=220)
            self.lengths_plot.addItem(
                pg.BarGraphItem(
                    x=np.arange(classes) - 0.4 + (index + 0.5) * width,
                    height=lengths[index],
                    width=width,
                    brush=colour,
                    pen=None,
                )
            )

    def _show_index(self, index: int) -> None:
        if not 0 <= index < len(self.snapshots):
            return
        snapshot = self.snapshots[index]
        originals, latents, reconstructions = self.rendered_rows(snapshot)
        show_image(self.original_item, originals)
        show_image(self.latent_item, latents)
        show_image(self.reconstruction_item, reconstructions)
        self._show_capsules(snapshot)
        low, high = latent_levels(snapshot.preview.latent)
        text = f"{snapshot.epoch} of {self.snapshots[-1].epoch}"
        if "test_psnr_db" in snapshot.metrics:
            text += f" · test PSNR {snapshot.metrics['test_psnr_db']:.2f} dB"
        if "test_accuracy" in snapshot.metrics:
            text += f" · accuracy {100 * snapshot.metrics['test_accuracy']:.1f}%"
        text += f" · levels [{low:.2f}, {high:.2f}]"
        self.epoch_label.setText(text)
        self.snapshotShown.emit(snapshot.epoch)


def epoch_curve(plot: pg.PlotItem, colour: str, name: str) -> pg.PlotDataItem:
    """Add a line with a dot per epoch to ``plot``."""
    return plot.plot(
        pen=pg.mkPen(colour, width=2),
        symbol="o",
        symbolSize=5,
        symbolBrush=colour,
        name=name,
    )


class LogAxis(pg.AxisItem):
    """A log axis that labels only 1, 2 and 5 times a power of ten.

    pyqtgraph labels every minor tick (0.02, 0.03, ... 0.09), and within a
    decade those labels overlap.
    """

    def logTickStrings(self, values, scale, spacing):
        labels = super().logTickStrings(values, scale, spacing)
        kept = []
        for value, label in zip(values, labels, strict=True):
            mantissa = 10 ** (float(value) % 1.0)
            kept.append(label if round(mantissa, 6) in (1.0, 2.0, 5.0) else "")
        return kept


class CurvesView(pg.GraphicsLayoutWidget):
    """Loss per batch and per epoch, and the test metric per epoch."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setBackground("#181a1f")
        self.loss_plot = self.addPlot(
            title="Loss", axisItems={"left": LogAxis(orientation="left")}
        )
        self.loss_plot.setLabel("bottom", "epoch")
        self.loss_plot.setLogMode(y=True)
        self.loss_plot.showGrid(x=True, y=True, alpha=0.2)
        self.loss_plot.addLegend(offset=(-10, 10))
        self.batch_curve = self.loss_plot.plot(
            pen=pg.mkPen("#5b6b82", width=1), name="train (batches)"
        )
        self.train_curve = epoch_curve(self.loss_plot, "#4fa3f7", "train (epoch mean)")
        self.test_curve = epoch_curve(self.loss_plot, "#f7a24f", "test")
        self.nextRow()
        self.metric_plot = self.addPlot(title="PSNR (dB)")
        self.metric_plot.setLabel("bottom", "epoch")
        self.metric_plot.showGrid(x=True, y=True, alpha=0.2)
        self.metric_plot.addLegend(offset=(-10, -10))
        self.train_metric_curve = epoch_curve(self.metric_plot, "#4fa3f7", "train")
        self.metric_curve = epoch_curve(self.metric_plot, "#7ccf7a", "test")
        self.clear_curves()

    def clear_curves(self) -> None:
        self.batch_x: list[float] = []
        self.batch_y: list[float] = []
        self.epochs: list[dict[str, float]] = []
        for curve in (
            self.batch_curve,
            self.train_curve,
            self.test_curve,
            self.metric_curve,
            self.train_metric_curve,
        ):
            curve.setData([], [])

    def add_batch(self, epoch_position: float, loss: float) -> None:
        self.batch_x.append(epoch_position)
        self.batch_y.append(max(loss, 1e-12))
        self.batch_curve.setData(self.batch_x, self.batch_y)

    def add_epoch(self, metrics: dict[str, float]) -> None:
        self.epochs.append(metrics)
        x = [m["epoch"] for m in self.epochs]
        if all("train_loss" in m for m in self.epochs):
            self.train_curve.setData(x, [m["train_loss"] for m in self.epochs])
        if all("test_loss" in m for m in self.epochs):
            self.test_curve.setData(x, [m["test_loss"] for m in self.epochs])
        key = "test_accuracy" if "test_accuracy" in metrics else "test_psnr_db"
        scale = 100.0 if key == "test_accuracy" else 1.0
        self.metric_plot.setTitle(
            "Accuracy (%)" if key == "test_accuracy" else "PSNR (dB)"
        )
        for curve, name in (
            (self.metric_curve, key),
            (self.train_metric_curve, key.replace("test_", "train_")),
        ):
            points = [(m["epoch"], scale * m[name]) for m in self.epochs if name in m]
            curve.setData([p[0] for p in points], [p[1] for p in points])

    def point_count(self) -> int:
        return len(self.batch_x) + len(self.epochs)
