"""The log store and the ``store`` logger: real SQLite files in temp dirs, calls through the real
send path against the fake provider; stored rows equal calls made, none lost, none twice."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import orjson
import pytest
from fakes import Reply

import lmgate
from lmgate.loggers.exporter import Batch
from lmgate.loggers.store import StoreExporter, StoreLogger
from lmgate.store import Filters, Page, open_store
from lmgate.store.rows import TRUNCATED_KEY, row_from_payload

pytest.importorskip("sqlalchemy")

KEY = "sk-test-store"


def params(fp, **kw):
    return {
        "model": "openai/gpt-4o-mini",
        "api_base": fp.base_url + "/v1",
        "api_key": KEY,
        "messages": [{"role": "user", "content": "hello store"}],
        **kw,
    }


def store_logger(tmp_path: Path, **kw) -> StoreLogger:
    return StoreLogger(path=str(tmp_path / "logs.sqlite3"), spool="off", flush_interval=60, **kw)


def test_sync_async_stream_and_failure_calls_are_stored_once_each(tmp_path, fake_provider):
    logger = store_logger(tmp_path)
    lmgate.callbacks = [logger]
    ok = lmgate.completion(**params(fake_provider, user="alice", metadata={"tags": ["t1"]}))
    streamed = "".join(
        c.choices[0].delta.content or "" for c in lmgate.completion(**params(fake_provider, stream=True))
    )
    assert streamed
    asyncio.run(lmgate.acompletion(**params(fake_provider)))

    async def async_stream() -> str:
        chunks = await lmgate.acompletion(**params(fake_provider, stream=True))
        return "".join([c.choices[0].delta.content or "" async for c in chunks])

    assert asyncio.run(async_stream())
    fake_provider.enqueue(Reply(status=400))
    with pytest.raises(lmgate.exceptions.BadRequestError):
        lmgate.completion(**params(fake_provider))
    assert logger.flush(10)
    store = logger.store
    rows = store.query(Filters(), Page(limit=100))
    assert len(rows) == 5 and len({r["call_id"] for r in rows}) == 5
    assert logger.stats()["delivered"] == 5
    assert sorted(r["status"] for r in rows) == ["failure", "success", "success", "success", "success"]
    first = store.get(ok._hidden_params.get("litellm_call_id") or rows[-1]["call_id"])
    assert first is not None
    by_status = {r["status"]: r for r in rows}
    failed = by_status["failure"]
    assert failed["error_class"] == "BadRequestError" and failed["provider"] == "openai"
    alice = store.query(Filters(user="alice"))
    assert len(alice) == 1 and alice[0]["tags"] == ["t1"] and alice[0]["prompt_tokens"] > 0
    assert alice[0]["cost"] > 0 and alice[0]["latency_ms"] >= 0 and alice[0]["ttft_ms"] is None
    streams = [r for r in rows if r["stream"]]
    assert len(streams) == 2 and all(r["ttft_ms"] is not None for r in streams)
    detail = store.get(alice[0]["call_id"])
    assert detail["payload"]["messages"] == [{"role": "user", "content": "hello store"}]
    # the file is WAL-mode SQLite, readable by any client
    with sqlite3.connect(tmp_path / "logs.sqlite3") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM calls").fetchone()[0] == 5
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 5


class FailsOnceAfterWriting(StoreExporter):
    """Writes the batch, then reports a failure once: the processor delivers the batch again."""

    def __init__(self, store) -> None:
        super().__init__(store)
        self.calls = 0

    def export(self, batch: Batch):
        outcomes = super().export(batch)
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("lost the answer after the commit")
        return outcomes


def test_a_batch_redelivered_after_a_failure_is_stored_once(tmp_path, fake_provider):
    from lmgate._retry import RetryPolicy
    from lmgate.loggers.batch import BatchLogger

    store = open_store(str(tmp_path / "logs.sqlite3"))
    exporter = FailsOnceAfterWriting(store)
    logger = BatchLogger(
        exporter,
        name="store-retry",
        spool="off",
        flush_interval=60,
        max_retries=3,
        retry_policy=RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0),
    )
    lmgate.callbacks = [logger]
    for _ in range(5):
        lmgate.completion(**params(fake_provider))
    assert logger.flush(10)
    assert exporter.calls >= 2
    assert store.count() == 5
    assert logger.stats()["delivered"] == 5 and not logger.stats()["dropped"]
    logger.close(5)


def test_write_is_idempotent_and_one_transaction(tmp_path):
    store = open_store(str(tmp_path / "x.sqlite3"))
    record = orjson.dumps(
        {
            "litellm_call_id": "c1",
            "startTime": 100.0,
            "endTime": 100.5,
            "status": "success",
            "model": "m",
            "custom_llm_provider": "openai",
            "metadata": {},
        }
    )
    row = row_from_payload(record)
    assert store.write([row]) == 1
    assert store.write([row, {**row, "call_id": "c2"}]) == 1
    assert store.count() == 2
    import sqlite3

    with pytest.raises(sqlite3.IntegrityError):  # a bad row fails the whole batch: nothing of it is written
        store.write([{**row, "call_id": "c3"}, {**row, "call_id": "c4", "status": None}])
    assert store.count() == 2
    store.close()


def test_records_that_are_not_payloads_are_dropped_and_counted(tmp_path):
    store = open_store(str(tmp_path / "x.sqlite3"))
    outcomes = StoreExporter(store).export(Batch([b'{"no": "id"}', b"[1]"], key="k"))
    assert [o.kind for o in outcomes] == ["drop", "drop"]
    store.close()


def test_an_oversized_record_is_truncated_and_flagged(tmp_path, fake_provider):
    logger = store_logger(tmp_path, max_record_bytes=8000)
    lmgate.callbacks = [logger]
    big = "x" * 10_000
    lmgate.completion(**{**params(fake_provider), "messages": [{"role": "user", "content": big}]})
    lmgate.completion(**params(fake_provider, user="small"))
    assert logger.flush(10)
    rows = {r["end_user"]: r for r in logger.store.query()}
    assert rows[None]["truncated"] and rows[None]["payload_bytes"] > 10_000
    assert not rows["small"]["truncated"]
    detail = logger.store.get(rows[None]["call_id"])
    assert (
        detail["payload"]["messages"] is None and detail["payload"][TRUNCATED_KEY]["original_bytes"] > 10_000
    )
    assert len(orjson.dumps(detail["payload"])) <= 8000
    assert detail["prompt_tokens"] is not None  # the columns keep what the payload lost


def test_retention_deletes_old_rows(tmp_path):
    now = [1_000_000.0]
    path = str(tmp_path / "x.sqlite3")
    store = open_store(path, retention_days=1, clock=lambda: now[0])
    base = {"litellm_call_id": "old", "startTime": now[0] - 2 * 86400, "status": "success", "metadata": {}}
    store.write(
        [
            row_from_payload(orjson.dumps(base)),
            row_from_payload(orjson.dumps({**base, "litellm_call_id": "new", "startTime": now[0] - 60})),
        ]
    )
    assert store.count() == 2
    assert store.prune() == 1
    assert [r["call_id"] for r in store.query()] == ["new"]
    store.close()
    with pytest.raises(ValueError, match="retention_days"):
        open_store(path, retention_days=0)


def test_filters_and_stats(tmp_path):
    store = open_store(str(tmp_path / "x.sqlite3"))
    rows = []
    for i in range(20):
        rows.append(
            row_from_payload(
                orjson.dumps(
                    {
                        "litellm_call_id": f"c{i:02d}",
                        "startTime": 1_699_920_000.0 + i * 3600,
                        "endTime": 1_699_920_000.0 + i * 3600 + (i + 1) / 1000,
                        "status": "failure" if i % 5 == 0 else "success",
                        "model": "a" if i % 2 else "b",
                        "custom_llm_provider": "openai",
                        "prompt_tokens": 1,
                        "completion_tokens": 2,
                        "total_tokens": 3,
                        "response_cost": 0.5,
                        "cache_hit": i == 3,
                        "metadata": {"user_api_key_alias": "k1" if i < 10 else "k2"},
                        "messages": [{"role": "user", "content": f"needle-{i}"}],
                    }
                )
            )
        )
    store.write(rows)
    assert len(store.query(Filters(model="a"), Page(limit=100))) == 10
    assert len(store.query(Filters(status="failure"), Page(limit=100))) == 4
    assert [r["call_id"] for r in store.query(Filters(search="needle-7"))] == ["c07"]
    assert [r["call_id"] for r in store.query(Filters(search="%"))] == []  # LIKE wildcards are literal
    assert len(store.query(Filters(since=1_699_920_000.0 + 5 * 3600, until=1_699_920_000.0 + 8 * 3600))) == 3
    assert [r["call_id"] for r in store.query(page=Page(limit=2, offset=1))] == ["c18", "c17"]
    by_model = {g["group"]: g for g in store.stats("model")}
    a = by_model["a"]
    assert a["requests"] == 10 and a["errors"] == 2 and a["total_tokens"] == 30 and a["cost"] == 5.0
    assert a["cache_hit_rate"] == pytest.approx(0.1)
    # from the hourly rollup's latency histogram: within a 10%-wide bucket (docs/store.md)
    assert a["p50_ms"] == pytest.approx(10.0, rel=0.1) and a["p99_ms"] == pytest.approx(20.0, rel=0.1)
    assert {g["group"] for g in store.stats("key")} == {"k1", "k2"}
    assert len(store.stats("hour")) == 20 and [g["group"] for g in store.stats("day")] == ["2023-11-14"]
    assert store.stats("hour")[0]["group"] == "2023-11-14 00:00"
    with pytest.raises(ValueError, match="group_by"):
        store.stats("colour")
    store.close()


def test_records_spooled_at_exit_are_stored_by_the_next_logger(tmp_path, fake_provider):
    spool_dir = tmp_path / "spool"
    logger = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"), spool="exit", spool_dir=str(spool_dir), flush_interval=60
    )
    lmgate.callbacks = [logger]
    logger.store.close()
    logger.exporter.store = _Unwritable()  # the database is out of reach at exit: records go to the spool
    for _ in range(3):
        lmgate.completion(**params(fake_provider))
    logger.close(0)
    lmgate.callbacks = []
    again = StoreLogger(
        path=str(tmp_path / "logs.sqlite3"), spool="exit", spool_dir=str(spool_dir), flush_interval=60
    )
    assert again.flush(10)
    assert again.store.count() == 3
    again.close(5)


class _Unwritable:
    def write(self, rows):
        raise OSError("disk gone")

    def close(self):
        pass


def test_store_is_a_named_callback(tmp_path, fake_provider, monkeypatch):
    monkeypatch.setenv("LMGATE_DATA_DIR", str(tmp_path / "data"))
    lmgate.callbacks = ["store"]
    lmgate.completion(**params(fake_provider))
    lmgate.flush_callbacks(10)
    store = open_store()
    assert store.path == str(tmp_path / "data" / "logs.sqlite3")
    assert store.count() == 1
    store.close()


def test_turn_off_message_logging_stores_no_messages(tmp_path, fake_provider):
    logger = store_logger(tmp_path, turn_off_message_logging=True)
    lmgate.callbacks = [logger]
    lmgate.completion(**params(fake_provider, user="quiet"))
    assert logger.flush(10)
    (row,) = logger.store.query()
    assert row["prompt_tokens"] > 0
    assert "hello store" not in orjson.dumps(logger.store.get(row["call_id"])["payload"]).decode()
    assert logger.store.query(Filters(search="hello store")) == []


def test_a_store_newer_than_this_lmgate_is_refused(tmp_path):
    path = tmp_path / "x.sqlite3"
    open_store(str(path)).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="version 99, newer than this lmgate knows"):
        open_store(str(path))


def test_a_generic_api_entry_named_store_stays_a_generic_api_logger(log_receiver):
    from lmgate._callbacks.registry import resolve_callback
    from lmgate.loggers.generic_api import GenericAPILogger

    lmgate.callback_settings = {"store": {"callback_type": "generic_api", "endpoint": log_receiver.url}}
    assert isinstance(resolve_callback("store"), GenericAPILogger)
