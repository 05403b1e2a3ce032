"""The pre-configured generic API callbacks shipped with lmgate (``sumologic``, ``rubrik``, …).

A leaf: it reads the JSON file beside it and imports nothing of lmgate, so the callback
registry can name the presets without importing the logger that uses them.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

PRESETS_FILE = "generic_api_compatible_callbacks.json"


def load_presets() -> dict[str, dict[str, Any]]:
    """The pre-configured callbacks shipped with lmgate, by name."""
    text = resources.files("lmgate.loggers").joinpath(PRESETS_FILE).read_text(encoding="utf-8")
    data: dict[str, dict[str, Any]] = json.loads(text)
    return data


__all__ = ["PRESETS_FILE", "load_presets"]
