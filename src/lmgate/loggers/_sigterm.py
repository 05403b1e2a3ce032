"""SIGTERM in programs that use batch loggers: exit with status 143 through ``atexit``.

SIGTERM's default action kills the process without ``atexit``, so queued records would be lost.
When the first batch logger is created on the main thread and SIGTERM still has its default
action, ``install()`` takes it over: the handler raises ``SystemExit(143)`` on the main thread
and ``atexit`` flushes the loggers within their bound and spools the rest. The rules:

* inside an ``import`` on the main thread the exit waits until the import is over (at most
  ``IMPORT_WAIT_S``): unwinding there can leave a package half-imported or the import lock held,
  and the delivery threads, which import their HTTP client, then failed and every record went
  to the spool instead of the receiver (we hit it with SIGTERM during ``import asyncio``). A
  watcher thread sends SIGTERM to the main thread again once its stack holds no importlib frame;
* inside an enqueue or a ``close()`` on the main thread (spool and counters half-updated) the
  exit waits until it is done (``guarded``);
* a SIGTERM after the exit began (the main thread is unwinding or shutting down, or the program
  caught the ``SystemExit``) and before the loggers' own close started: the watcher closes the
  loggers (flush within the bound, spool the rest) and ends the process with ``os._exit(143)``,
  so a process held up by a non-daemon thread can still be stopped. While that close runs more
  SIGTERMs are ignored (it is bounded); after it, SIGTERM has its default action again. The
  watcher's own wake-up signals are counted (``self_sent``), never taken for a new SIGTERM;
* when the program (or a server such as uvicorn) installs its own SIGTERM handler later, lmgate
  steps aside; a SIGTERM it had put off for an import is passed on to the new handler.

* CPython runs Python handlers between bytecodes of the main thread, so a SIGTERM that lands
  just as the main thread goes to sleep (a lock wait, ``epoll`` in an idle asyncio loop) would
  be acted on only when the sleep ends, which for an idle service is never. So the watcher also
  hears SIGTERM at the C level: ``faulthandler.register(SIGTERM, chain=True)`` writes a
  traceback into the watcher's pipe and then calls Python's own handler. If no exit follows
  within ``RESEND_INTERVAL_S``, the watcher sends SIGTERM to the main thread itself, which
  interrupts the sleep. (Python's signal wakeup fd would do the same, but it belongs to the
  program's event loop: asyncio and trio replace it, reset it or warn when it is shared.)

A forked child gets SIGTERM's default action back: the parent's watcher is not there, and the
child's copies of the loggers hold the parent's records.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

logger = logging.getLogger("lmgate.loggers")

EXIT_STATUS = 128 + signal.SIGTERM  # 143, the shell convention
RESEND_INTERVAL_S = 0.05  # how often the watcher checks on a deferred exit
IMPORT_WAIT_S = 5.0  # an import longer than this is interrupted after all


class _State:
    """Module state, reset in a forked child."""

    def __init__(self) -> None:
        self.main_ident = threading.main_thread().ident
        self.busy = 0  # > 0 while the main thread is in a guarded section
        self.pending: int | None = None  # an exit status a SIGTERM asked for, not raised yet
        self.deferred_since: float | None = None  # when the exit was first put off for an import
        self.raised = False  # SystemExit raised for a SIGTERM
        self.closing = False  # the loggers' own exit close is running: more SIGTERMs are ignored
        self.self_sent = 0  # SIGTERMs the watcher sent the main thread, not yet seen by the handler
        self.handled = 0  # times the Python handler ran
        self.watcher: _Watcher | None = None


state = _State()


RESEND = b"\x01"  # the handler put the exit off for an import
CLOSE_AND_EXIT = b"\x02"  # a SIGTERM after the exit began
# anything else in the pipe is faulthandler's traceback text: a SIGTERM arrived (C level)


class _Watcher:
    """A thread that sees deferred exits through, and closes and ends a stuck exit."""

    def __init__(self, close: Callable[[], None]) -> None:
        self._close = close
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # a signal handler must never block on it
        self.hears_c_level = False
        self.thread = threading.Thread(target=self._run, name="lmgate-sigterm", daemon=True)
        self.thread.start()

    def listen_at_c_level(self) -> None:
        try:
            import faulthandler

            # a registration the program made is gone already: signal.signal() replaced its C
            # handler; unregister it so that ours is really installed, not just re-pointed
            if faulthandler.unregister(signal.SIGTERM):  # type: ignore[func-returns-value]  # returns bool
                logger.warning("lmgate: faulthandler's SIGTERM registration was replaced by lmgate's SIGTERM handling")
            faulthandler.register(signal.SIGTERM, file=self.write_fd, all_threads=False, chain=True)
        except (ImportError, AttributeError, ValueError, OSError, RuntimeError):  # not on this platform
            return
        self.hears_c_level = True

    def _send_to_main(self) -> bool:
        """SIGTERM to the main thread (it interrupts a blocking wait); False when it is gone."""
        state.self_sent += 1
        try:
            signal.pthread_kill(state.main_ident or 0, signal.SIGTERM)
        except (OSError, ValueError):
            state.self_sent -= 1
            return False
        return True

    def _drain(self) -> bytes:
        """What is waiting in the pipe (our own re-sends leave faulthandler text behind)."""
        os.set_blocking(self.read_fd, False)
        chunks = []
        try:
            while True:
                chunk = os.read(self.read_fd, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        except BlockingIOError:
            pass
        finally:
            os.set_blocking(self.read_fd, True)
        return b"".join(chunks)

    def notify(self, job: bytes) -> None:
        try:
            os.write(self.write_fd, job)
        except OSError:  # pipe full: the watcher is busy with this very exit
            pass

    def _run(self) -> None:
        while True:
            try:
                data = os.read(self.read_fd, 4096)
            except OSError:
                return
            if not data:
                return
            if CLOSE_AND_EXIT in data:
                self._close_and_exit()
            elif RESEND in data:
                self._resend_when_out_of_import()
            else:
                self._make_sure_the_handler_runs()
            left = self._drain()  # text our own re-sends produced must not start another round
            if CLOSE_AND_EXIT in left:
                self._close_and_exit()
            elif RESEND in left:
                self._resend_when_out_of_import()

    def _make_sure_the_handler_runs(self) -> None:
        """A SIGTERM arrived (C level); if Python's handler has not run shortly after, the main
        thread is asleep past it: wake it with a SIGTERM of its own."""
        handled = state.handled
        for _ in range(int(IMPORT_WAIT_S / RESEND_INTERVAL_S)):
            time.sleep(RESEND_INTERVAL_S)
            if state.handled != handled or state.raised or state.closing:
                return  # the handler ran; what it put off is seen through by RESEND or CLOSE_AND_EXIT
            if not _ours() or not threading.main_thread().is_alive():
                return
            if not self._send_to_main():
                return

    def _resend_when_out_of_import(self) -> None:
        while state.pending is not None and not state.raised and not state.closing:
            time.sleep(RESEND_INTERVAL_S)  # no event tells us when an import ends: look again
            if state.busy or (_main_in_import() and not _import_wait_over()):
                continue
            if state.pending is None or state.raised or state.closing:
                return  # raised meanwhile (by the end of a guarded section)
            if not _ours():
                # another handler took SIGTERM over meanwhile: hand it the signal we held back
                state.pending = None
                self._send_to_main()
                return
            if not self._send_to_main():
                return

    def _close_and_exit(self) -> None:
        if state.closing:
            return
        try:
            self._close()
        except Exception as error:  # the exit must happen whatever the close did
            logger.error("lmgate: closing on SIGTERM failed: %s", error)
        finally:
            os._exit(EXIT_STATUS)


def install(close: Callable[[], None]) -> bool:
    """Take over SIGTERM (see the module docstring); ``close`` is the loggers' exit close.

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
    try:
        watcher = _Watcher(close)
    except (OSError, RuntimeError) as error:  # no pipe or thread: the handler works alone
        logger.warning("lmgate: no SIGTERM watcher (%s); a SIGTERM during an import exits at once", error)
    else:
        watcher.listen_at_c_level()
        state.watcher = watcher
    return True


