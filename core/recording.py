"""Write animated GIFs from lists of RGB frames with imageio."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import imageio.v3 as iio
import numpy as np

# GIF stores frame delays in hundredths of a second.
GIF_TIME_UNIT_MS = 10


def pad_to_same_size(frames: Sequence[np.ndarray], fill: int = 0) -> list[np.ndarray]:
    """Pad (H, W, 3) uint8 frames at the bottom and right to the largest size."""
    height = max(frame.shape[0] for frame in frames)
    width = max(frame.shape[1] for frame in frames)
    padded = []
    for frame in frames:
        if frame.shape[:2] == (height, width):
            padded.append(frame)
            continue
        canvas = np.full((height, width, 3), fill, dtype=np.uint8)
        canvas[: frame.shape[0], : frame.shape[1]] = frame
        padded.append(canvas)
    return padded


def write_gif(
    path: str | Path,
    frames: Sequence[np.ndarray],
    duration_ms: int = 500,
    loop: int = 0,
) -> Path:
    """Write ``frames`` as an animated GIF and return its path.

    ``frames`` are (H, W, 3) uint8 arrays; smaller ones are padded so every
    frame has the size of the largest. ``duration_ms`` is each frame's display
    time, rounded to GIF's 10 ms unit. ``loop`` is the number of repeats, 0
    meaning forever. The file is written to a temporary name and renamed, so
    an interrupted write never leaves a broken GIF behind.
    """
    if not frames:
        raise ValueError("cannot write a GIF without frames; record at least one")
    if duration_ms < GIF_TIME_UNIT_MS:
        raise ValueError(
            f"frame duration {duration_ms} ms is too short: GIF stores delays in "
            f"{GIF_TIME_UNIT_MS} ms steps, so use at least {GIF_TIME_UNIT_MS} ms"
        )
    if loop < 0:
        raise ValueError(f"loop count must be 0 (forever) or positive, got {loop}")
    for index, frame in enumerate(frames):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(
                f"frame {index} has shape {frame.shape} and dtype {frame.dtype}; "
                "expected (H, W, 3) uint8"
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stack = np.stack(pad_to_same_size(frames))
    duration = round(duration_ms / GIF_TIME_UNIT_MS) * GIF_TIME_UNIT_MS
    temporary = path.with_name(f".{path.name}.partial")
    # Pillow merges identical consecutive frames; disposal 1 keeps the rest exact.
    iio.imwrite(
        temporary,
        stack,
        extension=".gif",
        duration=duration,
        loop=loop,
        disposal=1,
    )
    os.replace(temporary, path)
    return path


class GifRecorder:
    """Collect frames while something runs, then write them as one GIF."""

    def __init__(self, duration_ms: int = 500, loop: int = 0) -> None:
        self.duration_ms = duration_ms
        self.loop = loop
        self.frames: list[np.ndarray] = []

    def add(self, frame: np.ndarray) -> None:
        self.frames.append(np.ascontiguousarray(frame, dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.frames)

    def save(self, path: str | Path) -> Path:
        return write_gif(path, self.frames, self.duration_ms, self.loop)
