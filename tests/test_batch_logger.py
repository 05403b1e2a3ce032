"""The batching base with in-process exporters: triggers, partial outcomes, bounds, the dispatcher seam."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from helpers import wal_lines

import lmgate
from lmgate import RetryPolicy
from lmgate.loggers import (
    Batch,
    BatchLogger,
    GenericAPILogger,
    InMemoryExporter,
    LoggerConfigError,
    Outcome,
    Spool,
)

MESSAGES = [{"role": "user", "content": "Hi"}]
FAST = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)


class SignallingExporter(InMemoryExporter):
    """Keeps batches and lets a test wait for the n-th one."""

    def __init__(self) -> None:
        super().__init__()
        self.cond = threading.Condition()

    def export(self, batch: Batch) -> Outcome:
        outcome = super().export(batch)
        with self.cond:
            self.cond.notify_all()
        return outcome

    def wait_batches(self, n: int, timeout: float = 10) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.batches) >= n, timeout)


def join_delivery_threads(lg: BatchLogger) -> None:
    """Wait (bounded) for a closed logger's delivery threads to end; fail if one does not."""
    for thread in threading.enumerate():
        if thread.name.startswith(f"lmgate-batch-{lg.name}-w"):
            thread.join(10)
            assert not thread.is_alive(), thread.name


@pytest.fixture
def loggers() -> Iterator[list[BatchLogger]]:
    made: list[BatchLogger] = []
    yield made
    for lg in made:
        lg.close(0)


def make(made: list[BatchLogger], exporter: Any, name: str = "test", **kw: Any) -> BatchLogger:
    kw.setdefault("spool", "off")
    kw.setdefault("retry_policy", FAST)
    lg = BatchLogger(exporter, name=name, **kw)
    made.append(lg)
    return lg


def test_batch_size_sends_without_a_flush(loggers) -> None:
    """A full batch goes out on its own; the rest waits for the interval or a flush."""
    exporter = SignallingExporter()
    lg = make(loggers, exporter, batch_size=4, flush_interval=3600)
    for i in range(5):
        lg.enqueue({"i": i})
    assert exporter.wait_batches(1)
    assert [len(b.records) for b in exporter.batches] == [4]
    assert lg.flush(10)
    assert exporter.records == [{"i": i} for i in range(5)]


def test_flush_interval_sends_a_partial_batch(loggers) -> None:
    """A partial batch goes out once its oldest record has waited flush_interval."""
    exporter = SignallingExporter()
    lg = make(loggers, exporter, batch_size=100, flush_interval=0.05)
    lg.enqueue({"i": 0})
    assert exporter.wait_batches(1)
    assert exporter.records == [{"i": 0}]


def test_per_record_outcomes_retry_only_the_failed(loggers) -> None:
    """An exporter answering per record gets only the failed ones again, with their original record keys."""
    seen: list[list[str]] = []

    class Flaky:
        def export(self, batch: Batch) -> Sequence[Outcome]:
            seen.append([batch.record_key(i) for i in range(len(batch.records))])
            if len(seen) == 1:
                return [Outcome("delivered"), Outcome("retry", "http_503"), Outcome("drop", "http_400")]
            return [Outcome("delivered")] * len(batch.records)

        def close(self) -> None:
            pass

    lg = make(loggers, Flaky(), batch_size=3)
    for i in range(3):
        lg.enqueue({"i": i})
    assert lg.flush(10)
    assert seen[1] == [seen[0][1]]
    s = lg.stats()
    assert (s["delivered"], s["dropped"], s["retried"], s["pending"]) == (2, {"http_400": 1}, 1, 0)


def test_an_exporter_that_raises_is_retried(loggers, caplog) -> None:
    """An exporter raising is treated as retryable, logged once, and the batch is delivered later."""
    exporter = SignallingExporter()
    calls = [0]

    class Broken:
        def export(self, batch: Batch) -> Outcome:
            calls[0] += 1
            if calls[0] <= 3:
                raise RuntimeError("boom")
            return exporter.export(batch)

        def close(self) -> None:
            pass

    lg = make(loggers, Broken())
    lg.enqueue({"x": 1})
    assert lg.flush(10)
    assert exporter.records == [{"x": 1}]
    assert caplog.text.count("exporter error") == 1


