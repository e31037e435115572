"""Files shipped in the repository's resources/ folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESOURCES_DIR = Path(__file__).resolve().parents[1] / "resources"
BUNDLED_CAPSNET = RESOURCES_DIR / "capsnet_mnist.pt"
PRESETS_FILE = RESOURCES_DIR / "presets.json"
ICON_FILE = RESOURCES_DIR / "icon.svg"


def load_presets(path: Path = PRESETS_FILE) -> list[dict[str, Any]]:
    """Return the presets as [{"name": str, "config": dict}], [] if unreadable."""
    try:
        presets = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [p for p in presets if isinstance(p, dict) and "name" in p and "config" in p]