def _shutting_down() -> bool:
    # threading._shutdown (joining non-daemon threads, its atexit hooks) runs before atexit;
    # raising SystemExit in there is swallowed and the status becomes 0
    return bool(getattr(threading, "_SHUTTING_DOWN", False)) or not threading.main_thread().is_alive()


def _ours() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def _in_import(frame: FrameType | None) -> bool:
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _main_in_import() -> bool:
    return _in_import(sys._current_frames().get(state.main_ident or 0))


def _import_wait_over() -> bool:
    since = state.deferred_since
    return since is not None and time.monotonic() - since >= IMPORT_WAIT_S


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    state.handled += 1
    if state.self_sent:
        state.self_sent -= 1
        if state.raised or state.closing:
            return  # our own wake-up call, arriving after the exit was raised: not a new SIGTERM
    if state.closing:
        return  # the loggers' exit close is running, and it is bounded
    watcher = state.watcher
    if state.raised or _shutting_down():
        # the exit began already (unwinding, shutting down, or the program caught SystemExit)
        if watcher is not None:
            watcher.notify(CLOSE_AND_EXIT)
        return
    state.pending = EXIT_STATUS
    if state.busy:
        return  # a guarded section raises it when it ends
    if watcher is not None and _in_import(frame) and not _import_wait_over():
        if state.deferred_since is None:
            state.deferred_since = time.monotonic()
        watcher.notify(RESEND)
        return
    _raise_exit()


