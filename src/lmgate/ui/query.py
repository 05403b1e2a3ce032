"""What the dashboard's JSON API answers: request parameters in, store queries out.

Plain functions over a ``LogStore`` (any backend) and the ``Viewer`` asking: no web framework
here, so the pages, the API and ``lmgate logs --url`` share one set of answers. A key holder's
viewer narrows every query to their own key hash, whatever the parameters say: that filter is
applied here, on the server, never left to the page.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from ..store.base import BUCKETS, GROUP_BYS, Filters, LogStore, Page

# the ranges the pages offer, as seconds back from now
RANGES = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
DEFAULT_RANGE = "24h"
MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# the columns of the logs table (and of its CSV), in order
LOG_COLUMNS = (
    "start_time",
    "call_id",
    "model",
    "provider",
    "status",
    "error_class",
    "key_alias",
    "key_hash",
    "team_alias",
    "team_id",
    "user_id",
    "end_user",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "latency_ms",
    "ttft_ms",
    "cache_hit",
    "stream",
    "tags",
    "trace_id",
)
BREAKDOWN_COLUMNS = (
    "group",
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "cache_hit_rate",
)
FILTER_PARAMS = ("model", "provider", "key", "team", "user", "status", "search", "trace_id")


class QueryError(ValueError):
    """Bad parameters: the API answers 400 with this message."""


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the admin (sees every call) or one key's holder (``key_hash``: sees only
    the calls made with that key). ``label`` is what the page shows (never the key itself)."""

    admin: bool
    key_hash: str | None = None
    label: str = "admin"

    def narrow(self, filters: Filters) -> Filters:
        return filters if self.admin else replace(filters, key=self.key_hash or "-")

    def may_see(self, row: Mapping[str, Any]) -> bool:
        return self.admin or (self.key_hash is not None and row.get("key_hash") == self.key_hash)


ADMIN = Viewer(admin=True)


def time_range(params: Mapping[str, str], now: float) -> tuple[float | None, float | None, str]:
    """``since``/``until`` (ISO times, POSIX seconds or durations ago like ``2h``) win over
    ``range`` (``RANGES`` or ``all``); the default is the last 24 hours. Returns the bounds and
    the range's name (``custom`` for explicit bounds)."""
    since, until = params.get("since"), params.get("until")
    if since or until:
        return _moment(since, "since", now), _moment(until, "until", now), "custom"
    name = params.get("range") or DEFAULT_RANGE
    if name == "all":
        return None, None, name
    if name not in RANGES:
        raise QueryError(f"range must be one of {', '.join(RANGES)}, all; got {name!r}")
    return now - RANGES[name], None, name


def _moment(text: str | None, name: str, now: float) -> float | None:
    if not text:
        return None
    from .. import _conf
    from ..exceptions import ConfigError

    try:
        seconds = float(text)  # POSIX seconds
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):  # nan and inf parse as floats but bound nothing
            raise QueryError(f"{name}: expected a finite number of POSIX seconds, got {text!r}")
        return seconds
    try:
        return now - float(_conf.duration_s(text, name=name))
    except ConfigError:
        pass
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    except (ValueError, OverflowError):
        raise QueryError(
            f"{name}: expected an ISO time (2026-01-31T12:00), POSIX seconds or a duration (15m, 2h, 7d), "
            f"got {text!r}"
        ) from None


def filters_from(params: Mapping[str, str], viewer: Viewer, now: float) -> tuple[Filters, str]:
    """The store filters a request asks for, narrowed to what ``viewer`` may see."""
    status = params.get("status") or None
    if status not in (None, "success", "failure"):
        raise QueryError(f"status must be success or failure, got {status!r}")
    since, until, range_name = time_range(params, now)
    values = {name: (params.get(name) or None) for name in FILTER_PARAMS}
    return viewer.narrow(Filters(since=since, until=until, **values)), range_name


def bucket_for(since: float | None, until: float | None, now: float, asked: str | None = None) -> str:
    """``asked`` when given (minute, hour, day); else the bucket that draws the range in a few
    dozen to a few hundred points."""
    if asked:
        if asked not in BUCKETS:
            raise QueryError(f"bucket must be one of {', '.join(BUCKETS)}, got {asked!r}")
        return asked
    if since is None:
        return "day"
    span = (until or now) - since
    return "minute" if span <= 3 * 3600 else "hour" if span <= 4 * 86400 else "day"


