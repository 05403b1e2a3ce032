"""Waiting for callbacks: ``flush_callbacks``, ``aflush_callbacks`` and ``callback_stats``."""

from __future__ import annotations

from typing import Any

from ._callbacks.dispatch import get_dispatcher

DEFAULT_FLUSH_TIMEOUT_S = 30.0


def flush_callbacks(timeout: float | None = DEFAULT_FLUSH_TIMEOUT_S) -> bool:
    """Block until every pending callback delivery (and every batch logger) is done.

    Returns True when nothing is left pending, False when ``timeout`` ran out first. With
    ``lmgate.strict_callbacks = True`` it raises ``CallbackError`` if a callback raised.
    """
    return get_dispatcher().flush(timeout)


async def aflush_callbacks(timeout: float | None = DEFAULT_FLUSH_TIMEOUT_S) -> bool:
    """``flush_callbacks`` for async code: waits without blocking the event loop."""
    import asyncio

    dispatcher = get_dispatcher()
    own = dispatcher._loop
    if own is not None and asyncio.get_running_loop() is own.loop:
        raise RuntimeError("aflush_callbacks() cannot be awaited inside a callback: it would wait for itself")
    return await asyncio.to_thread(dispatcher.flush, timeout)


def callback_stats() -> dict[str, Any]:
    """Deliveries submitted, done and pending, and callback errors by ``name.hook``."""
    return get_dispatcher().stats()
