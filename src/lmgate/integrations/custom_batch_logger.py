"""``CustomBatchLogger``: a batch logger written for the reference runs unchanged, and gets
lmgate's delivery (bounded queue, retries with backoff, spool, exit flush, ``stats()``).

Written as the reference's docs show::

    class MyLogger(CustomBatchLogger):
        def __init__(self, **kwargs):
            self.flush_lock = asyncio.Lock()
            super().__init__(**kwargs, flush_lock=self.flush_lock)
            asyncio.create_task(self.periodic_flush())

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            self.log_queue.append(kwargs["standard_logging_object"])
            if len(self.log_queue) >= self.batch_size:
                await self.flush_queue()

        async def async_send_batch(self):
            await client.post(URL, json=self.log_queue)   # raise on failure: the batch is retried

What differs from the reference, and why:

* ``self.log_queue`` takes records (``append``/``extend``) into lmgate's batch processor; reading
  it (``len``, iteration, indexing, ``bool``) shows the batch being sent inside
  ``async_send_batch`` and nothing elsewhere — what waits is in ``stats()``. Assigning a list
  (``self.log_queue = []``, as the reference's own subclasses do) keeps lmgate's queue and
  takes the list's items into it. Records must be
  JSON-able (they are kept as JSON, so they can be spooled); ``async_send_batch`` sees them decoded.
* The processor decides when to ship (``batch_size`` records, ``flush_interval`` seconds, a
  flush) and calls ``async_send_batch()`` on its own delivery thread and event loop. If it
  raises, the batch is retried with backoff (``max_retries=None``: until delivered or spooled at
  exit) instead of being dropped; ``log_queue.clear()`` is therefore a no-op.
* ``flush_queue()`` asks for a shipment and returns at once (a hook never waits for the
  network); ``periodic_flush()`` returns at once (the processor has its own timer);
  ``flush(timeout)`` waits for delivery.

Hooks are the subclass's own: the dispatcher calls them like any ``CustomLogger``'s. lmgate's
batch options (``max_retries``, ``retry_policy``, ``max_queue_records``, ``spool``, ``exit_timeout``,
...) may be passed as keyword arguments.
"""

from __future__ import annotations

import contextvars
import logging
import time
from typing import Any

import orjson

from .._callbacks.custom_logger import CustomLogger
from .._callbacks.encoding import encode_record
from ..loggers._env import env_number
from ..loggers.batch_settings import BATCH_OPTIONS, BatchSettings
from ..loggers.exporter import DELIVERED, Batch, Outcome
from ..loggers.processor import BatchProcessor

__all__ = ["CustomBatchLogger"]

logger = logging.getLogger("lmgate.loggers")

DEFAULT_BATCH_SIZE = 512  # the reference's
DEFAULT_FLUSH_INTERVAL_SECONDS = 5
# lmgate's batch options a subclass may pass on (batch_size and flush_interval are the reference's own)
_BATCH_OPTIONS = tuple(k for k in BATCH_OPTIONS if k not in ("batch_size", "flush_interval"))
# the batch async_send_batch() is sending, as its task sees it
_sending: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("lmgate_sending", default=None)


class _LogQueue:
    """``log_queue``: writes go to the processor, reads show the batch being sent."""

    __slots__ = ("_take",)

    def __init__(self, take: Any) -> None:
        self._take = take

    def append(self, item: Any) -> None:
        self._take(item)

    def extend(self, items: Any) -> None:
        for item in items:
            self._take(item)

    def clear(self) -> None:
        """A no-op: sent records are settled by the outcome of ``async_send_batch``."""

    def _items(self) -> list[Any]:
        return _sending.get() or []

    def __len__(self) -> int:
        return len(self._items())

    def __bool__(self) -> bool:
        return bool(self._items())

    def __iter__(self) -> Any:
        return iter(self._items())

    def __getitem__(self, index: Any) -> Any:
        return self._items()[index]

    def __contains__(self, item: Any) -> bool:
        return item in self._items()

    def __repr__(self) -> str:
        return f"<log_queue sending {len(self)}>"


