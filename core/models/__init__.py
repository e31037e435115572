"""Model registry: build any model from its kind and constructor arguments."""

from __future__ import annotations

import inspect
from typing import Any

from core.models.autoencoder import ConvAutoencoder
from core.models.base import LatentModel, Preview
from core.models.capsnet import CapsNet

MODEL_KINDS: dict[str, type[LatentModel]] = {
    ConvAutoencoder.kind: ConvAutoencoder,
    CapsNet.kind: CapsNet,
}


def build_model(kind: str, **kwargs: Any) -> LatentModel:
    """Construct a model of ``kind`` ("autoencoder", "capsnet") from kwargs."""
    try:
        cls = MODEL_KINDS[kind]
    except KeyError:
        raise ValueError(
            f"unknown model kind {kind!r}; choose one of {', '.join(MODEL_KINDS)}"
        ) from None
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"{kind} has no option {', '.join(map(repr, unknown))}; valid options "
            f"are {', '.join(sorted(accepted))}"
        )
    return cls(**kwargs)


__all__ = [
    "MODEL_KINDS",
    "CapsNet",
    "ConvAutoencoder",
    "LatentModel",
    "Preview",
    "build_model",
]
