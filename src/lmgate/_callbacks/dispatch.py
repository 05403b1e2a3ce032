"""Which hook runs where, in what order, and how we know it has run.

Delivery never happens on the caller's path. For each call the pipeline ``emit``s events
(pre, post, stream, success, failure); each registered callback (a *target*) gets its hooks:

* **thread mode** — sync hooks run on one of a few callback threads, chosen by the target, so
  a target's events run in order (FIFO); an async hook met in this mode is run on the
  callback loop and waited for by that thread, which keeps the order;
* **async mode** — async hooks run as tasks on lmgate's callback loop (one daemon thread with
  its own event loop); events of one call and one target are chained, so they run in order,
  while different calls run concurrently. A sync hook met in this mode runs on the target's
  callback thread and the chain waits for it.

A sync call uses thread mode for a target that has any sync hook; an async call uses async
mode for a target that has any async hook. So the sync hook runs for sync calls and the
async hook for async calls, and a target that only has one kind still hears every call.

Running async hooks on our own loop (not the caller's) means ``asyncio.run()`` ending the
caller's loop cannot cancel a pending delivery, and a hook that blocks cannot stall the
caller's loop. ``flush`` waits until every submitted delivery is done; it runs at exit too.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import queue
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable
from contextvars import Context, copy_context
from datetime import datetime
from itertools import chain
from typing import TYPE_CHECKING, Any

from .. import _conf
from .._secrets import scrub
from ..exceptions import CallbackError, ConfigError
from ..settings import DEFAULT, Settings
from .custom_logger import CustomLogger, overrides
from .data import copy_data
from .kwargs import build_kwargs, prepare_shared
from .protocols import FactsSink, takes_summaries
from .record import CallRecord
from .redact import redact_response

if TYPE_CHECKING:
    import asyncio

    from .protocols import Flushable

# asyncio is imported on first use (it costs ~30 ms): most sync programs never need it
logger = logging.getLogger("lmgate.callbacks")

EVENTS = ("pre", "post", "stream", "success", "failure")
TERMINAL_EVENTS = frozenset({"success", "failure"})
_LOGGER_HOOKS: dict[str, tuple[str, str | None]] = {
    "pre": ("log_pre_api_call", "async_log_pre_api_call"),
    "post": ("log_post_api_call", None),
    "stream": ("log_stream_event", "async_log_stream_event"),
    "success": ("log_success_event", "async_log_success_event"),
    "failure": ("log_failure_event", "async_log_failure_event"),
}
# which events each list subscribes its entries to
_LOGGER_ROLES = {
    "callbacks": frozenset(EVENTS),
    "input_callback": frozenset({"pre", "post"}),
    "success_callback": frozenset({"stream", "success"}),
    "failure_callback": frozenset({"failure"}),
}
_FUNCTION_ROLES = {
    "callbacks": frozenset({"success", "failure"}),
    "input_callback": frozenset({"pre"}),
    "success_callback": frozenset({"success"}),
    "failure_callback": frozenset({"failure"}),
}
LIST_NAMES = tuple(_LOGGER_ROLES)

_PRE_KEYWORDS = ("model", "messages", "kwargs")
_EVENT_KEYWORDS = ("kwargs", "response_obj", "start_time", "end_time")

DEFAULT_CALLBACK_THREADS = 4
DEFAULT_EXIT_FLUSH_TIMEOUT_S = 5.0
# async jobs the callback loop may have waiting, not started, before callers make their calls'
# shared parts themselves (see Dispatcher.emit): a few milliseconds of the loop's work
ASSIST_BACKLOG = 64


def _is_async_callable(fn: Any) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class Target:
    """One registered callback and the handler it has for each event."""

    __slots__ = (
        "obj",
        "name",
        "kind",
        "sync",
        "async_",
        "redact",
        "worker_index",
        "mode",
        "roles",
        "sink",
        "full_kwargs",
        "by_keyword",
    )

    def __init__(self, obj: Any, roles: frozenset[str], worker_count: int) -> None:
        self.obj = obj
        self.roles = roles
        self.sink = False  # a SummarySink: takes its terminal events inline (see Plan)
        # kwargs with every key in the dict's own storage, so orjson (whose C code reads that
        # storage, not the dict's methods) writes every key; CustomLogger(full_kwargs=False) opts out
        self.full_kwargs = True
        # event -> the hook: a function, or for a logger the name of its method
        self.sync: dict[str, Any] = {}
        self.async_: dict[str, Any] = {}
        # hook function -> whether it takes the reference's keyword arguments (see _keyword_call)
        self.by_keyword: dict[Any, bool] = {}
        if _is_logger(obj):
            self.kind = "logger"
            self.name = type(obj).__name__
            for event in roles:
                sync_name, async_name = _LOGGER_HOOKS[event]
                # hook names, read from the logger when the hook runs (so a patched hook is the one called)
                if overrides(obj, sync_name):
                    self.sync[event] = sync_name
                if async_name and overrides(obj, async_name):
                    self.async_[event] = async_name
            self.redact = bool(getattr(obj, "turn_off_message_logging", False))
            self.sink = takes_summaries(obj)
            self.full_kwargs = getattr(obj, "full_kwargs", True) is not False
        else:
            self.kind = "function"
            self.name = (
                getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__name__
            )
            table = self.async_ if _is_async_callable(obj) else self.sync
            for event in roles:
                table[event] = obj
            self.redact = False
        self.worker_index = (id(obj) >> 4) % worker_count
        has_sync, has_async = bool(self.sync), bool(self.async_)
        # mode[is_async_call] -> "thread" | "async"
        self.mode = {
            False: "thread" if has_sync else "async",
            True: "async" if has_async else "thread",
        }

    def handles(self, event: str) -> bool:
        return event in self.sync or event in self.async_

    def hook(self, event: str, sync: bool) -> Callable[..., Any] | None:
        fn = (self.sync if sync else self.async_).get(event)
        return getattr(self.obj, fn) if isinstance(fn, str) else fn

    def keyword_call(self, fn: Any, event: str) -> bool:
        """Whether a logger's hook is called with the reference's keyword arguments.

        The reference calls ``log_success_event(kwargs=..., response_obj=..., start_time=...,
        end_time=...)`` and ``log_pre_api_call(model=..., messages=..., kwargs=...)``, and users'
        tests read ``mock.call_args.kwargs["kwargs"]``: so do we. A hook whose parameters are named
        otherwise (``def log_success_event(self, *args)``) would raise ``TypeError`` there; here it
        is called positionally instead."""
        if self.kind != "logger":
            return False
        key = getattr(fn, "__func__", fn)
        known = self.by_keyword.get(key)
        if known is None:
            names = _PRE_KEYWORDS if event == "pre" else _EVENT_KEYWORDS
            try:
                inspect.signature(fn).bind(**dict.fromkeys(names))
                known = True
            except (TypeError, ValueError):
                known = False
            if len(self.by_keyword) < 64:  # bounded: a test may patch a hook many times
                self.by_keyword[key] = known
        return known


def _identity(items: Any) -> tuple[int, ...]:
    if items is None:
        return ()
    if isinstance(items, (list, tuple)):
        return tuple(map(id, items))
    return (id(items),)  # a single callback assigned instead of a list


def _items(lists: tuple[Any, ...]) -> tuple[Any, ...]:
    """Every object the lists hold (a list may change after its plan is cached: its items are
    kept, not the list)."""
    return tuple(
        chain.from_iterable(
            lst if isinstance(lst, (list, tuple)) else (lst,) for lst in lists if lst is not None
        )
    )


def _plan_key(owner_id: int, lists: tuple[Any, ...]) -> tuple[Any, ...]:
    """What identifies a call's plan: whose settings, and which objects each list holds. Runs on
    every call someone listens to: for the usual four lists, one flat tuple made by C iterators
    (a generator of per-list tuples cost ~3x as much); the first three lengths say where each
    list ends. Anything else (a list set to None or to one callback) keys by ``_identity``."""
    if len(lists) == 4:
        first, second, third, fourth = lists
        if type(first) is list and type(second) is list and type(third) is list and type(fourth) is list:
            if not (second or third or fourth):  # the usual: one list in use (the proxy's ["store"])
                if len(first) == 1:
                    return (owner_id, 1, 0, 0, id(first[0]))  # the same key, at half the cost
                return (owner_id, len(first), 0, 0, *map(id, first))
            return (
                owner_id,
                len(first),
                len(second),
                len(third),
                *map(id, chain(first, second, third, fourth)),
            )
    return (owner_id, *(_identity(lst) for lst in lists))


def _is_logger(obj: Any) -> bool:
    if isinstance(obj, CustomLogger):
        return True
    if callable(obj):
        return False
    return any(hasattr(obj, h[0]) for h in _LOGGER_HOOKS.values()) or takes_summaries(obj)


class Plan:
    """The targets of one call, indexed by event. Empty plans cost nothing.

    ``inline`` holds, per terminal event, the loggers that take it on the caller's path: a
    ``protocols.SummarySink`` (the built-in batch loggers, or any logger with ``take``) gets
    ``take(summary, event)`` called inline by ``emit`` instead of its hooks, so (for example)
    its record is on disk before the call returns. It must be quick; what it raises is counted.
    """

    __slots__ = ("targets", "by_event", "inline", "empty", "reads_request", "takes_records", "facts_sinks")

    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        by_event = {
            e: [t for t in targets if t.handles(e) and not (t.sink and e in TERMINAL_EVENTS)] for e in EVENTS
        }
        self.inline: dict[str, list[Target]] = {}
        for e in TERMINAL_EVENTS:
            inline = [t for t in targets if t.sink and e in t.roles]
            if inline:
                self.inline[e] = inline
        self.empty = not any(by_event.values()) and not self.inline
        self.by_event = by_event
        # whether anything reads the request a call sends (its body and headers): a hook does
        # (kwargs), a sink does unless it says it reads the standard logging payload only
        # (``reads_payload_only``, the store), which holds neither; when nothing does, a call
        # need not keep them (``_call.Call.http_request``)
        self.reads_request = any(by_event.values()) or any(
            not getattr(t.obj, "reads_payload_only", False) for ts in self.inline.values() for t in ts
        )
        # whether every listener is a sink that may take the running record itself at the
        # terminal event (``take_record``: the store's facts) and nothing reads the call before
        # it: such a call's record need not copy its metadata when it starts (``CallRecord``)
        self.takes_records = (
            bool(self.inline)
            and not self.reads_request
            and all(
                getattr(t.obj, "take_record", None) is not None for ts in self.inline.values() for t in ts
            )
        )
        # the sinks of such a plan's success when each of them may also take a call's facts line
        # made ready (``takes_facts``: the store with its writer in a child process): a plain
        # call (not streamed, no cache, see ``_call.Call``) then keeps no record at all; its
        # line is made from the call when it succeeds and handed to them (``Dispatcher.take_facts``),
        # and a failure, or a line that cannot be made, falls back to a record made then
        self.facts_sinks: tuple[Target, ...] = ()
        if self.takes_records and "success" in self.inline:
            sinks = tuple(self.inline["success"])
            if all(isinstance(t.obj, FactsSink) and t.obj.takes_facts is True for t in sinks):
                self.facts_sinks = sinks


EMPTY_PLAN = Plan([])


class _Worker:
    """A callback thread: runs batches of jobs in order."""

    def __init__(self, dispatcher: Dispatcher, index: int) -> None:
        self.queue: queue.SimpleQueue[list[Callable[[], None]] | None] = queue.SimpleQueue()
        self.dispatcher = dispatcher
        self.thread = threading.Thread(target=self._run, name=f"lmgate-callbacks-{index}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            jobs = self.queue.get()
            if jobs is None:
                return
            for job in jobs:
                try:
                    job()
                except BaseException as error:  # noqa: BLE001 - this thread must outlive any hook
                    logger.error("lmgate callback thread: a job raised %r; continuing", error)


class _CallbackLoop:
    """lmgate's own event loop, on a daemon thread, for async hooks."""

    def __init__(self) -> None:
        import asyncio

        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="lmgate-callback-loop", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _run(self, ready: threading.Event) -> None:
        import asyncio

        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(ready.set)
        while True:
            try:
                self.loop.run_forever()
                return
            except BaseException as error:  # noqa: BLE001 - the loop must outlive anything a hook raises
                logger.error("lmgate callback loop: %r escaped a hook; the loop goes on", error)


