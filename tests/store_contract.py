"""The log store contract (``lmgate.store.base.LogStore``), one set of checks for every backend:
SQLite (a file), ClickHouse (tests/clickhouse.py: a real clickhouse-server) and PostgreSQL
(tests/pg.py). Collected through tests/test_store_contract.py.

Every backend gets the same records and must give the same answers: the rows each filter keeps
(and their order), one call with its payload, ``stats`` for every grouping, ``totals`` and
``timeseries``; a batch written twice is stored once. SQLite's answers are also checked against
values computed here from the records, so "the same as SQLite" means "right".
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from lmgate.store.base import BUCKETS, GROUP_BYS, SERIES_GROUP_BYS, Filters, Page, percentile
from lmgate.store.rows import row_from_payload

BACKENDS = ("sqlite", "clickhouse", "postgres")
T0 = 1_760_000_000.0  # 2025-10-09 08:53:20 UTC
MODELS = ("gpt-4o-mini", "claude-haiku", "gemini-flash")
PROVIDERS = {"gpt-4o-mini": "openai", "claude-haiku": "anthropic", "gemini-flash": "gemini"}


def payload(i: int) -> dict[str, Any]:
    """The i-th record: spread over models, keys, teams, users, statuses, tags, two days and
    their hours; latencies with ties; one call in 13 without an end (no latency)."""
    model = MODELS[i % 3]
    start = T0 + i * 1379.0  # ~23 minutes apart: 60 records span two UTC days
    latency = 0.1 * (i % 7) + 0.05
    ended = i % 13 != 5
    status = "failure" if i % 5 == 0 else "success"
    hit = i % 9 == 0
    return {
        "litellm_call_id": f"call-{i:03d}",
        "trace_id": f"trace-{i // 2}",
        "call_type": "acompletion",
        "model": model,
        "response_model": f"{model}-2025",
        "custom_llm_provider": PROVIDERS[model],
        "model_group": f"group-{model}",
        "model_id": f"dep-{i % 2}",
        "startTime": start,
        "endTime": start + latency if ended else None,
        "completionStartTime": start + latency / 2,
        "stream": i % 4 == 0,
        "status": status,
        "prompt_tokens": 10 + i,
        "completion_tokens": 2 * i,
        "total_tokens": 10 + 3 * i,
        "response_cost": round(0.0001 * (i + 1), 6),
        "cache_hit": hit,
        "saved_cache_cost": 0.002 if hit else 0.0,
        "request_tags": ["alpha", "beta"][: i % 3] if i % 3 else [],
        "end_user": f"end-{i % 4}" if i % 2 else None,
        "metadata": {
            "user_api_key_hash": f"hash-{i % 3}",
            "user_api_key_alias": f"key-{i % 3}" if i % 3 else None,
            "user_api_key_team_id": f"team-{i % 2}",
            "user_api_key_team_alias": "Search" if i % 2 else None,
            "user_api_key_user_id": f"user-{i % 5}" if i % 5 else None,
        },
        "error_information": {"error_class": "RateLimitError", "error_code": "429"}
        if status == "failure"
        else {},
        "messages": [{"role": "user", "content": f"question number {i} about Lighthouses"}],
        "response": {"choices": [{"message": {"content": f"answer {i}"}}]},
    }


N = 60
PAYLOADS = [payload(i) for i in range(N)]
ROWS = [row_from_payload(orjson.dumps(p)) for p in PAYLOADS]
BY_ID = {r["call_id"]: r for r in ROWS}

FILTERS = [
    Filters(),
    Filters(model="claude-haiku"),
    Filters(model="group-gpt-4o-mini"),  # a model group matches too
    Filters(provider="gemini"),
    Filters(key="key-1"),
    Filters(key="hash-0"),
    Filters(team="Search"),
    Filters(team="team-0"),
    Filters(user="user-3"),
    Filters(user="end-1"),
    Filters(status="failure"),
    Filters(since=T0 + 20 * 1379.0),
    Filters(until=T0 + 10 * 1379.0),
    Filters(since=T0 + 5 * 1379.0, until=T0 + 30 * 1379.0, model="gpt-4o-mini"),
    Filters(search="number 42 about"),
    Filters(search="LIGHTHOUSES"),  # case-insensitive (ASCII), as SQLite's LIKE
    Filters(trace_id="trace-7"),
]


def expected_ids(f: Filters) -> list[str]:
    """The call ids a filter keeps, newest first, computed from the records."""

    def keep(r: dict[str, Any]) -> bool:
        checks = [
            f.model is None or f.model in (r["model"], r["model_group"], r["response_model"]),
            f.provider is None or r["provider"] == f.provider,
            f.key is None or f.key in (r["key_hash"], r["key_alias"]),
            f.team is None or f.team in (r["team_id"], r["team_alias"]),
            f.user is None or f.user in (r["user_id"], r["end_user"]),
            f.status is None or r["status"] == f.status,
            f.since is None or r["start_time"] >= f.since,
            f.until is None or r["start_time"] < f.until,
            f.trace_id is None or r["trace_id"] == f.trace_id,
            f.search is None or f.search.lower() in r["payload"].lower(),
        ]
        return all(checks)

    kept = [r for r in ROWS if keep(r)]
    kept.sort(key=lambda r: (r["start_time"], r["call_id"]), reverse=True)
    return [r["call_id"] for r in kept]


def _open(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> Any:
    from lmgate.store import open_store

    if backend == "sqlite":
        return open_store(str(tmp_path / "contract.sqlite3"))
    if backend == "clickhouse":
        server = request.getfixturevalue("clickhouse_server")
        return open_store(type="clickhouse", url=server.create_database())
    pytest.importorskip("psycopg", reason="the PostgreSQL store uses psycopg 3 (the dev extra)")
    try:
        from lmgate.store.postgres import PostgresStore  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("no PostgreSQL log store in this build (lmgate.store.postgres)")
    url = request.getfixturevalue("fresh_postgres_url")
    return open_store(type="postgres", url=url)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    opened = _open(request.param, request, tmp_path)
    # two batches, the second delivered twice (a retry after a lost answer)
    opened.write(ROWS[:25])
    opened.write(ROWS[25:])
    opened.write(ROWS[25:])
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """SQLite with the same rows: the answers every backend must give."""
    from lmgate.store import open_store

    # every aggregate from the raw rows: exact percentiles (the rollup's are within a bucket)
    ref = open_store(str(tmp_path_factory.mktemp("reference") / "ref.sqlite3"), use_rollup=False)
    ref.write(ROWS)
    yield ref
    ref.close()


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if a is None or b is None:
            return a is b
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return bool(a == b)


def _within_a_bucket(got: Any, want: Any) -> bool:
    """A latency percentile answered from SQLite's hourly rollup: within one histogram bucket's
    width of the exact one (docs/store.md, "The hourly rollup")."""
    from lmgate.store.rollup import bucket_width

    if got is None or want is None:
        return got is want
    return bool(abs(got - want) <= bucket_width(want))


def assert_same(got: Any, want: Any, where: str = "", approx_percentiles: bool = False) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict), where
        assert set(got) == set(want), f"{where}: keys {sorted(set(got) ^ set(want))}"
        for k in want:
            if approx_percentiles and k in ("p50_ms", "p95_ms", "p99_ms"):
                assert _within_a_bucket(got[k], want[k]), f"{where}.{k}: {got[k]!r} != {want[k]!r}"
            else:
                assert_same(got[k], want[k], f"{where}.{k}", approx_percentiles)
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got!r} != {want!r}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]", approx_percentiles)
    else:
        assert _close(got, want), f"{where}: {got!r} != {want!r}"


def _rollup(store: Any) -> bool:
    return bool(getattr(store, "use_rollup", False))


def test_duplicate_batch_stored_once(store: Any) -> None:
    assert store.count() == N
    assert len(store.query(Filters(), Page(limit=1000))) == N


@pytest.mark.parametrize("f", FILTERS, ids=[repr(f)[8:60] for f in FILTERS])
def test_query_filters(store: Any, f: Filters) -> None:
    got = [r["call_id"] for r in store.query(f, Page(limit=1000))]
    assert got == expected_ids(f)
    assert store.count(f) == len(got)


def test_query_pages_and_columns(store: Any) -> None:
    first = store.query(Filters(), Page(limit=7))
    second = store.query(Filters(), Page(limit=7, offset=7))
    assert [r["call_id"] for r in first + second] == expected_ids(Filters())[:14]
    row = first[0]
    assert "payload" not in row
    want = {k: v for k, v in BY_ID[row["call_id"]].items() if k != "payload"}
    want["tags"] = orjson.loads(want["tags"])
    assert_same({k: row[k] for k in want}, want, row["call_id"])


def test_get(store: Any) -> None:
    for call_id in ("call-000", "call-005", "call-042"):
        got = store.get(call_id)
        want = dict(BY_ID[call_id])
        want["payload"] = orjson.loads(want["payload"])
        want["tags"] = orjson.loads(want["tags"])
        assert_same({k: got[k] for k in want}, want, call_id)
    assert store.get("no-such-call") is None


@pytest.mark.parametrize("group_by", GROUP_BYS)
def test_stats(store: Any, reference: Any, group_by: str) -> None:
    got = store.stats(group_by, Filters(since=T0 + 3 * 1379.0))
    want = reference.stats(group_by, Filters(since=T0 + 3 * 1379.0))
    assert_same(got, want, group_by, _rollup(store))


def test_stats_reference_is_right(reference: Any) -> None:
    by_model = {g["group"]: g for g in reference.stats("model")}
    rows = [r for r in ROWS if r["model"] == "claude-haiku"]
    latencies = sorted(r["latency_ms"] for r in rows if r["latency_ms"] is not None)
    got = by_model["claude-haiku"]
    assert got["requests"] == len(rows)
    assert got["errors"] == sum(r["status"] != "success" for r in rows)
    assert got["p95_ms"] == percentile(latencies, 0.95)
    assert math.isclose(got["cost"], sum(r["cost"] for r in rows))


def test_totals(store: Any, reference: Any) -> None:
    if not hasattr(store, "totals"):
        pytest.skip(f"{type(store).__name__} has no totals() yet")
    for f in (Filters(), Filters(model="gemini-flash"), Filters(status="failure"), Filters(since=T0 * 2)):
        assert_same(store.totals(f), reference.totals(f), repr(f), _rollup(store))
    everything = reference.totals()
    assert everything["requests"] == N
    assert math.isclose(everything["saved_cost"], 0.002 * sum(1 for r in ROWS if r["cache_hit"]))


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
@pytest.mark.parametrize("group_by", [None, *SERIES_GROUP_BYS])
def test_timeseries(store: Any, reference: Any, bucket: str, group_by: str | None) -> None:
    if not hasattr(store, "timeseries"):
        pytest.skip(f"{type(store).__name__} has no timeseries() yet")
    f = Filters(until=T0 + 40 * 1379.0)
    assert_same(
        store.timeseries(bucket, f, group_by),
        reference.timeseries(bucket, f, group_by),
        bucket,
        _rollup(store),
    )
