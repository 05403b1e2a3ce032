"""Overview answers from the SQLite store's hourly rollup (schema.py, version 3).

A query the rollup can answer (no key, team, user, search or trace filter; grouped by nothing,
model, provider, day or hour; buckets of an hour or wider) reads the rollup's whole hours and the
raw rows of the partial hours at either end of its range, so counts, tokens and costs are exact.
Latency percentiles come from the merged histograms: nearest rank over 10%-wide buckets, the
bucket's midpoint reported, so within half a bucket's width of the exact value.
"""

from __future__ import annotations

import math
from typing import Any

from .base import Filters
from .schema import LATENCY_BASE, LATENCY_DIMS, ROLLUP_DIMS, ROLLUP_SUMS, bucket_sql, hour_sql, sums_sql

HOUR = 3600
# stats groupings the rollup answers and their expression over its ``hour`` and dimensions
STATS_KEYS = {
    "model": "model",
    "provider": "provider",
    "day": "strftime('%Y-%m-%d', hour, 'unixepoch')",
    "hour": "strftime('%Y-%m-%d %H:00', hour, 'unixepoch')",
}
SERIES_KEYS = {"model": "model", "provider": "provider"}


def answers(filters: Filters) -> bool:
    """Whether the rollup holds what ``filters`` asks (its filters are all rollup dimensions)."""
    return not (filters.key or filters.team or filters.user or filters.search or filters.trace_id)


def bucket_value(bucket: int) -> float:
    """What a histogram bucket reports: its midpoint."""
    return (LATENCY_BASE**bucket + LATENCY_BASE ** (bucket + 1)) / 2 - 1


def bucket_of(latency_ms: float) -> int:
    return int(math.log(max(latency_ms, 0) + 1) / math.log(LATENCY_BASE))


def bucket_width(latency_ms: float) -> float:
    """The width of the bucket ``latency_ms`` falls in: how far a rollup percentile may be off."""
    b = bucket_of(latency_ms)
    return float(LATENCY_BASE ** (b + 1) - LATENCY_BASE**b)


def _where(f: Filters) -> tuple[str, dict[str, Any]]:
    out = ["1"]
    params: dict[str, Any] = {}
    if f.model:
        out.append("(model = :model OR model_group = :model OR response_model = :model)")
        params["model"] = f.model
    if f.provider:
        out.append("provider = :provider")
        params["provider"] = f.provider
    if f.status:
        out.append("status = :status")
        params["status"] = f.status
    return " AND ".join(out), params


def _sources(
    f: Filters,
    rollup_table: str,
    rollup_values: list[str],
    raw_values: list[str],
    raw_only: str = "",
    dim_names: tuple[str, ...] = ROLLUP_DIMS,
) -> tuple[str, dict[str, Any]]:
    """A UNION ALL of the rollup's whole hours in range and the raw rows of the partial hours
    at its ends (those meeting ``raw_only`` too), each with columns ``hour, <dims>, <values>``."""
    where, params = _where(f)
    since, until = f.since, f.until
    first = None if since is None else math.ceil(since / HOUR) * HOUR
    last = None if until is None else math.floor(until / HOUR) * HOUR
    dims = ", ".join(dim_names)
    # named: a UNION ALL takes its column names from its first part
    values = ", ".join(f"{v} AS {n}" for v, n in zip(raw_values, rollup_values, strict=True))
    raw_select = f"SELECT {hour_sql('')} AS hour, {dims}, {values} FROM calls WHERE {where}{raw_only}"
    parts: list[str] = []
    if first is not None and last is not None and first >= last:
        # no whole hour in range: the raw rows only
        parts.append(f"{raw_select} AND start_time >= :since AND start_time < :until")
        params.update(since=since, until=until)
    else:
        hours = [where]
        if first is not None:
            hours.append("hour >= :first")
            params["first"] = first
            if since is not None and since < first:
                parts.append(f"{raw_select} AND start_time >= :since AND start_time < :first")
                params["since"] = since
        if last is not None:
            hours.append("hour < :last")
            params["last"] = last
            if until is not None and last < until:
                parts.append(f"{raw_select} AND start_time >= :last AND start_time < :until")
                params["until"] = until
        parts.append(
            f"SELECT hour, {dims}, {', '.join(rollup_values)} FROM {rollup_table} WHERE {' AND '.join(hours)}"
        )
    return " UNION ALL ".join(parts), params


def aggregate(
    conn: Any, keys: list[tuple[str, str]], f: Filters, ordering: str, quantiles: tuple[float, ...]
) -> list[dict[str, Any]]:
    """Like ``SQLiteStore._aggregate`` with ``cache=True``: one row per distinct ``keys``
    (``(name, expression over hour and the dimensions)``), ordered by ``ordering``."""
    sums_source, params = _sources(f, "calls_hourly", list(ROLLUP_SUMS), sums_sql(""))
    key_select = "".join(f'{expr} AS "{name}", ' for name, expr in keys)
    grouping = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
    order = f" ORDER BY {ordering}" if ordering else ""
    statement = (
        f"SELECT {key_select}count(*) AS _cells, coalesce(sum(requests), 0) AS requests, "
        "coalesce(sum(errors), 0) AS errors, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
        "coalesce(sum(completion_tokens), 0) AS completion_tokens, "
        "coalesce(sum(total_tokens), 0) AS total_tokens, coalesce(sum(cost), 0.0) AS cost, "
        "sum(CASE WHEN cache_hit THEN requests ELSE 0 END) * 1.0 / sum(requests) AS cache_hit_rate, "
        f"coalesce(sum(saved_cost), 0.0) AS saved_cost FROM ({sums_source}){grouping}{order}"
    )
    hist_source, hist_params = _sources(
        f,
        "calls_hourly_latency",
        ["bucket", "n"],
        [bucket_sql(""), "1"],
        " AND latency_ms IS NOT NULL",
        LATENCY_DIMS,
    )
    hist = (
        f"SELECT {key_select}bucket, sum(n) FROM ({hist_source}) "
        f"GROUP BY {', '.join(str(i + 1) for i in range(len(keys) + 1))}"
    )
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(statement, params)
        names = [d[0] for d in cursor.description]
        groups = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        per_group: dict[tuple[Any, ...], list[tuple[int, int]]] = {}
        width = len(keys)
        if quantiles:  # else no histogram read
            cursor.execute(hist, hist_params)
        for row in cursor.fetchall() if quantiles else ():
            per_group.setdefault(tuple(row[:width]), []).append((row[width], row[width + 1]))
    finally:
        cursor.close()
    out = []
    for group in groups:
        cells = group.pop("_cells")
        if keys and not group["requests"]:
            continue  # cells emptied by retention
        if not cells or not group["requests"]:
            group["cache_hit_rate"] = None
        counts = sorted(per_group.get(tuple(group[name] for name, _ in keys), []))
        for q in quantiles:
            group[f"p{round(q * 100)}_ms"] = _percentile(counts, q)
        out.append(group)
    return out


def _percentile(counts: list[tuple[int, int]], q: float) -> float | None:
    """Nearest rank over sorted (bucket, count) pairs, as ``base.percentile`` over the values."""
    total = sum(n for _, n in counts)
    if total <= 0:
        return None
    rank = max(0, min(total - 1, math.ceil(q * total) - 1))
    seen = 0
    for bucket, n in counts:
        seen += n
        if seen > rank:
            return bucket_value(bucket)
    return bucket_value(counts[-1][0])