class _SendBatchExporter:
    """Runs the subclass's ``async_send_batch()`` for a batch, on this delivery thread's loop."""

    def __init__(self, owner: CustomBatchLogger) -> None:
        self._owner = owner
        self._loop: Any = None

    def export(self, batch: Batch) -> Outcome:
        import asyncio

        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        token = _sending.set([orjson.loads(r) for r in batch.records])
        try:
            self._loop.run_until_complete(self._owner.async_send_batch())
        except Exception as error:  # noqa: BLE001 - retried, and said once
            self._owner._processor.log_once(
                "send_batch",
                f"async_send_batch() raised {type(error).__name__}: {error}; the batch is retried",
            )
            return Outcome("retry", f"send_batch_{type(error).__name__}")
        finally:
            _sending.reset(token)
        self._owner.last_flush_time = time.time()
        return DELIVERED

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()


class CustomBatchLogger(CustomLogger):
    """The reference's batching base, delivered by lmgate's batch processor (see the module docstring)."""

    def __init__(
        self,
        flush_lock: Any = None,
        batch_size: int | None = None,
        flush_interval: float | None = None,
        **kwargs: Any,
    ) -> None:
        options = {k: kwargs.pop(k) for k in _BATCH_OPTIONS if k in kwargs}
        self.flush_lock = flush_lock
        # the reference's environment variables, read (and validated) only when no argument is given
        self.batch_size: int = int(
            batch_size or env_number("DEFAULT_BATCH_SIZE", DEFAULT_BATCH_SIZE, integer=True)
        )
        self.flush_interval = float(
            flush_interval or env_number("DEFAULT_FLUSH_INTERVAL_SECONDS", DEFAULT_FLUSH_INTERVAL_SECONDS)
        )
        self.last_flush_time = time.time()
        super().__init__(**kwargs)
        name = type(self).__name__
        settings = BatchSettings.build(
            name=name, batch_size=self.batch_size, flush_interval=self.flush_interval, **options
        )
        self._processor = BatchProcessor(_SendBatchExporter(self), settings, name=name)
        self._log_queue = _LogQueue(self._take)
        self._log_queue.extend(self.__dict__.pop("_early_records", ()))
        from .._callbacks.dispatch import get_dispatcher

        get_dispatcher().register_flushable(self)

    @property
    def log_queue(self) -> _LogQueue:
        """Append records here; inside ``async_send_batch`` it reads as the batch being sent."""
        return self._log_queue

    @log_queue.setter
    def log_queue(self, items: Any) -> None:
        # the reference's subclasses write ``self.log_queue = []`` after ``super().__init__()``:
        # the queue stays lmgate's, and whatever the new list holds is taken into it
        current = self.__dict__.get("_log_queue")
        if current is None:  # set before super().__init__(): taken once the processor exists
            self.__dict__["_early_records"] = list(items)
        elif items is not current:
            current.extend(list(items))

    def _take(self, item: Any) -> None:
        try:
            data = encode_record(item)
        except Exception as error:  # noqa: BLE001 - counted, never raised into the caller's hook
            self._processor.count_unencodable(error)
            return
        self._processor.enqueue(data)

    async def periodic_flush(self) -> None:
        """Returns at once: the batch processor ships every ``flush_interval`` seconds itself."""

    async def flush_queue(self) -> None:
        """Ask for what is queued to be shipped now; returns without waiting for the network."""
        self._processor.ship_now()

    async def async_send_batch(self, *args: Any, **kwargs: Any) -> None:
        """Send ``self.log_queue`` (the batch being shipped). Raise to have it retried."""

    # ---- lmgate's side ----
    @property
    def exit_timeout(self) -> float:
        return self._processor.exit_timeout

    def flush(self, timeout: float | None = None) -> bool:
        """Deliver every record queued so far; True when they are all resolved within ``timeout``."""
        return self._processor.flush(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Flush within ``timeout``, then stop; what is left is spooled for the next process."""
        return self._processor.close(timeout)

    def stats(self) -> dict[str, Any]:
        """The batch processor's counts (see ``lmgate.loggers.processor``)."""
        return self._processor.stats()
