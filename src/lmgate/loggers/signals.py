"""SIGTERM in programs that use batch loggers: exit with status 143 through ``atexit``.

SIGTERM's default action ends the process without ``atexit``, so queued records would be lost.
When the first batch logger is created on the main thread and SIGTERM still has its default
action, ``install()`` sets a handler that raises ``SystemExit(143)`` on the main thread; the
program's ``finally`` blocks and ``atexit`` callbacks run, and lmgate's ``atexit`` hook flushes
the loggers within their bound and spools the rest. That is all it does:

* it never replaces a handler the program (or a server: ``lmgate serve`` calls ``disable()``,
  uvicorn installs its own) set; the application owns signals, lmgate only fills in the default;
* it is off with ``LMGATE_SIGTERM_FLUSH=0`` or ``disable()``; then SIGTERM kills the process
  as usual, and only what the write-ahead spool holds survives (sent by the next process);
* the per-record path pays nothing: the handler looks at the interrupted stack instead. Inside
  a function marked ``@atomic`` (the batch processor's enqueue and close: counters and spool
  half-updated) or inside an ``import`` (unwinding there left packages half-imported and the
  delivery threads failing on them; at most ``IMPORT_WAIT_S``), the exit is put off: a short-lived
  thread sends SIGTERM to the main thread again every ``RETRY_S`` until it can be raised;
* a SIGTERM after the exit began (the program caught the ``SystemExit``, or the main thread
  waits for a non-daemon thread at shutdown) closes the loggers right there and ends the
  process with ``os._exit(143)``; SIGTERMs during that bounded close are ignored, and once the
  loggers are closed SIGTERM gets its default action back;
* a forked child gets SIGTERM's default action back (its copies of the loggers are the parent's).

CPython runs Python handlers only on the main thread, between bytecodes. A SIGTERM that lands in
the instant the main thread enters a blocking wait (after its last check for signals, before
the wait's system call), or that the kernel hands to another thread, trips the handler at the C
level but leaves the main thread asleep until the wait ends: 60 s in a test, never for an idle
service. So a waker thread also hears SIGTERM at the C level: ``faulthandler.register(SIGTERM,
chain=True)`` writes a few lines into the waker's pipe and then calls Python's own C handler.
If the Python handler has not run ``RETRY_S`` later, the waker sends SIGTERM to the main thread,
which interrupts its wait (``EINTR``) and runs the handler. The waker blocks on the pipe: no cost
per record, nothing while no SIGTERM comes. (Python's wakeup fd would do the same, but it belongs
to the program's event loop: trio warns when it finds it taken.) Not covered: a second SIGTERM,
after the program caught the exit's ``SystemExit``, that lands the same way; the waker cannot
tell it from its own late re-sends.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any, TypeVar

from .. import _conf
from ..exceptions import ConfigError

ENV_SWITCH = "LMGATE_SIGTERM_FLUSH"
EXIT_STATUS = 128 + signal.SIGTERM  # 143, the shell convention
RETRY_S = 0.01  # how often a put-off exit is tried again
IMPORT_WAIT_S = 5.0  # an import longer than this is interrupted after all

logger = logging.getLogger("lmgate.loggers")
F = TypeVar("F", bound=Callable[..., Any])
_atomic: set[CodeType] = set()


class _State:
    def __init__(self) -> None:
        self.main_ident = threading.main_thread().ident
        self.close: Callable[[], None] | None = None
        self.disabled = False
        self.pending = False  # an exit was put off
        self.import_since: float | None = None
        self.raised = False
        self.closing = False
        self.self_sent = 0  # our own re-sends not yet seen by the handler
        self.handled = 0  # times the Python handler ran (the waker looks for a change)
        self.waker: _Waker | None = None
        self.warned = False  # about a bad LMGATE_SIGTERM_FLUSH


_state = _State()


def atomic(fn: F) -> F:
    """Mark ``fn`` as a section a SIGTERM's exit must not interrupt (main thread). No per-call cost."""
    _atomic.add(fn.__code__)
    return fn


def enabled() -> bool:
    """Off after ``disable()`` or with ``LMGATE_SIGTERM_FLUSH`` false; a value that is not a
    boolean keeps it on (losing records is the worse mistake), with one warning."""
    if _state.disabled:
        return False
    raw = os.environ.get(ENV_SWITCH, "").strip()
    if not raw:
        return True
    try:
        return _conf.boolean(raw, name=ENV_SWITCH, where="environment")
    except ConfigError as error:
        if not _state.warned:
            _state.warned = True
            logger.warning("lmgate: %s; the SIGTERM flush stays on", error)
        return True


def disable() -> None:
    """Leave SIGTERM to the application (``lmgate serve`` calls this first); undoes an install."""
    _state.disabled = True
    _restore_default()


def pending() -> bool:
    """True while a SIGTERM's exit is put off (for tests and diagnostics)."""
    return _state.pending


def install(close: Callable[[], None]) -> bool:
    """Route SIGTERM through ``SystemExit(143)``; ``close`` closes the loggers when the exit
    began already. Only on the main thread, when enabled and SIGTERM has its default action."""
    if not enabled() or threading.current_thread() is not threading.main_thread():
        return False
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return False
        signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not supported here (embedded interpreters, some platforms)
        return False
    _state.close = close
    _state.waker = _Waker.start()
    return True


def _ours() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    _state.handled += 1
    if _state.self_sent:
        _state.self_sent -= 1
        if _state.raised:
            return  # a re-send of ours arriving late: not a new SIGTERM
    if _state.closing:
        return  # the loggers' exit close runs, and it is bounded
    if _state.raised or getattr(threading, "_SHUTTING_DOWN", False) or not threading.main_thread().is_alive():
        _close_and_exit()  # raising now would be swallowed (shutdown) or caught again
    if _must_wait(frame):
        if not _state.pending:
            _state.pending = True
            threading.Thread(target=_retry, name="lmgate-sigterm", daemon=True).start()
        return
    _state.pending = False
    _state.raised = True
    raise SystemExit(EXIT_STATUS)


