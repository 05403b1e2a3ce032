"""The batching base of the built-in loggers: a bounded queue, delivery threads, an exporter.

Producers (the logger's hooks, on lmgate's callback threads and loop) only *enqueue*: a lock,
an append, sometimes a notify; they never wait for I/O. ``max_in_flight`` daemon threads per
logger (started up front: Python refuses new threads while it exits) own the delivery: each
takes a batch when ``batch_size`` records wait, when the oldest has waited ``flush_interval``
seconds, or when ``flush`` asks, and hands it to the *exporter* — the seam that knows the wire
(``export(batch) -> Outcome``, see ``generic_api.HTTPExporter`` and ``InMemoryExporter``; with
``max_in_flight > 1`` it is called from several threads at once). Threads of our own, with a
blocking HTTP client, work the same with or without an event loop in the program, and still run
while the interpreter exits.

Why several batches in flight: a batch's round trip is mostly waiting (for the receiver, and for
the GIL when the program is busy); while one batch waits the next is already on the wire. Batches
are *taken* in order but may *arrive* out of order by up to ``max_in_flight - 1`` batches;
``max_in_flight=1`` keeps strict order.

What happens to a record (``stats()`` counts every step; emitted = delivered + dropped + pending
at every moment, because each move is made under one lock):

* delivered — the exporter said so;
* retried — connection errors, timeouts, 408, 429 and 5xx: backoff with jitter (``RetryPolicy``),
  honouring ``Retry-After``; the batch keeps its idempotency key on every retry. While a batch
  is being retried no new batch is started (later records wait behind it): a receiver that is
  down sees only the batches that were already in flight (at most ``max_in_flight``), each
  retried with its own backoff, and no new batch until they are through. With
  ``max_retries=None`` (the default) a batch is retried until it is delivered or the process
  ends, so a receiver that is down for a while gets everything once it is back;
* split — the receiver refused the request as a whole (``Outcome("split", reason)``: 413, 400):
  its records are resent as two halves, each with an idempotency key of its own, down to single
  records; only a record refused on its own is dropped (as ``reason``), the others are delivered.
  Each record's spool line is acknowledged when that record is settled, so a batch's lines are
  all acknowledged only once every half is;
* dropped — a non-retryable answer (other 4xx), a record refused alone, the queue bound (oldest
  first), or retries exhausted when ``max_retries`` is set; counted by reason;
* spooled — see ``spool.py``: with ``spool="write_ahead"`` every record is written to disk
  before the call that produced it returns (the dispatcher calls ``write_ahead`` on the
  caller's path); with ``spool="exit"`` what is not delivered at exit is written then. Either
  way the next process that starts the same logger sends it.

Exit: an ``atexit`` handler (registered once) waits for lmgate's callback deliveries, flushes
every live batch logger within ``LMGATE_EXIT_FLUSH_TIMEOUT_S`` (default 5 s), then spools what
is left. SIGTERM, whose default action skips ``atexit``, is turned into ``SystemExit(143)``
when that is safe (see ``_sigterm``), so it takes the same path.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
import uuid
import weakref
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from .._callbacks.custom_logger import CustomLogger
from .._callbacks.encoding import ENCODING_ERRORS_KEY, encode_salvaged
from .._retry import RetryPolicy
from .._secrets import mask_secrets
from . import _sigterm
from ._env import LoggerConfigError, cache_dir
from .spool import Ref, Spool, SpoolWriteError

if TYPE_CHECKING:
    from .._callbacks.summary import CallSummary

logger = logging.getLogger("lmgate.loggers")

DEFAULT_BATCH_SIZE = 100
DEFAULT_FLUSH_INTERVAL_S = 5.0  # as the reference's DEFAULT_FLUSH_INTERVAL_SECONDS
DEFAULT_MAX_QUEUE_RECORDS = 100_000
DEFAULT_MAX_QUEUE_BYTES = 64 * 1024 * 1024
DEFAULT_EXIT_TIMEOUT_S = 5.0
MAX_IN_FLIGHT_LIMIT = 64  # each is a thread
DEFAULT_RETRY_POLICY = RetryPolicy(base_delay_s=0.5, max_delay_s=10.0)
SPOOL_MODES = ("write_ahead", "exit", "off")
EVENT_TYPES = {"llm_api_success": "success", "llm_api_failure": "failure"}


class Outcome(NamedTuple):
    """What became of one record (or of every record of a batch): ``delivered``, ``retry``,
    ``drop``, or ``split`` — the receiver refused the request as a whole (too large, or some
    record in it refused): its records are resent as two halves, and a record refused on its own
    is dropped with ``reason``."""

    kind: str
    reason: str = ""
    retry_after_s: float | None = None


DELIVERED = Outcome("delivered")


@dataclass
class Batch:
    """Records handed to an exporter. ``key`` is the same on every retry of the batch;
    ``record_key(i)`` is a per-record key for exporters that send records one by one."""

    records: list[bytes]
    key: str
    offsets: list[int] = field(default_factory=list)

    def record_key(self, i: int) -> str:
        return f"{self.key}-{self.offsets[i] if self.offsets else i}"


class Exporter(Protocol):
    """How a batch goes on the wire. One outcome for the whole batch, or one per record.

    ``export`` may be called from ``max_in_flight`` threads at once. An exporter may also have a
    ``prepare()`` method: the batching base calls it once on a delivery thread at start, to open
    connections or import what the first batch would otherwise wait for."""

    def export(self, batch: Batch) -> Outcome | Sequence[Outcome]: ...

    def close(self) -> None: ...


class InMemoryExporter:
    """An exporter that keeps what it is given: for tests and for trying a pipeline out."""

    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self._lock = threading.Lock()

    def export(self, batch: Batch) -> Outcome:
        with self._lock:
            self.batches.append(batch)
        return DELIVERED

    @property
    def records(self) -> list[Any]:
        with self._lock:
            return [orjson.loads(r) for b in self.batches for r in b.records]

    def close(self) -> None:
        pass


class _Item:
    __slots__ = ("seq", "data", "ref", "t", "closed_as")

    def __init__(self, seq: int, data: bytes, ref: Ref | None, t: float) -> None:
        self.seq = seq
        self.data = data
        self.ref = ref
        self.t = t
        # set by close() for records it took over: "spooled" (counted in stats()["spooled"]) or
        # the reason it is counted as dropped ("shutdown", "spool_full", ...); an export that
        # resolves them later moves them
        self.closed_as: str | None = None


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def encode_record(payload: Any) -> bytes:
    """A record as compact JSON (never holding a raw newline, which the spool relies on). Parts
    that cannot be encoded are replaced and flagged (``_callbacks.encoding``); a record that is not
    a JSON object and cannot be encoded raises ``UnencodableRecord``."""
    try:
        return orjson.dumps(payload, default=_json_default)
    except TypeError:  # orjson.JSONEncodeError: a value of the caller's has no JSON form
        return encode_salvaged(payload, _json_default)[0]


_FLAG_NEEDLE = f'"{ENCODING_ERRORS_KEY}"'.encode()


def _is_flagged(payload: Any) -> bool:
    metadata = payload.get("metadata") if isinstance(payload, dict) else None
    return isinstance(metadata, dict) and bool(metadata.get(ENCODING_ERRORS_KEY))


def positive(value: Any, name: str, integer: bool = False, allow_none: bool = False) -> Any:
    """``value`` as a positive number, or a LoggerConfigError naming ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or value is None:
        raise LoggerConfigError(f"{name} must be a positive number, got {value!r}")
    try:
        number = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise LoggerConfigError(f"{name} must be a positive number, got {value!r}") from None
    if integer and isinstance(value, float) and value != number:
        raise LoggerConfigError(f"{name} must be a whole number, got {value!r}")
    if number <= 0:
        raise LoggerConfigError(f"{name} must be positive, got {value!r}")
    return number


