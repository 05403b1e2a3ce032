"""Where lmgate keeps data meant to last (the key store, the log store): one rule for every part.

A leaf: it imports nothing of lmgate. (The spool, which may be thrown away, lives in the cache
directory: ``loggers/_env.py`` ``cache_dir``.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def data_dir(configured: str | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``$LMGATE_DATA_DIR`` (what ``--data-dir`` sets), else ``configured`` (a config's
    ``general_settings.data_dir``), else ``$XDG_DATA_HOME/lmgate``, else ``~/.local/share/lmgate``."""
    env = os.environ if environ is None else environ
    chosen = env.get("LMGATE_DATA_DIR") or configured
    if chosen:
        return Path(chosen).expanduser()
    base = env.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "lmgate"


__all__ = ["data_dir"]
