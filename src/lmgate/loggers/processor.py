"""The batch processor: a bounded queue, delivery threads, retries, the spool, exact accounting.

Producers (a logger's hooks, on lmgate's callback threads, or the dispatcher on the caller's path)
only *enqueue* bytes: a lock, an append, sometimes a notify; they never wait for I/O.
``max_in_flight`` daemon threads per processor (started up front: Python refuses new threads while
it exits) own the delivery: each takes a batch when ``ship_wait`` (a pure function of the queue and
the clock) says so, and hands it to the *exporter* (``exporter.py``) — the seam that knows the wire.
Threads of our own, with a blocking HTTP client, work the same with or without an event loop in the
program, and still run while the interpreter exits.

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
  before ``enqueue`` returns; with ``spool="exit"`` what is not delivered at ``close`` is
  written then. Either way the next process that starts the same logger sends it. No request
  starts after ``close``; one already on the wire may still be answered, so until it ends this
  process keeps the spool (its segments' locks): a batch the receiver takes then is delivered
  and acknowledged here, one it does not is adopted there, never both. A logger taking over a
  closed one's spool in the same process waits for ``wait_released`` first.

A SIGTERM's exit never lands halfway through an enqueue or a close on the main thread: those
functions are marked ``signals.atomic`` (which costs nothing per call; the handler looks at the
interrupted stack, see ``signals.py``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable
from typing import Any

from . import exit as exit_hooks
from . import signals
from .batch_settings import BatchSettings
from .exporter import Batch, Exporter, Outcome, as_outcomes
from .processor_common import ProcessorCommon
from .spool import Ref, Spool, SpoolWriteError

logger = logging.getLogger("lmgate.loggers")


def ship_wait(
    queued: int,
    oldest_t: float,
    oldest_seq: int,
    flush_upto: int,
    batch_size: int,
    flush_interval: float,
    now: float,
) -> float:
    """Seconds until the next batch should ship: 0 now, ``math.inf`` when nothing waits.

    A batch ships when ``batch_size`` records wait, when a ``flush`` asked for the oldest record
    (its sequence number is at most ``flush_upto``), or when the oldest has waited
    ``flush_interval`` seconds. Pure: the processor passes its clock's ``now``."""
    if not queued:
        return math.inf
    if queued >= batch_size or oldest_seq <= flush_upto:
        return 0.0
    return max(0.0, oldest_t + flush_interval - now)


class _Item:
    __slots__ = ("seq", "data", "ref", "t", "closed_as", "prepared")

    def __init__(self, seq: int, data: bytes, ref: Ref | None, t: float, prepared: Any = None) -> None:
        self.seq = seq
        self.data = data
        self.ref = ref
        self.t = t
        # what the logger worked out from the record at enqueue time, handed to the exporter with
        # it (Batch.prepared); never spooled: a record read back from the spool has None
        self.prepared = prepared
        # set by close() for records it took over: "spooled" (counted in stats()["spooled"]) or
        # the reason it is counted as dropped ("shutdown", "spool_full", ...); an export that
        # resolves them later moves them
        self.closed_as: str | None = None


