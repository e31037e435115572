"""Training configuration shared by the command line, the GUI and checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.bottleneck import parse_bottleneck


@dataclass
class TrainConfig:
    """Everything that defines a training run. Stored as config.json."""

    dataset: str = "mnist"  # mnist, fashion-mnist, cifar10 or an image folder
    data_root: str | None = None  # torchvision's dataset folder; None: default
    model: str = "autoencoder"  # autoencoder or capsnet
    bottleneck: str = "32x1x1"  # autoencoder bottleneck, CxHxW or a size
    width: int = 16  # autoencoder channels in the first conv (second: 2x)
    model_options: dict[str, Any] = field(default_factory=dict)  # extra kwargs
    epochs: int = 10  # total epochs; resuming continues up to this number
    batch_size: int = 64  # images per optimizer step
    learning_rate: float = 1e-3  # Adam step size
    lr_decay: float = 1.0  # learning rate multiplier applied after each epoch
    train_limit: int | None = None  # use only the first N training images
    test_limit: int | None = None  # evaluate on the first N test images
    augment_shift: int = 0  # random shift of up to N pixels (training only)
    preview_count: int = 8  # fixed test images shown in snapshots
    seed: int = 0  # seeds the weights, shuffling and augmentation
    device: str = "auto"  # auto, cuda, mps or cpu
    precision: str = "auto"  # auto, fp32 or bf16 (autocast)

    def validate(self) -> None:
        """Raise ValueError naming the first bad value and what is allowed.

        Each message names the field and its command-line flag, for example
        "batch_size (--batch-size)".
        """
        if self.model == "autoencoder":
            parse_bottleneck(self.bottleneck)
        positive = {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "width": self.width,
            "preview_count": self.preview_count,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{_field(name)} must be at least 1, got {value}")
        if not self.learning_rate > 0:
            raise ValueError(
                f"{_field('learning_rate')} must be positive, got "
                f"{self.learning_rate}; 0.001 is a good start"
            )
        if not 0 < self.lr_decay <= 1:
            raise ValueError(
                f"{_field('lr_decay')} must be in (0, 1], got {self.lr_decay}; "
                "1 keeps the learning rate constant"
            )
        for name in ("train_limit", "test_limit"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(
                    f"{_field(name)} must be at least 1, or left out for all "
                    f"images, got {value}"
                )
        if not 0 <= self.augment_shift <= 8:
            raise ValueError(
                f"{_field('augment_shift')} must be 0 to 8 pixels, got "
                f"{self.augment_shift}"
            )

    def model_kwargs(self, image_shape: tuple[int, int, int]) -> dict[str, Any]:
        """Return the constructor arguments of the model this config trains."""
        kwargs: dict[str, Any] = {"image_shape": list(image_shape)}
        if self.model == "autoencoder":
            kwargs.update(bottleneck=self.bottleneck, width=self.width)
        kwargs.update(self.model_options)
        return kwargs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring keys that this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Command-line flags of the fields whose flag differs from the field name.
CLI_FLAGS = {"learning_rate": "--lr", "preview_count": None}


def _field(name: str) -> str:
    """Return "name (--flag)" for error messages."""
    flag = CLI_FLAGS.get(name, "--" + name.replace("_", "-"))
    return f"{name} ({flag})" if flag else name
