"""What every log store offers (``LogStore``) and the shapes its queries take."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._paths import data_dir as _data_dir

# the ``stats`` groupings every store answers
GROUP_BYS = ("model", "provider", "key", "team", "user", "day", "hour")
DB_FILE = "logs.sqlite3"


def data_dir() -> str:
    """Where lmgate keeps data meant to last (``lmgate._paths.data_dir``, the one rule)."""
    return str(_data_dir())


def default_path() -> str:
    """The default SQLite file: ``<data dir>/logs.sqlite3``."""
    return os.path.join(data_dir(), DB_FILE)


@dataclass(frozen=True)
class Filters:
    """What a query keeps; every field is optional and they combine with AND. ``since``/``until``
    are POSIX seconds; ``key`` matches the key hash or alias, ``team`` the team id or alias,
    ``user`` the user id or the end user; ``search`` is a substring of the stored payload."""

    model: str | None = None
    provider: str | None = None
    key: str | None = None
    team: str | None = None
    user: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    search: str | None = None


@dataclass(frozen=True)
class Page:
    """Newest first: ``limit`` rows after skipping ``offset``."""

    limit: int = 50
    offset: int = 0


@runtime_checkable
class LogStore(Protocol):
    """A place finished calls are kept and queried. Rows are dicts of the columns
    (``schema.COLUMNS``); ``payload`` is the standard logging payload's JSON text."""

    def write(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert rows in one transaction; a row whose ``call_id`` is stored already is skipped
        (a batch delivered twice is stored once). Returns how many were new."""
        ...

    def query(self, filters: Filters = ..., page: Page = ...) -> list[dict[str, Any]]:
        """Matching rows without their payload, newest first."""
        ...

    def get(self, call_id: str) -> dict[str, Any] | None:
        """One row with its payload (parsed), or None."""
        ...

    def stats(self, group_by: str, filters: Filters = ...) -> list[dict[str, Any]]:
        """Per group: requests, errors, tokens, cost, p50/p95/p99 latency (ms), cache-hit rate."""
        ...

    def close(self) -> None: ...


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, nearest rank; None for no values."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]
