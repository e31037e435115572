"""Capsule network with dynamic routing between capsules.

Follows Sabour, Frosst and Hinton, "Dynamic Routing Between Capsules"
(NIPS 2017, arXiv:1710.09829):

- Front end: one 9x9 stride-1 convolution with ReLU ("paper"), or three 9x9
  convolutions each followed by BatchNorm and ReLU ("deep", for CIFAR-10).
- Primary capsules: a 9x9 stride-2 convolution read as ``primary_types``
  capsule types of ``primary_dim`` values at every grid position, squashed.
- Digit capsules: one ``digit_dim`` x ``primary_dim`` transformation matrix
  W_ij per primary capsule i and class j, combined by routing-by-agreement.
- Loss: margin loss on the capsule lengths plus a down-weighted sum of
  squared errors from a fully connected decoder that reconstructs the image
  from the capsules.

Both front ends leave the same primary grid: ``(size - 17) // 2 + 1`` per
side, so 6x6 (1152 capsules with 32 types) for 28x28 MNIST and 8x8 (2048)
for 32x32 CIFAR-10. The deep front end pads its second and third
convolutions by 4 so that only the first one shrinks the image.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from core.models.base import LatentModel, Preview, squared_error_stats

# Added under the square root in squash and in capsule lengths, so that both
# have finite gradients at a zero vector.
EPSILON = 1e-8

# Margin loss constants m+, m- and lambda from Sabour et al. (2017).
MARGIN_POSITIVE = 0.9
MARGIN_NEGATIVE = 0.1
ABSENT_CLASS_WEIGHT = 0.5

FRONT_ENDS = ("paper", "deep")
DECODER_INPUTS = ("masked", "all")

KERNEL_SIZE = 9
PRIMARY_STRIDE = 2

# Standard deviation of the initial entries of W_ij.
# NOTE: chosen by hand, not tuned. With the default model, MNIST digits start
# with capsule lengths of about 0.001 to 0.02, and Adam at lr 1e-3 lengthens
# them within a few dozen steps.
TRANSFORM_INIT_STD = 0.05


def squash(vectors: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Scale vectors to length |s|^2 / (1 + |s|^2), keeping their direction.

    Computed in float32. The norm is sqrt(|s|^2 + EPSILON), so a zero vector
    maps to zero with a finite gradient. The length is below 1 in exact
    arithmetic, but float32 rounds it to 1.0 from |s| = 4096 (2**12) on.
    """
    vectors = vectors.float()
    squared_norm = vectors.square().sum(dim, keepdim=True)
    scale = squared_norm / ((1.0 + squared_norm) * torch.sqrt(squared_norm + EPSILON))
    return vectors * scale


def capsule_lengths(capsules: torch.Tensor) -> torch.Tensor:
    """Return the float32 length of each capsule over the last dimension."""
    return torch.sqrt(capsules.float().square().sum(-1) + EPSILON)


