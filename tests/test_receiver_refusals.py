"""A receiver that refuses a batch (413 too large, 400 a poisoned record) gets it again in halves,
down to single records; only what it refuses alone is dropped, counted by reason (issue 11, point 9)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from fakes import LogReceiver
from helpers import wal_lines

from lmgate import RetryPolicy
from lmgate.loggers import Batch, BatchLogger, GenericAPILogger, Outcome

FAST = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)


@pytest.fixture
def made() -> Iterator[list[BatchLogger]]:
    loggers: list[BatchLogger] = []
    yield loggers
    for lg in loggers:
        lg.close(0)


def generic(made: list[BatchLogger], receiver: LogReceiver, **kw: Any) -> GenericAPILogger:
    kw.setdefault("spool", "off")
    lg = GenericAPILogger(
        endpoint=receiver.url,
        batch_size=kw.pop("batch_size", 8),
        flush_interval=3600,
        retry_policy=FAST,
        **kw,
    )
    made.append(lg)
    return lg


def balanced(stats: dict[str, Any]) -> bool:
    return stats["emitted"] == stats["delivered"] + stats["dropped_total"] + stats["pending"]


def record(i: int, pad: int = 100, text: str = "") -> dict[str, Any]:
    return {"i": i, "pad": "x" * pad, "text": text}


def test_fake_receiver_refuses_large_bodies_and_poisoned_records(log_receiver: LogReceiver) -> None:
    """The fake receiver answers 413 above max_body_bytes and 400 to a body holding the poison marker."""
    log_receiver.max_body_bytes = 50
    log_receiver.poison = b"POISON"
    with httpx.Client() as client:
        statuses = [
            client.post(log_receiver.url, json=[{"a": "x" * 60}]).status_code,
            client.post(log_receiver.url, json=[{"a": "POISON"}]).status_code,
            client.post(log_receiver.url, json=[{"a": 1}]).status_code,
        ]
    assert statuses == [413, 400, 200]
    assert log_receiver.records == [{"a": 1}]


@pytest.mark.parametrize("log_format", ["json_array", "ndjson"])
def test_a_413_splits_the_batch_until_it_fits(made, log_receiver: LogReceiver, log_format: str) -> None:
    """A batch too large is resent in halves; every record that fits alone arrives once, the one too large alone is dropped as rejected_413."""
    log_receiver.max_body_bytes = 300  # two records of ~120 bytes fit, three do not
    lg = generic(made, log_receiver, log_format=log_format)
    for i in range(8):
        lg.enqueue(record(i, pad=400 if i == 5 else 100))
    assert lg.flush(20)
    assert sorted(r["i"] for r in log_receiver.records) == [0, 1, 2, 3, 4, 6, 7]
    assert [r["i"] for r in log_receiver.records] == [0, 1, 2, 3, 4, 6, 7]  # order kept (one batch in flight)
    stats = lg.stats()
    assert stats["dropped"] == {"rejected_413": 1}
    assert (stats["delivered"], stats["pending"]) == (7, 0) and balanced(stats)
    assert stats["splits"] >= 3
    keys = [r.headers["idempotency-key"] for r in log_receiver.all_requests]
    assert len(keys) == len(set(keys)), "each half carries a key of its own"
    assert all(r.status in (200, 413) for r in log_receiver.all_requests)


def test_a_400_isolates_the_poisoned_records(made, log_receiver: LogReceiver) -> None:
    """A batch refused with 400 is halved until the poisoned records stand alone: they are dropped as rejected_400, the rest delivered."""
    log_receiver.poison = b"POISON"
    lg = generic(made, log_receiver, batch_size=10)
    for i in range(10):
        lg.enqueue(record(i, text="POISON" if i in (2, 7) else "ok"))
    assert lg.flush(20)
    assert [r["i"] for r in log_receiver.records] == [0, 1, 3, 4, 5, 6, 8, 9]
    stats = lg.stats()
    assert stats["dropped"] == {"rejected_400": 2} and stats["delivered"] == 8 and balanced(stats)


def test_single_mode_drops_a_refused_record_without_splitting(made, log_receiver: LogReceiver) -> None:
    """One request per record: a refusal is final, the other records are delivered."""
    log_receiver.poison = b"POISON"
    lg = generic(made, log_receiver, log_format="single", batch_size=4)
    for i in range(4):
        lg.enqueue(record(i, text="POISON" if i == 1 else "ok"))
    assert lg.flush(20)
    assert sorted(r["i"] for r in log_receiver.records) == [0, 2, 3]
    assert len(log_receiver.all_requests) == 4
    stats = lg.stats()
    assert stats["dropped"] == {"rejected_400": 1} and stats["splits"] == 0 and balanced(stats)


def test_other_4xx_still_drop_the_batch(made, log_receiver: LogReceiver) -> None:
    """A 403 is not about the records: the batch is dropped as http_403, without halving."""
    log_receiver.set_status(403)
    lg = generic(made, log_receiver)
    for i in range(4):
        lg.enqueue(record(i))
    assert lg.flush(20)
    assert len(log_receiver.all_requests) == 1
    assert lg.stats()["dropped"] == {"http_403": 4}


class RefusingExporter:
    """Refuses (split) a request of more than two records, and any record holding ``refuse``;
    retries records holding ``stuck`` while ``stuck_until`` is not set; keeps what it delivers."""

    def __init__(self, reason: str = "rejected_413") -> None:
        self.reason = reason
        self.delivered: list[bytes] = []
        self.keys: list[str] = []
        self.stuck_until = threading.Event()
        self.stuck_seen = threading.Event()
        self.lock = threading.Lock()

    def export(self, batch: Batch) -> Outcome | Sequence[Outcome]:
        with self.lock:
            self.keys.append(batch.key)
        if len(batch.records) > 2 or any(b"refuse" in r for r in batch.records):
            return Outcome("split", self.reason)
        if any(b"stuck" in r for r in batch.records) and not self.stuck_until.is_set():
            self.stuck_seen.set()
            return Outcome("retry", "http_503")
        with self.lock:
            self.delivered.extend(batch.records)
        return Outcome("delivered")

    def close(self) -> None:
        pass


def test_split_batches_acknowledge_each_record_when_it_settles(made, tmp_path) -> None:
    """Write-ahead spool: halves delivered or dropped are acknowledged; a half still retried at close is
    the only thing the next process sends, once."""
    spool_dir = str(tmp_path / "spool")
    exporter = RefusingExporter()
    lg = BatchLogger(
        exporter,
        name="split-ack",
        spool="write_ahead",
        spool_dir=spool_dir,
        batch_size=8,
        flush_interval=3600,
        retry_policy=RetryPolicy(base_delay_s=0.01, max_delay_s=0.01),
    )
    made.append(lg)
    texts = ["ok", "ok", "refuse", "ok", "ok", "ok", "stuck", "ok"]
    for i, text in enumerate(texts):
        lg.enqueue(record(i, text=text))
    assert len(wal_lines(spool_dir)) == 8
    lg.flush(0)  # send now; the stuck half keeps being retried
    assert exporter.stuck_seen.wait(10)
    assert lg.close(0) is False
    # its last retry may still be under way in this process: it keeps the spool until then
    assert lg.processor.wait_released(10)
    stats = lg.stats()
    assert stats["dropped"] == {"rejected_413": 1} and balanced(stats)
    settled = stats["delivered"] + stats["dropped_total"]
    # the next process adopts only the records not settled: the stuck one and those waiting behind it
    nxt = RefusingExporter()
    nxt.stuck_until.set()
    lg2 = BatchLogger(
        nxt,
        name="split-ack",
        spool="write_ahead",
        spool_dir=spool_dir,
        batch_size=8,
        flush_interval=3600,
        retry_policy=FAST,
    )
    made.append(lg2)
    assert lg2.flush(10)
    resent = sorted(int(line.split(b'"i":')[1].split(b",")[0]) for line in nxt.delivered)
    first = sorted(int(line.split(b'"i":')[1].split(b",")[0]) for line in exporter.delivered)
    assert sorted(first + resent) == [0, 1, 3, 4, 5, 6, 7], "every record but the refused one, exactly once"
    assert 6 in resent and lg2.stats()["recovered"] == 8 - settled
    assert lg2.close(5)
    assert wal_lines(spool_dir) == []


def test_a_refused_half_keeps_its_key_when_resent(made) -> None:
    """A half that is retried goes out again under the same key; halves never reuse the batch's key."""
    exporter = RefusingExporter(reason="rejected_400")
    keys: list[str] = []
    original = exporter.export

    def flaky(batch: Batch) -> Outcome | Sequence[Outcome]:
        keys.append(batch.key)
        if len(keys) == 2:  # the first half's first try
            return Outcome("retry", "http_503")
        return original(batch)

    exporter.export = flaky  # type: ignore[method-assign]
    lg = BatchLogger(
        exporter, name="split-keys", spool="off", batch_size=4, flush_interval=3600, retry_policy=FAST
    )
    made.append(lg)
    for i in range(4):
        lg.enqueue(record(i))
    assert lg.flush(10)
    assert len(keys) == 4 and lg.stats()["delivered"] == 4
    batch_key, first_half, first_half_again, second_half = keys
    assert first_half == first_half_again
    assert len({batch_key, first_half, second_half}) == 3
    assert first_half.startswith(batch_key + "-") and second_half.startswith(batch_key + "-")