def exit_if_pending() -> None:
    """Raise a SIGTERM exit that a guarded section held back (main thread, outside the guard)."""
    if state.pending is None or state.busy or state.raised or state.closing:
        return
    if not _ours():
        state.pending = None  # another handler took SIGTERM over since: hand it the signal
        signal.raise_signal(signal.SIGTERM)
        return
    watcher = state.watcher
    if watcher is not None and _in_import(sys._getframe()) and not _import_wait_over():
        if state.deferred_since is None:
            state.deferred_since = time.monotonic()
        watcher.notify(RESEND)
        return
    _raise_exit()


@contextmanager
def guarded() -> Iterator[None]:
    """On the main thread, a SIGTERM's exit waits until the block is done."""
    if threading.get_ident() != state.main_ident:
        yield
        return
    state.busy += 1
    try:
        yield
    finally:
        state.busy -= 1
        exit_if_pending()


def _raise_exit() -> None:
    state.raised = True
    state.pending = None
    raise SystemExit(EXIT_STATUS)


def begin_close() -> None:
    """The loggers' exit close has begun: SIGTERMs are ignored while it runs (it is bounded)."""
    state.closing = True


def end_close() -> None:
    """The loggers are closed: SIGTERM gets its default action back (on the main thread), so
    a later atexit callback or a long finalization can still be stopped."""
    if threading.current_thread() is threading.main_thread() and _ours():
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):
            pass


def _after_fork_in_child() -> None:
    watcher = state.watcher
    state.__dict__.update(_State().__dict__)
    if watcher is not None and watcher.hears_c_level:
        try:
            import faulthandler

            faulthandler.unregister(signal.SIGTERM)  # the pipe is the parent's watcher's
        except (ImportError, AttributeError, ValueError, OSError, RuntimeError):
            pass
    if watcher is not None:
        for fd in (watcher.read_fd, watcher.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
    if _ours():
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):  # forked from a thread that may not set handlers
            pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
