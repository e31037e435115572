"""The settings form: dataset, model, hyperparameters and recording options.

Every field is saved to QSettings when training starts or the window closes
and restored at start-up, so the next session opens where the last ended.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from core.bottleneck import BottleneckSpecError, parse_bottleneck
from core.config import TrainConfig
from core.data import DATASET_NAMES
from core.device import DEVICE_CHOICES, PRECISION_CHOICES
from core.models import MODEL_KINDS
from core.render import MAPPINGS
from explorer.resources import load_presets

INVALID_STYLE = "QLineEdit { border: 1px solid #d9534f; }"


class SettingsPanel(QWidget):
    """Form widgets for a TrainConfig plus display and recording settings."""

    mappingChanged = Signal(str)
    validityChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        defaults = TrainConfig()
        layout = QVBoxLayout(self)

        self.presets = load_presets()
        self.preset = QComboBox()
        self.preset.addItem("Presets…")
        for preset in self.presets:
            self.preset.addItem(preset["name"])
        self.preset.setToolTip(
            "Fill the form with a configuration from the original bottleneck "
            "experiment or the CapsNet paper"
        )
        self.preset.activated.connect(self._apply_preset)
        layout.addWidget(self.preset)

        data_box = QGroupBox("Data")
        data_form = QFormLayout(data_box)
        self.dataset = QComboBox()
        self.dataset.setEditable(True)
        self.dataset.addItems(DATASET_NAMES)
        self.dataset.setToolTip(
            "mnist is built in and works offline; fashion-mnist and cifar10 are "
            "downloaded by torchvision on first use; or type or browse to a "
            "folder with one subfolder of images per class"
        )
        browse = QPushButton("…")
        browse.setToolTip("Choose an image folder with one subfolder per class")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_dataset)
        row = QHBoxLayout()
        row.addWidget(self.dataset, 1)
        row.addWidget(browse)
        data_form.addRow("Dataset", row)
        self.train_limit = self._spin(0, 1_000_000, 10000, step=1000)
        self.train_limit.setSpecialValueText("all")
        self.train_limit.setToolTip(
            "Train on the first N training images (0: all). Fewer images make "
            "each epoch faster."
        )
        data_form.addRow("Train images", self.train_limit)
        self.test_limit = self._spin(0, 1_000_000, 0, step=1000)
        self.test_limit.setSpecialValueText("all")
        self.test_limit.setToolTip("Evaluate on the first N test images (0: all)")
        data_form.addRow("Test images", self.test_limit)
        layout.addWidget(data_box)

        model_box = QGroupBox("Model")
        model_form = QFormLayout(model_box)
        self.model = QComboBox()
        self.model.addItems(list(MODEL_KINDS))
        self.model.setToolTip(
            "autoencoder: conv encoder, bottleneck, conv decoder. capsnet: "
            "Sabour et al. 2017, 10 digit capsules of 16 values"
        )
        model_form.addRow("Model", self.model)
        self.bottleneck = QLineEdit(defaults.bottleneck)
        self.bottleneck.setToolTip(
            "Autoencoder bottleneck as channels x height x width (32x1x1, "
            "32x16x3, 64x64x3) or a number of values (1 to 16384)"
        )
        self.bottleneck.textChanged.connect(self._check_bottleneck)
        model_form.addRow("Bottleneck", self.bottleneck)
        self.width = self._spin(1, 256, defaults.width)
        self.width.setToolTip(
            "Autoencoder channels in the first conv layer (the second has twice "
            "as many)"
        )
        model_form.addRow("Width", self.width)
        layout.addWidget(model_box)

        self.capsnet_box = QGroupBox("CapsNet")
        caps_form = QFormLayout(self.capsnet_box)
        self.routing_iterations = self._spin(1, 10, 3)
        self.routing_iterations.setToolTip(
            "Routing-by-agreement iterations between primary and digit capsules "
            "(the paper uses 3)"
        )
        caps_form.addRow("Routing iterations", self.routing_iterations)
        self.digit_dim = self._spin(2, 128, 16)
        self.digit_dim.setToolTip(
            "Values per digit capsule (paper: 16). Wider capsules give the "
            "decoder more to reconstruct from"
        )
        caps_form.addRow("Capsule dimensions", self.digit_dim)
        self.front_end = QComboBox()
        self.front_end.addItems(["paper", "deep"])
        self.front_end.setToolTip(
            "paper: one 256-channel 9x9 conv. deep: three 9x9 convs with "
            "BatchNorm, the CIFAR-10 variant"
        )
        caps_form.addRow("Front end", self.front_end)
        self.decoder_input = QComboBox()
        self.decoder_input.addItems(["masked", "all"])
        self.decoder_input.setToolTip(
            "masked: the decoder sees only the true (training) or predicted "
            "(evaluation) class's capsule. all: every capsule, unmasked"
        )
        caps_form.addRow("Decoder input", self.decoder_input)
        self.reconstruction_weight = QDoubleSpinBox()
        self.reconstruction_weight.setDecimals(5)
        self.reconstruction_weight.setRange(0.0, 1.0)
        self.reconstruction_weight.setSingleStep(0.0001)
        self.reconstruction_weight.setValue(0.0005)
        self.reconstruction_weight.setToolTip(
            "Weight of the reconstruction loss (sum of squared pixel errors) "
            "against the margin loss; the paper uses 0.0005"
        )
        caps_form.addRow("Reconstruction weight", self.reconstruction_weight)
        self.augment_shift = self._spin(0, 8, 2)
        self.augment_shift.setSuffix(" px")
        self.augment_shift.setToolTip(
            "Shift each training image by up to this many pixels, with zero "
            "padding (paper: 2)"
        )
        caps_form.addRow("Random shift", self.augment_shift)
        layout.addWidget(self.capsnet_box)

        train_box = QGroupBox("Training")
        train_form = QFormLayout(train_box)
        self.epochs = self._spin(1, 10_000, defaults.epochs)
        self.epochs.setToolTip("Number of passes over the training images")
        train_form.addRow("Epochs", self.epochs)
        self.batch_size = self._spin(1, 8192, defaults.batch_size)
        self.batch_size.setToolTip("Images per optimizer step")
        train_form.addRow("Batch size", self.batch_size)
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(5)
        self.learning_rate.setRange(0.00001, 1.0)
        self.learning_rate.setSingleStep(0.0001)
        self.learning_rate.setValue(defaults.learning_rate)
        self.learning_rate.setToolTip("Adam learning rate (step size)")
        train_form.addRow("Learning rate", self.learning_rate)
        self.lr_decay = QDoubleSpinBox()
        self.lr_decay.setDecimals(3)
        self.lr_decay.setRange(0.5, 1.0)
        self.lr_decay.setSingleStep(0.01)
        self.lr_decay.setValue(defaults.lr_decay)
        self.lr_decay.setToolTip(
            "The learning rate is multiplied by this after every epoch (1: constant)"
        )
        train_form.addRow("LR decay per epoch", self.lr_decay)
        self.device = QComboBox()
        self.device.addItems(DEVICE_CHOICES)
        self.device.setToolTip("auto: CUDA GPU, then Apple MPS, then the CPU")
        train_form.addRow("Device", self.device)
        self.precision = QComboBox()
        self.precision.addItems(PRECISION_CHOICES)
        self.precision.setToolTip(
            "auto: bf16 autocast on GPUs and on CPUs with AMX, else fp32"
        )
        train_form.addRow("Precision", self.precision)
        layout.addWidget(train_box)

        view_box = QGroupBox("View and recording")
        view_form = QFormLayout(view_box)
        self.mapping = QComboBox()
        self.mapping.addItems(MAPPINGS)
        self.mapping.setToolTip(
            "rgb: bottleneck values reshaped into colour pixels (triples as "
            "R, G, B). tiles: one tile per channel in a blue-white-red map"
        )
        self.mapping.currentTextChanged.connect(self.mappingChanged)
        view_form.addRow("Bottleneck view", self.mapping)
        self.gif_duration = self._spin(10, 10_000, 400, step=10)
        self.gif_duration.setSuffix(" ms")
        self.gif_duration.setToolTip(
            "How long each GIF frame is shown, in milliseconds (10 ms steps)"
        )
        view_form.addRow("GIF frame", self.gif_duration)
        self.gif_loop = self._spin(0, 1000, 0)
        self.gif_loop.setSpecialValueText("forever")
        self.gif_loop.setToolTip("How many times a GIF repeats (0: forever)")
        view_form.addRow("GIF loops", self.gif_loop)
        layout.addWidget(view_box)
        layout.addStretch(1)
        # Groups that define a run; the view group stays usable while training.
        self._run_groups = (data_box, model_box, self.capsnet_box, train_box)

        self.model.currentTextChanged.connect(self._model_changed)
        self._model_changed(self.model.currentText())

    def _apply_preset(self, index: int) -> None:
        if index < 1:
            return
        values = TrainConfig().to_dict()
        values.update(self.presets[index - 1]["config"])
        self.apply_config(TrainConfig.from_dict(values))
        self.preset.setCurrentIndex(0)

    def set_training(self, training: bool) -> None:
        """Lock the settings that define the run while it trains."""
        self.preset.setEnabled(not training)
        for group in self._run_groups:
            group.setEnabled(not training)

    @staticmethod
    def _spin(low: int, high: int, value: int, step: int = 1) -> QSpinBox:
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setSingleStep(step)
        spin.setValue(value)
        return spin

    def _browse_dataset(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose an image folder")
        if folder:
            self.dataset.setCurrentText(folder)

    def _model_changed(self, kind: str) -> None:
        is_autoencoder = kind == "autoencoder"
        self.bottleneck.setEnabled(is_autoencoder)
        self.width.setEnabled(is_autoencoder)
        self.capsnet_box.setVisible(not is_autoencoder)
        self._check_bottleneck(self.bottleneck.text())

    def _check_bottleneck(self, text: str) -> None:
        valid = True
        if self.model.currentText() == "autoencoder":
            try:
                parse_bottleneck(text)
                self.bottleneck.setStyleSheet("")
                self.bottleneck.setToolTip(
                    "Autoencoder bottleneck as CxHxW or a number of values"
                )
            except BottleneckSpecError as error:
                valid = False
                self.bottleneck.setStyleSheet(INVALID_STYLE)
                self.bottleneck.setToolTip(str(error))
        self.validityChanged.emit(valid)

    # ---- reading and writing ----------------------------------------------

    def config(self) -> TrainConfig:
        """Return the TrainConfig that the form describes (validated)."""
        model = self.model.currentText()
        options = {}
        if model == "capsnet":
            options = {
                "routing_iterations": self.routing_iterations.value(),
                "digit_dim": self.digit_dim.value(),
                "front_end": self.front_end.currentText(),
                "decoder_input": self.decoder_input.currentText(),
                "reconstruction_weight": self.reconstruction_weight.value(),
            }
        config = TrainConfig(
            dataset=self.dataset.currentText().strip(),
            model=model,
            bottleneck=self.bottleneck.text().strip(),
            width=self.width.value(),
            model_options=options,
            epochs=self.epochs.value(),
            batch_size=self.batch_size.value(),
            learning_rate=self.learning_rate.value(),
            lr_decay=self.lr_decay.value(),
            train_limit=self.train_limit.value() or None,
            test_limit=self.test_limit.value() or None,
            augment_shift=self.augment_shift.value() if model == "capsnet" else 0,
            device=self.device.currentText(),
            precision=self.precision.currentText(),
        )
        config.validate()
        return config

    def apply_config(self, config: TrainConfig) -> None:
        """Show ``config`` in the form (after opening a run directory)."""
        self.dataset.setCurrentText(config.dataset)
        self.model.setCurrentText(config.model)
        self.bottleneck.setText(config.bottleneck)
        self.width.setValue(config.width)
        self.epochs.setValue(config.epochs)
        self.batch_size.setValue(config.batch_size)
        self.learning_rate.setValue(config.learning_rate)
        self.lr_decay.setValue(config.lr_decay)
        self.train_limit.setValue(config.train_limit or 0)
        self.test_limit.setValue(config.test_limit or 0)
        self.device.setCurrentText(config.device)
        self.precision.setCurrentText(config.precision)
        options = config.model_options
        self.routing_iterations.setValue(int(options.get("routing_iterations", 3)))
        self.digit_dim.setValue(int(options.get("digit_dim", 16)))
        self.front_end.setCurrentText(str(options.get("front_end", "paper")))
        self.decoder_input.setCurrentText(str(options.get("decoder_input", "masked")))
        self.reconstruction_weight.setValue(
            float(options.get("reconstruction_weight", 0.0005))
        )
        if config.model == "capsnet":
            self.augment_shift.setValue(config.augment_shift)

    def _fields(self) -> dict[str, QWidget]:
        return {
            "dataset": self.dataset,
            "model": self.model,
            "bottleneck": self.bottleneck,
            "width": self.width,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "lr_decay": self.lr_decay,
            "train_limit": self.train_limit,
            "test_limit": self.test_limit,
            "device": self.device,
            "precision": self.precision,
            "routing_iterations": self.routing_iterations,
            "digit_dim": self.digit_dim,
            "front_end": self.front_end,
            "decoder_input": self.decoder_input,
            "reconstruction_weight": self.reconstruction_weight,
            "augment_shift": self.augment_shift,
            "mapping": self.mapping,
            "gif_duration": self.gif_duration,
            "gif_loop": self.gif_loop,
        }

    def save(self, settings: QSettings) -> None:
        settings.beginGroup("settings")
        for key, widget in self._fields().items():
            if isinstance(widget, QComboBox):
                settings.setValue(key, widget.currentText())
            elif isinstance(widget, QLineEdit):
                settings.setValue(key, widget.text())
            else:
                settings.setValue(key, widget.value())
        settings.endGroup()

    def restore(self, settings: QSettings) -> None:
        """Restore saved values; a stored value of the wrong type is ignored."""
        settings.beginGroup("settings")
        for key, widget in self._fields().items():
            value = settings.value(key)
            if value is None:
                continue
            try:
                if isinstance(widget, QComboBox):
                    if widget.isEditable() or widget.findText(str(value)) >= 0:
                        widget.setCurrentText(str(value))
                elif isinstance(widget, QLineEdit):
                    widget.setText(str(value))
                elif isinstance(widget, QDoubleSpinBox):
                    widget.setValue(float(value))
                else:
                    widget.setValue(int(value))
            except (TypeError, ValueError):
                continue
        settings.endGroup()