def overview(store: LogStore, params: Mapping[str, str], viewer: Viewer, now: float) -> dict[str, Any]:
    """Totals for the range, the series the charts draw, and tokens per model over time."""
    filters, range_name = filters_from(params, viewer, now)
    bucket = bucket_for(filters.since, filters.until, now, params.get("bucket"))
    return {
        "range": _range(filters, range_name, bucket),
        "totals": store.totals(filters),
        "series": store.timeseries(bucket, filters),
        "tokens_by_model": _tokens_by_model(store, bucket, filters),
    }


def _tokens_by_model(store: LogStore, bucket: str, filters: Filters) -> list[dict[str, Any]]:
    """The tokens chart's series: it draws no latency, so a store that can skip the percentiles
    (SQLite: a pass over the latencies or its rollup's histogram) is asked to; their fields
    stay, as None."""
    if getattr(store, "SERIES_LATENCY_OPTIONAL", False):
        return store.timeseries(bucket, filters, group_by="model", latency=False)  # type: ignore[call-arg]
    return store.timeseries(bucket, filters, group_by="model")


def breakdown(store: LogStore, params: Mapping[str, str], viewer: Viewer, now: float) -> dict[str, Any]:
    by = params.get("by") or "model"
    if by not in GROUP_BYS:
        raise QueryError(f"by must be one of {', '.join(GROUP_BYS)}, got {by!r}")
    filters, range_name = filters_from(params, viewer, now)
    return {"range": _range(filters, range_name, None), "by": by, "rows": store.stats(by, filters)}


