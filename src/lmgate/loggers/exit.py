"""Batch loggers at process exit: ``atexit`` flushes every live one within its bound and spools
the rest. SIGTERM, whose default action skips ``atexit``, is routed through the same path when
``signals.py`` is on (the default outside ``lmgate serve``)."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from typing import Any, Protocol

from .._secrets import scrub
from . import signals

logger = logging.getLogger("lmgate.loggers")


class Closeable(Protocol):
    """What the exit path needs of a batch logger."""

    @property
    def name(self) -> str: ...

    @property
    def exit_timeout(self) -> float: ...

    def close(self, timeout: float | None = None) -> bool: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()
_installed = False
_install_lock = threading.Lock()


def register(owner: Closeable) -> None:
    """Close ``owner`` at exit (and on SIGTERM); the first registration installs the hooks."""
    global _installed
    _live.add(owner)
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        _installed = True
        atexit.register(_close_at_exit)
    signals.install(_close_at_exit)


def unregister(owner: Closeable) -> None:
    _live.discard(owner)


def live_loggers() -> list[Any]:
    """The batch processors (one per batch logger) created in this process and not yet closed."""
    return list(_live)


def _close_at_exit() -> None:
    signals.begin_close()
    try:
        close_all()
    finally:
        signals.end_close()


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
            logger.error("lmgate %s: close failed: %s", lg.name, scrub(str(error)))
