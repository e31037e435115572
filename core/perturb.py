"""Perturb single latent dimensions by hand and decode the result.

For CapsNet this is Figure 4 of Sabour, Frosst and Hinton (2017): take the
digit capsule of one class, add a small value to one of its 16 dimensions,
and let the decoder redraw the image. For an autoencoder the same is done
with the bottleneck values.

The ``Perturber`` keeps its own CPU model in evaluation mode, so the GUI can
call it on every slider move while training continues on another copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from core.models import LatentModel
from core.models.capsnet import capsule_lengths, mask_capsules
from core.render import image_row, images_to_rgb, stack_rows

# The range and step of Figure 4 in the CapsNet paper.
CAPSULE_RANGE = 0.25
CAPSULE_STEP = 0.05


@dataclass
class ImageAnalysis:
    """The model's encoding of one image before any perturbation."""

    latent: np.ndarray  # capsules (classes, dims) or bottleneck (values,)
    reconstruction: np.ndarray  # (C, H, W) float32 in [0, 1]
    lengths: np.ndarray | None  # capsule lengths per class (CapsNet only)
    prediction: int | None  # predicted class (CapsNet only)


class Perturber:
    """Decode a latent with chosen dimensions shifted by chosen amounts."""

    def __init__(self, model: LatentModel) -> None:
        self.model = model.cpu().eval()
        self.is_capsnet = model.kind == "capsnet"
        self.masks_capsules = self.is_capsnet and (
            model.init_kwargs.get("decoder_input", "masked") == "masked"
        )
        self.analysis: ImageAnalysis | None = None

    @property
    def vector_count(self) -> int:
        """Number of separately editable vectors: classes for CapsNet, else 1."""
        return self.model.num_classes if self.is_capsnet else 1

    @property
    def vector_size(self) -> int:
        """Dimensions of one editable vector: capsule dims or bottleneck values."""
        if self.is_capsnet:
            return self.model.digit_dim
        return self.model.bottleneck.size

    @property
    def default_range(self) -> float:
        """Slider half-range: the paper's 0.25 for capsules, wider for bottlenecks.

        Autoencoder bottleneck values are not squashed and typically lie in a
        few units, so the default there is two standard deviations of the
        current image's values (at least 0.25).
        """
        if self.is_capsnet or self.analysis is None:
            return CAPSULE_RANGE
        spread = float(np.std(self.analysis.latent))
        return max(CAPSULE_RANGE, round(2.0 * spread, 2))

    @torch.no_grad()
    def set_image(self, image: np.ndarray) -> ImageAnalysis:
        """Encode one image, (C, H, W) uint8 or float in [0, 1]."""
        tensor = torch.as_tensor(np.asarray(image))[None]
        if tensor.dtype == torch.uint8:
            tensor = tensor.float() / 255.0
        tensor = tensor.float()
        latent = self.model.encode(tensor)
        if self.is_capsnet:
            lengths = capsule_lengths(latent)[0]
            prediction = int(lengths.argmax())
            decoder_input = self._capsnet_input(latent[0], prediction)
            reconstruction = self.model.decode(decoder_input[None])[0]
            self.analysis = ImageAnalysis(
                latent[0].numpy().copy(),
                reconstruction.numpy(),
                lengths.numpy(),
                prediction,
            )
        else:
            reconstruction = self.model.decode(latent)[0]
            self.analysis = ImageAnalysis(
                latent[0].flatten().numpy().copy(), reconstruction.numpy(), None, None
            )
        return self.analysis

    def _capsnet_input(self, capsules: torch.Tensor, capsule: int) -> torch.Tensor:
        if not self.masks_capsules:
            return capsules
        return mask_capsules(capsules[None], torch.tensor([capsule]))[0]

    def _require_image(self) -> ImageAnalysis:
        if self.analysis is None:
            raise RuntimeError("call set_image() before decoding perturbations")
        return self.analysis

    @torch.no_grad()
    def decode_batch(self, capsule: int | None, deltas: np.ndarray) -> np.ndarray:
        """Decode many perturbations of the current image at once.

        ``deltas`` is (N, vector_size): each row is added to the chosen capsule
        (CapsNet) or to the bottleneck (autoencoder). Returns (N, C, H, W).
        """
        analysis = self._require_image()
        deltas = torch.as_tensor(np.asarray(deltas, dtype=np.float32))
        if deltas.ndim != 2 or deltas.shape[1] != self.vector_size:
            raise ValueError(
                f"deltas must have shape (N, {self.vector_size}), got "
                f"{tuple(deltas.shape)}"
            )
        base = torch.from_numpy(analysis.latent)
        if self.is_capsnet:
            if capsule is None:
                capsule = analysis.prediction
            if not 0 <= capsule < self.vector_count:
                raise ValueError(
                    f"capsule {capsule} does not exist; choose 0 to "
                    f"{self.vector_count - 1}"
                )
            inputs = self._capsnet_input(base, capsule).repeat(len(deltas), 1, 1)
            inputs[:, capsule] += deltas
        else:
            inputs = base[None] + deltas
        return self.model.decode(inputs).float().numpy()

    def decode(self, capsule: int | None, delta: np.ndarray) -> np.ndarray:
        """Decode one perturbation (vector_size,) and return (C, H, W)."""
        return self.decode_batch(capsule, np.asarray(delta)[None])[0]

    def grid(
        self,
        capsule: int | None,
        dims: Sequence[int],
        values: Sequence[float],
    ) -> np.ndarray:
        """Figure 4's grid: one row per dimension, one column per value.

        Returns (len(dims), len(values), C, H, W).
        """
        deltas = np.zeros((len(dims) * len(values), self.vector_size), np.float32)
        for row, dim in enumerate(dims):
            deltas[row * len(values) : (row + 1) * len(values), dim] = values
        images = self.decode_batch(capsule, deltas)
        return images.reshape(len(dims), len(values), *images.shape[1:])

    def sweep(
        self, capsule: int | None, dim: int, limit: float, steps: int
    ) -> np.ndarray:
        """Images for dimension ``dim`` going 0 -> +limit -> -limit -> 0.

        Returns (frames, C, H, W), a closed loop for a GIF.
        """
        if steps < 2:
            raise ValueError(f"a sweep needs at least 2 steps, got {steps}")
        up = np.linspace(0.0, limit, steps)
        down = np.linspace(limit, -limit, 2 * steps - 1)[1:]
        back = np.linspace(-limit, 0.0, steps)[1:-1]
        values = np.concatenate([up, down, back])
        deltas = np.zeros((len(values), self.vector_size), np.float32)
        deltas[:, dim] = values
        return self.decode_batch(capsule, deltas)


def value_steps(limit: float, step: float) -> np.ndarray:
    """Return -limit .. +limit in ``step`` increments (11 values for 0.25/0.05)."""
    if step <= 0 or limit <= 0:
        raise ValueError(
            f"range {limit} and step {step} must both be positive (e.g. 0.25, 0.05)"
        )
    count = round(2 * limit / step) + 1
    return np.linspace(-limit, limit, count).astype(np.float32)


def grid_picture(images: np.ndarray, cell: int = 56, gap: int = 2) -> np.ndarray:
    """Lay a (rows, columns, C, H, W) grid out as one (H, W, 3) uint8 picture."""
    rows = [image_row(list(images_to_rgb(row)), cell, gap) for row in images]
    return stack_rows(rows, gap)
