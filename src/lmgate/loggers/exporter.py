"""How a batch goes on the wire: the ``Exporter`` seam and what it answers.

The batch processor (``processor.py``) decides *when* a batch ships, retries it and accounts for
every record; an exporter only knows *how* to ship one batch and says what became of it. This is
the split the OpenTelemetry SDK makes between its ``BatchSpanProcessor`` and its exporters.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import orjson


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
    """Records handed to an exporter (each one compact JSON). ``key`` is the same on every retry
    of the batch; ``record_key(i)`` is a per-record key for exporters that send records one by one.
    ``prepared``: per record, what its logger worked out from it when it was enqueued (``enqueue``'s
    ``prepared``; the store logger's row columns), or None (records read back from the spool)."""

    records: list[bytes]
    key: str
    offsets: list[int] = field(default_factory=list)
    prepared: list[Any] | None = None

    def record_key(self, i: int) -> str:
        return f"{self.key}-{self.offsets[i] if self.offsets else i}"


@runtime_checkable
class Exporter(Protocol):
    """How a batch goes on the wire. One outcome for the whole batch, or one per record.

    ``export`` may be called from ``max_in_flight`` threads at once. An exporter may also have a
    ``prepare()`` method: the processor calls it once on a delivery thread at start, to open
    connections or import what the first batch would otherwise wait for."""

    def export(self, batch: Batch) -> Outcome | Sequence[Outcome]: ...

    def close(self) -> None: ...


def as_outcomes(result: Any, n: int) -> list[Outcome]:
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
