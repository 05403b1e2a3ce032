"""What both batch processors share: the public face a logger and the exit hooks call
(``closed``, ``exit_timeout``, ``ship_now``, ``flush``, ``count_unencodable``, ``count_flagged``,
``log_once``), the retry wait, the spool-trouble line and the ``stats()`` dictionary.

``processor.BatchProcessor`` keeps each record in a queue (and, write-ahead, on disk too);
``spool_tail.SpoolTailProcessor`` keeps only which spool lines wait. How they queue, take and
resolve records differs; how a caller waits for them, how drops are counted and said, and what
``stats()`` reports must not, so it lives here once. A subclass sets the attributes declared
below in its ``__init__`` and answers ``_idle_upto``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .._callbacks.encoding import ENCODING_ERRORS_KEY
from .._secrets import scrub
from .batch_settings import BatchSettings
from .spool import Ref, Spool

logger = logging.getLogger("lmgate.loggers")


class ProcessorCommon:
    settings: BatchSettings
    name: str
    spool: Spool | None
    _lock: threading.Lock
    _work: threading.Condition  # idle delivery threads wait on it
    _progress: threading.Condition  # flush() waits on it
    _abort: threading.Event
    _seq: int
    _flush_upto: int
    _emitted: int
    _delivered: int
    _dropped: Counter[str]
    _retried: int
    _retrying: int
    _recovered: int
    _spool_write_failed: int
    _flagged: int
    _spooled: int
    _batches: int
    _closing: bool
    _failing: str | None
    _last_error: str | None
    _last_error_at: str | None
    _logged: set[str]
    _spool_backlog: bool  # the spool held more than the last adoption took
    _clock: Callable[[], float]

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def exit_timeout(self) -> float:
        return self.settings.exit_timeout

    def ship_now(self) -> None:
        """Ship what is queued now, without waiting for it (``flush`` waits)."""
        with self._lock:
            if self._seq > self._flush_upto:
                self._flush_upto = self._seq
                self._work.notify()

    def count_unencodable(self, error: BaseException) -> None:
        """A record that could not be built or encoded at all: emitted and dropped, said once."""
        with self._lock:
            self._emitted += 1
            self._dropped["unencodable"] += 1
            self._progress.notify_all()
        self.log_once(
            "unencodable",
            f"a log record could not be built or encoded and was dropped (counted as 'unencodable'; "
            f"logged once): {type(error).__name__}: {error}",
        )

    def count_flagged(self) -> None:
        with self._lock:
            self._flagged += 1
        self.log_once(
            "flagged",
            "a log record held values that cannot be encoded as JSON; they were replaced by "
            f"'<unencodable: ...>' and named in metadata.{ENCODING_ERRORS_KEY} (logged once; "
            "counted in stats()['flagged'])",
            logging.WARNING,
        )

    def log_once(self, kind: str, message: str, level: int = logging.ERROR) -> None:
        """Log ``message`` (secrets masked) the first time a problem of this ``kind`` is seen."""
        if kind not in self._logged:
            self._logged.add(kind)
            logger.log(level, "lmgate %s: %s", self.name, scrub(message))

    def _spool_trouble(self, error: BaseException, reason: str) -> None:
        """Said once per logger: every record it concerns is counted in stats()."""
        assert self.spool is not None
        self.log_once(
            "spool",
            f"cannot write to the spool {self.spool.directory} ({reason}): {error}; records that are "
            "not on disk are kept in memory and still delivered while this process lives (counted in "
            f"stats()['spool_write_failed']); at shutdown those that cannot be spooled are dropped as "
            f"{reason!r}. Logged once.",
        )

    def _backoff(self, delay: float) -> bool:
        """Wait ``delay`` seconds before a retry; False when shutdown cut the wait short."""
        if self.settings.retry_policy.sleep is not time.sleep:
            self.settings.retry_policy.sleep(delay)  # an injected clock (tests, virtual time)
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
            if reason is not None:
                self._last_error = reason
                self._last_error_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if reason is not None and previous != reason:
            logger.warning(
                "lmgate %s: delivery failing (%s); records are kept and retried", self.name, reason
            )
        elif reason is None and previous is not None:
            logger.info("lmgate %s: delivery recovered", self.name)

    # ---- recovery of what earlier processes spooled ----
    def _held_in_memory(self) -> tuple[int, int]:
        """Records and bytes queued in memory now (under self._lock): what bounds an adoption."""
        raise NotImplementedError

    def _queue_adopted(self, found: list[tuple[bytes, Ref]]) -> None:
        """Queue records adopted from the spool, due at once (under self._lock)."""
        raise NotImplementedError

    def _recover(self) -> None:
        """Adopt what earlier processes left in the spool, as much as the queue's bounds allow."""
        if self.spool is None or self._closing:
            return
        s = self.settings
        with self._lock:
            held_records, held_bytes = self._held_in_memory()
        room_records = s.max_queue_records - held_records
        if room_records <= s.max_queue_records // 2:
            return
        try:
            found, more = self.spool.adopt(room_records, s.max_queue_bytes - held_bytes)
        except OSError as error:
            self.log_once("spool-adopt", f"cannot read the spool {self.spool.directory}: {error}")
            return
        self._spool_backlog = more
        if not found:
            return
        with self._lock:
            if self._closing:  # closed meanwhile: the adopted lines stay on disk for the next process
                return
            self._queue_adopted(found)
            self._emitted += len(found)
            self._recovered += len(found)
            self._work.notify()
        logger.info(
            "lmgate %s: %d spooled record(s) from an earlier process queued for delivery",
            self.name,
            len(found),
        )

    # ---- flushing ----
    def _idle_upto(self, seq: int) -> bool:
        """True when every record up to sequence number ``seq`` is resolved (under self._lock)."""
        raise NotImplementedError

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

    def _stats(
        self, queued: int, inflight: int, inflight_batches: int, queued_bytes: int, splits: int
    ) -> dict[str, Any]:
        """``stats()``'s dictionary (under self._lock): emitted = delivered + dropped + pending."""
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
            "in_flight_batches": inflight_batches,
            "retrying_batches": self._retrying,
            "queued_bytes": queued_bytes,
            "spooled": self._spooled,
            "recovered": self._recovered,
            "flagged": self._flagged,
            "splits": splits,
            "spool_write_failed": self._spool_write_failed,
            "batches": self._batches,
            "closed": self._closing,
            # readiness shows a logger whose receiver keeps failing as unhealthy
            "healthy": not self._retrying,
            "failing": self._failing,
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
        }


__all__ = ["ProcessorCommon"]
