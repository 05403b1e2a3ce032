"""``StoreExporter``: how the ``store`` logger writes a batch of payload records to a
``LogStore`` in one transaction. Run by the delivery thread (``writer: thread``) or by the child
process of ``loggers/store_process.py`` (``writer: process``), so it is a module of its own that
both import."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..store.rows import (
    DEFAULT_MAX_RECORD_BYTES,
    NotPlain,
    plain_columns,
    row_from_columns,
    row_from_payload,
    values_from_columns,
)
from .exporter import DELIVERED, Batch, Outcome

logger = logging.getLogger("lmgate.loggers")


class StoreExporter:
    """Writes a batch of payload records to a ``LogStore`` in one transaction.

    ``opener`` (with ``store=None``): a server store that could not be reached when the logger
    was made; each batch tries to open it first, and until it can the batch is retried (the
    records wait in the queue and the write-ahead spool), so a proxy starts while its ClickHouse
    or PostgreSQL is down and loses nothing."""

    def __init__(
        self, store: Any, *, max_record_bytes: int | None = None, opener: Callable[[], Any] | None = None
    ) -> None:
        # imported here, once, not per record (an import statement in a function costs a few
        # thousand instructions each time it runs); the builder is heavier than this module needs
        # at import
        from .._callbacks.payload_facts import built_from_facts

        self._built = built_from_facts
        self.store = store
        self._opener = opener
        self.max_record_bytes = int(max_record_bytes or DEFAULT_MAX_RECORD_BYTES)

    def __repr__(self) -> str:
        return f"<StoreExporter {self.store!r}>"

    def export(self, batch: Batch) -> list[Outcome]:
        if self.store is None and self._opener is not None:
            try:
                self.store = self._opener()
            except Exception as error:  # noqa: BLE001 - still unreachable: the batch waits
                logger.warning("store: cannot open the store yet, will retry: %s", error)
                return [Outcome("retry", type(error).__name__)] * len(batch.records)

        outcomes: list[Outcome] = []
        rows = []
        prepared = batch.prepared or [None] * len(batch.records)
        from_columns = (
            values_from_columns if getattr(self.store, "WRITES_VALUE_ROWS", False) else row_from_columns
        )
        for record, columns in zip(batch.records, prepared, strict=True):
            try:
                if columns is None and record[:1] == b"[":  # a call's facts: its payload built here
                    record, columns = self._built_from_facts(record)
                if columns is not None:  # taken from the payload at enqueue (StoreLogger.take)
                    rows.append(from_columns(columns, record))
                else:  # read back from the spool, or enqueued as bytes alone: parsed
                    rows.append(row_from_payload(record, self.max_record_bytes))
                outcomes.append(DELIVERED)
            except ValueError as error:  # includes orjson.JSONDecodeError: no retry can fix it
                outcomes.append(Outcome("drop", f"not_a_payload: {error}"[:200]))
        try:
            self.store.write(rows)
        except Exception as error:  # noqa: BLE001 - a locked or full database: try the batch again
            logger.warning("store: writing a batch of %d failed, will retry: %s", len(rows), error)
            return [o if o.kind == "drop" else Outcome("retry", type(error).__name__) for o in outcomes]
        return outcomes

    def _built_from_facts(self, record: bytes) -> tuple[bytes, tuple[Any, ...] | None]:
        """The payload a call's facts record stands for (``_callbacks.payload_facts``), and its
        row's columns taken from the payload dict it was encoded from (not parsed back); None for
        the columns of a payload over ``max_record_bytes`` or not plain: parsed, as any record."""
        summary, data = self._built(record)
        if len(data) > self.max_record_bytes:
            return data, None
        try:
            return data, plain_columns(summary.payload())
        except NotPlain:
            return data, None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


__all__ = ["StoreExporter"]