def route_by_agreement(
    predictions: torch.Tensor, iterations: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine prediction vectors u_hat into parent capsules by agreement.

    ``predictions`` is u_hat, shape (B, parents, children, parent_dim), where
    entry [b, j, i] is child i's prediction for parent j. Returns the parent
    capsules v (B, parents, parent_dim) and the coupling coefficients c
    (B, parents, children) of the last iteration. Both are float32.

    The routing logits b start at zero for every call and every sample, so
    the first iteration couples each child uniformly. c is the softmax of b
    over the parents, so each child's coefficients sum to 1.

    Only the last iteration passes gradients to u_hat. Earlier iterations
    use a detached u_hat, so c acts as a constant in backpropagation. This
    saves the memory and time of backpropagating through the routing loop.

    The two weighted sums are batched matrix-vector products in the dtype of
    u_hat (bfloat16 under autocast). The logits, softmax and squash run in
    float32.
    """
    if iterations < 1:
        raise ValueError(f"routing iterations must be at least 1, got {iterations}")
    batch, parents, children, parent_dim = predictions.shape
    # (B * parents, children, parent_dim): one matrix-vector product per
    # (sample, parent) pair. reshape copies only if the input is not contiguous.
    flat = predictions.reshape(batch * parents, children, parent_dim)
    flat_detached = flat.detach()
    logits = torch.zeros(
        batch, parents, children, dtype=torch.float32, device=predictions.device
    )

    for iteration in range(iterations):
        coupling = logits.softmax(dim=1)
        is_last = iteration == iterations - 1
        source = flat if is_last else flat_detached

        # s_j = sum_i c_ij u_hat_j|i
        weights = coupling.view(batch * parents, 1, children).to(source.dtype)
        weighted_sum = torch.bmm(weights, source).view(batch, parents, parent_dim)
        parent_capsules = squash(weighted_sum)
        if is_last:
            break

        # b_ij += u_hat_j|i . v_j
        parent_rows = parent_capsules.view(batch * parents, 1, parent_dim)
        agreement = torch.bmm(
            parent_rows.to(source.dtype), flat_detached.transpose(1, 2)
        )
        logits = logits + agreement.view(batch, parents, children).float()

    return parent_capsules, coupling


def margin_loss(lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Return each sample's margin loss, summed over classes, shape (B,).

    L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2
    with m+ = 0.9, m- = 0.1, lambda = 0.5 and T_k = 1 for the labelled class.
    """
    lengths = lengths.float()
    present = F.one_hot(labels, lengths.shape[1]).to(lengths.dtype)
    present_loss = F.relu(MARGIN_POSITIVE - lengths).square()
    absent_loss = F.relu(lengths - MARGIN_NEGATIVE).square()
    per_class = (
        present * present_loss + ABSENT_CLASS_WEIGHT * (1.0 - present) * absent_loss
    )
    return per_class.sum(dim=1)


def sum_squared_errors(
    reconstruction: torch.Tensor, images: torch.Tensor
) -> torch.Tensor:
    """Return each image's float32 sum of squared errors over its pixels, (B,)."""
    diff = reconstruction.float() - images.float()
    return diff.square().flatten(1).sum(dim=1)


def mask_capsules(capsules: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Zero every capsule except the one of ``classes`` in each sample."""
    keep = F.one_hot(classes, capsules.shape[1]).to(capsules.dtype)
    return capsules * keep.unsqueeze(-1)


def _conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class CapsNetOutput(NamedTuple):
    """Outputs of one CapsNet forward pass, all float32 except ``prediction``."""

    primary: torch.Tensor  # (B, num_primary, primary_dim), squashed
    capsules: torch.Tensor  # (B, classes, digit_dim), digit capsules v_j
    lengths: torch.Tensor  # (B, classes), |v_j|
    prediction: torch.Tensor  # (B,) int64, argmax of lengths
    reconstruction: torch.Tensor  # (B, C, H, W) in [0, 1]


class CapsNet(LatentModel):
    kind = "capsnet"
    stat_names = ("samples", "loss", "sse", "pixels", "correct")

    def __init__(
        self,
        image_shape: tuple[int, int, int] | list[int] = (1, 28, 28),
        num_classes: int = 10,
        routing_iterations: int = 3,
        primary_types: int = 32,
        primary_dim: int = 8,
        digit_dim: int = 16,
        conv_channels: int = 256,
        front_end: str = "paper",
        reconstruction_weight: float = 0.0005,
        decoder_input: str = "masked",
        decoder_widths: tuple[int, ...] | list[int] = (512, 1024),
    ) -> None:
        super().__init__()
        channels, height, width = (int(v) for v in image_shape)
        decoder_widths = [int(v) for v in decoder_widths]
        self._check_arguments(
            num_classes=num_classes,
            routing_iterations=routing_iterations,
            primary_types=primary_types,
            primary_dim=primary_dim,
            digit_dim=digit_dim,
            conv_channels=conv_channels,
            front_end=front_end,
            reconstruction_weight=reconstruction_weight,
            decoder_input=decoder_input,
            decoder_widths=decoder_widths,
        )
        self.image_shape = (channels, height, width)
        self.num_classes = num_classes
        self.routing_iterations = routing_iterations
        self.primary_dim = primary_dim
        self.digit_dim = digit_dim
        self.front_end = front_end
        self.reconstruction_weight = float(reconstruction_weight)
        self.decoder_input_mode = decoder_input
        self.init_kwargs = {
            "image_shape": list(self.image_shape),
            "num_classes": num_classes,
            "routing_iterations": routing_iterations,
            "primary_types": primary_types,
            "primary_dim": primary_dim,
            "digit_dim": digit_dim,
            "conv_channels": conv_channels,
            "front_end": front_end,
            "reconstruction_weight": self.reconstruction_weight,
            "decoder_input": decoder_input,
            "decoder_widths": decoder_widths,
        }

        # Both front ends shrink each side by KERNEL_SIZE - 1 exactly once.
        feature_size = (height - KERNEL_SIZE + 1, width - KERNEL_SIZE + 1)
        self.primary_grid = tuple(
            _conv_output_size(side, KERNEL_SIZE, PRIMARY_STRIDE)
            for side in feature_size
        )
        if min(self.primary_grid) < 1:
            raise ValueError(
                f"image_shape {list(self.image_shape)} is too small for CapsNet: "
                f"height and width must be at least {2 * KERNEL_SIZE - 1}"
            )
        self.num_primary = primary_types * self.primary_grid[0] * self.primary_grid[1]

        self.features = self._build_front_end(channels, conv_channels, front_end)
        self.primary_conv = nn.Conv2d(
            conv_channels,
            primary_types * primary_dim,
            KERNEL_SIZE,
            stride=PRIMARY_STRIDE,
        )
        # W_ij^T for all i and j, laid out (num_primary, primary_dim,
        # classes * digit_dim) so that u_hat for a batch is one batched GEMM
        # over i with B x (classes * digit_dim) outputs.
        self.transforms = nn.Parameter(
            torch.randn(self.num_primary, primary_dim, num_classes * digit_dim)
            * TRANSFORM_INIT_STD
        )
        self.decoder = self._build_decoder(
            num_classes * digit_dim, decoder_widths, channels * height * width
        )

    @staticmethod
    def _check_arguments(**arguments: Any) -> None:
        for name in (
            "num_classes",
            "routing_iterations",
            "primary_types",
            "primary_dim",
            "digit_dim",
            "conv_channels",
        ):
            value = arguments[name]
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if arguments["num_classes"] < 2:
            raise ValueError(
                f"num_classes must be at least 2, got {arguments['num_classes']}"
            )
        if arguments["front_end"] not in FRONT_ENDS:
            raise ValueError(
                f"invalid front_end {arguments['front_end']!r}; "
                f"choose one of {', '.join(FRONT_ENDS)}"
            )
        if arguments["decoder_input"] not in DECODER_INPUTS:
            raise ValueError(
                f"invalid decoder_input {arguments['decoder_input']!r}; "
                f"choose one of {', '.join(DECODER_INPUTS)}"
            )
        if arguments["reconstruction_weight"] < 0:
            raise ValueError(
                "reconstruction_weight must be zero or positive, "
                f"got {arguments['reconstruction_weight']}"
            )
        widths = arguments["decoder_widths"]
        if not widths or min(widths) < 1:
            raise ValueError(
                f"decoder_widths must be one or more positive sizes, got {widths}"
            )

    @staticmethod
    def _build_front_end(
        in_channels: int, conv_channels: int, front_end: str
    ) -> nn.Sequential:
        if front_end == "paper":
            return nn.Sequential(
                nn.Conv2d(in_channels, conv_channels, KERNEL_SIZE),
                nn.ReLU(inplace=True),
            )
        layers: list[nn.Module] = []
        # The first convolution is unpadded and the next two keep the size.
        for index, padding in enumerate((0, KERNEL_SIZE // 2, KERNEL_SIZE // 2)):
            layers += [
                nn.Conv2d(
                    in_channels if index == 0 else conv_channels,
                    conv_channels,
                    KERNEL_SIZE,
                    padding=padding,
                    bias=False,
                ),
                nn.BatchNorm2d(conv_channels),
                nn.ReLU(inplace=True),
            ]
        return nn.Sequential(*layers)

    @staticmethod
    def _build_decoder(
        in_features: int, widths: list[int], out_features: int
    ) -> nn.Sequential:
        layers: list[nn.Module] = []
        for width in widths:
            layers += [nn.Linear(in_features, width), nn.ReLU(inplace=True)]
            in_features = width
        layers += [nn.Linear(in_features, out_features), nn.Sigmoid()]
        return nn.Sequential(*layers)

    # ---- forward pass

    def primary_capsules(self, images: torch.Tensor) -> torch.Tensor:
        """Return the squashed primary capsules, (B, num_primary, primary_dim).

        Capsule index = (type, row, column) in C order over
        (primary_types, grid height, grid width).
        """
        maps = self.primary_conv(self.features(images))
        batch, _, grid_height, grid_width = maps.shape
        maps = maps.view(batch, -1, self.primary_dim, grid_height, grid_width)
        vectors = maps.permute(0, 1, 3, 4, 2).reshape(batch, -1, self.primary_dim)
        return squash(vectors)

    def prediction_vectors(self, primary: torch.Tensor) -> torch.Tensor:
        """Return u_hat_j|i = W_ij u_i, shape (B, classes, num_primary, digit_dim)."""
        batch = primary.shape[0]
        # (num_primary, B, primary_dim) @ (num_primary, primary_dim, J * D)
        # -> (num_primary, B, J * D). The alternative, W stored as
        # (num_primary, J * D, primary_dim) with (num_primary, J * D, B)
        # outputs, trained 2-5% slower in float32 and bfloat16 (batch 100,
        # 28x28, torch 2.14 on 2 cores of a Xeon with AMX).
        per_child = torch.matmul(primary.transpose(0, 1).contiguous(), self.transforms)
        per_child = per_child.view(
            self.num_primary, batch, self.num_classes, self.digit_dim
        )
        # Routing wants each (sample, class) slice contiguous.
        return per_child.permute(1, 2, 0, 3).contiguous()

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Return the digit capsules, float32 (B, classes, digit_dim)."""
        return self._capsules(images)[1]

    def _capsules(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        primary = self.primary_capsules(images)
        capsules, _ = route_by_agreement(
            self.prediction_vectors(primary), self.routing_iterations
        )
        return primary, capsules

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> CapsNetOutput:
        """Run the network and reconstruct each image.

        The decoder receives the labelled class's capsule only in training
        mode with ``labels`` given. In evaluation mode, or without labels, it
        receives the predicted class's capsule, so labels never reach the
        decoder at test time. With ``decoder_input="all"`` it receives every
        capsule unmasked.
        """
        primary, capsules = self._capsules(images)
        lengths = capsule_lengths(capsules)
        prediction = lengths.argmax(dim=1)
        if self.decoder_input_mode == "all":
            decoder_input = capsules
        elif self.training and labels is not None:
            decoder_input = mask_capsules(capsules, labels)
        else:
            decoder_input = mask_capsules(capsules, prediction)
        reconstruction = self.decode(decoder_input)
        return CapsNetOutput(primary, capsules, lengths, prediction, reconstruction)

    def decode(self, decoder_input: torch.Tensor) -> torch.Tensor:
        """Map capsules (B, classes, digit_dim), masked or not, to images."""
        expected = self.num_classes * self.digit_dim
        if decoder_input[0].numel() != expected:
            raise ValueError(
                f"decoder input has {decoder_input[0].numel()} values per image; "
                f"expected {self.num_classes} x {self.digit_dim} = {expected}"
            )
        pixels = self.decoder(decoder_input.flatten(1))
        return pixels.view(-1, *self.image_shape)

    def decoder_input(
        self, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the capsules that ``decode`` takes, (B, classes, digit_dim).

        With ``decoder_input="masked"`` all but one capsule are zeroed: the
        one of ``labels`` if given, else the predicted class. With "all" the
        capsules are returned unmasked and ``labels`` is ignored, because
        that model's decoder was trained on all of them.
        """
        capsules = self.encode(images)
        if self.decoder_input_mode == "all":
            return capsules
        if labels is None:
            labels = capsule_lengths(capsules).argmax(dim=1)
        return mask_capsules(capsules, labels)

    # ---- losses and statistics

    def training_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the mean of margin loss + weighted SSE, and summed statistics.

        Per sample: margin loss summed over classes plus
        ``reconstruction_weight`` times the sum of squared pixel errors.
        """
        output = self(images, labels)
        per_sample_sse = sum_squared_errors(output.reconstruction, images)
        per_sample = (
            margin_loss(output.lengths, labels)
            + self.reconstruction_weight * per_sample_sse
        )
        stats = squared_error_stats(output.reconstruction, images)
        stats["samples"] = torch.tensor(images.shape[0], dtype=torch.float64)
        stats["loss"] = per_sample.detach().sum()
        # int64 on the model's device (MPS has no float64). A uint8 sum
        # would wrap at 256.
        stats["correct"] = (output.prediction == labels).sum(dtype=torch.int64)
        return per_sample.mean(), stats

    def batch_stats(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Return summed statistics of one batch, computed in evaluation mode."""
        with self._evaluation_mode(), torch.no_grad():
            return self.training_loss(images, labels)[1]

    def preview(self, images: torch.Tensor, labels: torch.Tensor) -> Preview:
        """Return evaluation-mode capsules, reconstructions and predictions.

        Switches to evaluation mode for the call and restores each module's
        mode afterwards, so BatchNorm running statistics stay unchanged.
        ``labels`` is unused: the reconstruction comes from the prediction.
        """
        with self._evaluation_mode(), torch.no_grad():
            output = self(images)
        return Preview(
            latent=output.capsules.float().cpu().numpy(),
            reconstruction=output.reconstruction.float().cpu().numpy(),
            extras={
                "lengths": output.lengths.float().cpu().numpy(),
                "prediction": output.prediction.long().cpu().numpy(),
                "primary": output.primary.float().cpu().numpy(),
                # (B, types, grid height, grid width): one tile per capsule type.
                "primary_lengths": capsule_lengths(output.primary.float())
                .view(len(images), -1, *self.primary_grid)
                .cpu()
                .numpy(),
            },
        )

    @contextmanager
    def _evaluation_mode(self):
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            yield
        finally:
            for module, training in modes:
                module.training = training
