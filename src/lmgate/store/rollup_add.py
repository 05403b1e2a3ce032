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

from collections import Counter
from itertools import repeat
from math import isfinite, log
from operator import add, floordiv, itemgetter, mul, truediv
from typing import Any

from .schema import COLUMNS, LATENCY_DIMS, ROLLUP_DIMS, ROLLUP_SUMS

HOUR = 3600
_COLUMN = {name: i for i, name in enumerate(COLUMNS)}
_TEXT = frozenset((str, type(None)))
_INT = frozenset((int, type(None)))
_NUMBER = frozenset((int, float, type(None)))
_TIME = frozenset((int, float))
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


def _plain(
    columns: list[tuple[Any, ...]],
    starts: tuple[Any, ...],
    status: tuple[Any, ...],
    dims: list[tuple[Any, ...]],
    tokens: list[tuple[Any, ...]],
    cost: tuple[Any, ...],
    took: tuple[Any, ...],
) -> bool:
    """Whether every row is one ``batch_cells`` computes as SQLite would (the module's docstring)."""
    return not (
        any(columns[_COLUMN["cache_hit"]])
        or not _TIME.issuperset(map(type, starts))
        or not isfinite(sum(starts))
        or not 0 <= min(starts)
        or not max(starts) < _START_LIMIT
        or not {str}.issuperset(map(type, status))
        or not all(_TEXT.issuperset(map(type, d)) for d in dims)
        or not all(_INT.issuperset(map(type, t)) for t in tokens)
        or not _NUMBER.issuperset(map(type, cost))
        or not _NUMBER.issuperset(map(type, took))
        # SQLite stores NaN as NULL and CAST(inf AS INTEGER) saturates where int() raises: any
        # such value makes a sum non-finite (so do huge finite ones: those go to SQLite too)
        or not isfinite(sum(filter(None, cost)))
        or not isfinite(sum(filter(None, took)))
    )


def batch_cells(
    rows: list[tuple[Any, ...]], ln_base: float
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]] | None:
    """The parameters of ``HOURLY_UPSERT`` and ``LATENCY_UPSERT`` that add ``rows`` (value tuples
    in table order, every one newly inserted) to the rollup, or None when one of them is not a
    row this computes exactly as SQLite would (the module's docstring): the caller then runs
    ``schema.rollup_add_statements()``. ``ln_base``: ``ln(LATENCY_BASE)`` as SQLite computes it.

    Column by column, with C iterators (``map``, ``zip``, ``sum``): a Python step per row costs
    more than SQLite's statements it replaces; the only loop per row groups the rows by cell."""
    if not rows:
        return [], []
    columns = list(zip(*rows, strict=True))
    c = _COLUMN
    starts, status = columns[c["start_time"]], columns[c["status"]]
    dims = [columns[c[name]] for name in ROLLUP_DIMS[:-2]]  # model, model_group, response_model, provider
    tokens = [columns[c[name]] for name in ("prompt_tokens", "completion_tokens", "total_tokens")]
    cost, took = columns[c["cost"]], columns[c["latency_ms"]]
    try:
        plain = _plain(columns, starts, status, dims, tokens, cost, took)
    except OverflowError:  # an int too large for a float
        plain = False
    if not plain:
        return None
    hours = list(map(mul, map(floordiv, map(int, starts), repeat(HOUR)), repeat(HOUR)))
    cells = list(zip(hours, *dims, status, strict=True))
    members: dict[tuple[Any, ...], list[int]] = {}
    for i, cell in enumerate(cells):
        found = members.get(cell)
        if found is None:
            members[cell] = [i]
        else:
            found.append(i)
    hourly_params: list[tuple[Any, ...]] = []
    latency_params: list[tuple[Any, ...]] = []
    everyone = len(members) == 1  # the usual batch: one hour, one deployment, all successes
    for (hour, *names), rows_in in members.items():
        text = "|".join([str(hour), *map(_quote, names), "0"])
        if "\x00" in text:
            return None
        if everyone:
            mine = tokens, cost, took
        else:  # the cell's values of each column, picked in C (one itemgetter call a column)
            pick = itemgetter(*rows_in) if len(rows_in) > 1 else lambda column, i=rows_in[0]: (column[i],)
            mine = [pick(t) for t in tokens], pick(cost), pick(took)
        cell_tokens, cell_cost, cell_took = mine
        requests = len(rows_in)
        sums = [sum(filter(None, t)) for t in cell_tokens]
        spent = float(sum(filter(None, cell_cost), 0.0))
        errors = 0 if names[-1] == "success" else requests
        hourly_params.append((text, hour, *names, 0, requests, errors, *sums, spent, 0.0))
        timed = [t for t in cell_took if t is not None]
        if timed:
            buckets = Counter(
                map(
                    int,
                    map(
                        truediv,
                        map(log, map(add, map(max, timed, repeat(0.0)), repeat(1.0))),
                        repeat(ln_base),
                    ),
                )
            )
            latency_text = text[: -len("|0")]  # the latency cells leave out cache_hit (always 0 here)
            latency_params.extend((latency_text, bucket, hour, *names, n) for bucket, n in buckets.items())
    return hourly_params, latency_params


__all__ = ["HOURLY_UPSERT", "LATENCY_UPSERT", "batch_cells"]
