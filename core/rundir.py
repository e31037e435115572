"""The run directory: everything one training run writes, in plain files.

Layout::

    <run>/config.json           training configuration (TrainConfig as JSON)
    <run>/metrics.jsonl         one JSON object per finished epoch, appended
    <run>/progress.json         latest batch progress, rewritten atomically
    <run>/checkpoint.pt         latest checkpoint (see core.checkpoint)
    <run>/preview_inputs.npz    the fixed test images used for snapshots
    <run>/snapshots/epoch-0001.npz   preview arrays after epoch 1
    <run>/snapshots/epoch-0001.png   the same preview as a picture
    <run>/recordings/*.gif      GIFs recorded from the GUI or the CLI

Files are only appended or replaced atomically, so a reader (the GUI
watching a run on another machine's shared disk, say) never sees half a
file, and a crash loses at most the epoch in progress.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np

from core.models.base import Preview

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
PROGRESS_FILE = "progress.json"
CHECKPOINT_FILE = "checkpoint.pt"
PREVIEW_INPUTS_FILE = "preview_inputs.npz"
SNAPSHOT_DIR = "snapshots"
RECORDING_DIR = "recordings"
_SNAPSHOT_NAME = re.compile(r"^epoch-(\d+)\.npz$")


class RunDirectoryError(Exception):
    """A folder that is not a usable run directory."""


def default_runs_root() -> Path:
    """Return $LATENT_EXPLORER_RUNS if set, else ./runs."""
    return Path(os.environ.get("LATENT_EXPLORER_RUNS", "runs"))


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    with open(temporary, "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


class RunDirectory:
    """Read and write one run directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @classmethod
    def create(cls, parent: str | Path, name: str) -> RunDirectory:
        """Create ``parent/<timestamp>-<name>``, adding a suffix if it exists."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = Path(parent) / f"{stamp}-{name}"
        candidate, suffix = base, 1
        while candidate.exists():
            suffix += 1
            candidate = base.with_name(f"{base.name}-{suffix}")
        candidate.mkdir(parents=True)
        return cls(candidate)

    @classmethod
    def open(cls, root: str | Path) -> RunDirectory:
        """Open an existing run directory, checking that it has a config."""
        run = cls(root)
        if not (run.root / CONFIG_FILE).is_file():
            raise RunDirectoryError(
                f"{run.root} is not a run directory: it has no {CONFIG_FILE}; "
                "choose a folder written by latent-explorer train or the window"
            )
        return run

    # ---- paths ---------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.root / CHECKPOINT_FILE

    @property
    def recordings_dir(self) -> Path:
        path = self.root / RECORDING_DIR
        path.mkdir(exist_ok=True)
        return path

    def snapshot_path(self, epoch: int, suffix: str = ".npz") -> Path:
        return self.root / SNAPSHOT_DIR / f"epoch-{epoch:04d}{suffix}"

    # ---- config and metrics -------------------------------------------------

    def write_config(self, config: dict[str, Any]) -> None:
        text = json.dumps(config, indent=2, sort_keys=True) + "\n"
        _write_atomic(self.root / CONFIG_FILE, text.encode())

    def read_config(self) -> dict[str, Any]:
        path = self.root / CONFIG_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise RunDirectoryError(f"cannot read {path}: {error}") from error

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one epoch's metrics as a JSON line and flush it to disk."""
        with open(self.root / METRICS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def rewrite_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl; on resume this drops epochs past the checkpoint."""
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
        _write_atomic(self.root / METRICS_FILE, text.encode())

    def read_metrics(self) -> list[dict[str, Any]]:
        """Return every complete metrics line; a torn last line is skipped."""
        path = self.root / METRICS_FILE
        if not path.exists():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def write_progress(self, progress: dict[str, Any]) -> None:
        _write_atomic(self.root / PROGRESS_FILE, json.dumps(progress).encode())

    def read_progress(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / PROGRESS_FILE).read_text())
        except (OSError, json.JSONDecodeError):
            return None

    # ---- previews -----------------------------------------------------------

    def save_preview_inputs(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> None:
        path = self.root / PREVIEW_INPUTS_FILE
        with open(path.with_name(f".{path.name}.partial"), "wb") as handle:
            np.savez(handle, images=images, labels=labels, indices=indices)
        os.replace(path.with_name(f".{path.name}.partial"), path)

    def load_preview_inputs(self) -> dict[str, np.ndarray] | None:
        path = self.root / PREVIEW_INPUTS_FILE
        if not path.exists():
            return None
        with np.load(path) as data:
            return {key: data[key] for key in data.files}

    def save_snapshot(self, epoch: int, preview: Preview, picture: np.ndarray) -> None:
        """Store one epoch's preview arrays (.npz) and its picture (.png)."""
        npz = self.snapshot_path(epoch)
        npz.parent.mkdir(exist_ok=True)
        partial = npz.with_name(f".{npz.name}.partial")
        with open(partial, "wb") as handle:
            np.savez(handle, **preview.arrays())
        os.replace(partial, npz)
        png = self.snapshot_path(epoch, ".png")
        partial_png = png.with_name(f".{png.stem}.partial.png")
        iio.imwrite(partial_png, picture)
        os.replace(partial_png, png)

    def snapshot_epochs(self) -> list[int]:
        folder = self.root / SNAPSHOT_DIR
        if not folder.is_dir():
            return []
        epochs = []
        for path in folder.iterdir():
            match = _SNAPSHOT_NAME.match(path.name)
            if match:
                epochs.append(int(match.group(1)))
        return sorted(epochs)

    def load_snapshot(self, epoch: int) -> Preview:
        with np.load(self.snapshot_path(epoch)) as data:
            return Preview.from_arrays({key: data[key] for key in data.files})
