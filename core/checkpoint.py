"""One-file checkpoints that rebuild a model without any other file.

A checkpoint is a dict (see ``save_checkpoint``) written with ``torch.save``
to a temporary file in the same folder and renamed over the target, so a
crash during the write leaves the previous checkpoint intact. It holds only
tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)``, which executes no pickled code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core.models import LatentModel, build_model

CHECKPOINT_FORMAT = "latent-explorer-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(Exception):
    """A checkpoint file that cannot be read or does not fit the model."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file."""

    model_kind: str
    model_kwargs: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict[str, Any] | None = None
    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def build_model(self) -> LatentModel:
        """Construct the model and load the weights, as float32."""
        try:
            model = build_model(self.model_kind, **self.model_kwargs)
        except (TypeError, ValueError) as error:
            raise CheckpointError(
                f"checkpoint describes a {self.model_kind} model that cannot be "
                f"built ({error}); it may come from a newer latent-explorer"
            ) from error
        load_weights(model, self.model_state)
        return model


def save_checkpoint(
    path: str | Path,
    model: LatentModel,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int = 0,
    history: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    half_precision: bool = False,
) -> Path:
    """Write a checkpoint atomically and return its path.

    ``half_precision`` stores floating-point weights as float16 and drops the
    optimizer state, which halves the size of checkpoints shipped with the
    application. Loading converts the weights back to float32.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if half_precision:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": {"kind": model.kind, "kwargs": dict(model.init_kwargs)},
        "model_state": state,
        "optimizer_state": (
            optimizer.state_dict() if optimizer and not half_precision else None
        ),
        "epoch": int(epoch),
        "history": list(history or []),
        "config": dict(config or {}),
        "extra": dict(extra or {}),
        "torch_version": str(torch.__version__),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as handle:
        torch.save(payload, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``.

    Raises CheckpointError naming the file when it is missing, truncated,
    not a torch file, or a torch file of some other program.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:
        # Unpickling arbitrary bytes fails in many ways (UnpicklingError,
        # KeyError, EOFError, BadZipFile, struct.error, ...), all of which mean
        # the same thing to the user: this file is not a checkpoint.
        raise CheckpointError(
            f"{path} is not a readable latent-explorer checkpoint "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]})"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is a PyTorch file but not a latent-explorer checkpoint "
            f"(no format marker {CHECKPOINT_FORMAT!r}); open a checkpoint.pt "
            "from a run directory instead"
        )
    version = payload.get("version")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint version {version}, this program reads "
            f"version {CHECKPOINT_VERSION}; update latent-explorer"
        )
    model = payload["model"]
    return Checkpoint(
        model_kind=model["kind"],
        model_kwargs=dict(model["kwargs"]),
        model_state=payload["model_state"],
        optimizer_state=payload.get("optimizer_state"),
        epoch=int(payload.get("epoch", 0)),
        history=list(payload.get("history", [])),
        config=dict(payload.get("config", {})),
        extra=dict(payload.get("extra", {})),
    )


def load_weights(model: LatentModel, state: dict[str, torch.Tensor]) -> None:
    """Load ``state`` into ``model``, naming every missing or mis-shaped tensor."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [
        f"{name} {tuple(state[name].shape)} vs {tuple(tensor.shape)}"
        for name, tensor in own.items()
        if name in state and state[name].shape != tensor.shape
    ]
    if missing or unexpected or mismatched:
        details = []
        if mismatched:
            details.append("shape differs: " + ", ".join(mismatched[:5]))
        if missing:
            details.append("missing: " + ", ".join(missing[:5]))
        if unexpected:
            details.append("unexpected: " + ", ".join(unexpected[:5]))
        raise CheckpointError(
            f"checkpoint belongs to another model shape than this "
            f"{model.kind} ({'; '.join(details)}); build the model from the "
            "checkpoint instead"
        )
    converted = {
        name: tensor.to(own[name].dtype) if tensor.is_floating_point() else tensor
        for name, tensor in state.items()
    }
    model.load_state_dict(converted)
