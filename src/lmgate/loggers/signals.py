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

What it does not do (CPython runs Python handlers only on the main thread, between bytecodes): a
SIGTERM that the kernel delivers to another thread, or that lands in the instant the main thread
enters a blocking wait, is acted on when that wait ends. A program whose main thread waits
without a timeout and must stop promptly should own SIGTERM (``docs/loggers.md``).
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
    return True


def _ours() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if _state.self_sent:
        _state.self_sent -= 1
        if _state.raised or not _state.pending:
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
    if _ours():
        try:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        except (ValueError, OSError):  # not the main thread (a fork from another thread), or unsupported
            pass


def _after_fork_in_child() -> None:
    disabled = _state.disabled
    _state.__dict__.update(_State().__dict__)
    _state.disabled = disabled
    _restore_default()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