def parse_event_types(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset(EVENT_TYPES.values())
    if isinstance(value, str):
        value = [value]
    events = set()
    for item in value:
        if item not in EVENT_TYPES:
            raise LoggerConfigError(f"event_types: unknown event type {item!r}; use {sorted(EVENT_TYPES)}")
        events.add(EVENT_TYPES[item])
    return frozenset(events)


class BatchLogger(CustomLogger):
    """A CustomLogger that batches standard logging payloads and ships them with ``exporter``.

    See the module docstring for the delivery contract. ``name`` names the default spool
    directory (``<cache>/spool/<name>``); ``stats()`` reports the counts.
    """

    def __init__(
        self,
        exporter: Exporter,
        *,
        name: str,
        event_types: Any = None,
        batch_size: Any = DEFAULT_BATCH_SIZE,
        flush_interval: Any = DEFAULT_FLUSH_INTERVAL_S,
        max_queue_records: Any = DEFAULT_MAX_QUEUE_RECORDS,
        max_queue_bytes: Any = DEFAULT_MAX_QUEUE_BYTES,
        max_retries: Any = None,
        retry_policy: RetryPolicy | None = None,
        max_in_flight: Any = 1,
        spool: str = "exit",
        spool_dir: str | None = None,
        spool_fsync: bool = False,
        exit_timeout: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.exporter = exporter
        self.name = name
        self._events = parse_event_types(event_types)
        self.batch_size = positive(batch_size, "batch_size", integer=True)
        self.flush_interval = positive(flush_interval, "flush_interval")
        self.max_queue_records = positive(max_queue_records, "max_queue_records", integer=True)
        self.max_queue_bytes = positive(max_queue_bytes, "max_queue_bytes", integer=True)
        if max_retries is not None and (
            isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0
        ):
            raise LoggerConfigError(f"max_retries must be a whole number ≥ 0 or None, got {max_retries!r}")
        self.max_retries: int | None = max_retries
        self.max_in_flight = positive(max_in_flight, "max_in_flight", integer=True)
        if self.max_in_flight > MAX_IN_FLIGHT_LIMIT:
            raise LoggerConfigError(
                f"max_in_flight must be at most {MAX_IN_FLIGHT_LIMIT}, got {max_in_flight!r}"
            )
        self.retry_policy = retry_policy or DEFAULT_RETRY_POLICY
        if spool not in SPOOL_MODES:
            raise LoggerConfigError(f"spool must be one of {SPOOL_MODES}, got {spool!r}")
        self.spool_mode = spool
        self.exit_timeout = positive(
            exit_timeout
            if exit_timeout is not None
            else os.environ.get("LMGATE_EXIT_FLUSH_TIMEOUT_S", DEFAULT_EXIT_TIMEOUT_S),
            "exit_timeout",
        )
        # A SummarySink (take() below): the dispatcher hands terminal events to take() on the
        # caller's path (see dispatch.Plan) instead of scheduling our hooks on its threads: with
        # the write-ahead spool the record is on disk before the call returns; in every mode it
        # is cheaper than a thread hand-off (the payload is encoded once per call, shared by all).
        self.spool: Spool | None = None
        if spool != "off":
            directory = spool_dir or os.path.join(cache_dir(), "spool", _safe_dir_name(name))
            self.spool = Spool(directory, fsync=bool(spool_fsync))

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # idle delivery threads wait on it
        self._progress = threading.Condition(self._lock)  # flush() waits on it
        self._queue: deque[_Item] = deque()
        self._queued_bytes = 0
        self._inflight: dict[int, list[_Item]] = {}  # batch id -> its records not resolved yet
        self._batch_ids = 0
        self._retrying = 0  # batches in a retry loop: while > 0 no new batch is started
        self._recover_lock = threading.Lock()
        self._spool_order = threading.Lock()  # producers only; see _enqueue
        self._seq = 0
        self._flush_upto = 0
        self._emitted = 0
        self._delivered = 0
        self._dropped: Counter[str] = Counter()
        self._retried = 0
        self._recovered = 0
        self._spool_write_failed = 0  # write-ahead appends that failed (the record stayed in memory)
        self._splits = 0  # requests the receiver refused as a whole, resent as two halves
        self._flagged = 0  # delivered with parts replaced (see _callbacks.encoding)
        self._spooled = 0
        self._batches = 0
        self._closing = False  # no more deliveries: new records go to the spool
        self._abort = threading.Event()
        self._spool_backlog = False
        self._failing: str | None = None  # the reason deliveries fail right now, for log lines
        self._recover()
        self._threads = [
            threading.Thread(target=self._run, args=(i == 0,), name=f"lmgate-batch-{name}-w{i}", daemon=True)
            for i in range(self.max_in_flight)
        ]
        for thread in self._threads:
            thread.start()
        _live.add(self)
        _install_exit_hooks()
        from .._callbacks.dispatch import get_dispatcher

        get_dispatcher().register_flushable(self, own_exit_flush=True)  # close_all() flushes us at exit

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # ---- producers: hooks only enqueue ----
    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "success" in self._events:
            self.enqueue(kwargs.get("standard_logging_object"))

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "failure" in self._events:
            self.enqueue(kwargs.get("standard_logging_object"))

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "success" in self._events:
            self.enqueue(kwargs.get("standard_logging_object"))

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "failure" in self._events:
            self.enqueue(kwargs.get("standard_logging_object"))

    def take(self, summary: CallSummary, event: str) -> None:
        """``protocols.SummarySink``: called by the dispatcher on the caller's path for terminal
        events; with ``spool="write_ahead"`` the record is on disk before the call returns."""
        if event not in self._events:
            return
        try:
            data = summary.payload_json(bool(self.turn_off_message_logging))
        except Exception as error:  # noqa: BLE001 - a record we cannot build is counted, never raised
            self._unbuildable(error)
            return
        if summary.payload_flagged:
            self._count_flagged()
        self.enqueue_bytes(data)

    def enqueue(self, payload: Any) -> None:
        """Queue one record (any JSON-able value; the standard logging payload for hooks). Parts
        that cannot be encoded are replaced and flagged; a record that cannot be encoded at all
        is counted as dropped (``unencodable``)."""
        try:
            data = encode_record(payload)
        except Exception as error:  # noqa: BLE001 - counted, never raised into the caller's hook
            self._unbuildable(error)
            return
        if _FLAG_NEEDLE in data and _is_flagged(orjson.loads(data)):
            self._count_flagged()
        self.enqueue_bytes(data)

    def _unbuildable(self, error: BaseException) -> None:
        """A record that could not be built or encoded at all: emitted and dropped, said once."""
        with self._lock:
            self._emitted += 1
            self._dropped["unencodable"] += 1
            self._progress.notify_all()
        self._log_once(
            "unencodable",
            f"a log record could not be built or encoded and was dropped (counted as 'unencodable'; "
            f"logged once): {type(error).__name__}: {error}",
        )

    def _count_flagged(self) -> None:
        with self._lock:
            self._flagged += 1
        self._log_once(
            "flagged",
            "a log record held values that cannot be encoded as JSON; they were replaced by "
            f"'<unencodable: ...>' and named in metadata.{ENCODING_ERRORS_KEY} (logged once; "
            "counted in stats()['flagged'])",
            logging.WARNING,
        )

    def enqueue_bytes(self, data: bytes) -> None:
        """Queue one record already encoded as compact JSON. Never blocks on I/O."""
        if b"\n" in data:  # pretty-printed JSON: one line per record is what the spool and ndjson need
            data = orjson.dumps(orjson.loads(data))
        sigterm = _sigterm.state
        if threading.get_ident() != sigterm.main_ident:
            self._enqueue(data)
            return
        # a SIGTERM's exit must not land halfway through: _sigterm.guarded(), inlined (this runs
        # once per record; the context manager cost ~1 µs)
        sigterm.busy += 1
        try:
            self._enqueue(data)
        finally:
            sigterm.busy -= 1
            if sigterm.pending is not None:
                _sigterm.exit_if_pending()

    def _enqueue(self, data: bytes) -> None:
        if self.spool is None or self.spool_mode != "write_ahead":
            self._enqueue_locked(data, None)
            return
        # The disk write happens outside self._lock, so a delivery thread resolving a batch never
        # waits behind a producer's write(). _spool_order keeps spool order = queue order among
        # producers, which stable batch keys rely on; delivery threads never take it.
        with self._spool_order:
            ref, failure = self._spool_one(data)
            self._enqueue_locked(data, ref, failure)

    def _enqueue_locked(self, data: bytes, ref: Ref | None, spool_failure: str | None = None) -> None:
        dropped: list[_Item] = []
        with self._lock:
            self._seq += 1
            self._emitted += 1
            if self._closing and ref is None and spool_failure is None:
                ref, spool_failure = self._spool_one(data)
            if spool_failure is not None:
                self._spool_write_failed += 1
            if self._closing:
                if ref is None:
                    self._dropped[spool_failure or "shutdown"] += 1
                else:
                    self._spooled += 1
                return
            item = _Item(self._seq, data, ref, time.monotonic())
            was_empty = not self._queue
            self._queue.append(item)
            self._queued_bytes += len(data)
            while self._queue and (
                len(self._queue) > self.max_queue_records or self._queued_bytes > self.max_queue_bytes
            ):
                old = self._queue.popleft()
                self._queued_bytes -= len(old.data)
                self._dropped["queue_full"] += 1
                dropped.append(old)
            if was_empty or len(self._queue) == self.batch_size:
                self._work.notify()
        if dropped:
            self._ack(dropped)

    def _spool_one(self, data: bytes) -> tuple[Ref | None, str | None]:
        """Append one record: its ref, or None and the reason it is not on disk. Callers hold
        _spool_order or self._lock, so spool order is queue order."""
        if self.spool is None:
            return None, None
        try:
            return self.spool.append_one(data), None
        except SpoolWriteError as error:
            self._spool_trouble(error, error.reason)
            return None, error.reason
        except (OSError, RuntimeError) as error:
            self._spool_trouble(error, "spool_error")
            return None, "spool_error"

    def _spool_trouble(self, error: BaseException, reason: str) -> None:
        """Said once per logger: every record it concerns is counted in stats()."""
        assert self.spool is not None
        self._log_once(
            "spool",
            f"cannot write to the spool {self.spool.directory} ({reason}): {error}; records that are "
            "not on disk are kept in memory and still delivered while this process lives (counted in "
            f"stats()['spool_write_failed']); at shutdown those that cannot be spooled are dropped as "
            f"{reason!r}. Logged once.",
        )

    # ---- the worker ----
    def _take(self) -> tuple[int, list[_Item]] | None:
        """The next batch and its id, waiting as the batching rules say; None when it is time to stop."""
        with self._lock:
            while True:
                if self._closing:
                    return None
                if self._retrying:  # the receiver is failing: one batch probes it, the rest wait
                    self._work.wait()
                    continue
                queue = self._queue
                n = len(queue)
                if n:
                    if n >= self.batch_size or queue[0].seq <= self._flush_upto:
                        break
                    wait = queue[0].t + self.flush_interval - time.monotonic()
                    if wait <= 0:
                        break
                    self._work.wait(wait)
                else:
                    self._work.wait()
            batch = [queue.popleft() for _ in range(min(n, self.batch_size))]
            self._queued_bytes -= sum(len(i.data) for i in batch)
            self._batch_ids += 1
            self._inflight[self._batch_ids] = list(batch)
            if queue:  # more may be due: another idle delivery thread decides
                self._work.notify()
            return self._batch_ids, batch

    def _run(self, prepare: bool = False) -> None:
        if prepare and hasattr(self.exporter, "prepare"):
            try:
                self.exporter.prepare()
            except Exception as error:  # the first export will meet (and report) the same trouble
                self._log_once("prepare", f"exporter warm-up failed: {type(error).__name__}: {error}")
        while not self._abort.is_set():
            taken = self._take()
            if taken is None:
                return
            try:
                self._deliver(*taken)
            except Exception as error:  # never let the thread die: records would pile up unseen
                self._log_once("worker", f"delivery worker error: {type(error).__name__}: {error}")
                self._abandon(taken[0])
            if self._spool_backlog and self._recover_lock.acquire(blocking=False):
                try:
                    self._recover()
                finally:
                    self._recover_lock.release()

    def _deliver(self, batch_id: int, batch: list[_Item]) -> None:
        retrying = False  # counted in self._retrying from its first failed attempt until it is resolved
        try:
            # requests still to make, the next one last: a batch the receiver refuses as a whole
            # ("split": 413, 400) comes back as its two halves, until a record refused alone is dropped
            root = _batch_key(batch)
            work = [(batch, list(range(len(batch))), root)]
            while work:
                pending, offsets, key = work.pop()
                attempt = 0
                while pending:
                    try:
                        outcomes = _outcomes(
                            self.exporter.export(Batch([i.data for i in pending], key, offsets)), len(pending)
                        )
                    except Exception as error:
                        self._log_once("exporter", f"exporter error: {type(error).__name__}: {error}")
                        outcomes = [Outcome("retry", "exporter_error")] * len(pending)
                    retry: list[_Item] = []
                    retry_offsets: list[int] = []
                    refused: list[tuple[_Item, int, str]] = []
                    resolved: list[_Item] = []
                    retry_after: float | None = None
                    delivered = 0
                    drops: Counter[str] = Counter()
                    for item, offset, outcome in zip(pending, offsets, outcomes, strict=True):
                        if outcome.kind == "delivered":
                            delivered += 1
                            resolved.append(item)
                        elif outcome.kind == "retry":
                            retry.append(item)
                            retry_offsets.append(offset)
                            if outcome.retry_after_s is not None:
                                retry_after = max(retry_after or 0.0, outcome.retry_after_s)
                        elif outcome.kind == "split":
                            refused.append((item, offset, outcome.reason or "rejected"))
                        else:
                            drops[outcome.reason or "rejected"] += 1
                            resolved.append(item)
                    resent = 0
                    if len(refused) == 1:  # refused alone: no smaller request can help
                        item, _, why = refused[0]
                        drops[why] += 1
                        resolved.append(item)
                        self._log_refused(why)
                    elif refused:
                        resent = len(refused)
                        work.extend(reversed(_halves(refused, root)))
                    give_up = bool(retry) and self.max_retries is not None and attempt >= self.max_retries
                    if give_up:
                        drops["retries_exhausted"] += len(retry)
                        resolved.extend(retry)
                        retry = []
                    reason = next((o.reason for o in outcomes if o.kind not in ("delivered", "split")), None)
                    self._note_state(reason, retrying)
                    # the gate goes up under the same lock that records the failed attempt, so no
                    # delivery thread can start a new batch in between
                    start_retrying = bool(retry) and not retrying
                    retrying = retrying or start_retrying  # before the call: _resolve raises it first thing
                    self._resolve(
                        batch_id,
                        resolved,
                        delivered,
                        drops,
                        retried=len(retry) + resent,
                        start_retrying=start_retrying,
                        split=bool(resent),
                    )
                    if not retry:
                        break
                    delay = self.retry_policy.delay_s(min(attempt, 30), retry_after)
                    attempt += 1
                    if not self._backoff(delay):
                        return  # shutting down: what is left is spooled by close()
                    pending, offsets = retry, retry_offsets
                if work and self._abort.is_set():
                    return  # closed meanwhile: close() spooled (or counted) the halves not sent
        finally:
            if retrying:
                with self._lock:
                    self._retrying -= 1
                    self._work.notify_all()

    def _log_refused(self, reason: str) -> None:
        self._log_once(
            f"refused-{reason}",
            f"the receiver refused a record on its own ({reason}); it was dropped and counted as "
            f"{reason!r} (logged once per reason)",
            logging.WARNING,
        )

    def _resolve(
        self,
        batch_id: int,
        items: list[_Item],
        delivered: int,
        drops: Counter[str],
        retried: int,
        start_retrying: bool = False,
        split: bool = False,
    ) -> None:
        with self._lock:
            if start_retrying:
                self._retrying += 1
            if split:
                self._splits += 1
            if items:
                left = self._inflight.get(batch_id)  # None once close() took it over
                if left is not None:
                    gone = {id(i) for i in items}
                    left = [i for i in left if id(i) not in gone]
                    if left:
                        self._inflight[batch_id] = left
                    else:
                        del self._inflight[batch_id]
                # an export that finished after close(): its records were counted as spooled or lost
                for item in items:
                    if item.closed_as == "spooled":
                        self._spooled -= 1
                    elif item.closed_as is not None:  # counted as dropped, for this reason
                        self._dropped[item.closed_as] -= 1
                        if not self._dropped[item.closed_as]:
                            del self._dropped[item.closed_as]
            self._delivered += delivered
            self._dropped.update(drops)
            self._retried += retried
            self._batches += 1
            self._progress.notify_all()
        self._ack(items)

    def _abandon(self, batch_id: int) -> None:
        """A bug of ours broke a delivery: drop and count what is left of the batch, so that
        flush() and the accounting stay true instead of waiting for it forever."""
        with self._lock:
            left = self._inflight.get(batch_id) or []
        if left:
            self._resolve(batch_id, left, 0, Counter({"worker_error": len(left)}), retried=0)

    def _ack(self, items: Iterable[_Item]) -> None:
        if self.spool is not None:
            try:
                self.spool.ack(i.ref for i in items)
            except OSError as error:
                self._log_once("spool-ack", f"cannot write spool acknowledgements: {error}")

    def _backoff(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a retry; False when shutdown cut the wait short."""
        if self.retry_policy.sleep is not time.sleep:
            self.retry_policy.sleep(delay)  # an injected clock (tests, virtual time)
            return not self._abort.is_set()
        return not self._abort.wait(delay)

    def _note_state(self, reason: str | None, retrying: bool) -> None:
        """Log when deliveries start failing and when they recover; not on every retry."""
        with self._lock:  # several threads report; each change of state is logged once
            previous = self._failing
            others_failing = self._retrying - (1 if retrying else 0) > 0
            if reason is None and others_failing:
                return  # one batch got through while others still retry: not recovered yet
            self._failing = reason
        if reason is not None and previous != reason:
            logger.warning(
                "lmgate %s: delivery failing (%s); records are kept and retried", self.name, reason
            )
        elif reason is None and previous is not None:
            logger.info("lmgate %s: delivery recovered", self.name)

    _logged: set[str] = set()

    def _log_once(self, kind: str, message: str, level: int = logging.ERROR) -> None:
        if kind not in self._logged:
            self._logged = self._logged | {kind}
            logger.log(level, "lmgate %s: %s", self.name, mask_secrets(message))

    # ---- recovery of what earlier processes spooled ----
    def _recover(self) -> None:
        if self.spool is None or self._closing:
            return
        with self._lock:
            room_records = self.max_queue_records - len(self._queue)
            room_bytes = self.max_queue_bytes - self._queued_bytes
        if room_records <= self.max_queue_records // 2:
            return
        try:
            found, more = self.spool.adopt(room_records, room_bytes)
        except OSError as error:
            self._log_once("spool-adopt", f"cannot read the spool {self.spool.directory}: {error}")
            return
        self._spool_backlog = more
        if not found:
            return
        with self._lock:
            if self._closing:  # closed meanwhile: the adopted lines stay on disk for the next process
                return
            now = time.monotonic()
            for data, ref in found:
                self._seq += 1
                self._queue.append(_Item(self._seq, data, ref, now - self.flush_interval))  # due now
                self._queued_bytes += len(data)
            self._emitted += len(found)
            self._recovered += len(found)
            self._work.notify()
        logger.info(
            "lmgate %s: %d spooled record(s) from an earlier process queued for delivery",
            self.name,
            len(found),
        )

    # ---- flushing and closing ----
    def _idle_upto(self, seq: int) -> bool:
        # each in-flight list is in seq order, so its first record is its oldest
        if any(items[0].seq <= seq for items in self._inflight.values()):
            return False
        return not (self._queue and self._queue[0].seq <= seq)

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every record queued so far; True when they are all resolved within ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._seq
            if target > self._flush_upto:
                self._flush_upto = target
                self._work.notify()
            while not self._idle_upto(target):
                if self._closing:
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(remaining)
            return True

    async def aflush(self, timeout: float | None = None) -> bool:
        import asyncio

        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, then stop; records not delivered stay in (or go to) the
        spool for the next process. True when nothing was left."""
        with _sigterm.guarded():  # on the main thread a SIGTERM's exit waits for the close
            return self._close(timeout)

    def _close(self, timeout: float | None) -> bool:
        timeout = self.exit_timeout if timeout is None else timeout
        done = self.flush(timeout)
        with self._lock:
            if self._closing:
                return done
            self._closing = True
            self._work.notify_all()
            self._progress.notify_all()
            left = sorted((i for items in self._inflight.values() for i in items), key=_seq_of) + list(
                self._queue
            )
            to_spool = [i for i in left if i.ref is None]
            lost_as = "shutdown"  # no spool
            if to_spool and self.spool is not None:
                refs: list[Ref] = []
                try:
                    refs = self.spool.append([i.data for i in to_spool], sync=True)
                except SpoolWriteError as error:  # some (a prefix) may be on disk
                    refs, lost_as = error.refs, error.reason
                    self._spool_trouble(error, error.reason)
                except (OSError, RuntimeError) as error:
                    lost_as = "spool_error"
                    self._spool_trouble(error, lost_as)
                for item, ref in zip(to_spool, refs, strict=False):
                    item.ref = ref
            lost = [i for i in left if i.ref is None]
            for item in left:
                # an export that resolves it after all moves it out of this count (_resolve)
                item.closed_as = "spooled" if item.ref is not None else lost_as
            self._queue.clear()
            self._queued_bytes = 0
            self._inflight = {}  # still being sent maybe; counted as spooled until it resolves
            self._spooled += len(left) - len(lost)
            if lost:
                self._dropped[lost_as] += len(lost)
        self._abort.set()
        if left:
            where = self.spool.directory if self.spool is not None else None
            if not lost:
                outcome = f"spooled to {where} for the next process"
            elif where:
                outcome = (
                    f"{len(left) - len(lost)} spooled to {where}, {len(lost)} dropped as {lost_as!r} "
                    "(the spool could not take them)"
                )
            else:
                outcome = f"{len(lost)} lost (no spool)"
            logger.warning(
                "lmgate %s: %d record(s) not delivered at shutdown; %s", self.name, len(left), outcome
            )
        if self.spool is not None:
            self.spool.close()
        try:
            self.exporter.close()
        except Exception:  # noqa: BLE001 - closing is best effort at exit
            pass
        _live.discard(self)
        return done and not left

    def stats(self) -> dict[str, Any]:
        """Counts since start: emitted = delivered + dropped + pending at every moment."""
        with self._lock:
            queued = len(self._queue)
            inflight = sum(len(items) for items in self._inflight.values())
            dropped = dict(self._dropped)
            return {
                "emitted": self._emitted,
                "delivered": self._delivered,
                "dropped": dropped,
                "dropped_total": sum(dropped.values()),
                "retried": self._retried,
                "pending": queued + inflight + self._spooled,
                "queued": queued,
                "in_flight": inflight,
                "in_flight_batches": len(self._inflight),
                "retrying_batches": self._retrying,
                "queued_bytes": self._queued_bytes,
                "spooled": self._spooled,
                "recovered": self._recovered,
                "flagged": self._flagged,
                "splits": self._splits,
                "spool_write_failed": self._spool_write_failed,
                "batches": self._batches,
                "closed": self._closing,
                # readiness shows a logger whose receiver keeps failing as unhealthy
                "healthy": not self._retrying,
            }


def _outcomes(result: Any, n: int) -> list[Outcome]:
    """An exporter's answer as one Outcome per record; a malformed answer raises (and is retried
    like an exporter error) instead of breaking the delivery thread."""
    if isinstance(result, Outcome):
        return [result] * n
    outcomes = list(result)
    if len(outcomes) != n or not all(isinstance(o, Outcome) for o in outcomes):
        raise TypeError(
            f"export() must return an Outcome or one Outcome per record ({n}), got {result!r:.200}"
        )
    return outcomes


def _halves(refused: list[tuple[_Item, int, str]], key: str) -> list[tuple[list[_Item], list[int], str]]:
    """A refused request's records as two requests, in order. Each half gets a key of its own
    (a receiver that remembers the refused key must not answer a half with the same refusal),
    derived from the batch's and the records' places in it, so a resent half carries it again."""
    middle = len(refused) // 2
    out = []
    for part in (refused[:middle], refused[middle:]):
        offsets = [offset for _, offset, _ in part]
        out.append(([item for item, _, _ in part], offsets, f"{key}-{offsets[0]}-{offsets[-1]}"))
    return out


def _seq_of(item: _Item) -> int:
    return item.seq


def _safe_dir_name(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]
    return cleaned or hashlib.sha256(name.encode()).hexdigest()[:16]


def _batch_key(batch: list[_Item]) -> str:
    """Spooled records: a key derived from where they are on disk, so the batch a restarted
    process rebuilds from the same lines carries the same key. Otherwise a random one."""
    if not batch or any(i.ref is None for i in batch):
        return uuid.uuid4().hex
    h = hashlib.sha256()
    run_start: Ref | None = None
    prev: Ref | None = None
    for item in batch:
        ref = item.ref
        assert ref is not None
        if prev is None or ref[0] is not prev[0] or ref[1] != prev[1] + 1:
            if run_start is not None and prev is not None:
                h.update(f"{run_start[0].name}:{run_start[1]}-{prev[1]};".encode())
            run_start = ref
        prev = ref
    if run_start is not None and prev is not None:
        h.update(f"{run_start[0].name}:{run_start[1]}-{prev[1]};".encode())
    return h.hexdigest()[:32]


# ---- process exit ----
_live: weakref.WeakSet[BatchLogger] = weakref.WeakSet()
_hooks_installed = False
_hooks_lock = threading.Lock()


def _install_exit_hooks() -> None:
    global _hooks_installed
    with _hooks_lock:
        if _hooks_installed:
            return
        _hooks_installed = True
        atexit.register(_close_at_exit)
        install_sigterm_handler()


def install_sigterm_handler() -> bool:
    """Make SIGTERM exit through ``atexit`` (status 143), so batch loggers flush and spool
    (see ``_sigterm``). True when installed."""
    return _sigterm.install(_close_at_exit)



def live_loggers() -> list[BatchLogger]:
    """Batch loggers created in this process and not yet closed."""
    return list(_live)


def _close_at_exit() -> None:
    _sigterm.begin_close()
    try:
        close_all()
    finally:
        _sigterm.end_close()


def close_all(timeout: float | None = None) -> None:
    """Flush and close every live batch logger (at exit): first let pending callback
    deliveries reach the loggers' queues, then flush within the bound and spool the rest."""
    loggers = list(_live)
    if not loggers:
        return
    bound = timeout if timeout is not None else max(lg.exit_timeout for lg in loggers)
    deadline = time.monotonic() + bound
    from .._callbacks.dispatch import end_streams_at_exit, get_dispatcher

    end_streams_at_exit()  # their terminal events must reach the loggers before these close
    get_dispatcher().wait_idle(bound)
    for lg in loggers:
        try:
            lg.close(max(0.0, deadline - time.monotonic()))
        except Exception as error:  # one logger's trouble must not stop the others
            logger.error("lmgate %s: close failed: %s", lg.name, mask_secrets(str(error)))
