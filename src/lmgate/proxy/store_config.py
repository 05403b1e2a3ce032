"""The log store of ``lmgate serve``: on by default, configured by ``general_settings.store``.

    general_settings:
      store: false                       # off (or `lmgate serve --no-store`, or LMGATE_STORE=off)
      store:                             # or its settings; every key is optional
        type: sqlite                     # sqlite (default) | clickhouse | postgres
        path: /var/lib/lmgate/logs.sqlite3   # sqlite; default <data dir>/logs.sqlite3
        url: http://127.0.0.1:8123/default   # clickhouse (HTTP interface) or postgresql://...
        retention_days: 30
        max_record_bytes: 1000000
        turn_off_message_logging: false

A config that already names ``"store"`` in its callbacks keeps its own ``callback_settings.store``
(and that logger): nothing is added twice. The data directory rule is ``lmgate._paths``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from .. import _conf
from .._paths import data_dir
from ..exceptions import ConfigError

# "on": `lmgate serve` sets it (unless already set), so an app built in-process by create_app (tests,
# embedding) gets no store it did not ask for; "off" (what --no-store sets): no default store
ENV_SWITCH = "LMGATE_STORE"
KEY = "general_settings.store"
STORE_TYPES = ("sqlite", "clickhouse", "postgres")
# the keys of general_settings.store besides "enabled"; batch options (batch_size, ...) pass through
STORE_KEYS = ("type", "path", "url", "retention_days", "max_record_bytes", "turn_off_message_logging")
PASS_THROUGH: tuple[str, ...] = (
    "batch_size",
    "flush_interval",
    "spool",
    "spool_dir",
    "max_queue_records",
    "max_queue_bytes",
    "writer",  # where the writes run: auto (lmgate serve's default), process (loggers/store_process.py) or thread
)


def parse(general: Mapping[str, Any], file: str) -> dict[str, Any] | None:
    """The default store's settings, or None when it is off; raises ``ConfigError`` naming the key."""
    value = general.get("store", True)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        enabled = _conf.boolean(True if value is None else value, name=KEY, where=file)
        return {} if enabled else None
    if not isinstance(value, Mapping):
        raise ConfigError(f"must be true, false or a mapping, got {type(value).__name__}", file, KEY)
    out = dict(value)
    if not _conf.boolean(out.pop("enabled", True), name=f"{KEY}.enabled", where=file):
        return None
    unknown = sorted(set(out) - set(STORE_KEYS) - set(PASS_THROUGH))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)}; known: enabled, {', '.join(STORE_KEYS + PASS_THROUGH)}",
            file,
            KEY,
        )
    kind = out.get("type", "sqlite")
    if kind not in STORE_TYPES:
        raise ConfigError(f"type must be one of {', '.join(STORE_TYPES)}, got {kind!r}", file, f"{KEY}.type")
    if kind != "sqlite" and not out.get("url"):
        raise ConfigError(f"type {kind} needs a url", file, f"{KEY}.url")
    if out.get("writer", "auto") not in ("auto", "process", "thread"):
        raise ConfigError(
            f"writer must be auto, process or thread, got {out['writer']!r}", file, f"{KEY}.writer"
        )
    return out


def switched_on(environ: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get(ENV_SWITCH, "")
    return value.strip().lower() in ("1", "on", "true", "yes")


def callback_entry(settings: Mapping[str, Any], configured_data_dir: str | None) -> dict[str, Any]:
    """``callback_settings.store`` for the default store: a SQLite store gets its path in the data
    directory (``--data-dir`` / ``LMGATE_DATA_DIR`` / ``general_settings.data_dir`` / XDG)."""
    entry = dict(settings)
    if entry.get("type", "sqlite") == "sqlite" and not entry.get("path"):
        from ..store.base import DB_FILE

        entry["path"] = str(data_dir(configured_data_dir) / DB_FILE)
    return entry


__all__ = ["ENV_SWITCH", "callback_entry", "parse", "switched_on"]