def logs(store: LogStore, params: Mapping[str, str], viewer: Viewer, now: float) -> dict[str, Any]:
    """One page of calls, newest first; ``has_more`` says whether another page follows (one row
    more is read instead of counting every match: a count is the slow part on a big store)."""
    filters, range_name = filters_from({"range": "all", **params}, viewer, now)
    limit = _int(params.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = _int(params.get("offset"), "offset", 0, 0, 10**9)
    rows = store.query(filters, Page(limit=limit + 1, offset=offset))
    if filters.trace_id:  # a backend that does not know the filter must not show other traces
        rows = [r for r in rows if r.get("trace_id") == filters.trace_id]
    rows = [r for r in rows if viewer.may_see(r)]
    return {
        "range": _range(filters, range_name, None),
        "offset": offset,
        "limit": limit,
        "has_more": len(rows) > limit,
        "rows": [{name: r.get(name) for name in LOG_COLUMNS} for r in rows[:limit]],
    }


def call(store: LogStore, call_id: str, viewer: Viewer) -> dict[str, Any] | None:
    """One call with its payload and the other calls of its trace; None when it does not exist
    or ``viewer`` may not see it (the same answer: a key holder learns nothing of other keys)."""
    row = store.get(call_id)
    if row is None or not viewer.may_see(row):
        return None
    payload = row.get("payload") or {}
    trace: list[dict[str, Any]] = []
    if row.get("trace_id"):
        start = float(row["start_time"])
        # a trace's calls are close in time: the window keeps the lookup on the time index too
        found = store.query(
            viewer.narrow(Filters(trace_id=row["trace_id"], since=start - 86400, until=start + 86400)),
            Page(limit=100),
        )
        trace = [
            {name: r.get(name) for name in LOG_COLUMNS}
            for r in sorted(found, key=lambda r: r["start_time"])
            if r.get("trace_id") == row["trace_id"] and viewer.may_see(r)
        ]
    payload = masked_payload(payload)
    hidden = payload.get("hidden_params") or {}
    return {
        "row": {name: row.get(name) for name in (*LOG_COLUMNS, "call_type", "model_group", "model_id")},
        "messages": payload.get("messages"),
        "response": payload.get("response"),
        "answer": _answer(payload.get("response")),
        "error": (payload.get("error_information") or None) if row.get("status") != "success" else None,
        "cost": {
            "total": row.get("cost"),
            "breakdown": payload.get("cost_breakdown"),
            "saved_cache_cost": payload.get("saved_cache_cost"),
        },
        "timings": {
            "start_time": row.get("start_time"),
            "end_time": row.get("end_time"),
            "latency_ms": row.get("latency_ms"),
            "ttft_ms": row.get("ttft_ms"),
            "overhead_ms": hidden.get("litellm_overhead_time_ms"),
        },
        "metadata": payload.get("metadata") or {},
        "model_parameters": payload.get("model_parameters") or {},
        "truncated": bool(row.get("truncated")),
        "trace": trace,
        "payload": payload,
    }


def health(logger_stats: Iterable[tuple[str, Mapping[str, Any], str | None]]) -> list[dict[str, Any]]:
    """Each logger's delivery counters (what ``/health/readiness`` and ``/metrics`` read) in
    the shape the health page shows."""
    out = []
    for name, stats, error in logger_stats:
        dropped = stats.get("dropped")
        by_reason = dict(dropped) if isinstance(dropped, Mapping) else {}
        out.append(
            {
                "name": name,
                "healthy": error is None and bool(stats.get("healthy", True)),
                "delivered": stats.get("delivered"),
                "dropped": (
                    stats.get("dropped_total", sum(by_reason.values()))
                    if isinstance(dropped, Mapping)
                    else dropped
                ),
                "dropped_by_reason": by_reason,
                "pending": stats.get("pending"),
                "retrying": stats.get("retrying_batches", stats.get("retrying")),
                "spooled": stats.get("spooled"),
                "last_error": error or stats.get("failing") or stats.get("last_error"),
                "last_error_at": stats.get("last_error_at"),
                "stats": dict(stats),
            }
        )
    return out


def spend(store: LogStore, params: Mapping[str, str], viewer: Viewer, now: float) -> dict[str, Any]:
    """Spend in the range per key, team and user, from the calls stored (budgets are merged in
    by the caller that has a key store)."""
    filters, range_name = filters_from(params, viewer, now)
    return {
        "range": _range(filters, range_name, None),
        "totals": store.totals(filters),
        "keys": store.stats("key", filters),
        "teams": store.stats("team", filters),
        "users": store.stats("user", filters),
    }


def to_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Rows as CSV with a header; lists (tags) as JSON; text that a spreadsheet would run as a
    formula is prefixed with ``'`` (shown, not run)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([csv_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


# a spreadsheet runs a cell that starts with one of these as a formula (=HYPERLINK(...),
# =cmd|...): text from a call (a model name, an alias, a tag) must stay text
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """One value as a CSV cell: lists and dicts as JSON, None empty, formula-like text quoted."""
    import orjson

    if value is None:
        return ""
    if isinstance(value, (list, dict)):
        value = orjson.dumps(value).decode()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def table_of(answer: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], Sequence[str]]:
    """The table an API answer holds (for ``?format=csv``): its rows and columns."""
    if "rows" in answer and "by" in answer:
        return list(answer["rows"]), BREAKDOWN_COLUMNS
    if "rows" in answer:
        return list(answer["rows"]), LOG_COLUMNS
    if "series" in answer:
        rows = list(answer["series"])
        return rows, tuple(rows[0]) if rows else ("bucket_start", "requests", "errors", "cost")
    if "keys" in answer:
        rows = [{"kind": kind, **r} for kind in ("keys", "teams", "users") for r in answer[kind]]
        return rows, ("kind", *BREAKDOWN_COLUMNS)
    if "loggers" in answer:
        rows = list(answer["loggers"])
        return rows, (
            "name",
            "healthy",
            "delivered",
            "dropped",
            "pending",
            "retrying",
            "spooled",
            "last_error",
        )
    raise QueryError("this answer has no table to export")


def masked_payload(value: Any) -> Any:
    """A stored payload as a page may show it: values under credential names masked and every
    key-shaped string (``sk-…``, ``Bearer …``, ``api_key=…``) masked (``_secrets.mask_data``).
    Payloads are masked where they are built; this masks again for rows stored before that,
    and for the messages and response, which the build keeps as they were."""
    from .._secrets import mask_data

    return mask_data(value)


def _answer(response: Any) -> str | None:
    """The first choice's text of a chat response (what the page shows above the raw JSON)."""
    try:
        message = response["choices"][0]["message"]
    except (KeyError, IndexError, TypeError):
        return None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None


def _range(filters: Filters, name: str, bucket: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "since": filters.since, "until": filters.until}
    if bucket:
        out["bucket"] = bucket
    return out


def _int(text: str | None, name: str, default: int, low: int, high: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise QueryError(f"{name} must be a whole number, got {text!r}") from None
    if not low <= value <= high:
        raise QueryError(f"{name} must be between {low} and {high}, got {value}")
    return value


__all__ = [
    "ADMIN",
    "LOG_COLUMNS",
    "RANGES",
    "QueryError",
    "Viewer",
    "breakdown",
    "call",
    "filters_from",
    "health",
    "csv_cell",
    "logs",
    "masked_payload",
    "overview",
    "spend",
    "table_of",
    "to_csv",
]
