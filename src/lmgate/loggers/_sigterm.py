"""SIGTERM in programs that use batch loggers: exit with status 143 through ``atexit``.

SIGTERM's default action kills the process without ``atexit``, so queued records would be lost.
When the first batch logger is created on the main thread and SIGTERM still has its default
action, ``install()`` takes it over: the handler raises ``SystemExit(143)`` on the main thread and
``atexit`` flushes the loggers within their bound and spools the rest. Three moments are not
safe or not possible to raise in, and a *watcher* thread sees each of them through:

* the main thread is inside the import system (a module being imported, importlib's own
  locks): unwinding there can leave Python's import lock held or a package half-imported, and
  the delivery threads, which import their HTTP client, then fail or hang until the exit bound;
  every record went to the spool instead of the receiver (we hit this with SIGTERM during
  ``import asyncio``). The handler lets the import finish; the watcher re-sends SIGTERM to the
  main thread once its stack holds no importlib frame (bounded by ``IMPORT_WAIT_S``);
* the main thread is inside an enqueue (spool and counters half-updated): the enqueue raises
  the exit itself when it is done (``exit_if_pending``);
* CPython's race: a signal that lands just as the main thread goes to sleep in a lock wait
  (``Event.wait()``, ``join()``) runs the Python handler only when the wait ends. The watcher's
  pipe is Python's signal *wakeup fd* when nobody else claimed it, so the C-level handler tells
  the watcher directly; if no ``SystemExit`` follows within ``RESEND_INTERVAL_S`` it sends
  SIGTERM to the main thread itself (``pthread_kill``), which interrupts the wait.

The watcher acts only while SIGTERM's handler is still ours: a program or server (uvicorn) that
installs its own handler afterwards decides alone. A forked child has no watcher and gives the
wakeup fd back; its SIGTERM raises at once.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from types import FrameType

logger = logging.getLogger("lmgate.loggers")

EXIT_STATUS = 128 + signal.SIGTERM  # 143, the shell convention
RESEND_INTERVAL_S = 0.05  # how long the handler has to act before the watcher signals again
IMPORT_WAIT_S = 5.0  # an import longer than this is interrupted after all
MAIN_IDENT: int = threading.main_thread().ident or 0


class _State:
    """Module state, reset in a forked child."""

    def __init__(self) -> None:
        self.busy = 0  # > 0 while the main thread is inside enqueue (spool and counters half-updated)
        self.pending: int | None = None  # an exit status a SIGTERM asked for, not raised yet
        self.raised = threading.Event()  # SystemExit raised for a SIGTERM (once)
        self.exiting = False  # the atexit close has begun: further SIGTERMs are ignored
        self.watcher: _Watcher | None = None


state = _State()


class _Watcher:
    """A thread that hears of SIGTERM through a pipe and makes sure the main thread exits."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # required of a wakeup fd; the handler never blocks
        self.wakeup_fd_claimed = False
        self.thread = threading.Thread(target=self._run, name="lmgate-sigterm", daemon=True)
        self.thread.start()

    def claim_wakeup_fd(self) -> None:
        """Make the pipe Python's wakeup fd if nobody uses one (main thread only)."""
        try:
            previous = signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)
            if previous != -1:  # someone else's: give it back
                signal.set_wakeup_fd(previous)
                return
        except (ValueError, OSError):
            return
        self.wakeup_fd_claimed = True

    def notify(self, signum: int) -> None:
        try:
            os.write(self.write_fd, bytes([signum]))
        except OSError:  # pipe full: a byte is already waiting
            pass

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 64)
            except OSError:
                return
            if not data:
                return
            # every signal's byte arrives here (wakeup fd): act on SIGTERM while it is ours
            if signal.SIGTERM in data and _ours():
                self._see_exit_through()

    def _see_exit_through(self) -> None:
        import_deadline = time.monotonic() + IMPORT_WAIT_S
        while not (state.raised.is_set() or state.exiting) and _ours():
            if state.raised.wait(RESEND_INTERVAL_S):
                return
            if state.busy:
                continue  # the enqueue raises it when done
            if _main_in_import() and time.monotonic() < import_deadline:
                continue
            try:
                signal.pthread_kill(MAIN_IDENT, signal.SIGTERM)
            except (OSError, ValueError):  # the main thread is gone: the process is ending
                return


def install() -> bool:
    """Take over SIGTERM (see the module docstring).

    Only from the main thread, and only when SIGTERM still has its default action: a handler the
    program installed is never replaced. True when installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not supported here (embedded interpreters, some platforms)
        return False
    if hasattr(signal, "pthread_kill"):
        try:
            watcher = _Watcher()
        except (OSError, RuntimeError) as error:  # no pipe or no thread: the handler works alone
            logger.warning("lmgate: no SIGTERM watcher (%s); exits inside imports may lose deliveries", error)
        else:
            watcher.claim_wakeup_fd()
            state.watcher = watcher
    return True


def _ours() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def _in_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _main_in_import() -> bool:
    return _in_import(sys._current_frames().get(MAIN_IDENT))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if state.exiting or state.raised.is_set():
        return  # already on the way out: a second SIGTERM must not cut the exit flush short
    state.pending = EXIT_STATUS
    if state.busy:
        return  # mid-enqueue: it raises the exit when the record is queued
    if state.watcher is not None and _in_import(frame):
        state.watcher.notify(signum)  # let the import finish; the watcher signals again after
        return
    raise_exit()


def exit_if_pending() -> None:
    """Called by enqueue on the main thread when it is done: raise a SIGTERM exit it held back."""
    if state.pending is None or state.busy or state.exiting or state.raised.is_set():
        return
    if state.watcher is not None and _in_import(sys._getframe()):
        return  # the watcher raises it once the import is over
    raise_exit()


def raise_exit() -> None:
    state.raised.set()
    raise SystemExit(EXIT_STATUS)


def start_exit_close() -> None:
    """The atexit close has begun: SIGTERMs from now on are ignored."""
    state.exiting = True


def _after_fork_in_child() -> None:
    watcher = state.watcher
    fresh = _State()
    state.__dict__.update(fresh.__dict__)
    if watcher is not None:
        if watcher.wakeup_fd_claimed:
            try:
                previous = signal.set_wakeup_fd(-1)
                if previous != watcher.write_fd:  # someone else's by now: put it back
                    signal.set_wakeup_fd(previous)
            except (ValueError, OSError):  # forked from another thread: not ours to change
                pass
        for fd in (watcher.read_fd, watcher.write_fd):  # the parent's pipe: never write into it
            try:
                os.close(fd)
            except OSError:
                pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
