"""``store``: every call's standard logging payload as a row of the local log store.

    lmgate.callbacks = ["store"]
    # settings (callback_settings.store): type (sqlite | clickhouse | postgres), path, url,
    # retention_days, max_record_bytes, turn_off_message_logging, and the batch logger's
    # (batch_size, flush_interval, spool, ...)

A batch logger like the others: the call only enqueues; the batch processor's delivery thread
writes each batch in one transaction (``StoreExporter``); records still queued at exit go to
the spool and are written by the next process. ``call_id`` is the table's primary key and rows
are inserted with ON CONFLICT DO NOTHING, so a batch delivered again after a failure that came
after the write is stored once. Read it with ``lmgate logs`` (docs/store.md).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from .._callbacks.payload_facts import facts_record, facts_record_of
from ._env import LoggerConfigError
from .batch import BatchLogger
from .store_exporter import StoreExporter

NAMES = ("store",)
STORE_PARAMS = ("type", "path", "url", "retention_days", "max_record_bytes", "writer")
# where a batch is written: "thread" (the delivery thread, in this process), "process" (a child
# process fed over a pipe, loggers/store_process.py) or "auto" (process when this process may run
# on two CPUs or more, else thread: ``writer_for``); `lmgate serve` sets the environment to "auto"
# (unless set), a program using the library gets "thread" unless it asks
WRITERS = ("thread", "process", "auto")
WRITER_ENV = "LMGATE_STORE_WRITER"


def usable_cpus() -> int:
    """How many CPUs this process may run on (its affinity: a container's or taskset's limit)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def writer_for(choice: str, cpus: int) -> str:
    """The writer ``choice`` means on a process that may use ``cpus`` CPUs: ``auto`` is the child
    process when there is a second CPU for it (the serving process then pays ~1/3 of the store's
    cost), the thread otherwise (on one CPU the two processes would only share it, and together
    they do ~10% more work than the thread writer: docs/store.md, "The writer process")."""
    if choice == "auto":
        return "process" if cpus >= 2 else "thread"
    return choice


logger = logging.getLogger("lmgate.loggers")


