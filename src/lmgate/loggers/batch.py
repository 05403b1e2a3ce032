"""``BatchLogger``: the callback side of batch delivery, a thin adapter over the batch processor.

A batch logger is three parts, split the way the OpenTelemetry SDK splits them:

* this adapter — a ``CustomLogger`` whose hooks (or, on the caller's path, ``take``)
  turn standard logging payloads into compact JSON and hand them to the processor;
* ``processor.BatchProcessor`` — the bounded queue, when to ship, retries, the spool and the
  accounting (``stats()``; its module docstring is the delivery contract);
* an exporter (``exporter.Exporter``) — how one batch goes on the wire
  (``http_exporter.HTTPExporter``, ``InMemoryExporter``, or your own).

Settings are one frozen ``BatchSettings`` built when the logger is made. Exit: ``exit.py``
flushes every live logger at ``atexit`` within ``LMGATE_EXIT_FLUSH_TIMEOUT_S`` (default 5 s) and
spools the rest; SIGTERM takes the same path unless turned off (``signals.py``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from .._callbacks.custom_logger import CustomLogger
from .._callbacks.encoding import ENCODING_ERRORS_KEY, encode_record
from .batch_settings import (  # noqa: F401 - re-exported: the names this module always had
    BATCH_OPTIONS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EXIT_TIMEOUT_S,
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_RECORDS,
    DEFAULT_RETRY_POLICY,
    EVENT_TYPES,
    MAX_IN_FLIGHT_LIMIT,
    SPOOL_MODES,
    BatchSettings,
    parse_event_types,
    positive,
)
from .exit import close_all, live_loggers  # noqa: F401 - re-exported
from .exporter import DELIVERED, Batch, Exporter, InMemoryExporter, Outcome  # noqa: F401 - re-exported
from .processor import BatchProcessor
from .spool import Spool

if TYPE_CHECKING:
    from .._callbacks.summary import CallSummary

logger = logging.getLogger("lmgate.loggers")


_FLAG_NEEDLE = f'"{ENCODING_ERRORS_KEY}"'.encode()


def _is_flagged(payload: Any) -> bool:
    metadata = payload.get("metadata") if isinstance(payload, dict) else None
    return isinstance(metadata, dict) and bool(metadata.get(ENCODING_ERRORS_KEY))


class BatchLogger(CustomLogger):
    """A CustomLogger that batches standard logging payloads and ships them with ``exporter``.

    ``name`` names the default spool directory (``<cache>/spool/<name>``) and the threads;
    ``stats()`` reports the counts (see ``processor.py`` for the delivery contract).

    It is a ``SummarySink`` (``take`` below): the dispatcher hands it terminal events on the
    caller's path instead of scheduling its hooks on a callback thread; with the write-ahead
    spool the record is on disk before the call returns, and in every mode it is cheaper than a
    thread hand-off (the payload is encoded once per call, shared by every sink). A subclass that
    defines its own success/failure hook gets its hooks called instead (the dispatcher's one rule,
    ``protocols.takes_summaries``), so its code runs.
    """

    def __init__(
        self, exporter: Exporter, *, name: str, settings: BatchSettings | None = None, **kwargs: Any
    ) -> None:
        """Batch options (``batch_settings.BATCH_OPTIONS``: ``batch_size``, ``flush_interval``,
        ``spool``, …) are keyword arguments checked by ``BatchSettings.build``, or ``settings``
        built already; the other keyword arguments are ``CustomLogger``'s."""
        options = {k: kwargs.pop(k) for k in BATCH_OPTIONS if k in kwargs}
        super().__init__(**kwargs)
        if settings is None:
            settings = BatchSettings.build(name=name, **options)
        elif options:
            raise TypeError(f"pass batch options or settings=, not both (got {', '.join(options)})")
        self.settings = settings
        self.name = name
        self.exporter = exporter
        self.processor = self._make_processor(exporter, settings, name)
        from .._callbacks.dispatch import get_dispatcher

        get_dispatcher().register_flushable(self, own_exit_flush=True)  # close_all() flushes us at exit

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def _make_processor(self, exporter: Exporter, settings: BatchSettings, name: str) -> Any:
        """The processor behind this logger (the store's writer process reads the spool itself:
        ``StoreLogger`` makes a ``spool_tail.SpoolTailProcessor``)."""
        return BatchProcessor(exporter, settings, name=name)

    # settings, as the attributes they always were
    _events = property(lambda self: self.settings.events)
    batch_size = property(lambda self: self.settings.batch_size)
    flush_interval = property(lambda self: self.settings.flush_interval)
    max_queue_records = property(lambda self: self.settings.max_queue_records)
    max_queue_bytes = property(lambda self: self.settings.max_queue_bytes)
    max_retries = property(lambda self: self.settings.max_retries)
    max_in_flight = property(lambda self: self.settings.max_in_flight)
    retry_policy = property(lambda self: self.settings.retry_policy)
    spool_mode = property(lambda self: self.settings.spool)
    exit_timeout = property(lambda self: self.settings.exit_timeout)

    @property
    def spool(self) -> Spool | None:
        return self.processor.spool

    # ---- producers: hooks only enqueue ----
    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "success" in self.settings.events:
            self.enqueue(kwargs.get("standard_logging_object"))

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "failure" in self.settings.events:
            self.enqueue(kwargs.get("standard_logging_object"))

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "success" in self.settings.events:
            self.enqueue(kwargs.get("standard_logging_object"))

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        if "failure" in self.settings.events:
            self.enqueue(kwargs.get("standard_logging_object"))

    def take(self, summary: CallSummary, event: str) -> None:
        """``protocols.SummarySink``: called by the dispatcher on the caller's path for terminal
        events; with ``spool="write_ahead"`` the record is on disk before the call returns."""
        if event not in self.settings.events:
            return
        try:
            data = summary.payload_json(bool(self.turn_off_message_logging))
        except Exception as error:  # noqa: BLE001 - a record we cannot build is counted, never raised
            self.processor.count_unencodable(error)
            return
        if summary.payload_flagged:  # values replaced: nothing but the record itself to go by
            self.processor.count_flagged()
            self.enqueue_bytes(data)
        else:
            try:
                prepared = self.prepared_for(summary, data)
            except Exception:  # noqa: BLE001 - a subclass's slip never reaches the call: nothing prepared
                prepared = None
            self.enqueue_bytes(data, prepared)

    def prepared_for(self, summary: CallSummary, data: bytes) -> Any:
        """What the exporter may use with this record instead of parsing ``data`` again
        (``exporter.Batch.prepared``; the store logger's row columns), taken on the caller's
        path from the summary the record was encoded from; None (the default) for nothing.
        Never spooled: a record read back from the spool comes without it."""
        return None

    def enqueue(self, payload: Any) -> None:
        """Queue one record (any JSON-able value; the standard logging payload for hooks). Parts
        that cannot be encoded are replaced and flagged; a record that cannot be encoded at all
        is counted as dropped (``unencodable``)."""
        try:
            data = encode_record(payload)
        except Exception as error:  # noqa: BLE001 - counted, never raised into the caller's hook
            self.processor.count_unencodable(error)
            return
        if _FLAG_NEEDLE in data and _is_flagged(orjson.loads(data)):
            self.processor.count_flagged()
        self.processor.enqueue(data)

    def enqueue_bytes(self, data: bytes, prepared: Any = None) -> None:
        """Queue one record already encoded as compact JSON. Never blocks on I/O. ``prepared``:
        what the exporter may use instead of parsing ``data`` (``exporter.Batch.prepared``)."""
        if b"\n" in data:  # pretty-printed JSON: one line per record is what the spool and ndjson need
            data = orjson.dumps(orjson.loads(data))
            prepared = None
        self.processor.enqueue(data, prepared)

    # ---- flushing, closing, counts ----
    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every record queued so far; True when they are all resolved within ``timeout``."""
        return self.processor.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        import asyncio

        return await asyncio.to_thread(self.processor.flush, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, then stop; records not delivered stay in (or go to) the
        spool for the next process. True when nothing was left."""
        return self.processor.close(timeout)

    def stats(self) -> dict[str, Any]:
        """Counts since start: emitted = delivered + dropped + pending at every moment."""
        return self.processor.stats()
