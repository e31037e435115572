"""Convolutional autoencoder with a fully connected bottleneck of any shape.

Encoder: two 3x3 conv + ReLU + 2x2 max-pool stages (width, then 2 x width
channels), flattened and projected linearly to the bottleneck's C*H*W
values. Decoder: linear projection back to the pooled feature map, two
nearest-neighbour 2x upsampling + 3x3 conv stages, and a sigmoid. This is
the family that the original MNIST and CIFAR-10 experiment compared across
bottleneck sizes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from core.bottleneck import parse_bottleneck
from core.models.base import LatentModel, Preview, squared_error_stats


class ConvAutoencoder(LatentModel):
    kind = "autoencoder"

    def __init__(
        self,
        image_shape: tuple[int, int, int] | list[int] = (1, 28, 28),
        bottleneck: str = "32x1x1",
        width: int = 16,
    ) -> None:
        super().__init__()
        channels, height, width_px = (int(v) for v in image_shape)
        if width < 1:
            raise ValueError(f"width must be a positive channel count, got {width}")
        self.bottleneck = parse_bottleneck(bottleneck)
        self.image_shape = (channels, height, width_px)
        self.init_kwargs = {
            "image_shape": list(self.image_shape),
            "bottleneck": str(self.bottleneck),
            "width": width,
        }
        # Feature map size after two 2x2 pools with ceil_mode, so odd sizes work.
        self.feature_shape = (
            2 * width,
            math.ceil(math.ceil(height / 2) / 2),
            math.ceil(math.ceil(width_px / 2) / 2),
        )
        features = math.prod(self.feature_shape)

        self.encoder = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, ceil_mode=True),
            nn.Flatten(),
            nn.Linear(features, self.bottleneck.size),
        )
        self.expand = nn.Sequential(
            nn.Linear(self.bottleneck.size, features), nn.ReLU(inplace=True)
        )
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * width, width, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(width, channels, 3, padding=1),
        )

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Return the bottleneck, (B, C, H, W) in the bottleneck's shape."""
        return self.encoder(images).view(-1, *self.bottleneck.shape)

    def decode(self, decoder_input: torch.Tensor) -> torch.Tensor:
        hidden = self.expand(decoder_input.flatten(1))
        hidden = hidden.view(-1, *self.feature_shape)
        logits = self.decoder(hidden)
        if logits.shape[-2:] != self.image_shape[1:]:
            # Odd input sizes were rounded up by ceil_mode; crop back.
            logits = logits[..., : self.image_shape[1], : self.image_shape[2]]
        return torch.sigmoid(logits)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(images))

    def decoder_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.encode(images)

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        reconstruction = self(images)
        loss = F.mse_loss(reconstruction.float(), images)
        stats = squared_error_stats(reconstruction, images)
        stats["samples"] = torch.tensor(images.shape[0], dtype=torch.float64)
        pixels_per_image = images[0].numel()
        stats["loss"] = stats["sse"] / pixels_per_image
        return loss, stats

    def batch_stats(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return self.training_loss(images, labels)[1]

    def preview(self, images: torch.Tensor, labels: torch.Tensor) -> Preview:
        latent = self.encode(images)
        reconstruction = self.decode(latent)
        return Preview(
            latent=latent.float().cpu().numpy(),
            reconstruction=reconstruction.float().cpu().numpy(),
        )