def test_queue_bytes_bound_drops_oldest(loggers) -> None:
    """The byte bound drops the oldest records and counts them."""
    gate, entered = threading.Event(), threading.Event()

    class Stuck(InMemoryExporter):
        def export(self, batch: Batch) -> Outcome:
            entered.set()
            gate.wait(10)
            return super().export(batch)

    exporter = Stuck()
    lg = make(loggers, exporter, batch_size=1, max_queue_bytes=100, max_in_flight=1)
    lg.enqueue({"first": 1})
    assert entered.wait(10)  # the worker is busy with the first record
    for i in range(20):
        lg.enqueue({"pad": "x" * 20, "i": i})  # ~30 bytes each: about three fit in 100
    s = lg.stats()
    assert s["queued_bytes"] <= 100 and s["dropped"]["queue_full"] == 20 - s["queued"]
    gate.set()
    assert lg.flush(10)
    assert [r.get("i") for r in exporter.records][-1] == 19


@pytest.mark.parametrize(
    ("list_name", "expected"),
    [
        ("callbacks", ["success", "failure"]),
        ("success_callback", ["success"]),
        ("failure_callback", ["failure"]),
    ],
)
def test_terminal_events_follow_the_list_roles(loggers, list_name: str, expected: list[str]) -> None:
    """A batch logger in success_callback gets successes only, in failure_callback failures only."""
    exporter = InMemoryExporter()
    lg = make(loggers, exporter)
    setattr(lmgate, list_name, [lg])
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok")
    with pytest.raises(lmgate.RateLimitError):
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="lmgate.RateLimitError")
    assert lmgate.flush_callbacks(10)
    assert [r["status"] for r in exporter.records] == expected


def test_record_is_queued_when_the_call_returns(loggers) -> None:
    """Terminal events reach the logger on the caller's path: it counts the record before any flush."""
    lg = make(loggers, InMemoryExporter(), flush_interval=3600)
    lmgate.callbacks = [lg]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="ok")
    assert lg.stats()["emitted"] == 1


def test_redacting_logger_ships_redacted_payloads(loggers) -> None:
    """turn_off_message_logging on the logger ships payloads without the prompt or completion text."""
    exporter = InMemoryExporter()
    lg = make(loggers, exporter, turn_off_message_logging=True)
    lmgate.callbacks = [lg]
    lmgate.completion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "secret prompt"}],
        mock_response="secret answer",
    )
    assert lmgate.flush_callbacks(10)
    text = str(exporter.records)
    assert "secret prompt" not in text and "secret answer" not in text


def test_flush_callbacks_covers_registered_loggers_used_directly(loggers) -> None:
    """lmgate.flush_callbacks flushes a batch logger that was fed directly, not through a call."""
    exporter = InMemoryExporter()
    lg = make(loggers, exporter, flush_interval=3600)
    lg.enqueue({"direct": True})
    assert lmgate.flush_callbacks(10)
    assert exporter.records == [{"direct": True}]


def test_env_defaults_for_batch_settings(monkeypatch, tmp_path) -> None:
    """DEFAULT_BATCH_SIZE and DEFAULT_FLUSH_INTERVAL_SECONDS set the defaults; a bad value is named."""
    monkeypatch.setenv("DEFAULT_BATCH_SIZE", "250")
    monkeypatch.setenv("DEFAULT_FLUSH_INTERVAL_SECONDS", "2.5")
    lg = GenericAPILogger(endpoint="http://127.0.0.1:9/x", spool="off")
    try:
        assert (lg.batch_size, lg.flush_interval) == (250, 2.5)
    finally:
        lg.close(0)
    monkeypatch.setenv("DEFAULT_BATCH_SIZE", "lots")
    with pytest.raises(LoggerConfigError, match="DEFAULT_BATCH_SIZE"):
        GenericAPILogger(endpoint="http://127.0.0.1:9/x", spool="off")


