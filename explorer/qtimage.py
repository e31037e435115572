"""Convert what a widget shows into a numpy RGB array (for GIF frames)."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget


def qimage_to_rgb(image: QImage) -> np.ndarray:
    """Copy a QImage into a C-contiguous (H, W, 3) uint8 array."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    stride = image.bytesPerLine()
    buffer = np.frombuffer(image.constBits(), dtype=np.uint8, count=stride * height)
    rows = buffer.reshape(height, stride)[:, : width * 3]
    return np.ascontiguousarray(rows.reshape(height, width, 3))


def grab_widget(widget: QWidget) -> np.ndarray:
    """Render ``widget`` as it looks now and return it as (H, W, 3) uint8."""
    return qimage_to_rgb(widget.grab().toImage())