def _must_wait(frame: FrameType | None) -> bool:
    in_import = False
    while frame is not None:
        code = frame.f_code
        if code in _atomic:
            return True
        in_import = in_import or code.co_filename.startswith("<frozen importlib")
        frame = frame.f_back
    if not in_import:
        return False
    if _state.import_since is None:
        _state.import_since = time.monotonic()
    return time.monotonic() - _state.import_since < IMPORT_WAIT_S


class _Waker:
    """Hears SIGTERM at the C level and wakes a main thread asleep past its Python handler."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        os.set_blocking(self.write_fd, False)  # a signal handler must never block on it
        self.registered = False

    @classmethod
    def start(cls) -> _Waker | None:
        try:
            import faulthandler

            waker = cls()
        except (ImportError, OSError):
            return None
        try:
            if faulthandler.unregister(signal.SIGTERM):  # type: ignore[func-returns-value]  # returns bool
                # the program's registration was dead already (install()'s signal.signal() replaced
                # its C handler), and unregistering put back the action it had found: SIG_DFL
                signal.signal(signal.SIGTERM, _on_sigterm)
                logger.warning(
                    "lmgate: faulthandler's SIGTERM registration was replaced by lmgate's SIGTERM handling"
                )
            faulthandler.register(signal.SIGTERM, file=waker.write_fd, all_threads=False, chain=True)
            waker.registered = True
            threading.Thread(target=waker._run, name="lmgate-sigterm-waker", daemon=True).start()
        except (AttributeError, ValueError, OSError, RuntimeError):  # no faulthandler.register here
            waker.stop()
            return None
        return waker

    def _run(self) -> None:
        while True:
            try:
                if not os.read(self.read_fd, 65536):
                    break  # stop() closed the pipe
            except OSError:
                break
            self._see_the_handler_run()
        try:
            os.close(self.read_fd)
        except OSError:
            pass

    def _see_the_handler_run(self) -> None:
        seen, delay, waited = _state.handled, RETRY_S, 0.0
        while waited < IMPORT_WAIT_S:
            time.sleep(delay)  # nothing tells us the handler is overdue but the time
            waited += delay
            delay = min(2 * delay, 0.5)  # a main thread busy in C code needs one re-send, not hundreds
            if _state.handled != seen or _state.raised or _state.pending or _state.closing:
                break  # it ran: what it put off, _retry sees through
            if not _ours() or not threading.main_thread().is_alive():
                break
            _state.self_sent += 1
            try:
                signal.pthread_kill(_state.main_ident or 0, signal.SIGTERM)
            except (OSError, ValueError):  # the main thread is gone
                _state.self_sent -= 1
                break
        # our re-sends wrote to the pipe too (at the C level, before their Python handler ran):
        # once the handler has seen them, drop what they wrote, or it would start another round
        for _ in range(int(IMPORT_WAIT_S / RETRY_S)):
            if not _state.self_sent or _state.closing:
                break
            time.sleep(RETRY_S)
        self._drain()

    def _drain(self) -> None:
        os.set_blocking(self.read_fd, False)
        try:
            while os.read(self.read_fd, 65536):
                pass
        except OSError:  # empty (BlockingIOError) or closed
            pass
        finally:
            try:
                os.set_blocking(self.read_fd, True)
            except OSError:
                pass

    def stop(self) -> None:
        """Give SIGTERM's C handler back to Python's (before SIG_DFL is set: faulthandler's
        unregister restores the handler it found) and end the thread."""
        if self.registered:
            self.registered = False
            try:
                import faulthandler

                faulthandler.unregister(signal.SIGTERM)
            except (ImportError, AttributeError, ValueError, OSError, RuntimeError):
                pass
        try:
            os.close(self.write_fd)  # the thread reads EOF and ends
        except OSError:
            pass


def _retry() -> None:
    """Send SIGTERM to the main thread again until the handler raises the exit."""
    while _state.pending and not _state.raised and not _state.closing:
        time.sleep(RETRY_S)  # nothing signals the end of an import or an atomic section: try again
        if not _state.pending:
            return
        if not _ours():  # the program took SIGTERM over meanwhile: hand the signal on
            _state.pending = False
        _state.self_sent += 1
        try:
            signal.pthread_kill(_state.main_ident or 0, signal.SIGTERM)
        except (OSError, ValueError):  # the main thread is gone
            _state.self_sent -= 1
            return


def _close_and_exit() -> None:
    _state.closing = True
    try:
        if _state.close is not None:
            _state.close()
    finally:
        os._exit(EXIT_STATUS)


def begin_close() -> None:
    """The loggers' exit close has begun: SIGTERMs are ignored while it runs (it is bounded)."""
    _state.closing = True


def end_close() -> None:
    """The loggers are closed: SIGTERM gets its default action back, so a later atexit callback
    or a long finalization can still be stopped."""
    _restore_default()


def _restore_default() -> None:
    waker, _state.waker = _state.waker, None
    if waker is not None:
        waker.stop()
    if _ours():
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):  # not the main thread (a fork from another thread), or unsupported
            pass


def _after_fork_in_child() -> None:
    disabled, waker = _state.disabled, _state.waker
    _state.__dict__.update(_State().__dict__)
    _state.disabled = disabled
    if waker is not None:  # the parent's: no thread here, and the pipe is the parent's
        waker.stop()
        try:
            os.close(waker.read_fd)
        except OSError:
            pass
    _restore_default()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
