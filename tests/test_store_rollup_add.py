"""The rollup's additions computed in Python from a batch's rows (``store/rollup_add.py``) are the
cells SQLite's set-based statements (``schema.rollup_add_statements``) make from the same rows:
the same keys, dimensions, counts and buckets, sums equal (costs to float rounding)."""

from __future__ import annotations

import math
import random
import sqlite3
from typing import Any

import orjson
import pytest

from lmgate.store import open_store
from lmgate.store.rollup_add import batch_cells
from lmgate.store.rows import ROW_COLUMNS, row_from_payload
from lmgate.store.schema import COLUMNS, rollup_add_statements

T0 = 1_700_000_000.0
LN_BASE = math.log(1.1)


def boundary_latencies() -> list[float]:
    """Latencies on and next to the histogram's bucket edges (1.1**b - 1 ms)."""
    out = [0.0, -5.0, 1e-9]
    for b in (1, 2, 7, 30, 60, 90, 120):
        edge = 1.1**b - 1
        out += [edge, math.nextafter(edge, 0), math.nextafter(edge, math.inf)]
    return out


def payloads(seed: int, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    edges = boundary_latencies()
    out = []
    for i in range(n):
        start = T0 + rnd.uniform(0, 5 * 3600)
        latency = rnd.choice(edges) if rnd.random() < 0.3 else rnd.lognormvariate(5, 1.5)
        model = rnd.choice(["m-a", "it's", "m|b", None, ""])
        out.append(
            {
                "litellm_call_id": f"c{seed}-{i:05d}",
                "startTime": start,
                "endTime": None if rnd.random() < 0.05 else start + latency / 1000,
                "status": "failure" if rnd.random() < 0.1 else "success",
                "model": model,
                "model_group": rnd.choice([None, "g", "g'2"]),
                "response_model": rnd.choice([None, "r-1", "NULL"]),
                "custom_llm_provider": rnd.choice(["openai", "anthropic", None]),
                "prompt_tokens": rnd.choice([None, 0, rnd.randint(1, 900)]),
                "completion_tokens": rnd.randint(0, 300),
                "total_tokens": rnd.choice([None, rnd.randint(1, 1200)]),
                "response_cost": rnd.choice([None, 0, 0.0, rnd.random() / 100]),
                "cache_hit": False,
            }
        )
    return out


def rows_of(bodies: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    rows = [row_from_payload(orjson.dumps(b)) for b in bodies]
    return [tuple(r[c] for c in ROW_COLUMNS) for r in rows]


def tables(path: Any) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {
            name: sorted(conn.execute(f"SELECT * FROM {name}").fetchall(), key=lambda r: (r[0], r[1]))
            for name in ("calls_hourly", "calls_hourly_latency")
        }


def assert_same(got: dict[str, list[tuple[Any, ...]]], want: dict[str, list[tuple[Any, ...]]]) -> None:
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for g, w in zip(got[name], want[name], strict=True):
            assert len(g) == len(w)
            for a, b in zip(g, w, strict=True):
                if isinstance(b, float):
                    assert type(a) is float and math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), (name, g, w)
                else:
                    assert (type(a), a) == (type(b), b), (name, g, w)


def test_the_python_cells_are_the_sql_ones(tmp_path):
    batches = [rows_of(payloads(seed, 400)) for seed in (1, 2, 3)]
    # and a batch of one cell (one hour, one deployment, all successes), the usual one
    one_cell = payloads(4, 300)
    for i, body in enumerate(one_cell):
        body.update(model="m-a", model_group="g", response_model=None, custom_llm_provider="openai")
        body.update(status="success", startTime=T0 + 3600 * 7 + i)
        if body["endTime"] is not None:
            body["endTime"] = body["startTime"] + 0.01 * (i % 50)
    batches.append(rows_of(one_cell))
    for batch in batches:  # the rows this test writes take the Python path
        assert batch_cells(batch, LN_BASE) is not None
    by_python = tmp_path / "python.sqlite3"
    store = open_store(str(by_python))
    for batch in batches:
        assert store.write(batch) == len(batch)
    store.close()

    by_sql = tmp_path / "sql.sqlite3"
    open_store(str(by_sql)).close()  # the schema
    insert = f"INSERT INTO calls ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
    with sqlite3.connect(by_sql) as conn:
        for batch in batches:
            after = conn.execute("SELECT coalesce(max(rowid), 0) FROM calls").fetchone()[0]
            conn.executemany(insert, batch)
            for statement in rollup_add_statements():
                conn.execute(statement, (after,))
    got, want = tables(by_python), tables(by_sql)
    assert len(want["calls_hourly"]) > 20 and len(want["calls_hourly_latency"]) > 100
    assert sum(r[0].startswith(str(int(T0 + 3600 * 7) // 3600 * 3600)) for r in want["calls_hourly"]) >= 1
    assert_same(got, want)


def row_with(**values: Any) -> tuple[Any, ...]:
    base = dict(zip(ROW_COLUMNS, rows_of(payloads(9, 1))[0], strict=True))
    base.update(values)
    return tuple(base[c] for c in ROW_COLUMNS)


@pytest.mark.parametrize(
    "values",
    [
        {"cache_hit": True},  # its saved cost is read from the payload by SQLite
        {"start_time": -1.0},
        {"start_time": float("nan")},
        {"latency_ms": float("nan")},  # stored as NULL
        {"latency_ms": float("inf")},
        {"cost": float("nan")},
        {"prompt_tokens": 1.5},
        {"prompt_tokens": True},
        {"model": 7},
        {"model": "a\x00b"},  # quote() stops at the NUL
    ],
)
def test_rows_it_would_compute_otherwise_go_to_sqlite(tmp_path, values):
    row = row_with(**values)
    assert batch_cells([row_with(), row], LN_BASE) is None
    if isinstance(values.get("start_time"), float) and not values["start_time"] >= 0:
        return  # not a start time the store's rows carry
    store = open_store(str(tmp_path / "s.sqlite3"))
    assert store.write([row]) == 1  # written all the same, the rollup by the SQL statements
    store.close()
    with sqlite3.connect(tmp_path / "s.sqlite3") as conn:
        assert conn.execute("SELECT sum(requests) FROM calls_hourly").fetchone()[0] == 1