class Dispatcher:
    """Delivers events to targets; counts, flushes and reports."""

    def __init__(self, worker_count: int = DEFAULT_CALLBACK_THREADS) -> None:
        self.worker_count = worker_count
        self._workers: list[_Worker | None] = [None] * worker_count
        self._loop: _CallbackLoop | None = None
        # async jobs waiting for the callback loop (see emit and _drain_async); _async_wake is
        # set while a drain is scheduled and has not started
        self._async_queue: deque[tuple[list[_Job], Context]] = deque()
        self._async_wake = False
        # async jobs emitted (under the lock) and started by the callback loop (by it alone)
        self._async_emitted = 0
        self._async_started = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._submitted = 0
        self._done = 0
        self._waiters = 0
        # terminal events whose shared parts the caller made, its hooks' threads being behind
        self.prepared_by_caller = 0
        self.errors: Counter[tuple[str, str]] = Counter()
        self.strict_errors: list[BaseException] = []
        self._flushables: weakref.WeakSet[Any] = weakref.WeakSet()
        # flushables with an exit path of their own (batch loggers): left out of the exit flush
        self._own_exit: weakref.WeakSet[Any] = weakref.WeakSet()
        # key -> (settings, plan, the lists' items): a plan holds the loggers a *name* resolved
        # to, not the name; the entry holds every object its key has the id of
        self._plan_cache: dict[tuple[Any, ...], tuple[Settings, Plan, tuple[Any, ...]]] = {}
        self._exit_registered = False

    # ---- plans ----
    def plan(
        self,
        global_lists: tuple[Any, ...],
        call_lists: dict[str, Any] | None,
        settings: Settings | None = None,
    ) -> Plan:
        """The targets of a call; callback *names* resolve with ``settings`` (a Router's
        ``callback_settings``), so the cache key holds the settings that name them."""
        # keyed by identity: loggers need not be hashable, and two equal loggers are still two.
        # A cached entry holds the lists' objects (names too) and the settings its names resolved
        # with, so their ids cannot be reused while it is cached.
        owner = settings or DEFAULT
        if owner.__dict__["_parent"] is not None:  # a root names its own callbacks: no call for it
            owner = owner.named_callbacks_owner()
        key = _plan_key(id(owner), global_lists)
        if not call_lists:
            cached = self._plan_cache.get(key)
            if cached is not None:
                return cached[1]
        entries: dict[int, tuple[Any, set[str]]] = {}
        for list_name, items in zip(LIST_NAMES, global_lists, strict=True):
            self._collect(entries, list_name, items, owner)
        if call_lists:
            for list_name in LIST_NAMES:
                self._collect(entries, list_name, call_lists.get(list_name) or (), owner)
        targets = [Target(obj, frozenset(roles), self.worker_count) for obj, roles in entries.values()]
        plan = Plan(targets) if targets else EMPTY_PLAN
        for t in targets:
            if overrides(t.obj, "flush"):  # a Flushable beyond CustomLogger's no-op
                self._flushables.add(t.obj)
        if not call_lists:
            if len(self._plan_cache) > 64:
                self._plan_cache.clear()
            self._plan_cache[key] = (owner, plan, _items(global_lists))
        if not plan.empty:
            self._ensure_exit_flush()
        return plan

    def _collect(
        self, entries: dict[int, tuple[Any, set[str]]], list_name: str, items: Any, settings: Settings
    ) -> None:
        from .registry import resolve_callback

        if items is None:
            return
        if not isinstance(items, (list, tuple)):
            items = [items]
        for item in items:
            obj = resolve_callback(item, settings) if isinstance(item, str) else item
            roles = (_LOGGER_ROLES if _is_logger(obj) else _FUNCTION_ROLES)[list_name]
            if not _is_logger(obj) and not callable(obj):
                raise TypeError(
                    f"lmgate.{list_name} holds {obj!r}, which is neither a CustomLogger nor callable"
                )
            slot = entries.get(id(obj))
            if slot is None:
                entries[id(obj)] = (obj, set(roles))
            else:
                slot[1].update(roles)

    # ---- delivery ----
    def emit(
        self,
        record: CallRecord,
        plan: Plan,
        event: str,
        response_obj: Any = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        if plan.inline and event in plan.inline:
            summary = None
            for t in plan.inline[event]:
                try:
                    # a sink that can take the running record itself (the store's facts) says so
                    # by answering True: then no summary is frozen for it (~10,000 instructions)
                    take_record = getattr(t.obj, "take_record", None)
                    if take_record is not None and take_record(record, event):
                        continue
                    if summary is None:
                        summary = record.summary()
                    t.obj.take(summary, event)
                except Exception as error:  # must not break the call
                    self.report(t, "take", error)
        targets = plan.by_event[event]
        if not targets:
            return
        # what belongs to this moment of the call (a retry changes the record afterwards)
        snapshot = (record.attempt, None if event == "pre" else record.original_response)
        is_async = record.is_async
        by_worker: dict[int, list[Callable[[], None]]] = {}
        async_jobs: list[_Job] = []
        for t in targets:
            job = _Job(self, t, record, event, response_obj, extra, snapshot)
            if t.mode[is_async] == "thread":
                by_worker.setdefault(t.worker_index, []).append(job.run_sync)
            else:
                async_jobs.append(job)
        with self._lock:
            self._submitted += len(targets)
            self._async_emitted += len(async_jobs)
        for index, jobs in by_worker.items():
            self._worker(index).queue.put(jobs)
        if async_jobs:
            if (
                event in TERMINAL_EVENTS
                and self._async_emitted - self._async_started > ASSIST_BACKLOG
                and not _in_callback_thread()
            ):
                # the callback loop has fallen behind the calls (it shares the GIL with callers,
                # which can make calls faster than it builds their hooks' arguments): the caller
                # makes this call's shared parts itself, so the loop catches up; it never waits.
                # (Callback threads need not: measured, they keep up with sync calls, and making
                # them idle costs a wake-up per call.)
                try:
                    prepare_shared(
                        record, [(_redacts(j.target, record), j.target.full_kwargs) for j in async_jobs]
                    )
                except Exception:  # noqa: BLE001 - never the call's failure: each hook meets it, counted
                    pass
                else:
                    with self._lock:
                        self.prepared_by_caller += 1
            # handed to the callback loop in batches: one wake-up for every job queued before the
            # loop gets to them (a call_soon_threadsafe per call, a pipe write and a loop turn
            # each, cost the caller's thread and the loop more than the hooks themselves)
            self._async_queue.append((async_jobs, copy_context()))
            if not self._async_wake:
                self._async_wake = True
                self._callback_loop().loop.call_soon_threadsafe(self._drain_async)

    def take_facts(self, plan: Plan, data: bytes) -> None:
        """A call's facts line (``payload_facts.success_facts``) to each of the plan's
        ``facts_sinks``, which all said they want it for this success (``facts_wanted``): the
        success event of a call that keeps no record. What a sink raises is counted, as ``emit``
        counts what ``take`` raises."""
        for t in plan.facts_sinks:
            try:
                t.obj.take_facts(data)
            except Exception as error:  # must not break the call
                self.report(t, "take", error)

    def _drain_async(self) -> None:
        """On the callback loop: a task for every queued async job, in the order they were
        emitted; a job behind a still running one of the same call and target waits for it, so
        one call's events reach one target in order (``_Job.start_async``). Each task gets the
        context of the caller that emitted its event, as a task created by the caller would."""
        self._async_wake = False  # before the first pop: a job queued after this wakes a new drain
        pending = self._async_queue
        loop = self._callback_loop().loop
        while pending:
            jobs, context = pending.popleft()
            for job in jobs:
                # each job in a context of its own, as each task of its own had one before
                run = context.run if len(jobs) == 1 else context.copy().run
                task = run(job.start_async, loop)
                tails = job.record.tails
                if tails is None:
                    tails = job.record.tails = {}
                tails[id(job.target.obj)] = task

    def _worker(self, index: int) -> _Worker:
        worker = self._workers[index]
        if worker is None:
            with self._lock:
                worker = self._workers[index]
                if worker is None:
                    worker = self._workers[index] = _Worker(self, index)
        return worker

    def _callback_loop(self) -> _CallbackLoop:
        loop = self._loop
        if loop is None:
            with self._lock:
                if self._loop is None:
                    self._loop = _CallbackLoop()
                loop = self._loop
        return loop

    def _finished(self) -> None:
        with self._lock:
            self._done += 1
            if self._waiters and self._done == self._submitted:
                self._cond.notify_all()

    def report(self, target: Target, hook: str, error: BaseException) -> None:
        key = (target.name, hook)
        with self._lock:
            self.errors[key] += 1
            first = self.errors[key] == 1
        if first:
            import traceback

            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            logger.error(
                "callback %s.%s raised (logged once; later errors are counted in lmgate.callback_stats()):\n%s",
                target.name,
                hook,
                scrub(text),
            )
        if DEFAULT.strict_callbacks:  # a process-wide debugging switch: the module default's
            with self._lock:
                self.strict_errors.append(error)

    # ---- flush ----
    @property
    def pending(self) -> int:
        return self._submitted - self._done

    def wait_idle(self, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            try:
                while self._done != self._submitted:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._waiters -= 1

    def register_flushable(self, obj: Flushable, own_exit_flush: bool = False) -> None:
        """``flush_callbacks()`` flushes ``obj`` from now on; at exit too, unless it has its own
        exit path (``own_exit_flush``: the batch loggers flush within their ``exit_timeout`` and
        spool the rest)."""
        self._flushables.add(obj)
        if own_exit_flush:
            self._own_exit.add(obj)
        self._ensure_exit_flush()

    def flush(self, timeout: float | None = None, batch_loggers: bool = True) -> bool:
        """Wait for every pending delivery, then flush batch loggers. True when nothing is left.

        ``batch_loggers=False`` (at exit) leaves them to their own exit path, which flushes within
        each logger's ``exit_timeout`` and spools the rest (``loggers.batch.close_all``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if _in_callback_thread():
            raise RuntimeError("flush_callbacks() cannot be called from inside a callback")
        drained = self.wait_idle(timeout)
        for obj in list(self._flushables):
            if not batch_loggers and obj in self._own_exit:
                continue
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                drained = bool(obj.flush(remaining)) and drained
            except Exception as error:  # a logger's flush must not stop the others
                logger.error("flush of %s failed: %s", type(obj).__name__, scrub(str(error)))
                drained = False
        with self._lock:
            errors, self.strict_errors = self.strict_errors, []
        if errors:
            raise CallbackError(
                f"{len(errors)} callback error(s) (strict_callbacks is on); first: {errors[0]!r}"
            ) from errors[0]
        return drained

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "submitted": self._submitted,
                "done": self._done,
                "pending": self._submitted - self._done,
                "errors": {f"{name}.{hook}": n for (name, hook), n in self.errors.items()},
                "errors_total": sum(self.errors.values()),
                "prepared_by_caller": self.prepared_by_caller,
            }

    def _ensure_exit_flush(self) -> None:
        if not self._exit_registered:
            self._exit_registered = True
            atexit.register(_flush_at_exit)

    def _reset_after_fork(self) -> None:
        self._workers = [None] * self.worker_count
        self._loop = None
        self._async_queue = deque()
        self._async_wake = False
        self._async_emitted = self._async_started = 0
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._submitted = self._done = self._waiters = 0


_thread_local_names = ("lmgate-callbacks-", "lmgate-callback-loop")


def _in_callback_thread() -> bool:
    return threading.current_thread().name.startswith(_thread_local_names)


def _redacts(t: Target, record: CallRecord) -> bool:
    # read when needed, not when the plan was built: a logger may turn message logging off at any time
    return record.redact_all or (
        t.kind == "logger" and bool(getattr(t.obj, "turn_off_message_logging", False))
    )


class _Job:
    """One event for one target; runs in thread mode or async mode."""

    __slots__ = ("dispatcher", "target", "record", "event", "response_obj", "extra", "snapshot")

    def __init__(
        self,
        dispatcher: Dispatcher,
        target: Target,
        record: CallRecord,
        event: str,
        response_obj: Any,
        extra: Any,
        snapshot: tuple[int, str | None] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.target = target
        self.record = record
        self.event = event
        self.response_obj = response_obj
        self.extra = extra
        self.snapshot = snapshot

    def _args(self, fn: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The hook's arguments, as the reference passes them (see ``Target.keyword_call``)."""
        t, record = self.target, self.record
        # read now, not when the plan was built: a logger may turn message logging off at any time
        redact = _redacts(t, record)
        # kwargs read the record: after the terminal event it is final, and the summary is frozen
        # only when a key needs it (the payload), so a callback that reads nothing costs no freeze
        # (the costly parts, payload and encoded request, are made once per call and shared by
        # every callback; the dict around them is built for each: a copy of one built dict
        # measured no cheaper than building it)
        kwargs = build_kwargs(record, self.event, redact, self.extra, self.snapshot, t.full_kwargs)
        if self.event == "pre":
            if t.kind == "function":
                return (kwargs,), {}
            if t.keyword_call(fn, "pre"):
                return (), {"model": kwargs["model"], "messages": kwargs["messages"], "kwargs": kwargs}
            return (kwargs["model"], kwargs["messages"], kwargs), {}
        response = self.response_obj
        if redact and isinstance(response, dict):
            response = copy_data(redact_response(response))
            if hasattr(type(self.response_obj), "_build"):
                response = type(self.response_obj)._build(response)
        # otherwise response_obj is the object the caller got, shared as in the reference (a copy per
        # callback would cost more than the rest of the delivery): hooks must treat it as read-only.
        # kwargs, complete_streaming_response included, are each callback's own.
        # post-call: end_time None, as the reference passes it
        end = None if self.event == "post" else (kwargs.get("end_time") or datetime.now())
        if t.keyword_call(fn, self.event):
            return (), {
                "kwargs": kwargs,
                "response_obj": response,
                "start_time": kwargs["start_time"],
                "end_time": end,
            }
        return (kwargs, response, kwargs["start_time"], end), {}

    def _hook_name(self, fn: Any) -> str:
        return getattr(fn, "__name__", self.event)

    def run_sync(self) -> None:
        t = self.target
        fn = t.hook(self.event, sync=True)
        try:
            if fn is not None:
                args, kw = self._args(fn)
                fn(*args, **kw)
            else:
                import asyncio

                fn = t.hook(self.event, sync=False)
                assert fn is not None  # the target handles this event: one of its two hooks exists
                args, kw = self._args(fn)
                future = asyncio.run_coroutine_threadsafe(
                    fn(*args, **kw), self.dispatcher._callback_loop().loop
                )
                future.result()
        except BaseException as error:  # noqa: BLE001 - SystemExit from a hook must not end this thread
            self.dispatcher.report(t, self._hook_name(fn), error)
        finally:
            self.dispatcher._finished()

    def start_async(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """The task that runs this job on the callback loop, after the job of the same call and
        target before it, if that one is still running (see ``Dispatcher._drain_async``).

        Always a task, even for a hook that never waits: a hook may need to be inside one
        (``asyncio.timeout``, aiohttp's request timeouts read ``asyncio.current_task()``)."""
        tails = self.record.tails
        previous = tails.get(id(self.target.obj)) if tails else None
        if previous is not None and previous.done():
            previous = None
        # create_task copies the current context: the caller's (Context.run in the drain)
        return loop.create_task(self.run_async(previous))

    async def run_async(self, previous: asyncio.Task[None] | None) -> None:
        import asyncio

        self.dispatcher._async_started += 1  # on the callback loop: the counter's one writer
        try:
            if previous is not None and not previous.done():
                await asyncio.wait((previous,))
            t = self.target
            fn = t.hook(self.event, sync=False)
            try:
                if fn is not None:
                    args, kw = self._args(fn)
                    await fn(*args, **kw)
                else:
                    import concurrent.futures

                    fn = t.hook(self.event, sync=True)
                    # a sync hook in async mode: run it on the target's thread so it cannot stall this loop
                    done: concurrent.futures.Future[None] = concurrent.futures.Future()
                    args, kw = self._args(fn)

                    def call(fn: Any = fn, args: Any = args, kw: Any = kw) -> None:
                        try:
                            fn(*args, **kw)
                            done.set_result(None)
                        except BaseException as error:  # noqa: B036 - handed back to the awaiting task
                            done.set_exception(error)

                    self.dispatcher._worker(t.worker_index).queue.put([call])
                    await asyncio.wrap_future(done)
            except asyncio.CancelledError:
                raise
            except BaseException as error:  # noqa: BLE001 - SystemExit from a hook must not stop this loop
                self.dispatcher.report(t, self._hook_name(fn), error)
        finally:
            self.dispatcher._finished()


_dispatcher: Dispatcher | None = None
_dispatcher_lock = threading.Lock()


def get_dispatcher() -> Dispatcher:
    global _dispatcher
    d = _dispatcher
    if d is None:
        with _dispatcher_lock:
            if _dispatcher is None:
                _dispatcher = Dispatcher(callback_thread_count())
            d = _dispatcher
    return d


# what must run at exit before the final flush (streaming registers its open-streams ender)
_before_exit_flush: list[Callable[[], Any]] = []


def before_exit_flush(step: Callable[[], Any]) -> None:
    """Run ``step`` at exit, before callbacks and batch loggers are flushed (once per step)."""
    if step not in _before_exit_flush:
        _before_exit_flush.append(step)


def end_streams_at_exit() -> None:
    """Streams the program never finished or closed end now, as abandoned: one terminal event each."""
    for step in list(_before_exit_flush):
        try:
            step()
        except Exception as error:  # exit goes on whatever one step does
            logger.error("lmgate exit step %r failed: %s", step, scrub(str(error)))


def callback_thread_count() -> int:
    """``LMGATE_CALLBACK_THREADS`` (a whole number >= 1), read when the dispatcher is first needed."""
    raw = os.environ.get("LMGATE_CALLBACK_THREADS", "").strip()
    if not raw:
        return DEFAULT_CALLBACK_THREADS
    return _conf.number(raw, name="LMGATE_CALLBACK_THREADS", where="environment", minimum=1, integer=True)  # type: ignore[no-any-return]


def exit_flush_timeout_s() -> float:
    """``LMGATE_EXIT_FLUSH_TIMEOUT_S`` (seconds or ``"5s"``); at exit a bad value must not lose
    records, so it falls back to the default with one warning instead of raising."""
    raw = os.environ.get("LMGATE_EXIT_FLUSH_TIMEOUT_S", "").strip()
    if not raw:
        return DEFAULT_EXIT_FLUSH_TIMEOUT_S
    try:
        return _conf.duration_s(raw, name="LMGATE_EXIT_FLUSH_TIMEOUT_S", where="environment")
    except ConfigError as error:
        logger.warning("lmgate: %s; flushing with the default %.1fs", error, DEFAULT_EXIT_FLUSH_TIMEOUT_S)
        return DEFAULT_EXIT_FLUSH_TIMEOUT_S


def _flush_at_exit() -> None:
    d = _dispatcher
    if d is None:
        return
    end_streams_at_exit()
    timeout = exit_flush_timeout_s()
    try:
        done = d.flush(timeout, batch_loggers=False)
    except CallbackError as error:
        logger.error("%s", error)
        return
    if not done:
        logger.warning(
            "lmgate: %d callback deliveries were still pending %.1fs after exit began", d.pending, timeout
        )


def _after_fork() -> None:
    # the child has only the forking thread: every lock another thread held stays held forever
    global _dispatcher_lock
    _dispatcher_lock = threading.Lock()
    if _dispatcher is not None:
        _dispatcher._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
