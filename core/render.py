"""Turn images, bottlenecks and capsules into uint8 RGB pictures.

Every function returns C-contiguous (H, W, 3) uint8 arrays, row 0 at the
top, ready for pyqtgraph's ImageItem with ``axisOrder="row-major"`` and
levels (0, 255), for PNG files and for GIF frames.

How a latent tensor becomes a picture depends on the mapping:

``rgb`` (raw reshape)
    A latent with exactly 3 channels (3xHxW) is shown as an H x W colour
    image. Otherwise the values are flattened in C, H, W order; when their
    count N is a multiple of 3, consecutive triples become the red, green
    and blue of one pixel, else each value is one grey pixel. The pixels fill
    a near-square grid of ceil(sqrt(P)) columns, row by row; cells past the
    last pixel are drawn in the padding colour (dark blue-grey).
``tiles`` (per-channel tiles)
    Each channel is an H x W tile in a blue-white-red diverging colour map
    (blue below the middle of the levels, red above), the tiles laid out in
    a near-square grid with one-pixel gaps. A 32x1x1 bottleneck becomes a
    6 x 6 grid of single coloured pixels; CapsNet's 10 x 16 capsules become
    10 rows of 16 values.

Levels are explicit: ``latent_levels`` takes the minimum and maximum over a
whole batch, so images of one snapshot share one scale and can be compared.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MAPPINGS = ("rgb", "tiles")
PADDING_COLOUR = np.array([40, 44, 52], dtype=np.uint8)
BACKGROUND_COLOUR = np.array([24, 26, 31], dtype=np.uint8)


def images_to_rgb(images: np.ndarray) -> np.ndarray:
    """Convert (B, C, H, W) float images in [0, 1] or uint8 to (B, H, W, 3) uint8."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images.astype(np.float32) * 255.0), 0, 255)
        images = images.astype(np.uint8)
    if images.shape[1] == 1:
        images = np.repeat(images, 3, axis=1)
    elif images.shape[1] != 3:
        raise ValueError(f"images need 1 or 3 channels, got shape {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 2, 3, 1))


def latent_levels(latents: np.ndarray) -> tuple[float, float]:
    """Return (low, high) over the batch, widened when all values are equal."""
    values = np.asarray(latents, dtype=np.float32)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (-1.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    if high - low < 1e-8:
        low, high = low - 1.0, high + 1.0
    return (low, high)


def scale_to_uint8(values: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """Map ``levels`` linearly onto 0..255, clipping outside; NaN becomes 0."""
    low, high = levels
    scaled = (np.asarray(values, dtype=np.float32) - low) * (255.0 / (high - low))
    scaled = np.nan_to_num(scaled, nan=0.0)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def diverging_colours(values: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    """Blue-white-red colour map: (...) floats to (..., 3) uint8."""
    low, high = levels
    t = np.clip((np.asarray(values, dtype=np.float32) - low) / (high - low), 0, 1)
    t = np.nan_to_num(t, nan=0.5)
    blue = np.array([33, 102, 172], dtype=np.float32)
    white = np.array([247, 247, 247], dtype=np.float32)
    red = np.array([178, 24, 43], dtype=np.float32)
    lower = t[..., None] * 2.0
    upper = (t[..., None] - 0.5) * 2.0
    colours = np.where(
        t[..., None] < 0.5,
        blue + (white - blue) * lower,
        white + (red - white) * upper,
    )
    return np.rint(colours).astype(np.uint8)


def grid_shape(count: int) -> tuple[int, int]:
    """Return (rows, columns) of a near-square grid holding ``count`` cells."""
    columns = max(1, math.ceil(math.sqrt(count)))
    return (max(1, math.ceil(count / columns)), columns)


def latent_to_image(
    latent: np.ndarray, mapping: str, levels: tuple[float, float]
) -> np.ndarray:
    """Render one latent (C, H, W), (classes, dims) or (N,) as (h, w, 3) uint8."""
    latent = np.asarray(latent, dtype=np.float32)
    if latent.ndim == 1:
        latent = latent.reshape(-1, 1, 1)
    elif latent.ndim == 2:
        # Capsules: one tile per capsule would be a 1 x dims strip; show the
        # whole (classes, dims) matrix as a single channel instead.
        latent = latent[None]
    if mapping == "rgb":
        return _rgb_reshape(latent, levels)
    if mapping == "tiles":
        return _channel_tiles(latent, levels)
    raise ValueError(f"unknown mapping {mapping!r}; choose one of {MAPPINGS}")


def _rgb_reshape(latent: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    if latent.shape[0] == 3:
        return np.ascontiguousarray(scale_to_uint8(latent, levels).transpose(1, 2, 0))
    if latent.shape[0] == 1 and latent.shape[1] > 1 and latent.shape[2] > 1:
        grey = scale_to_uint8(latent[0], levels)
        return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2))
    flat = latent.reshape(-1)
    if flat.size % 3 == 0:
        pixels = scale_to_uint8(flat.reshape(-1, 3), levels)
    else:
        pixels = np.repeat(scale_to_uint8(flat, levels)[:, None], 3, axis=1)
    rows, columns = grid_shape(pixels.shape[0])
    canvas = np.empty((rows * columns, 3), dtype=np.uint8)
    canvas[:] = PADDING_COLOUR
    canvas[: pixels.shape[0]] = pixels
    return canvas.reshape(rows, columns, 3)


def _channel_tiles(latent: np.ndarray, levels: tuple[float, float]) -> np.ndarray:
    channels, height, width = latent.shape
    if channels == 1:
        return diverging_colours(latent[0], levels)
    gap = 1 if height > 1 or width > 1 else 0
    rows, columns = grid_shape(channels)
    canvas = np.empty(
        (rows * (height + gap) - gap, columns * (width + gap) - gap, 3), np.uint8
    )
    canvas[:] = PADDING_COLOUR
    tiles = diverging_colours(latent, levels)
    for index in range(channels):
        top = (index // columns) * (height + gap)
        left = (index % columns) * (width + gap)
        canvas[top : top + height, left : left + width] = tiles[index]
    return canvas


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Enlarge an (H, W, 3) image by an integer factor with nearest neighbour."""
    if factor <= 1:
        return image
    return np.ascontiguousarray(image.repeat(factor, axis=0).repeat(factor, axis=1))


def fit_into_cell(image: np.ndarray, cell: int) -> np.ndarray:
    """Scale by the largest integer factor that fits ``cell`` px, then centre it.

    Images larger than the cell are shrunk by integer striding.
    """
    height, width = image.shape[:2]
    if max(height, width) > cell:
        step = math.ceil(max(height, width) / cell)
        image = image[::step, ::step]
        height, width = image.shape[:2]
    factor = max(1, cell // max(height, width))
    image = upscale(image, factor)
    canvas = np.empty((cell, cell, 3), dtype=np.uint8)
    canvas[:] = BACKGROUND_COLOUR
    top = (cell - image.shape[0]) // 2
    left = (cell - image.shape[1]) // 2
    canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


def image_row(images: Sequence[np.ndarray], cell: int, gap: int = 4) -> np.ndarray:
    """Lay (h, w, 3) images side by side, each fitted into a square cell."""
    cells = [fit_into_cell(image, cell) for image in images]
    row = np.empty((cell, len(cells) * (cell + gap) - gap, 3), dtype=np.uint8)
    row[:] = BACKGROUND_COLOUR
    for index, image in enumerate(cells):
        left = index * (cell + gap)
        row[:, left : left + cell] = image
    return row


def stack_rows(rows: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Stack rows of equal width vertically with a gap between them."""
    height = sum(row.shape[0] for row in rows) + gap * (len(rows) - 1)
    canvas = np.empty((height, rows[0].shape[1], 3), dtype=np.uint8)
    canvas[:] = BACKGROUND_COLOUR
    top = 0
    for row in rows:
        canvas[top : top + row.shape[0], : row.shape[1]] = row
        top += row.shape[0] + gap
    return canvas


def latent_images(
    latents: np.ndarray, mapping: str, levels: tuple[float, float] | None = None
) -> list[np.ndarray]:
    """Render each latent in a batch with shared levels (batch min/max by default)."""
    levels = levels if levels is not None else latent_levels(latents)
    return [latent_to_image(latent, mapping, levels) for latent in latents]


def snapshot_mosaic(
    originals: np.ndarray,
    latents: np.ndarray,
    reconstructions: np.ndarray,
    mapping: str = "rgb",
    cell: int = 84,
) -> np.ndarray:
    """Three rows (test images, bottlenecks, reconstructions) as one picture.

    ``originals`` and ``reconstructions`` are (B, C, H, W); ``latents`` is the
    batch of latents. Used for snapshot PNGs and GIF frames.
    """
    rows = [
        image_row(list(images_to_rgb(originals)), cell),
        image_row(latent_images(latents, mapping), cell),
        image_row(list(images_to_rgb(reconstructions)), cell),
    ]
    return stack_rows(rows)
