"""The read side of the log store every page uses: ``totals``, ``timeseries`` and the ``tag``
grouping, on a real SQLite file, checked against sums worked out by hand from the rows written."""

from __future__ import annotations

import sqlite3

import orjson
import pytest

from lmgate.store import Filters, open_store
from lmgate.store.base import SERIES_FIELDS, TOTALS_FIELDS
from lmgate.store.rows import row_from_payload

pytest.importorskip("sqlalchemy")

T0 = 1_699_920_000.0  # 2023-11-14 00:00:00 UTC, a whole day


def payload(i: int, **over: object) -> bytes:
    body = {
        "litellm_call_id": f"c{i:02d}",
        "startTime": T0 + i * 600,  # every ten minutes
        "endTime": T0 + i * 600 + (i + 1) / 100,  # latency (i + 1) * 10 ms
        "status": "failure" if i % 4 == 0 else "success",
        "model": "a" if i % 2 else "b",
        "custom_llm_provider": "openai",
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "total_tokens": 15,
        "response_cost": 0.25,
        "cache_hit": i == 3,
        "saved_cache_cost": 0.125 if i == 3 else 0.0,
        "request_tags": ["red", "blue"] if i < 4 else (["red"] if i < 8 else []),
        "metadata": {"user_api_key_hash": "h1" if i < 6 else "h2"},
    }
    body.update(over)
    return orjson.dumps(body)


@pytest.fixture
def store(tmp_path):
    s = open_store(str(tmp_path / "q.sqlite3"))
    s.write([row_from_payload(payload(i)) for i in range(12)])
    yield s
    s.close()


def test_totals_sum_everything_that_matches(store):
    t = store.totals()
    assert tuple(t) == TOTALS_FIELDS
    assert t["requests"] == 12 and t["errors"] == 3 and t["error_rate"] == pytest.approx(0.25)
    assert t["prompt_tokens"] == 120 and t["completion_tokens"] == 60 and t["total_tokens"] == 180
    assert t["cost"] == pytest.approx(3.0) and t["saved_cost"] == pytest.approx(0.125)
    assert t["cache_hit_rate"] == pytest.approx(1 / 12)
    # latencies 10..120 ms: nearest-rank p50 is the 6th, p95 the 12th (from the rollup's
    # histogram: within a 10%-wide bucket; a key filter reads the raw rows, exactly)
    assert t["p50_ms"] == pytest.approx(60.0, rel=0.1) and t["p95_ms"] == pytest.approx(120.0, rel=0.1)
    mine = store.totals(Filters(key="h2"))
    assert mine["requests"] == 6 and mine["cost"] == pytest.approx(1.5) and mine["saved_cost"] == 0


def test_totals_of_nothing_are_zero_requests_and_none(store):
    t = store.totals(Filters(model="nope"))
    assert t["requests"] == 0 and t["errors"] == 0
    assert all(t[name] is None for name in TOTALS_FIELDS if name not in ("requests", "errors"))


def test_timeseries_buckets_are_utc_aligned_and_sorted(store):
    hours = store.timeseries("hour")
    assert [tuple(r) for r in hours] == [SERIES_FIELDS] * 2
    assert [r["bucket_start"] for r in hours] == [T0, T0 + 3600]
    first, second = hours
    assert first["group"] is None and first["requests"] == 6 and first["errors"] == 2  # c00, c04
    assert second["requests"] == 6 and second["errors"] == 1 and second["total_tokens"] == 90
    assert first["p50_ms"] == pytest.approx(30.0, rel=0.1) and first["p95_ms"] == pytest.approx(60.0, rel=0.1)
    assert second["cost"] == pytest.approx(1.5)
    minutes = store.timeseries("minute", Filters(since=T0 + 1200, until=T0 + 2400))
    assert [(r["bucket_start"], r["requests"]) for r in minutes] == [(T0 + 1200, 1), (T0 + 1800, 1)]
    days = store.timeseries("day")
    assert len(days) == 1 and days[0]["bucket_start"] == T0 and days[0]["requests"] == 12
    assert all(isinstance(r["bucket_start"], int) for r in days + hours)


