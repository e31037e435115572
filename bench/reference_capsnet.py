"""A plain CapsNet written from the equations of its paper, as a speed baseline.

Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules" (NIPS 2017,
arXiv:1710.09829). This module writes the network the most common
straightforward way, so that bench/compare_routing.py can time
core.models.capsnet against it on the same math:

- Conv1: 256 9x9 filters, stride 1, ReLU.
- PrimaryCaps: a 9x9 stride-2 convolution to 32 types x 8 values, read as
  32 x 6 x 6 = 1152 capsules u_i of 8 values, each squashed.
- DigitCaps: u_hat_j|i = W_ij u_i with one 16x8 matrix W_ij per primary
  capsule i and class j. W is one tensor (1, 1152, 10, 16, 8), broadcast by
  ``torch.matmul`` against u reshaped to (B, 1152, 1, 8, 1).
- Routing by agreement, with logits b_ij starting at 0:
  c_ij = softmax over the classes j of b_ij,
  s_j = sum_i c_ij u_hat_j|i, v_j = squash(s_j), b_ij += u_hat_j|i . v_j.
- squash(s) = |s|^2 / (1 + |s|^2) * s / |s|.
- Margin loss with m+ = 0.9, m- = 0.1 and lambda = 0.5, plus 0.0005 times
  the sum of squared errors of a 512-1024-784 decoder that reconstructs the
  image from the digit capsules, all but the labelled one zeroed.

Everything runs in the input's dtype, float32 unless autocast is active. By
default gradients flow through every routing iteration, as in most ports.
``detach_routing=True`` passes gradients only through the last iteration,
which is what core.models.capsnet does.

Primary capsules are numbered (type, row, column), the same order as
core.models.capsnet, so that weights copy between the two without
permuting capsules.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

# Added to |s|^2 under the square root, so that squash(0) has a finite gradient.
EPSILON = 1e-8

MARGIN_POSITIVE = 0.9
MARGIN_NEGATIVE = 0.1
ABSENT_CLASS_WEIGHT = 0.5
RECONSTRUCTION_WEIGHT = 0.0005


def squash(s: torch.Tensor, dim: int = -1) -> torch.Tensor:
    squared_norm = (s**2).sum(dim=dim, keepdim=True)
    return squared_norm / (1 + squared_norm) * s / torch.sqrt(squared_norm + EPSILON)


class ReferenceDigitCaps(nn.Module):
    """DigitCaps with routing by agreement, in the broadcasting style."""

    def __init__(
        self,
        num_primary: int = 1152,
        primary_dim: int = 8,
        num_classes: int = 10,
        digit_dim: int = 16,
        routing_iterations: int = 3,
        detach_routing: bool = False,
    ) -> None:
        super().__init__()
        self.routing_iterations = routing_iterations
        self.detach_routing = detach_routing
        self.W = nn.Parameter(
            0.05 * torch.randn(1, num_primary, num_classes, digit_dim, primary_dim)
        )

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Map primary capsules u (B, 1152, 8) to digit capsules v (B, 10, 16)."""
        batch, num_primary, _ = u.shape
        num_classes = self.W.shape[2]

        # (1, 1152, 10, 16, 8) @ (B, 1152, 1, 8, 1) -> (B, 1152, 10, 16, 1)
        u_hat = torch.matmul(self.W, u[:, :, None, :, None]).squeeze(-1)

        b = torch.zeros(batch, num_primary, num_classes, 1, device=u.device)
        last = self.routing_iterations - 1
        for iteration in range(self.routing_iterations):
            c = F.softmax(b, dim=2)
            if self.detach_routing and iteration < last:
                u_hat_used = u_hat.detach()
            else:
                u_hat_used = u_hat
            s = (c * u_hat_used).sum(dim=1)  # (B, 10, 16)
            v = squash(s)
            if iteration < last:
                b = b + (u_hat_used * v[:, None]).sum(dim=-1, keepdim=True)
        return v


class ReferenceOutput(NamedTuple):
    capsules: torch.Tensor  # (B, 10, 16), v_j
    lengths: torch.Tensor  # (B, 10), |v_j|
    reconstruction: torch.Tensor  # (B, 1, 28, 28)


class ReferenceCapsNet(nn.Module):
    """The three-layer MNIST CapsNet with its reconstruction decoder."""

    def __init__(self, routing_iterations: int = 3, detach_routing: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 256, kernel_size=9)
        self.primary_caps = nn.Conv2d(256, 32 * 8, kernel_size=9, stride=2)
        self.digit_caps = ReferenceDigitCaps(
            routing_iterations=routing_iterations, detach_routing=detach_routing
        )
        self.decoder = nn.Sequential(
            nn.Linear(10 * 16, 512),
            nn.ReLU(inplace=True),
            nn.Linear(512, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 28 * 28),
            nn.Sigmoid(),
        )

    def primary_capsules(self, images: torch.Tensor) -> torch.Tensor:
        """Return the squashed primary capsules u_i, shape (B, 1152, 8)."""
        out = self.primary_caps(F.relu(self.conv1(images)))  # (B, 256, 6, 6)
        batch = out.shape[0]
        out = out.view(batch, 32, 8, 6, 6).permute(0, 1, 3, 4, 2)
        return squash(out.reshape(batch, 32 * 6 * 6, 8))

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> ReferenceOutput:
        """Run the network. The decoder receives the capsule of ``labels`` if
        given, else the capsule of the predicted class."""
        v = self.digit_caps(self.primary_capsules(images))
        lengths = torch.sqrt((v**2).sum(dim=-1))
        chosen = labels if labels is not None else lengths.argmax(dim=1)
        mask = F.one_hot(chosen, num_classes=10).to(v.dtype)
        reconstruction = self.decoder((v * mask[:, :, None]).flatten(1))
        return ReferenceOutput(v, lengths, reconstruction.view(-1, 1, 28, 28))

    def loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Return the batch mean of margin loss plus weighted reconstruction SSE."""
        output = self(images, labels)
        present = F.one_hot(labels, num_classes=10).to(output.lengths.dtype)
        margin = present * F.relu(MARGIN_POSITIVE - output.lengths) ** 2 + (
            ABSENT_CLASS_WEIGHT
            * (1 - present)
            * F.relu(output.lengths - MARGIN_NEGATIVE) ** 2
        )
        squared_error = ((output.reconstruction - images) ** 2).flatten(1).sum(dim=1)
        return (margin.sum(dim=1) + RECONSTRUCTION_WEIGHT * squared_error).mean()
