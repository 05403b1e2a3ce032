"""SQLite's hourly rollup (schema version 3) gives the raw rows' answers: counts, tokens and
costs equal, latency percentiles within one histogram bucket; after redelivery, retention and a
backfill of rows stored before the rollup existed."""

from __future__ import annotations

import math
import random
import sqlite3
from typing import Any

import orjson
import pytest

from lmgate.store import Filters, open_store
from lmgate.store.rollup import bucket_width
from lmgate.store.rows import row_from_payload

T0 = 1_700_000_000.0  # not on an hour: ranges below start and end mid-hour
SPAN = 3 * 86400
N = 1500


def rows(seed: int = 7) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    out = []
    for i in range(N):
        start = T0 + rnd.uniform(0, SPAN)
        model = rnd.choice(["m-a", "m-b", "m-c"])
        hit = rnd.random() < 0.1
        ended = rnd.random() > 0.05
        body = {
            "litellm_call_id": f"r{i:05d}",
            "startTime": start,
            "endTime": start + rnd.lognormvariate(-1.5, 1.0) if ended else None,
            "status": "failure" if rnd.random() < 0.07 else "success",
            "model": model,
            "model_group": f"g-{model}",
            "custom_llm_provider": rnd.choice(["openai", "anthropic"]),
            "prompt_tokens": rnd.randint(1, 900),
            "completion_tokens": rnd.randint(0, 300),
            "total_tokens": rnd.randint(1, 1200),
            "response_cost": rnd.random() / 100,
            "cache_hit": hit,
            "saved_cache_cost": 0.01 if hit else 0.0,
            "metadata": {"user_api_key_hash": f"h{i % 4}"},
        }
        out.append(row_from_payload(orjson.dumps(body)))
    return out


FILTERS = [
    Filters(),
    Filters(since=T0 + 5000.5),
    Filters(until=T0 + SPAN - 7777.25),
    Filters(since=T0 + 3 * 3600 + 100, until=T0 + 40 * 3600 + 1234),
    Filters(since=T0 + 3600 * 10 + 5, until=T0 + 3600 * 10 + 1800),  # inside one hour: raw only
    Filters(model="g-m-b", since=T0 + 86400.3),
    Filters(provider="anthropic", status="failure"),
    Filters(status="success", until=T0 + 86400),
]


def assert_equivalent(got: Any, want: Any, where: str) -> None:
    if isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_equivalent(g, w, f"{where}[{i}]")
        return
    assert set(got) == set(want), where
    for k, w in want.items():
        g = got[k]
        if k.endswith("_ms"):
            assert (g is None) == (w is None) and (w is None or abs(g - w) <= bucket_width(w)), (
                f"{where}.{k}: {g} vs {w}"
            )
        elif isinstance(w, float) or isinstance(g, float):
            assert g is not None and math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12), (
                f"{where}.{k}: {g} vs {w}"
            )
        else:
            assert g == w, f"{where}.{k}: {g!r} vs {w!r}"


def check_against_raw(store: Any) -> None:
    def both(fn: Any) -> tuple[Any, Any]:
        store.use_rollup = True
        got = fn()
        store.use_rollup = False
        want = fn()
        store.use_rollup = True
        return got, want

    for f in FILTERS:
        got, want = both(lambda f=f: store.totals(f))
        assert_equivalent(got, want, f"totals {f}")
        for bucket in ("hour", "day"):
            for group_by in (None, "model", "provider"):
                got, want = both(lambda f=f, b=bucket, g=group_by: store.timeseries(b, f, g))
                assert_equivalent(got, want, f"timeseries {bucket} {group_by} {f}")
        for group_by in ("model", "provider", "day", "hour"):
            got, want = both(lambda f=f, g=group_by: store.stats(g, f))
            assert_equivalent(got, want, f"stats {group_by} {f}")


def rollup_cells(path: Any) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM calls_hourly WHERE requests > 0").fetchone()[0])


def test_rollup_answers_equal_the_raw_rows(tmp_path):
    path = tmp_path / "r.sqlite3"
    store = open_store(str(path))
    data = rows()
    store.write(data[:700])
    store.write(data[600:])  # 100 redelivered and 800 new in one batch: only the new are counted
    store.write(data[650:900])  # redelivered: stored once, counted once
    assert store.count() == N
    assert 0 < rollup_cells(path) < N  # the rollup is smaller than the rows it sums
    check_against_raw(store)
    store.close()


def test_retention_takes_deleted_rows_out_of_the_rollup(tmp_path):
    now = [T0 + SPAN]
    path = tmp_path / "r.sqlite3"
    store = open_store(str(path), retention_days=1.5, clock=lambda: now[0])
    store.write(rows())
    assert store.prune() > 0
    assert 0 < store.count() < N
    assert store.totals()["requests"] == store.count()
    check_against_raw(store)
    store.close()


def test_a_version_2_store_is_backfilled(tmp_path):
    path = tmp_path / "v2.sqlite3"
    store = open_store(str(path))
    store.write(rows())
    store.close()
    with sqlite3.connect(path) as conn:  # back to what version 2 made
        for trigger in ("calls_rollup_insert", "calls_rollup_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")  # version 4 has no insert trigger
        conn.execute("DROP TABLE calls_hourly")
        conn.execute("DROP TABLE calls_hourly_latency")
        conn.execute("UPDATE schema_version SET version = 2")
    store = open_store(str(path))
    assert rollup_cells(path) > 0
    check_against_raw(store)
    store.write(rows(seed=8)[:10])  # ids r00000..: already stored, ignored
    more = [dict(r, call_id=f"new-{i}") for i, r in enumerate(rows(seed=9)[:50])]
    store.write(more)  # the writes keep it from now on
    assert store.totals()["requests"] == N + 50
    check_against_raw(store)
    store.close()


@pytest.mark.parametrize("latency", [0.0, 0.4, 1.0, 9.99, 123.4, 5000.0, 60_000.0])
def test_a_percentile_is_within_its_bucket(tmp_path, latency):
    store = open_store(str(tmp_path / "one.sqlite3"))
    body = {"litellm_call_id": "one", "startTime": T0, "endTime": T0 + latency / 1000, "model": "m"}
    store.write([row_from_payload(orjson.dumps(body))])
    got = store.totals()["p50_ms"]
    store.use_rollup = False
    exact = store.totals()["p50_ms"]
    assert exact == pytest.approx(latency, abs=1e-3)
    assert abs(got - exact) <= bucket_width(exact)
    store.close()


def test_a_series_without_latency_has_the_same_sums_and_no_percentiles(tmp_path):
    store = open_store(str(tmp_path / "r.sqlite3"))
    store.write(rows())
    for use_rollup in (True, False):
        store.use_rollup = use_rollup
        for f in (Filters(since=T0 + 5000.5), Filters(key="h1")):
            full = store.timeseries("hour", f, group_by="model")
            bare = store.timeseries("hour", f, group_by="model", latency=False)
            assert all(r["p50_ms"] is None and r["p95_ms"] is None for r in bare)
            strip = {"p50_ms": None, "p95_ms": None}
            assert bare == [{**r, **strip} for r in full]
    store.close()