class BatchProcessor(ProcessorCommon):
    """Queues encoded records and ships them in batches through ``exporter`` (see the module
    docstring). ``clock`` is the monotonic clock the batching decision reads (injected in tests).
    ``name`` names the threads and the log lines."""

    def __init__(
        self,
        exporter: Exporter,
        settings: BatchSettings,
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exporter = exporter
        self.settings = settings
        self.name = name
        self._clock = clock
        self.spool: Spool | None = None
        if settings.spool_dir is not None:
            self.spool = Spool(settings.spool_dir, fsync=settings.spool_fsync)
        self._write_ahead = self.spool is not None and settings.spool == "write_ahead"

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
        # export calls under way. One still on the wire after close() keeps the spool (its
        # segments' locks) in this process until it ends, so the next process cannot adopt the
        # lines it carries; the last one releases it (_end_export)
        self._exporting = 0
        self._release_claimed = False  # close() or the last export after it releases the spool
        self._spool_released = False  # ... and has done so
        self._spool_backlog = False
        self._failing: str | None = None  # the reason deliveries fail right now, for log lines
        # the last failure's reason and when (ISO UTC), for the dashboard's health page: text,
        # so /metrics (numbers only) leaves them out
        self._last_error: str | None = None
        self._last_error_at: str | None = None
        self._logged: set[str] = set()
        self._recover()
        self._threads = [
            threading.Thread(target=self._run, args=(i == 0,), name=f"lmgate-batch-{name}-w{i}", daemon=True)
            for i in range(settings.max_in_flight)
        ]
        for thread in self._threads:
            thread.start()
        exit_hooks.register(self)

    # ---- producers ----
    def enqueue(self, data: bytes, prepared: Any = None) -> None:
        """Queue one record already encoded as compact JSON. Never blocks on I/O (except the
        write-ahead spool's append). ``prepared``: anything the exporter may use instead of
        working it out from ``data`` again (``Batch.prepared``); it is not spooled."""
        if self._write_ahead:
            self._enqueue(data, prepared)
        else:
            self._enqueue_locked(data, None, None, prepared)

    @signals.atomic
    def _enqueue(self, data: bytes, prepared: Any = None) -> None:
        # The disk write happens outside self._lock, so a delivery thread resolving a batch never
        # waits behind a producer's write(). _spool_order keeps spool order = queue order among
        # producers, which stable batch keys rely on; delivery threads never take it.
        with self._spool_order:
            ref, failure = self._spool_one(data)
            self._enqueue_locked(data, ref, failure, prepared)

    @signals.atomic
    def _enqueue_locked(
        self, data: bytes, ref: Ref | None, spool_failure: str | None = None, prepared: Any = None
    ) -> None:
        dropped: list[_Item] = []
        s = self.settings
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
            item = _Item(self._seq, data, ref, self._clock(), prepared)
            self._queue.append(item)
            self._queued_bytes += len(data)
            while self._queue and (
                len(self._queue) > s.max_queue_records or self._queued_bytes > s.max_queue_bytes
            ):
                old = self._queue.popleft()
                self._queued_bytes -= len(old.data)
                self._dropped["queue_full"] += 1
                dropped.append(old)
            if len(self._queue) == s.batch_size:
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
                s = self.settings
                wait = (
                    ship_wait(
                        n,
                        queue[0].t,
                        queue[0].seq,
                        self._flush_upto,
                        s.batch_size,
                        s.flush_interval,
                        self._clock(),
                    )
                    if n
                    else math.inf
                )
                if wait <= 0:
                    break
                self._work.wait(s.flush_interval if wait == math.inf else wait)
            batch = [queue.popleft() for _ in range(min(n, s.batch_size))]
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
                self.log_once("prepare", f"exporter warm-up failed: {type(error).__name__}: {error}")
        while not self._abort.is_set():
            taken = self._take()
            if taken is None:
                return
            try:
                self._deliver(*taken)
            except Exception as error:  # never let the thread die: records would pile up unseen
                self.log_once("worker", f"delivery worker error: {type(error).__name__}: {error}")
                self._abandon(taken[0])
            if self._spool_backlog and self._recover_lock.acquire(blocking=False):
                try:
                    self._recover()
                finally:
                    self._recover_lock.release()

    def _deliver(self, batch_id: int, batch: list[_Item]) -> None:
        retrying = False  # counted in self._retrying from its first failed attempt until it is resolved
        exporting = False  # counted in self._exporting: from before the request until it is resolved
        try:
            # requests still to make, the next one last: a batch the receiver refuses as a whole
            # ("split": 413, 400) comes back as its two halves, until a record refused alone is dropped
            root = _batch_key(batch)
            work = [(batch, list(range(len(batch))), root)]
            while work:
                pending, offsets, key = work.pop()
                attempt = 0
                while pending:
                    if not self._begin_export():
                        return  # closed: close() spooled (or counted) what is left
                    exporting = True
                    try:
                        outcomes = as_outcomes(
                            self.exporter.export(_batch(pending, key, offsets)), len(pending)
                        )
                    except Exception as error:
                        self.log_once("exporter", f"exporter error: {type(error).__name__}: {error}")
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
                    give_up = (
                        bool(retry)
                        and self.settings.max_retries is not None
                        and attempt >= self.settings.max_retries
                    )
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
                    exporting = False
                    self._end_export()  # after _resolve's acknowledgements
                    if not retry:
                        break
                    delay = self.settings.retry_policy.delay_s(min(attempt, 30), retry_after)
                    attempt += 1
                    if not self._backoff(delay):
                        return  # shutting down: what is left is spooled by close()
                    pending, offsets = retry, retry_offsets
                if work and self._abort.is_set():
                    return  # closed meanwhile: close() spooled (or counted) the halves not sent
        finally:
            if exporting:  # a bug of ours broke it (_run drops what is left: _abandon)
                self._end_export()
            if retrying:
                with self._lock:
                    self._retrying -= 1
                    self._work.notify_all()

    def _begin_export(self) -> bool:
        """Count an export about to start; False once close() began: nothing is sent after it."""
        with self._lock:
            if self._closing:
                return False
            self._exporting += 1
            return True

    def _end_export(self) -> None:
        """An export is resolved (its acknowledgements written). The last one to end after
        close() releases the spool: only now may the next process adopt what it holds."""
        with self._lock:
            self._exporting -= 1
            release = self._closing and not self._exporting and not self._release_claimed
            self._release_claimed = self._release_claimed or release
        if release:
            self._release_spool()

    def _release_spool(self) -> None:
        """Let go of the spool: the next process adopts what is not acknowledged in it."""
        if self.spool is not None:
            self.spool.close()
        with self._lock:
            self._spool_released = True
            self._progress.notify_all()

    def _log_refused(self, reason: str) -> None:
        self.log_once(
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
        # acknowledged before they count as resolved: once flush() says they are, they are so on
        # disk too, and a close() that follows finds their segments resolved
        refs = [i.ref for i in items]
        self._ack(items)
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
        # spooled by a close() that came between the acknowledgement and the lock: acknowledged
        # now, or the next process would send them again
        late = [i for i, ref in zip(items, refs, strict=True) if ref is None and i.ref is not None]
        if late:
            self._ack(late)

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
                self.log_once("spool-ack", f"cannot write spool acknowledgements: {error}")

    # ---- recovery of what earlier processes spooled ----
    def _held_in_memory(self) -> tuple[int, int]:
        return len(self._queue), self._queued_bytes

    def _queue_adopted(self, found: list[tuple[bytes, Ref]]) -> None:
        now = self._clock()
        for data, ref in found:
            self._seq += 1
            self._queue.append(_Item(self._seq, data, ref, now - self.settings.flush_interval))  # due now
            self._queued_bytes += len(data)

    # ---- flushing and closing ----
    def _idle_upto(self, seq: int) -> bool:
        # each in-flight list is in seq order, so its first record is its oldest
        if any(items[0].seq <= seq for items in self._inflight.values()):
            return False
        return not (self._queue and self._queue[0].seq <= seq)

    @signals.atomic
    def close(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout`` (default: the exit bound), then stop; records not delivered
        stay in (or go to) the spool for the next process. True when nothing was left."""
        timeout = self.settings.exit_timeout if timeout is None else timeout
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
            # a request on the wire may still be answered 2xx: until it ends this process keeps
            # the spool, so what it carries is either acknowledged here or adopted there, not both
            release = not self._exporting
            self._release_claimed = release
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
        if release:
            self._release_spool()
        # the exporter ends (or lets finish) what is on the wire and refuses anything new
        try:
            self.exporter.close()
        except Exception:  # noqa: BLE001 - closing is best effort at exit
            pass
        exit_hooks.unregister(self)
        return done and not left

    def wait_released(self, timeout: float | None = None) -> bool:
        """After ``close()``: True once no request of this processor is on the wire any more and
        its spool is released, so another logger on the same spool directory adopts what it left
        (within ``timeout``). A logger started in the same process to take over a closed one's
        spool waits for this; a next process needs not (the locks die with this one)."""
        with self._lock:
            return self._progress.wait_for(lambda: self._spool_released, timeout)

    def stats(self) -> dict[str, Any]:
        """Counts since start: emitted = delivered + dropped + pending at every moment."""
        with self._lock:
            return self._stats(
                len(self._queue),
                sum(len(items) for items in self._inflight.values()),
                len(self._inflight),
                self._queued_bytes,
                self._splits,
            )


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


def _batch(items: list[_Item], key: str, offsets: list[int]) -> Batch:
    prepared = [i.prepared for i in items]
    return Batch([i.data for i in items], key, offsets, prepared if any(prepared) else None)


def _seq_of(item: _Item) -> int:
    return item.seq


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
