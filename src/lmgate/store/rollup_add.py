"""The hourly rollup's additions for one batch, computed in Python from the rows just inserted.

``schema.rollup_add_statements()`` adds a batch to the rollup with two set-based upserts that read
the batch's rows back from ``calls``, build each row's cell key with ``quote()`` and its latency
bucket with ``ln()``, and group them with SQLite's sorter: ~50,000 instructions a row, a third of
the store's write (docs/store.md, "The writer child's cost"). The writer holds those rows as value
tuples already, so here each row is added to its cell in a dict and the few cells a batch touches
are upserted: the same cells, keys and sums (tests/test_store_rollup.py compares the two).

Used only where the two agree by construction; ``batch_cells`` answers None otherwise and the
writer runs the SQL statements instead:

* a cache hit (its saved cost is read from the payload's JSON by SQLite's ``json_extract``);
* a value of another type than the store logger's rows carry (dimensions str or None, tokens int
  or None, numbers int or float, a start time in [0, 2**53), where ``CAST(... AS INTEGER)`` and
  ``int()`` agree);
* text SQLite's ``quote()`` would cut short (a NUL character).
"""

from __future__ import annotations

import math
from operator import itemgetter
from typing import Any

from .schema import COLUMNS, LATENCY_DIMS, ROLLUP_DIMS, ROLLUP_SUMS

HOUR = 3600
_PICK = itemgetter(
    *(
        COLUMNS.index(name)
        for name in (
            "start_time",
            "model",
            "model_group",
            "response_model",
            "provider",
            "status",
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "cost",
            "latency_ms",
            "cache_hit",
        )
    )
)
_TEXT = frozenset((str, type(None)))
_INT = frozenset((int, type(None)))
_NUMBER = frozenset((int, float, type(None)))
_START_LIMIT = float(2**53)

_DIMS = ", ".join(ROLLUP_DIMS)
_LDIMS = ", ".join(LATENCY_DIMS)
HOURLY_UPSERT = (
    f"INSERT INTO calls_hourly (dims, hour, {_DIMS}, {', '.join(ROLLUP_SUMS)}) "
    f"VALUES ({', '.join('?' * (2 + len(ROLLUP_DIMS) + len(ROLLUP_SUMS)))}) "
    f"ON CONFLICT (dims) DO UPDATE SET {', '.join(f'{s} = {s} + excluded.{s}' for s in ROLLUP_SUMS)}"
)
LATENCY_UPSERT = (
    f"INSERT INTO calls_hourly_latency (dims, bucket, hour, {_LDIMS}, n) "
    f"VALUES ({', '.join('?' * (4 + len(LATENCY_DIMS)))}) "
    "ON CONFLICT (dims, bucket) DO UPDATE SET n = n + excluded.n"
)


def _quote(value: str | None) -> str:
    """SQLite's ``quote()`` of a text or NULL value."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def batch_cells(
    rows: list[tuple[Any, ...]], ln_base: float
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None:
    """The parameters of ``HOURLY_UPSERT`` and ``LATENCY_UPSERT`` that add ``rows`` (value tuples
    in table order, every one newly inserted) to the rollup, or None when one of them is not a
    row this computes exactly as SQLite would (the module's docstring): the caller then runs
    ``schema.rollup_add_statements()``. ``ln_base``: ``ln(LATENCY_BASE)`` as SQLite computes it."""
    hourly: dict[tuple[Any, ...], list[Any]] = {}
    latency: dict[tuple[Any, ...], int] = {}
    log, isfinite = math.log, math.isfinite
    for row in rows:
        (
            start,
            model,
            group,
            response_model,
            provider,
            status,
            prompt,
            completion,
            total,
            cost,
            took,
            hit,
        ) = _PICK(row)
        if (
            hit
            or type(start) not in (float, int)
            or not 0 <= start < _START_LIMIT
            or type(status) is not str
            or not _TEXT.issuperset((type(model), type(group), type(response_model), type(provider)))
            or not _INT.issuperset((type(prompt), type(completion), type(total)))
            or not _NUMBER.issuperset((type(cost), type(took)))
            # SQLite stores NaN as NULL, and CAST(inf AS INTEGER) saturates where int() raises
            or (cost is not None and not isfinite(cost))
            or (took is not None and not isfinite(took))
        ):
            return None
        hour = int(start) // HOUR * HOUR
        cell = (hour, model, group, response_model, provider, status)
        sums = hourly.get(cell)
        if sums is None:
            sums = hourly[cell] = [0, 0, 0, 0, 0, 0.0]
        sums[0] += 1
        if status != "success":
            sums[1] += 1
        if prompt:
            sums[2] += prompt
        if completion:
            sums[3] += completion
        if total:
            sums[4] += total
        if cost:
            sums[5] += float(cost)
        if took is not None:
            bucket = int(log(max(float(took), 0.0) + 1.0) / ln_base)
            key = (cell, bucket)
            latency[key] = latency.get(key, 0) + 1
    hourly_params = []
    for (hour, *dims), (requests, errors, prompt, completion, total, cost) in hourly.items():
        text = "|".join([str(hour), *map(_quote, dims), "0"])
        if "\x00" in text:
            return None
        hourly_params.append((text, hour, *dims, 0, requests, errors, prompt, completion, total, cost, 0.0))
    latency_params = []
    for ((hour, *dims), bucket), n in latency.items():
        text = "|".join([str(hour), *map(_quote, dims)])
        latency_params.append((text, bucket, hour, *dims, n))
    return hourly_params, latency_params


__all__ = ["HOURLY_UPSERT", "LATENCY_UPSERT", "batch_cells"]