def test_timeseries_per_group(store):
    rows = store.timeseries("hour", group_by="model")
    assert [(r["bucket_start"] - T0, r["group"], r["requests"]) for r in rows] == [
        (0, "a", 3),
        (0, "b", 3),
        (3600, "a", 3),
        (3600, "b", 3),
    ]
    tagged = store.timeseries("day", group_by="tag")
    assert [(r["group"], r["requests"]) for r in tagged] == [(None, 4), ("blue", 4), ("red", 8)]


def test_stats_by_tag_counts_a_call_under_each_tag(store):
    by_tag = {g["group"]: g for g in store.stats("tag")}
    assert set(by_tag) == {"red", "blue", None}
    assert by_tag["red"]["requests"] == 8 and by_tag["blue"]["requests"] == 4
    assert by_tag[None]["requests"] == 4 and by_tag["blue"]["errors"] == 1  # c00
    assert by_tag["blue"]["p50_ms"] == pytest.approx(20.0) and "saved_cost" not in by_tag["red"]
    assert store.stats("tag", Filters(search="nothing-like-it")) == []


def test_bad_buckets_and_groupings_are_refused(store):
    with pytest.raises(ValueError, match="bucket must be one of minute, hour, day"):
        store.timeseries("week")
    with pytest.raises(ValueError, match="group_by must be one of"):
        store.timeseries("hour", group_by="day")


def test_a_trace_filter_keeps_the_calls_of_one_trace(tmp_path):
    s = open_store(str(tmp_path / "t.sqlite3"))
    s.write([row_from_payload(payload(i, trace_id="tA" if i < 3 else f"t{i}")) for i in range(6)])
    assert [r["call_id"] for r in s.query(Filters(trace_id="tA"))] == ["c02", "c01", "c00"]
    assert s.totals(Filters(trace_id="t4"))["requests"] == 1
    s.close()


def test_a_time_range_is_read_from_the_covering_time_index(tmp_path):
    s = open_store(str(tmp_path / "wide.sqlite3"))
    s.write(
        [row_from_payload(payload(i % 12, litellm_call_id=f"w{i}", startTime=T0 + i)) for i in range(600)]
    )
    with sqlite3.connect(tmp_path / "wide.sqlite3") as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT latency_ms, cost, total_tokens, status, model FROM calls WHERE start_time >= ?",
            (T0,),
        ).fetchall()
    assert "COVERING INDEX ix_calls_start_cover" in str(plan)
    wide, narrow = Filters(since=T0 + 10), Filters(since=T0 + 590)
    assert s.totals(wide)["requests"] == 590 and s.totals(narrow)["requests"] == 10
    assert s.totals(wide)["cost"] == pytest.approx(590 * 0.25)
    assert sum(r["requests"] for r in s.timeseries("minute", wide)) == 590
    s.close()


def test_a_version_1_store_gets_the_covering_time_index(tmp_path):
    path = tmp_path / "v1.sqlite3"
    s = open_store(str(path))
    s.write([row_from_payload(payload(i)) for i in range(3)])
    s.close()
    with sqlite3.connect(path) as conn:  # back to what version 1 made
        conn.execute("DROP INDEX ix_calls_start_cover")
        conn.execute("CREATE INDEX ix_calls_start ON calls (start_time)")
        for trigger in ("calls_rollup_insert", "calls_rollup_delete"):
            conn.execute(f"DROP TRIGGER IF EXISTS {trigger}")  # version 4 has no insert trigger
        conn.execute("DROP TABLE calls_hourly")
        conn.execute("DROP TABLE calls_hourly_latency")
        conn.execute("UPDATE schema_version SET version = 1")
    s = open_store(str(path))
    assert s.totals()["requests"] == 3
    s.close()
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 5
    assert "ix_calls_start_cover" in names and "ix_calls_start" not in names
