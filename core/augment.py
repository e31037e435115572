"""Data augmentation for training batches.

Sabour et al. (2017) trained CapsNet on MNIST images shifted by up to 2
pixels in each direction with zero padding. Apply these functions to the
training split only.
"""

from __future__ import annotations

import torch


def random_shift(
    images: torch.Tensor, max_shift: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Shift each image by its own random whole-pixel offset, padding with zeros.

    ``images`` is (B, C, H, W) of any dtype. Each image gets its own dx and dy,
    drawn uniformly from the integers in [-max_shift, max_shift], and moves
    dx pixels right and dy pixels down. Pixels shifted past the border are
    lost. Returns a new tensor of the same shape, dtype and device.
    ``generator`` makes the offsets reproducible, and the offsets are drawn
    on the generator's device.
    """
    if images.dim() != 4:
        raise ValueError(
            f"images must be a (B, C, H, W) batch, got shape {tuple(images.shape)}"
        )
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative integer, got {max_shift!r}")
    if max_shift == 0:
        return images.clone()

    batch, channels, height, width = images.shape
    offset_device = generator.device if generator is not None else images.device
    offsets = torch.randint(
        -max_shift,
        max_shift + 1,
        (2, batch),
        generator=generator,
        device=offset_device,
    ).to(images.device)
    dx, dy = offsets[0], offsets[1]

    # Pad once, then gather: output (y, x) reads padded (y - dy + m, x - dx + m).
    padded = torch.nn.functional.pad(images, (max_shift,) * 4)
    device = images.device
    rows = torch.arange(height, device=device) - dy[:, None] + max_shift  # (B, H)
    cols = torch.arange(width, device=device) - dx[:, None] + max_shift  # (B, W)
    batch_index = torch.arange(batch, device=device)[:, None, None, None]
    channel_index = torch.arange(channels, device=device)[None, :, None, None]
    return padded[
        batch_index, channel_index, rows[:, None, :, None], cols[:, None, None, :]
    ]