def test_defaults_match_the_spec(monkeypatch) -> None:
    """Without settings: batch_size 100, flush_interval 5 s (the reference's), json_array, both event types."""
    monkeypatch.delenv("DEFAULT_BATCH_SIZE", raising=False)
    monkeypatch.delenv("DEFAULT_FLUSH_INTERVAL_SECONDS", raising=False)
    lg = GenericAPILogger(endpoint="http://127.0.0.1:9/x", spool="off")
    try:
        assert (lg.batch_size, lg.flush_interval, lg.log_format) == (100, 5.0, "json_array")
        assert lg._events == {"success", "failure"}
    finally:
        lg.close(0)


class GatedExporter(InMemoryExporter):
    """Every export waits for the test to open the gate; the test can wait until n exports are waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.cond = threading.Condition()
        self.waiting = 0

    def export(self, batch: Batch) -> Outcome:
        with self.cond:
            self.waiting += 1
            self.cond.notify_all()
        self.gate.wait(10)
        return super().export(batch)

    def wait_waiting(self, n: int) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.waiting >= n, 10)


def test_up_to_max_in_flight_batches_travel_at_once(loggers) -> None:
    """With max_in_flight=3 three batches are on the wire together and the rest wait in the queue."""
    exporter = GatedExporter()
    lg = make(loggers, exporter, batch_size=2, flush_interval=3600, max_in_flight=3)
    for i in range(10):
        lg.enqueue({"i": i})
    assert not lg.flush(0)  # makes every record due without waiting
    assert exporter.wait_waiting(3)
    s = lg.stats()
    assert (s["in_flight_batches"], s["in_flight"], s["queued"]) == (3, 6, 4)
    assert s["emitted"] == s["delivered"] + s["dropped_total"] + s["pending"] == 10
    exporter.gate.set()
    assert lg.flush(10)
    assert sorted(r["i"] for r in exporter.records) == list(range(10))
    assert lg.stats()["delivered"] == 10 and lg.stats()["in_flight_batches"] == 0


def test_max_in_flight_one_keeps_strict_order(loggers) -> None:
    """One batch at a time: records arrive in the order they were emitted, across many batches."""
    exporter = InMemoryExporter()
    lg = make(loggers, exporter, batch_size=3, flush_interval=3600, max_in_flight=1)
    for i in range(100):
        lg.enqueue({"i": i})
    assert lg.flush(10)
    assert [r["i"] for r in exporter.records] == list(range(100))


def test_no_new_batch_starts_while_one_is_retried(loggers) -> None:
    """While a batch is being retried no other batch starts: later records wait in the queue, and
    the retry comes before anything new once the receiver answers again."""
    in_backoff, resume = threading.Event(), threading.Event()

    def sleep(_: float) -> None:
        in_backoff.set()
        resume.wait(10)

    calls: list[tuple[str, int]] = []  # (idempotency key, records) per export, in call order

    class FailsOnce(InMemoryExporter):
        def export(self, batch: Batch) -> Outcome:
            calls.append((batch.key, len(batch.records)))
            if len(calls) == 1:
                return Outcome("retry", "http_503")
            return super().export(batch)

    exporter = FailsOnce()
    policy = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0, sleep=sleep)
    lg = make(loggers, exporter, batch_size=1, flush_interval=3600, max_in_flight=3, retry_policy=policy)
    lg.enqueue({"i": 0})
    assert not lg.flush(0)
    assert in_backoff.wait(10)  # the first batch failed and waits to be retried
    for i in range(1, 6):
        lg.enqueue({"i": i})
    assert not lg.flush(0)  # due now, yet no idle delivery thread may start them
    s = lg.stats()
    assert (s["retrying_batches"], s["in_flight_batches"], s["queued"]) == (1, 1, 5)
    resume.set()
    assert lg.flush(10)
    first_key = calls[0][0]
    assert [key for key, _ in calls[:2]] == [first_key, first_key]  # the retry came before anything new
    assert first_key not in [key for key, _ in calls[2:]]
    assert sorted(r["i"] for r in exporter.records) == list(range(6))
    s = lg.stats()
    assert (s["retried"], s["retrying_batches"], s["delivered"]) == (1, 0, 6)


def test_batches_in_flight_when_the_receiver_fails_retry_before_anything_new(loggers) -> None:
    """Three batches fail together: each is retried with its own backoff, the gate holds the rest
    of the queue until all three are through, and it comes down afterwards."""
    cond = threading.Condition()
    arrived: list[str] = []  # first attempts of the three batches meet here, then all fail
    calls: list[str] = []
    backing_off, resume = [0], threading.Event()

    def sleep(_: float) -> None:
        with cond:
            backing_off[0] += 1
            cond.notify_all()
        resume.wait(10)

    class FailsTogether(InMemoryExporter):
        def export(self, batch: Batch) -> Outcome:
            with cond:
                calls.append(batch.key)
                if batch.key in arrived:
                    pass  # a retry: delivered below
                elif len(arrived) < 3:
                    arrived.append(batch.key)
                    cond.notify_all()
                    cond.wait_for(lambda: len(arrived) == 3, 10)
                    return Outcome("retry", "connection_error")
            return super().export(batch)

    exporter = FailsTogether()
    policy = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0, sleep=sleep)
    lg = make(loggers, exporter, batch_size=1, flush_interval=3600, max_in_flight=3, retry_policy=policy)
    for i in range(3):
        lg.enqueue({"i": i})
    assert not lg.flush(0)
    with cond:
        assert cond.wait_for(lambda: backing_off[0] == 3, 10)
    for i in range(3, 8):
        lg.enqueue({"i": i})
    assert not lg.flush(0)
    s = lg.stats()
    assert (s["retrying_batches"], s["in_flight_batches"], s["queued"]) == (3, 3, 5)
    resume.set()
    assert lg.flush(10)
    assert sorted(calls[3:6]) == sorted(arrived)  # the three retries, before any new batch
    assert not set(calls[6:]) & set(arrived)
    assert sorted(r["i"] for r in exporter.records) == list(range(8))
    assert lg.stats()["retrying_batches"] == 0


def test_gate_comes_down_when_retries_run_out(loggers) -> None:
    """max_retries exhausted: the batch is dropped and counted, and the queue behind it flows."""

    class FailsThrice(InMemoryExporter):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 3

        def export(self, batch: Batch) -> Outcome:
            if self.failures:
                self.failures -= 1
                return Outcome("retry", "http_503")
            return super().export(batch)

    exporter = FailsThrice()
    lg = make(loggers, exporter, batch_size=1, flush_interval=3600, max_in_flight=1, max_retries=2)
    for i in range(5):
        lg.enqueue({"i": i})
    assert lg.flush(10)
    s = lg.stats()
    assert s["dropped"] == {"retries_exhausted": 1} and s["delivered"] == 4 and s["retrying_batches"] == 0
    assert [r["i"] for r in exporter.records] == [1, 2, 3, 4]


def test_close_during_a_retry_stops_every_delivery_thread(loggers, tmp_path) -> None:
    """close() while a batch waits to be retried: the backoff is cut short, the gate comes down,
    every delivery thread ends, and what was in flight or queued is spooled and counted."""
    entered = threading.Event()

    class AlwaysDown(InMemoryExporter):
        def export(self, batch: Batch) -> Outcome:
            entered.set()
            return Outcome("retry", "connection_error")

    slow = RetryPolicy(base_delay_s=3600.0, max_delay_s=3600.0)  # waits on the logger's abort event
    lg = make(
        loggers,
        AlwaysDown(),
        name="close-during-retry",
        batch_size=1,
        flush_interval=3600,
        max_in_flight=3,
        retry_policy=slow,
        spool="exit",
        spool_dir=str(tmp_path),
    )
    for i in range(4):
        lg.enqueue({"i": i})
    assert not lg.flush(0)
    assert entered.wait(10)
    assert not lg.close(0)
    join_delivery_threads(lg)
    s = lg.stats()
    assert s["retrying_batches"] == 0 and s["spooled"] == 4
    assert s["emitted"] == s["delivered"] + s["dropped_total"] + s["pending"] == 4


@pytest.mark.parametrize("spool", ["off", "exit"])
def test_an_export_that_finishes_after_close_is_counted_once(loggers, tmp_path, spool: str) -> None:
    """Batches in flight at close() are counted as spooled (or lost, spool off); when their export
    then succeeds they move to delivered — never counted twice — and, spooled, are acknowledged
    so the next process does not send them again."""
    exporter = GatedExporter()
    lg = make(
        loggers,
        exporter,
        name=f"late-{spool}",
        batch_size=1,
        flush_interval=3600,
        max_in_flight=3,
        spool=spool,
        spool_dir=str(tmp_path / "spool"),
    )
    for i in range(3):
        lg.enqueue({"i": i})
    assert not lg.flush(0)
    assert exporter.wait_waiting(3)
    assert not lg.close(0)
    s = lg.stats()
    assert (s["spooled"], s["dropped_total"]) == ((3, 0) if spool == "exit" else (0, 3))
    exporter.gate.set()
    join_delivery_threads(lg)
    s = lg.stats()
    assert (s["delivered"], s["dropped"], s["pending"], s["spooled"]) == (3, {}, 0, 0)
    assert s["emitted"] == s["delivered"] + s["dropped_total"] + s["pending"]
    if spool == "exit":
        again = InMemoryExporter()
        lg2 = make(loggers, again, spool="exit", spool_dir=str(tmp_path / "spool"))
        assert lg2.flush(10)
        assert again.records == [] and lg2.stats()["recovered"] == 0


def test_a_malformed_exporter_answer_is_retried_not_stranded(loggers) -> None:
    """An exporter returning the wrong number of outcomes is treated like one that raised: the
    batch is retried (here: given up after max_retries) and flush() still completes."""

    class WrongShape(InMemoryExporter):
        def export(self, batch: Batch) -> Sequence[Outcome]:  # type: ignore[override]
            return [Outcome("delivered")]  # one outcome for a batch of three

    lg = make(loggers, WrongShape(), batch_size=3, flush_interval=3600, max_retries=1)
    for i in range(3):
        lg.enqueue({"i": i})
    assert lg.flush(10)
    s = lg.stats()
    assert s["dropped"] == {"retries_exhausted": 3} and s["in_flight_batches"] == 0


def test_closed_logger_adopts_nothing(loggers, tmp_path) -> None:
    """A delivery finishing after close() does not adopt spooled segments into the closed logger:
    they stay on disk, whole, for the next logger."""
    directory = str(tmp_path / "spool")
    for segment in range(3):  # three segments left by dead processes
        dead = Spool(directory)
        dead.append([b'{"s":%d,"i":%d}' % (segment, i) for i in range(3)])
        dead.close()
    exporter = GatedExporter()
    lg = make(loggers, exporter, name="adopts", spool="exit", spool_dir=directory, max_queue_records=4)
    assert exporter.wait_waiting(1)  # delivering the first adopted segment; more is on disk
    assert not lg.close(0)
    exporter.gate.set()
    join_delivery_threads(lg)
    assert lg.stats()["queued"] == 0
    again = InMemoryExporter()
    lg2 = make(loggers, again, spool="exit", spool_dir=directory)
    assert lg2.flush(10)
    delivered_first = {(r["s"], r["i"]) for r in exporter.records}
    assert {(r["s"], r["i"]) for r in again.records} | delivered_first == {
        (s, i) for s in range(3) for i in range(3)
    }
    assert not {(r["s"], r["i"]) for r in again.records} & delivered_first


def test_write_ahead_spool_order_is_queue_order_with_concurrent_producers(loggers, tmp_path) -> None:
    """Four threads write ahead at once: the spool's lines are in the order the queue hands them
    out (stable batch keys for a restarted process depend on it)."""
    exporter = InMemoryExporter()
    directory = tmp_path / "spool"
    lg = make(
        loggers,
        exporter,
        batch_size=10_000,
        flush_interval=3600,
        spool="write_ahead",
        spool_dir=str(directory),
    )

    def produce(n: int) -> None:
        for i in range(300):
            lg.enqueue({"p": n, "i": i})

    producers = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    on_disk = [orjson.loads(line) for line in wal_lines(directory)]
    assert lg.flush(10)
    assert exporter.records == on_disk and len(on_disk) == 1200


def test_max_in_flight_is_validated(loggers) -> None:
    for bad in (0, -1, 65, 1.5):
        with pytest.raises(LoggerConfigError, match="max_in_flight"):
            make(loggers, InMemoryExporter(), max_in_flight=bad)
