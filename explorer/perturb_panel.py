"""The perturbation panel: move single capsule or bottleneck dimensions by hand.

The panel owns a ``core.perturb.Perturber`` and calls it to decode on every
slider move, so it does no model math itself. Test images come from the
dataset the model was trained on, loaded once per dataset and cached.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.data import ImageDataset
from core.models import LatentModel
from core.perturb import CAPSULE_STEP, Perturber, grid_picture, value_steps
from core.recording import write_gif
from core.render import fit_into_cell, image_row, images_to_rgb
from explorer.views import make_image_item, show_image

logger = logging.getLogger(__name__)

MAX_SLIDERS = 16
PREVIEW_CELL_PX = 224


class PerturbPanel(QWidget):
    """Pick a test image and a capsule, then drag one slider per dimension."""

    decoded = Signal()  # emitted after each redraw of the decoded image
    exported = Signal(str)  # path of a written grid PNG or sweep GIF

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.perturber: Perturber | None = None
        self.dataset: ImageDataset | None = None
        self.output_dir = Path.cwd()
        self.gif_duration_ms = 100
        self.gif_loop = 0
        self._rng = np.random.default_rng()
        self._updating = False

        layout = QHBoxLayout(self)
        controls = QVBoxLayout()
        layout.addLayout(controls, 0)

        source_box = QGroupBox("Image and capsule")
        form = QFormLayout(source_box)
        self.model_label = QLabel(
            "No model: train one, open a run, or load the bundled CapsNet"
        )
        self.model_label.setWordWrap(True)
        form.addRow(self.model_label)
        self.index = QSpinBox()
        self.index.setToolTip("Index of the image in the test split")
        self.index.valueChanged.connect(self._image_changed)
        form.addRow("Test image", self.index)
        pick_row = QHBoxLayout()
        self.class_choice = QComboBox()
        self.class_choice.setToolTip("Jump to the next test image of this class")
        self.class_choice.activated.connect(self._next_of_class)
        self.random_button = QPushButton("Random")
        self.random_button.setToolTip("Pick a random test image")
        self.random_button.clicked.connect(self.pick_random)
        pick_row.addWidget(self.class_choice, 1)
        pick_row.addWidget(self.random_button)
        form.addRow("Class", pick_row)
        self.capsule = QComboBox()
        self.capsule.setToolTip(
            "The digit capsule whose dimensions the sliders move; the default "
            "is the predicted class"
        )
        self.capsule.currentIndexChanged.connect(lambda _i: self.reset())
        form.addRow("Capsule", self.capsule)
        self.first_dim = QSpinBox()
        self.first_dim.setToolTip(
            "For bottlenecks with more than 16 values: the first of the 16 "
            "dimensions that the sliders move"
        )
        self.first_dim.valueChanged.connect(lambda _v: self._rebuild_sliders())
        form.addRow("First dimension", self.first_dim)
        self.limit = QDoubleSpinBox()
        self.limit.setDecimals(3)
        self.limit.setRange(0.01, 100.0)
        self.limit.setValue(0.25)
        self.limit.setToolTip("Each slider moves its value by up to ± this much")
        self.limit.valueChanged.connect(lambda _v: self._rebuild_sliders())
        form.addRow("Range ±", self.limit)
        self.step = QDoubleSpinBox()
        self.step.setDecimals(3)
        self.step.setRange(0.001, 10.0)
        self.step.setValue(CAPSULE_STEP)
        self.step.setToolTip("Slider step size")
        self.step.valueChanged.connect(lambda _v: self._rebuild_sliders())
        form.addRow("Step", self.step)
        controls.addWidget(source_box)

        slider_box = QGroupBox("Dimensions")
        self.slider_grid = QGridLayout(slider_box)
        self.sliders: list[QSlider] = []
        self.slider_labels: list[QLabel] = []
        for row in range(MAX_SLIDERS):
            name = QLabel(f"{row}")
            slider = QSlider(Qt.Orientation.Horizontal)
            slider.setMinimumWidth(180)
            slider.valueChanged.connect(self._slider_moved)
            value = QLabel("+0.00")
            value.setMinimumWidth(52)
            self.slider_grid.addWidget(name, row, 0)
            self.slider_grid.addWidget(slider, row, 1)
            self.slider_grid.addWidget(value, row, 2)
            self.sliders.append(slider)
            self.slider_labels.append(value)
        controls.addWidget(slider_box)

        buttons = QHBoxLayout()
        self.reset_button = QPushButton("Reset")
        self.reset_button.setToolTip("Put every slider back to zero")
        self.reset_button.clicked.connect(self.reset)
        self.grid_button = QPushButton("Save grid PNG")
        self.grid_button.setToolTip(
            "One row per dimension, one column per step from -range to +range "
            "(Figure 4 of the CapsNet paper)"
        )
        self.grid_button.clicked.connect(lambda: self.export_grid())
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.grid_button)
        controls.addLayout(buttons)
        sweep_row = QHBoxLayout()
        self.sweep_dim = QSpinBox()
        self.sweep_dim.setToolTip("Dimension that the sweep GIF moves")
        self.sweep_button = QPushButton("Save sweep GIF")
        self.sweep_button.setToolTip(
            "Move one dimension 0 → +range → -range → 0 and save it as a GIF"
        )
        self.sweep_button.clicked.connect(lambda: self.export_sweep())
        sweep_row.addWidget(QLabel("Sweep dimension"))
        sweep_row.addWidget(self.sweep_dim)
        sweep_row.addWidget(self.sweep_button, 1)
        controls.addLayout(sweep_row)
        controls.addStretch(1)

        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("#181a1f")
        layout.addWidget(self.graphics, 1)
        self.graphics.addLabel(
            "Test image (left) and decoded with perturbation (right)"
        )
        self.graphics.nextRow()
        # One image contains both pictures, so they always share one scale.
        box = self.graphics.addViewBox(lockAspect=True, invertY=True, enableMouse=False)
        box.setMenuEnabled(False)
        self.pair_item = make_image_item()
        box.addItem(self.pair_item)
        self._original_picture: np.ndarray | None = None
        self.graphics.nextRow()
        self.lengths_plot = self.graphics.addPlot(title="Capsule lengths")
        self.lengths_plot.setYRange(0, 1)
        self.lengths_plot.setMouseEnabled(x=False, y=False)
        self.lengths_bars = pg.BarGraphItem(x=[], height=[], width=0.7)
        self.lengths_plot.addItem(self.lengths_bars)
        self.prediction_label = QLabel("")
        controls.insertWidget(1, self.prediction_label)
        self._set_enabled(False)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (
            self.index,
            self.class_choice,
            self.random_button,
            self.capsule,
            self.reset_button,
            self.grid_button,
            self.sweep_button,
            self.sweep_dim,
            self.limit,
            self.step,
        ):
            widget.setEnabled(enabled)

    # ---- model and data -----------------------------------------------------

    def set_model(
        self, model: LatentModel | None, dataset: ImageDataset | None, source: str
    ) -> None:
        """Explore ``model`` on ``dataset``'s test split; None clears the panel."""
        if model is None or dataset is None:
            self.perturber = None
            self._set_enabled(False)
            return
        if tuple(model.init_kwargs["image_shape"]) != dataset.image_shape:
            raise ValueError(
                f"the model expects images of shape "
                f"{tuple(model.init_kwargs['image_shape'])} but {dataset.name} has "
                f"{dataset.image_shape}"
            )
        self.perturber = Perturber(model)
        self.dataset = dataset
        self.model_label.setText(source)
        self._updating = True
        self.class_choice.clear()
        self.class_choice.addItems(dataset.classes)
        self.index.setRange(0, len(dataset.test_images) - 1)
        self.capsule.clear()
        if self.perturber.is_capsnet:
            self.capsule.addItem("predicted class", None)
            for number, name in enumerate(dataset.classes):
                self.capsule.addItem(f"{number}: {name}", number)
        self.capsule.setEnabled(self.perturber.is_capsnet)
        size = self.perturber.vector_size
        self.first_dim.setRange(0, max(0, size - MAX_SLIDERS))
        self.first_dim.setEnabled(size > MAX_SLIDERS)
        self.sweep_dim.setRange(0, size - 1)
        self.lengths_plot.setVisible(self.perturber.is_capsnet)
        self._updating = False
        self._set_enabled(True)
        self.first_dim.setEnabled(size > MAX_SLIDERS)
        self.capsule.setEnabled(self.perturber.is_capsnet)
        self._image_changed(self.index.value())
        self.limit.setValue(self.perturber.default_range)
        if self.perturber.is_capsnet:
            self.step.setValue(CAPSULE_STEP)
        else:
            self.step.setValue(max(0.001, round(self.limit.value() / 5, 3)))

    # ---- sliders ------------------------------------------------------------

    @property
    def dims(self) -> list[int]:
        """The latent dimensions that the visible sliders move."""
        if self.perturber is None:
            return []
        first = self.first_dim.value()
        return list(range(first, min(first + MAX_SLIDERS, self.perturber.vector_size)))

    def _slider_ticks(self) -> int:
        return max(1, round(self.limit.value() / self.step.value()))

    def _rebuild_sliders(self) -> None:
        ticks = self._slider_ticks()
        dims = self.dims
        self._updating = True
        for row, (slider, label) in enumerate(
            zip(self.sliders, self.slider_labels, strict=True)
        ):
            visible = row < len(dims)
            slider.setVisible(visible)
            label.setVisible(visible)
            name = self.slider_grid.itemAtPosition(row, 0).widget()
            name.setVisible(visible)
            if visible:
                name.setText(f"{dims[row]}")
                slider.setRange(-ticks, ticks)
                slider.setValue(0)
                slider.setToolTip(f"Add a value to dimension {dims[row]}")
                label.setText("+0.000")
        self._updating = False
        self.redraw()

    def deltas(self) -> np.ndarray:
        """Return the current slider values as a full-length delta vector."""
        vector = np.zeros(self.perturber.vector_size, dtype=np.float32)
        step = self.step.value()
        for slider, dim in zip(self.sliders, self.dims, strict=False):
            vector[dim] = slider.value() * step
        return vector

    def set_slider(self, row: int, value: float) -> None:
        """Move slider ``row`` to the tick nearest ``value`` (for tests, scripts)."""
        self.sliders[row].setValue(round(value / self.step.value()))

    def reset(self) -> None:
        self._updating = True
        for slider in self.sliders:
            slider.setValue(0)
        self._updating = False
        self.redraw()

    def _slider_moved(self, _value: int) -> None:
        if self._updating:
            return
        self.redraw()

    def selected_capsule(self) -> int | None:
        if self.perturber is None or not self.perturber.is_capsnet:
            return None
        return self.capsule.currentData()

    def redraw(self) -> None:
        """Decode the current perturbation and show it."""
        if self.perturber is None or self.perturber.analysis is None:
            return
        deltas = self.deltas()
        step = self.step.value()
        for slider, label in zip(self.sliders, self.slider_labels, strict=True):
            label.setText(f"{slider.value() * step:+.3f}")
        self.decoded_image = self.perturber.decode(self.selected_capsule(), deltas)
        picture = images_to_rgb(self.decoded_image[None])[0]
        show_image(
            self.pair_item,
            image_row([self._original_picture, picture], PREVIEW_CELL_PX, gap=16),
        )
        self.decoded.emit()

    # ---- images -------------------------------------------------------------

    def _image_changed(self, index: int) -> None:
        if self._updating or self.perturber is None or self.dataset is None:
            return
        image = self.dataset.test_images[index].numpy()
        analysis = self.perturber.set_image(image)
        self._original_picture = images_to_rgb(image[None])[0]
        label = int(self.dataset.test_labels[index])
        self.class_choice.setCurrentIndex(label)
        text = f"Label: {self.dataset.classes[label]}"
        if analysis.lengths is not None:
            predicted = analysis.prediction
            text += (
                f" · predicted {self.dataset.classes[predicted]} "
                f"(capsule length {analysis.lengths[predicted]:.2f})"
            )
            brushes = [
                pg.mkBrush("#f7a24f" if i == predicted else "#4fa3f7")
                for i in range(len(analysis.lengths))
            ]
            self.lengths_bars.setOpts(
                x=np.arange(len(analysis.lengths)),
                height=analysis.lengths,
                brushes=brushes,
            )
        self.prediction_label.setText(text)
        self._rebuild_sliders()

    def pick_random(self) -> None:
        if self.dataset is not None:
            self.index.setValue(int(self._rng.integers(len(self.dataset.test_images))))

    def _next_of_class(self, class_index: int) -> None:
        if self.dataset is None:
            return
        labels = self.dataset.test_labels.numpy()
        matches = np.flatnonzero(labels == class_index)
        if len(matches) == 0:
            return
        later = matches[matches > self.index.value()]
        self.index.setValue(int(later[0] if len(later) else matches[0]))

    # ---- export -------------------------------------------------------------

    def _export_path(self, kind: str, suffix: str) -> Path:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return self.output_dir / f"{kind}-image{self.index.value()}-{stamp}{suffix}"

    def export_grid(self, path: str | Path | None = None) -> Path:
        """Save the dimensions x values grid as a PNG and return its path."""
        import imageio.v3 as iio

        values = value_steps(self.limit.value(), self.step.value())
        images = self.perturber.grid(self.selected_capsule(), self.dims, values)
        path = Path(path) if path else self._export_path("perturbation-grid", ".png")
        iio.imwrite(path, grid_picture(images))
        self.exported.emit(str(path))
        return path

    def export_sweep(self, path: str | Path | None = None, steps: int = 6) -> Path:
        """Save a GIF sweeping the chosen dimension back and forth."""
        frames = self.perturber.sweep(
            self.selected_capsule(), self.sweep_dim.value(), self.limit.value(), steps
        )
        pictures = [fit_into_cell(p, 168) for p in images_to_rgb(frames)]
        path = Path(path) if path else self._export_path("sweep", ".gif")
        write_gif(path, pictures, self.gif_duration_ms, self.gif_loop)
        self.exported.emit(str(path))
        return path
