"""Parse bottleneck specifications such as ``32x1x1``, ``32x16x3`` or ``100``."""

from __future__ import annotations

import re
from dataclasses import dataclass

# The largest bottleneck accepted. Each value costs one row of the encoder's
# and one column of the decoder's fully connected layer (4096 weights each on
# CIFAR-10), so 16384 values already mean about 134 million parameters and
# 2 GiB with Adam's state. 64x64x3 (12288 values) fits.
MAX_BOTTLENECK_VALUES = 16384

_SPEC = re.compile(r"^\s*(\d+)\s*(?:[x×*,]\s*(\d+)\s*[x×*,]\s*(\d+))?\s*$")


class BottleneckSpecError(ValueError):
    """A bottleneck specification that cannot be used."""


@dataclass(frozen=True)
class BottleneckShape:
    """The bottleneck's shape as channels x height x width."""

    channels: int
    height: int = 1
    width: int = 1

    @property
    def size(self) -> int:
        return self.channels * self.height * self.width

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def __str__(self) -> str:
        return f"{self.channels}x{self.height}x{self.width}"


def parse_bottleneck(spec: str | int) -> BottleneckShape:
    """Parse ``CxHxW`` or a plain size ``N`` (read as ``Nx1x1``).

    >>> parse_bottleneck("32x16x3").size
    1536
    """
    text = str(spec)
    match = _SPEC.match(text)
    if match is None:
        raise BottleneckSpecError(
            f"bottleneck {text!r} is not valid: write CxHxW with three positive "
            f"integers (for example 32x1x1 or 32x16x3) or a plain size from 1 to "
            f"{MAX_BOTTLENECK_VALUES}"
        )
    channels = int(match.group(1))
    height = int(match.group(2)) if match.group(2) else 1
    width = int(match.group(3)) if match.group(3) else 1
    if min(channels, height, width) < 1:
        raise BottleneckSpecError(
            f"bottleneck {text!r} has a zero dimension: every one of C, H and W "
            f"must be at least 1 (for example 32x1x1)"
        )
    shape = BottleneckShape(channels, height, width)
    if shape.size > MAX_BOTTLENECK_VALUES:
        raise BottleneckSpecError(
            f"bottleneck {text!r} has {shape.size} values, more than the maximum "
            f"of {MAX_BOTTLENECK_VALUES}; choose a smaller shape such as 64x64x3 "
            f"(12288 values)"
        )
    return shape
