"""What every log store offers (``LogStore``) and the shapes its queries take."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._paths import data_dir as _data_dir

# the ``stats`` groupings every store answers; "tag" counts a call once under each of its tags
# (a call without tags under None)
GROUP_BYS = ("model", "provider", "key", "team", "user", "day", "hour", "tag")
# ``timeseries`` buckets and their width in seconds (UTC-aligned: POSIX time is UTC)
BUCKETS = {"minute": 60, "hour": 3600, "day": 86400}
# the groupings a time series may split on (its buckets already are the time)
SERIES_GROUP_BYS = tuple(g for g in GROUP_BYS if g not in ("day", "hour"))
# what ``totals`` and each ``timeseries`` row carry, in this order
TOTALS_FIELDS = (
    "requests",
    "errors",
    "error_rate",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "saved_cost",
    "p50_ms",
    "p95_ms",
    "cache_hit_rate",
)
SERIES_FIELDS = ("bucket_start", "group", "requests", "errors", "cost", "total_tokens", "p50_ms", "p95_ms")


def series_rows(rows: Any, *, sort: bool = False) -> list[dict[str, Any]]:
    """A time series' rows as the contract gives them: the ``SERIES_FIELDS`` of each, sorted by
    (bucket, group) with the ungrouped row first when ``sort`` (a backend whose SQL does not)."""
    if sort:
        rows = sorted(rows, key=lambda r: (r["bucket_start"], r["group"] is not None, r["group"] or ""))
    return [{name: row.get(name) for name in SERIES_FIELDS} for row in rows]
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
    ``user`` the user id or the end user; ``search`` is a substring of the stored payload;
    ``trace_id`` keeps the calls of one trace."""

    model: str | None = None
    provider: str | None = None
    key: str | None = None
    team: str | None = None
    user: str | None = None
    status: str | None = None
    since: float | None = None
    until: float | None = None
    search: str | None = None
    trace_id: str | None = None


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

    def totals(self, filters: Filters = ...) -> dict[str, Any]:
        """One row for everything matching: ``requests``, ``errors``, ``error_rate``,
        ``prompt_tokens``, ``completion_tokens``, ``total_tokens``, ``cost``, ``saved_cost``
        (the cost of cache hits: what the cache saved), ``p50_ms``, ``p95_ms``,
        ``cache_hit_rate``. Rates, percentiles and sums are None where no rows match
        (``requests`` and ``errors`` are 0)."""
        ...

    def timeseries(
        self, bucket: str, filters: Filters = ..., group_by: str | None = None
    ) -> list[dict[str, Any]]:
        """Per time bucket (``BUCKETS``: minute, hour, day) and, with ``group_by``
        (``SERIES_GROUP_BYS``), per group: ``bucket_start`` (POSIX seconds, a multiple of the
        bucket's width), ``group`` (None without ``group_by``), ``requests``, ``errors``, ``cost``,
        ``total_tokens``, ``p50_ms``, ``p95_ms``. Only buckets with calls; sorted by
        (bucket_start, group) with None first."""
        ...

    def close(self) -> None: ...


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of sorted values, nearest rank; None for no values."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[rank]
