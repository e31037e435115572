"""The interface that the training engine, the renderer and the GUI use.

Every model is a ``torch.nn.Module`` that also implements ``LatentModel``.
The engine never needs to know which kind it is training: it calls the model
for a loss and for summed statistics, and for previews of fixed test
images after each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass
class Preview:
    """Evaluation-mode outputs for a fixed set of images, as numpy arrays.

    ``latent`` is the decoder's input before masking: for an autoencoder the
    bottleneck (B, C, H, W), for CapsNet the digit capsules (B, classes, dims).
    ``reconstruction`` is (B, C, H, W) float32 in [0, 1]. ``extras`` contains
    model-specific arrays such as capsule lengths or primary capsules.
    """

    latent: np.ndarray
    reconstruction: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def arrays(self) -> dict[str, np.ndarray]:
        """Return every array under one flat namespace, for saving to .npz."""
        out = {"latent": self.latent, "reconstruction": self.reconstruction}
        out.update({f"extra_{k}": v for k, v in self.extras.items()})
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Preview:
        extras = {
            k.removeprefix("extra_"): v
            for k, v in arrays.items()
            if k.startswith("extra_")
        }
        return cls(arrays["latent"], arrays["reconstruction"], extras)


class LatentModel(nn.Module):
    """Base class of the models that latent-explorer trains and explores.

    Subclasses store their constructor arguments in ``self.init_kwargs`` (only
    JSON-compatible values) so that a checkpoint can rebuild them.
    """

    kind: str = ""
    init_kwargs: dict[str, Any]

    # Names of the statistics that ``batch_stats`` returns, summed over a set.
    # "samples" counts images; "loss" is the summed per-sample loss; "sse" and
    # "pixels" give the reconstruction MSE; "correct" counts right predictions.
    stat_names: tuple[str, ...] = ("samples", "loss", "sse", "pixels")

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the mean loss to minimise and the batch's summed statistics.

        ``images`` is float (B, C, H, W) in [0, 1]; ``labels`` is int64 (B,).
        """
        raise NotImplementedError

    def batch_stats(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return summed statistics of one evaluation batch (eval mode, no grad)."""
        raise NotImplementedError

    def decoder_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the tensor that ``decode`` takes for these images.

        For CapsNet this is the digit capsules with all but the predicted
        class zeroed; for an autoencoder it is the bottleneck.
        """
        raise NotImplementedError

    def decode(self, decoder_input: torch.Tensor) -> torch.Tensor:
        """Map a decoder input back to images (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def preview(self, images: torch.Tensor, labels: torch.Tensor) -> Preview:
        """Return evaluation-mode outputs for previews. Call under eval()."""
        raise NotImplementedError


def squared_error_stats(
    reconstruction: torch.Tensor, images: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Sum of squared errors and pixel count, computed in float32."""
    diff = reconstruction.float() - images.float()
    return {
        "sse": diff.square().sum().detach(),
        "pixels": torch.tensor(images.numel(), dtype=torch.float64),
    }
