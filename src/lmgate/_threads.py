"""Daemon threads that lmgate starts for its own I/O, kept out of the way of process signals.

A signal sent to the process (SIGTERM from a supervisor, SIGINT from Ctrl-C) is delivered by the
kernel to *one* thread that does not block it. CPython runs the Python handler on the main thread;
when the signal lands on another thread it only sets a flag, which a main thread asleep in a
lock wait (``Event.wait``, ``Thread.join``) does not see until the wait ends. Blocking those
signals in threads that only run lmgate's own code keeps the kernel from choosing them.

This does not remove CPython's own race: a signal handled just before the main thread enters a
blocking wait is also acted on only when the wait returns (docs/loggers.md, "Flush, exit and
signals"). Event loops that use a wakeup fd (asyncio, uvicorn) are not affected.

Threads that run *user* hooks (the callback threads and loop) are not masked: a signal mask is
inherited by any process a hook starts, and a child that silently blocks SIGTERM is worse.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

_PROCESS_SIGNALS = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD", "SIGWINCH")
    if hasattr(signal, name)
)


def _block_process_signals() -> None:
    if hasattr(signal, "pthread_sigmask"):  # POSIX
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, _PROCESS_SIGNALS)
        except (OSError, ValueError):  # pragma: no cover - exotic platforms
            pass


def start_io_thread(target: Callable[..., Any], name: str, *args: Any) -> threading.Thread:
    """Start a daemon thread running ``target(*args)`` with process signals blocked (see above)."""

    def run() -> None:
        _block_process_signals()
        target(*args)

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread
