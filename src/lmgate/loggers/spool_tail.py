"""The store's processor when its writer is a child process and its spool is write-ahead: the
serving process writes each record to the spool file and keeps nothing else of it.

``BatchProcessor`` keeps every record twice: on disk (the write-ahead spool's line, for a
SIGKILL) and in memory (its queue item), and its delivery thread hands each batch's bytes to the
writer process over a pipe, then resolves its items one by one. With the store's writer in a
child (``store_process.py``) the line on disk is enough: this processor remembers only *which*
lines wait (runs of consecutive lines of a spool segment), and its delivery thread sends the
child a run's place (the segment's path, its first line, how many), which the child reads from
the file itself. Per call the serving process pays one ``write()`` and a counter; per batch one
small frame; the records' bytes never cross the pipe (docs/store.md, "Cost", session 6).

Everything else is the batch processor's contract (``processor.py``'s docstring), kept as it is:

* ``stats()`` has the same keys and the same invariant (emitted = delivered + dropped + pending);
* a batch is acknowledged in the spool (``.ack``) only once the child answered that it is
  written; a child that dies, hangs up or answers nonsense makes the batch retried through a new
  one (rows written already are not stored twice: ``call_id`` is the primary key);
* ``flush`` waits for every record emitted before it; ``close`` flushes within its bound, then
  what is left stays in the spool for the next process, which *adopts* it;
* a record the spool cannot take (a full disk) is kept in memory and sent as bytes, like a
  record adopted from a dead process's segment (``ProcessStoreExporter.export``), and counted in
  ``spool_write_failed``; the number kept so is bounded by ``max_queue_records`` / ``bytes``.

One delivery thread (the store's ``max_in_flight`` is 1), so batches are written in order and a
record is resolved only after every record before it.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from . import exit as exit_hooks
from . import signals
from .batch_settings import BatchSettings
from .exporter import Batch, Outcome, as_outcomes
from .processor import ship_wait
from .processor_common import ProcessorCommon
from .spool import Ref, Segment, Spool, SpoolWriteError

logger = logging.getLogger("lmgate.loggers")


class _Run:
    """Records waiting, in emission order: either ``count`` consecutive lines of ``segment`` from
    line ``first`` (``records`` None), or records held in memory (``records``, with their spool
    refs or None)."""

    __slots__ = ("seq", "t", "segment", "first", "count", "records", "refs", "size")

    def __init__(
        self,
        seq: int,
        t: float,
        segment: Segment | None,
        first: int,
        count: int,
        records: list[bytes] | None = None,
        refs: list[Ref | None] | None = None,
    ) -> None:
        self.seq = seq  # the sequence number of its first record
        self.t = t  # when its first record was emitted
        self.segment = segment
        self.first = first
        self.count = count
        self.records = records
        self.refs = refs
        self.size = sum(len(r) for r in records) if records else 0


class SpoolTailProcessor(ProcessorCommon):
    """A ``BatchProcessor`` for an exporter that reads spool lines itself (``export_lines``); see
    the module docstring. ``settings.spool_dir`` must be set and ``settings.spool`` be
    ``write_ahead``."""

    def __init__(
        self,
        exporter: Any,
        settings: BatchSettings,
        *,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        mapped: bool = True,
    ) -> None:
        """``mapped``: the spool's active segment written through a memory map (``spool.py``),
        where the filesystem allows; False writes every line with ``write()``."""
        assert settings.spool_dir is not None and settings.spool == "write_ahead"
        self.exporter = exporter
        self.settings = settings
        self.name = name
        self._clock = clock
        # one lock for this processor and its spool: a call's line is written and counted under it
        # once (``enqueue``); reentrant, as ``close`` appends to the spool holding it
        self._lock: Any = threading.RLock()
        self.spool: Spool = Spool(
            settings.spool_dir, fsync=settings.spool_fsync, lock=self._lock, mapped=mapped
        )
        self._work = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._runs: deque[_Run] = deque()
        self._last: _Run | None = None  # the run new lines extend while they follow it on disk
        # ``_last`` while the next line may be written by ``enqueue``'s short path: the run ends
        # at the end of the spool's active segment, which has room and wants no fsync, and the
        # processor is not closing (``_tail_after``); None sends the next line the long way
        self._tail: _Run | None = None
        self._batch_size = settings.batch_size
        self._queued = 0  # records in self._runs
        self._held = 0  # of them, held in memory (not on disk): bounded by max_queue_*
        self._held_bytes = 0
        self._inflight: _Run | None = None
        self._seq = 0
        self._flush_upto = 0
        self._emitted = 0
        self._delivered = 0
        self._dropped: Counter[str] = Counter()
        self._retried = 0
        self._recovered = 0
        self._spool_write_failed = 0
        self._flagged = 0
        self._spooled = 0
        self._batches = 0
        self._retrying = 0
        self._closing = False
        self._abort = threading.Event()
        self._spool_backlog = False
        self._failing: str | None = None
        self._last_error: str | None = None
        self._last_error_at: str | None = None
        self._logged: set[str] = set()
        self._left_at_close: set[int] = set()
        # the delivery thread has ended; and whether it closes the spool when it does (a batch of
        # it outlived close()'s wait: the spool's locks stay here until its lines are resolved)
        self._ended = False
        self._spool_closed_by_thread = False
        self._recover()
        self._thread = threading.Thread(target=self._run, name=f"lmgate-batch-{name}-w0", daemon=True)
        self._thread.start()
        exit_hooks.register(self)

    # ---- producers ----
    @signals.atomic
    def enqueue(self, data: bytes, prepared: Any = None) -> None:
        """Write one record (compact JSON) to the spool and remember its place; ``prepared`` is
        not used (the child parses or builds every record).

        The usual call is a line written at the end of the active segment, right after the lines
        of the run waiting last: ``Spool.append_one``'s usual case and the run's counts are done
        here, under the one lock the spool shares: the line copied into the segment's map where
        its pages are made (``Spool.map_line``), else in one ``write()``; either way the record
        is in the file's pages before this returns. Anything else (a first line, a full segment,
        a write cut short or refused, fsync, closing) takes ``_enqueue_long``."""
        # acquire/release, not ``with``: the statement's two method lookups and its three-argument
        # ``__exit__`` call cost ~1,100 instructions a call here (callgrind)
        lock = self._lock
        lock.acquire()
        try:
            run = self._tail
            if run is not None:
                segment: Segment = run.segment  # type: ignore[assignment] # a tail run is on disk
                m = segment.map
                if m is not None:
                    start = segment.size
                    end = start + len(data) + 1
                    if end <= segment.ready:  # ``Spool.map_line``'s usual case, inlined
                        m[start : end - 1] = data
                        m[end - 1] = 10
                        segment.size = end
                    elif not self.spool.map_line(segment, data):  # (which makes pages first)
                        self._enqueue_long(data, None)  # the segment is full: the long way opens the next
                        return
                else:
                    line = data + b"\n"
                    try:
                        written = os.write(segment.fd, line)
                    except OSError:
                        written = -1
                    if written != len(line):
                        self._enqueue_long(data, segment)
                        return
                    segment.size += written
                segment.count += 1
                segment.unresolved += 1
                run.count += 1
                self._seq += 1
                self._emitted += 1
                self._queued = queued = self._queued + 1
                if queued == self._batch_size:
                    self._work.notify()
                if segment.size >= self.spool.segment_max_bytes:
                    self._tail = None  # the next line starts a new segment
                return
            self._enqueue_long(data, None)
        finally:
            lock.release()

    def _enqueue_long(self, data: bytes, retry: Segment | None) -> None:
        """``enqueue`` the long way (under self._lock); ``retry``: the segment at whose end the
        short path's ``write()`` of this line failed or was cut short (``Spool.retry_one`` cuts
        the file back and writes it again, as ``append_one`` does)."""
        self._seq += 1
        self._emitted += 1
        try:
            if retry is None:
                segment, index = self.spool.append_one(data)
            else:
                segment, index = self.spool.retry_one(retry, data + b"\n")
        except (SpoolWriteError, OSError, RuntimeError) as error:
            self._tail = None
            self._spool_write_failed += 1
            self._spool_trouble(error, getattr(error, "reason", "spool_error"))
            if self._closing:
                self._dropped[getattr(error, "reason", "spool_error")] += 1
            else:
                self._hold(data)
            return
        if self._closing:  # on disk: the next process writes it
            self._spooled += 1
            return
        last = self._last
        if last is not None and last.segment is segment and last.first + last.count == index:
            last.count += 1
        else:
            self._last = last = _Run(self._seq, self._clock(), segment, index, 1)
            self._runs.append(last)
        self._queued += 1
        if self._queued == self._batch_size:
            self._work.notify()
        self._tail = self._tail_after(last)

    def _tail_after(self, last: _Run) -> _Run | None:
        """``last`` when the next line may take ``enqueue``'s short path (under self._lock)."""
        segment = last.segment
        if (
            segment is not None
            and not self._closing
            and last.first + last.count == segment.count
            and self.spool.appendable(segment)
        ):
            return last
        return None

    def _hold(self, data: bytes) -> None:
        """Keep a record the spool could not take in memory (under self._lock), within the queue's
        bounds: past them the oldest record held is dropped (``queue_full``), as the batch
        processor does."""
        run = _Run(self._seq, self._clock(), None, 0, 1, [data], [None])
        self._runs.append(run)
        self._last = self._tail = None
        self._queued += 1
        self._held += 1
        self._held_bytes += run.size
        s = self.settings
        while self._held > s.max_queue_records or self._held_bytes > s.max_queue_bytes:
            old = next((r for r in self._runs if r.refs == [None]), None)
            if old is None:
                break
            self._runs.remove(old)
            self._queued -= 1
            self._held -= 1
            self._held_bytes -= old.size
            self._dropped["queue_full"] += 1
        if self._queued >= s.batch_size:
            self._work.notify()

    # ---- the delivery thread ----
    def _take(self) -> _Run | None:
        """The next batch: the oldest run, cut to ``batch_size`` records; None when it is time to stop."""
        s = self.settings
        with self._lock:
            while True:
                if self._closing:
                    return None
                runs = self._runs
                wait = (
                    ship_wait(
                        self._queued,
                        runs[0].t,
                        runs[0].seq,
                        self._flush_upto,
                        s.batch_size,
                        s.flush_interval,
                        self._clock(),
                    )
                    if runs
                    else math.inf
                )
                if wait <= 0:
                    break
                self._work.wait(s.flush_interval if wait == math.inf else wait)
            run = runs[0]
            if run.count > s.batch_size:  # the rest stays first in line
                if run.records is None:
                    taken = _Run(run.seq, run.t, run.segment, run.first, s.batch_size)
                else:
                    taken = _Run(
                        run.seq,
                        run.t,
                        None,
                        0,
                        s.batch_size,
                        run.records[: s.batch_size],
                        run.refs[: s.batch_size] if run.refs else None,
                    )
                    run.records = run.records[s.batch_size :]
                    run.refs = run.refs[s.batch_size :] if run.refs else None
                run.seq += s.batch_size
                run.first += s.batch_size
                run.count -= s.batch_size
                run = taken
            else:
                runs.popleft()
                if run is self._last:
                    self._last = self._tail = None
            self._queued -= run.count
            if run.records is not None and run.refs is not None:
                held = sum(1 for ref in run.refs if ref is None)
                self._held -= held
                if held:
                    self._held_bytes -= sum(
                        len(r) for r, ref in zip(run.records, run.refs, strict=True) if ref is None
                    )
            self._inflight = run
            return run

    def _run(self) -> None:
        try:
            while not self._abort.is_set():
                run = self._take()
                if run is None:
                    return
                try:
                    self._deliver(run)
                except Exception as error:  # never let the thread die: records would pile up unseen
                    self.log_once("worker", f"delivery worker error: {type(error).__name__}: {error}")
                    self._resolve(run, 0, Counter({"worker_error": run.count}))
                if self._spool_backlog:
                    self._recover()
        finally:
            with self._lock:
                self._ended = True
                close_spool = self._spool_closed_by_thread
            if close_spool:
                self.spool.close()

    def _export(self, run: _Run) -> list[Outcome]:
        try:
            if run.records is None:
                assert run.segment is not None
                result = self.exporter.export_lines(run.segment.path, run.first, run.count)
            else:
                if run.refs and not self._no_orphan_reads(run.refs):
                    return [Outcome("retry", "orphan_writer")] * run.count  # closing meanwhile
                result = self.exporter.export(Batch(run.records, ""))
            return as_outcomes(result, run.count)
        except Exception as error:  # noqa: BLE001 - an exporter's slip: the batch is retried
            self.log_once("exporter", f"exporter error: {type(error).__name__}: {error}")
            return [Outcome("retry", "exporter_error")] * run.count

    def _no_orphan_reads(self, refs: list[Ref | None]) -> bool:
        """Wait until no writer child of an earlier process reads the segments of these adopted
        records; False when closing cut the wait short.

        A process killed with SIGKILL leaves its writer child finishing the batch of lines it was
        sent; this process adopted the segment, and sends the lines it finds unacknowledged as
        bytes. Without waiting, both children could write the same records at once, and a store
        that checks for the ids it inserts rather than refusing a second row (ClickHouse) would
        then hold them twice. The orphan holds a POSIX record lock on the segment while it reads it
        (``store_process.SpoolLines``, ``WRITING_BYTE``) until it exits; taking that lock here and
        letting it go waits for it. This process's own child never reads an adopted segment."""
        from .store_process import WRITING_BYTE

        seen: set[int] = set()
        for ref in refs:
            if ref is None or id(ref[0]) in seen:
                continue
            seen.add(id(ref[0]))
            fd = ref[0].fd
            while True:
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, WRITING_BYTE)
                except OSError as error:
                    if error.errno not in (errno.EACCES, errno.EAGAIN):
                        break  # no such lock here (not a file that takes one): nothing to wait for
                    if self._abort.wait(0.05):  # an orphan mid-batch: polled, so close() can end it
                        return False
                    continue
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, WRITING_BYTE)
                break
        return True

    def _deliver(self, run: _Run) -> None:
        attempt = 0
        retrying = False
        try:
            while True:
                outcomes = self._export(run)
                retry = [o for o in outcomes if o.kind == "retry"]
                if not retry:
                    break
                # a batch is written in one transaction: any retry means none of it is known to be
                # written, so it goes again whole (a record refused for good is refused again)
                reason = retry[0].reason or "retry"
                self._note_state(reason, retrying)
                give_up = self.settings.max_retries is not None and attempt >= self.settings.max_retries
                with self._lock:
                    self._retried += run.count
                    if not retrying:
                        retrying = True
                        self._retrying += 1
                if give_up:
                    self._resolve(run, 0, Counter({"retries_exhausted": run.count}))
                    return
                after = max((o.retry_after_s or 0.0 for o in retry), default=0.0) or None
                delay = self.settings.retry_policy.delay_s(min(attempt, 30), after)
                attempt += 1
                if not self._backoff(delay):
                    return  # shutting down: close() counts the run as spooled
            self._note_state(None, retrying)
            drops: Counter[str] = Counter()
            delivered = 0
            for outcome in outcomes:
                if outcome.kind == "delivered":
                    delivered += 1
                else:  # drop, or a split no smaller batch can help with here
                    drops[outcome.reason or "rejected"] += 1
            if drops:
                for why in drops:
                    self.log_once(
                        f"refused-{why}",
                        f"the writer refused a record ({why}); it was dropped and counted as {why!r} "
                        "(logged once per reason)",
                        logging.WARNING,
                    )
            self._resolve(run, delivered, drops)
        finally:
            if retrying:
                with self._lock:
                    self._retrying -= 1
                    self._work.notify_all()

    def _resolve(self, run: _Run, delivered: int, drops: Counter[str]) -> None:
        with self._lock:
            if self._inflight is run:
                self._inflight = None
            elif id(run) in self._left_at_close:  # counted as spooled by close(): written after all
                self._spooled -= run.count
            self._delivered += delivered
            self._dropped.update(drops)
            self._batches += 1
            self._progress.notify_all()
        try:
            if run.records is None:
                assert run.segment is not None
                self.spool.ack_range(run.segment, run.first, run.first + run.count - 1)
            elif run.refs is not None:
                self.spool.ack(run.refs)
        except OSError as error:
            self.log_once("spool-ack", f"cannot write spool acknowledgements: {error}")

    # ---- what earlier processes left ----
    def _held_in_memory(self) -> tuple[int, int]:
        return self._held, self._held_bytes

    def _queue_adopted(self, found: list[tuple[bytes, Ref]]) -> None:
        s = self.settings
        due = self._clock() - s.flush_interval
        for start in range(0, len(found), s.batch_size):
            part = found[start : start + s.batch_size]
            self._runs.append(
                _Run(self._seq + 1, due, None, 0, len(part), [d for d, _ in part], [r for _, r in part])
            )
            self._seq += len(part)
        self._last = self._tail = None
        self._queued += len(found)

    # ---- flushing and closing ----
    def _idle_upto(self, seq: int) -> bool:
        if self._inflight is not None and self._inflight.seq <= seq:
            return False
        return not (self._runs and self._runs[0].seq <= seq)

    @signals.atomic
    def close(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout`` (default: the exit bound), then stop; what is not written
        stays in the spool for the next process. True when nothing was left."""
        timeout = self.settings.exit_timeout if timeout is None else timeout
        done = self.flush(timeout)
        with self._lock:
            if self._closing:
                return done
            self._closing = True
            self._tail = None
            self._work.notify_all()
            self._progress.notify_all()
        self._abort.set()
        # a batch still with the child gets the exporter's close bound to end (then the child is
        # killed and the batch counts as not written); after that nothing resolves any more
        try:
            self.exporter.close()
        except Exception:  # noqa: BLE001 - closing is best effort at exit
            pass
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)
        with self._lock:
            left = ([self._inflight] if self._inflight is not None else []) + list(self._runs)
            self._left_at_close = {id(r) for r in left}
            self._inflight = None
            self._runs.clear()
            self._queued = 0
            count = sum(r.count for r in left)
            held = [
                data
                for r in left
                if r.records is not None and r.refs is not None
                for data, ref in zip(r.records, r.refs, strict=True)
                if ref is None
            ]
            lost, lost_as = 0, "shutdown"
            if held:
                try:
                    self.spool.append(held, sync=True)
                except SpoolWriteError as error:
                    lost, lost_as = len(held) - len(error.refs), error.reason
                    self._spool_trouble(error, error.reason)
                except (OSError, RuntimeError) as error:
                    lost, lost_as = len(held), "spool_error"
                    self._spool_trouble(error, lost_as)
            self._spooled += count - lost
            if lost:
                self._dropped[lost_as] += lost
        if count:
            logger.warning(
                "lmgate %s: %d record(s) not delivered at shutdown; %s",
                self.name,
                count,
                f"spooled to {self.spool.directory} for the next process"
                if not lost
                else f"{count - lost} spooled to {self.spool.directory}, {lost} dropped as {lost_as!r}",
            )
        with self._lock:
            # a batch the child still writes after the wait above (a stalled machine): its lines
            # stay locked in this process until the thread resolves them (acknowledged when
            # written), then the thread lets the spool go; released now, the next process would
            # adopt them meanwhile and write them a second time (ClickHouse keeps both)
            by_thread = not self._ended and self._thread is not threading.current_thread()
            self._spool_closed_by_thread = by_thread
        if not by_thread:
            self.spool.close()
        exit_hooks.unregister(self)
        return done and not count

    def stats(self) -> dict[str, Any]:
        """Counts since start: emitted = delivered + dropped + pending at every moment."""
        with self._lock:
            inflight = self._inflight.count if self._inflight is not None else 0
            return self._stats(self._queued, inflight, 1 if inflight else 0, self._held_bytes, 0)


__all__ = ["SpoolTailProcessor"]