class StoreLogger(BatchLogger):
    """Batches to the log store (SQLite at ``path``, default ``<data dir>/logs.sqlite3``)."""

    # reads a call's standard logging payload (or its facts) only, never the request it sent: a
    # call whose only listeners are such sinks keeps no copy of that request (dispatch.Plan)
    reads_payload_only = True

    def __init__(
        self,
        *,
        path: str | None = None,
        type: str = "sqlite",
        url: str | None = None,
        retention_days: Any = None,
        max_record_bytes: Any = None,
        writer: str | None = None,
        store: Any = None,
        **params: Any,
    ) -> None:
        from .. import _conf

        writer = writer or os.environ.get(WRITER_ENV) or "thread"
        if writer not in WRITERS:
            raise LoggerConfigError(
                f"callback_settings.store.writer: must be one of {', '.join(WRITERS)}, got {writer!r}"
                f" (or set {WRITER_ENV})"
            )
        writer = writer_for(writer, usable_cpus())
        if store is not None:
            writer = "thread"  # a store object handed in cannot be handed to another process

        if retention_days is not None:
            retention_days = _conf.number(
                retention_days, name="callback_settings.store.retention_days", above=0
            )
        if max_record_bytes is not None:
            max_record_bytes = _conf.number(
                max_record_bytes, name="callback_settings.store.max_record_bytes", integer=True, above=0
            )
        if store is None:
            try:
                from ..store import open_store
            except ModuleNotFoundError as error:
                raise LoggerConfigError(
                    f"store: the log store needs SQLAlchemy: pip install 'lmgate[store]' ({error})"
                ) from error

            def opener() -> Any:
                return open_store(path, type=type, url=url, retention_days=retention_days)

            try:
                where = store_location(type, path, url)
                store = opener()
            except ValueError as error:  # a bad setting: the config is wrong, say so now
                raise LoggerConfigError(str(error)) from error
            except Exception as error:
                if type == "sqlite":
                    raise
                # a server that is down (or not up yet): start anyway, open at the first batch
                logger.warning(
                    "store: cannot reach the %s store at %s yet, will retry: %s", type, where, error
                )
                store = None
        else:
            where = None
            opener = None  # type: ignore[assignment]
        params.setdefault("name", "store")
        # write-ahead: each record is on disk (one write(), no fsync) before the call returns, so a
        # SIGKILL loses nothing; the next process with the same store writes what was left. The
        # spool is per store location, so two proxies on two stores never take each other's.
        params.setdefault("spool", "write_ahead")
        if params.get("spool") != "off" and not params.get("spool_dir"):
            params["spool_dir"] = _spool_dir_for(where or _location_of(store))
        # SQLite has one writer: more delivery threads would only wait on its lock (and ClickHouse
        # wants few, large inserts)
        params.setdefault("max_in_flight", 1)
        # big batches: one insert (one ClickHouse part, one SQLite commit) per thousand calls
        params.setdefault("batch_size", 1000)
        params.setdefault("flush_interval", 1.0)
        exporter: Any
        if writer == "process":
            from ..store.rows import DEFAULT_MAX_RECORD_BYTES
            from .store_process import ProcessStoreExporter

            exporter = ProcessStoreExporter(
                # the same store the opener opens (a SQLite path made absolute: the same file
                # whatever the child's working directory)
                {
                    "type": type,
                    "path": where if type == "sqlite" else path,
                    "url": url,
                    "retention_days": retention_days,
                },
                store=store,
                max_record_bytes=int(max_record_bytes or DEFAULT_MAX_RECORD_BYTES),
                opener=opener,
            )
        else:
            exporter = StoreExporter(store, max_record_bytes=max_record_bytes, opener=opener)
        self.writer = writer
        # the child writes a call's facts line: a call only this logger hears may hand it one
        # made from the call itself, and keep no record (``dispatch.Plan.facts_sinks``)
        self.takes_facts = writer == "process"
        super().__init__(exporter, **params)

    def _make_processor(self, exporter: Any, settings: Any, name: str) -> Any:
        """With the writer in a child process and the write-ahead spool, the child reads each
        batch's records from the spool file: the serving process writes a record's line and
        nothing else (``spool_tail.py``). Otherwise the batch processor, as every batch logger."""
        if self.writer == "process" and settings.spool == "write_ahead" and settings.spool_dir:
            from .spool_tail import SpoolTailProcessor

            return SpoolTailProcessor(exporter, settings, name=name)
        return super()._make_processor(exporter, settings, name)

    @property
    def store(self) -> Any:
        return self.exporter.store  # type: ignore[attr-defined]

    def take(self, summary: CallSummary, event: str) -> None:
        """With the writer in a child process, the call's facts are queued instead of its payload
        when they are enough to build it there (``_callbacks.payload_facts``): the payload's build
        and encoding leave the event loop. Otherwise (or when a reader built the payload already)
        the payload, as every batch logger does."""
        if (
            self.writer == "process"
            and event in self.settings.events
            and not self.turn_off_message_logging
            and summary.payload_json_if_built() is None
        ):
            try:
                data = facts_record(summary)
            except Exception:  # noqa: BLE001 - anything odd: the payload, built here, says what it is
                data = None
            if data is not None:
                self.processor.enqueue(data)
                return
        super().take(summary, event)

    def take_record(self, record: CallRecord, event: str) -> bool:
        """With the writer in a child process: the call's facts read from its running record at
        the terminal event (no summary frozen for them), queued; True when taken. False for
        anything else: the dispatcher then freezes the summary and calls ``take``."""
        if self.writer != "process" or event not in self.settings.events or self.turn_off_message_logging:
            return False
        try:
            data = facts_record_of(record)
        except Exception:  # noqa: BLE001 - anything odd: take() builds the payload, which says what it is
            return False
        if data is None:
            return False
        self.processor.enqueue(data)
        return True

    def facts_wanted(self, event: str) -> bool:
        """Whether this logger takes a call's facts line for ``event`` now (``take_facts``), as
        ``take_record`` would: asked before the line is made, so that every sink of the call
        takes the line, or none does and the call falls back to its record."""
        return self.takes_facts and event in self.settings.events and not self.turn_off_message_logging

    def take_facts(self, data: bytes) -> None:
        """A call's facts line, made from the call at its success (``_call.Call``,
        ``payload_facts.success_facts``) after ``facts_wanted`` said yes: queued as
        ``take_record`` queues the line it makes."""
        self.processor.enqueue(data)

    def prepared_for(self, summary: CallSummary, data: bytes) -> tuple[Any, ...] | None:
        """The row's columns, taken from the payload dict the record was encoded from, so the
        delivery thread need not parse the record again: on a busy proxy that parse was the
        largest cost of the store after the SQLite insert (docs/store.md, "Cost"). A payload
        whose values would not read back the same from JSON (``rows.NotPlain``) or one over
        ``max_record_bytes`` (truncated when written) gets None: parsed by the delivery thread.
        With the writer in a child process nothing is prepared: the child parses each record,
        on another core, and the columns would only cost the event loop."""
        if self.writer == "process" or len(data) > self.exporter.max_record_bytes:  # type: ignore[attr-defined]
            return None
        from ..store.rows import plain_columns

        try:
            return plain_columns(summary.payload())
        except Exception:  # noqa: BLE001 - NotPlain, or anything odd: the delivery thread parses it
            return None


def store_location(type: str, path: str | None, url: str | None) -> str:
    """Where a store is, without credentials (names its spool directory, appears in messages);
    the same string whether or not the store could be opened."""
    if type == "sqlite":
        from ..store.base import default_path

        return os.path.abspath(path or default_path())
    if type == "clickhouse":
        from ..store.clickhouse import location

        return location(url or "")
    from ..store.postgres import location as pg_location

    return pg_location(url or "")


def _location_of(store: Any) -> str:
    path = getattr(store, "path", None)
    return str(getattr(store, "location", None) or (os.path.abspath(path) if path else repr(store)))


def _spool_dir_for(where: str) -> str:
    import hashlib

    from .batch_settings import default_spool_dir

    return f"{default_spool_dir('store')}-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


if TYPE_CHECKING:
    from .._callbacks.record import CallRecord
    from .._callbacks.summary import CallSummary
    from ..settings import Settings


def logger_for_name(name: str, settings: Settings | None = None) -> StoreLogger | None:
    """``"store"`` in a callback list, configured by ``callback_settings.store`` of ``settings``
    (default: the module's)."""
    if name not in NAMES:
        return None
    from ..settings import DEFAULT

    entry = ((settings or DEFAULT).callback_settings or {}).get(name) or {}
    if entry.get("callback_type") not in (None, "store"):
        return None  # a callback_settings entry named "store" of another type (generic_api, ...)
    options = {k: v for k, v in dict(entry).items() if k != "callback_type"}
    return StoreLogger(**options)


__all__ = ["StoreExporter", "StoreLogger", "logger_for_name"]
