"""The declared seams of the callback pipeline: what one part may expect of another.

Every contract between the pipeline and what plugs into it is written here, once, as a small
``Protocol``; the dispatcher checks for these, never for marker attributes or private names.

* ``SummarySink`` — takes a call's frozen summary inline, on the caller's path, at the terminal
  event (the built-in batch loggers; a log store or budget ledger later). Public as
  ``lmgate.integrations.SummarySink``.
* ``Flushable`` — holds records and can be told to deliver them (``lmgate.flush_callbacks()``
  flushes every registered one).
* ``FactsSink`` — takes a plain call's facts line, made from the call at its success, instead
  of a record (the log store with its writer in a child process).
* ``CallFacts`` — what the ``kwargs`` adapter reads: the running call's record for the events
  before the end (pre, post, stream), the frozen summary for the terminal ones.

A leaf module: it imports nothing of lmgate at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .summary import CallSummary


@runtime_checkable
class SummarySink(Protocol):
    """Takes terminal events inline: ``take(summary, event)`` with event ``"success"`` or ``"failure"``.

    A callback in ``lmgate.callbacks`` (or ``success_callback``/``failure_callback``) whose class
    has a ``take`` method is a sink (the exact rule: ``takes_summaries`` below): for the terminal events the dispatcher calls ``take`` on the
    caller's path instead of scheduling the logger's ``log_success_event``/``log_failure_event``
    on a callback thread. That is the fast path: no thread hand-off, no ``kwargs`` built, and the
    payload JSON (``summary.payload_json()``) encoded once per call and shared by every sink.

    The price: ``take`` runs inside the caller's call, so it must be quick (enqueue, append to a
    file) and must not block on the network. An exception it raises is counted and logged like
    a hook's (``lmgate.callback_stats()``), never raised to the caller.
    """

    def take(self, summary: CallSummary, event: str) -> None: ...


_TERMINAL_HOOKS = (
    "log_success_event",
    "log_failure_event",
    "async_log_success_event",
    "async_log_failure_event",
)


def takes_summaries(obj: Any) -> bool:
    """True when the dispatcher calls ``obj.take(summary, event)`` inline for terminal events.

    The one rule (``isinstance(obj, SummarySink)`` only checks that the name exists, so a logger
    with ``self.take = 0.1`` would lose its hooks): the class has a callable ``take``, and no
    class below the one that defines ``take`` defines a success/failure hook. A subclass that
    overrides a hook gets its hooks called (its code would never run otherwise); a class that
    defines ``take`` next to its hooks is a sink.
    """
    mro = type(obj).__mro__
    owner = next((i for i, c in enumerate(mro) if "take" in c.__dict__), None)
    if owner is None or not callable(mro[owner].__dict__["take"]):
        return False
    return not any(hook in c.__dict__ for c in mro[:owner] for hook in _TERMINAL_HOOKS)


@runtime_checkable
class FactsSink(Protocol):
    """Takes a call's facts line (``payload_facts.success_facts``) made from the call itself.

    When every success listener of a plan is one with ``takes_facts`` true
    (``dispatch.Plan.facts_sinks``), a plain call keeps no record: at its success each sink is
    asked ``facts_wanted("success")``, and when all say yes the line is made once and handed to
    each by ``take_facts``; otherwise the call falls back to a record made then.
    """

    takes_facts: bool

    def facts_wanted(self, event: str) -> bool: ...

    def take_facts(self, data: bytes) -> None: ...


@runtime_checkable
class Flushable(Protocol):
    """Holds records it has not delivered yet; ``flush(timeout)`` delivers them, True when none is left."""

    def flush(self, timeout: float | None = None) -> bool: ...


class CallFacts(Protocol):
    """The facts the ``kwargs`` adapter reads; ``CallRecord`` and ``CallSummary`` both offer them."""

    @property
    def call_type(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def provider(self) -> str: ...

    @property
    def stream(self) -> bool: ...

    @property
    def user(self) -> Any: ...

    @property
    def call_id(self) -> str: ...

    @property
    def trace_id(self) -> str: ...

    @property
    def start(self) -> float: ...

    @property
    def completion_start(self) -> float | None: ...

    @property
    def model_id(self) -> str | None: ...

    @property
    def api_base(self) -> str | None: ...

    @property
    def api_key_masked(self) -> str | None: ...

    @property
    def cache_hit(self) -> bool: ...

    @property
    def redact_all(self) -> bool: ...

    @property
    def attempt(self) -> int: ...

    @property
    def original_response(self) -> str | None: ...

    @property
    def optional_params(self) -> Any: ...

    @property
    def litellm_params(self) -> dict[str, Any]: ...

    def encoded_parts(self, redact: bool) -> dict[str, Any]: ...


class FinishedCall(CallFacts, Protocol):
    """What terminal ``kwargs`` read: the record once the call has ended (it is not changed after
    that), or its summary; ``summary()`` gives the frozen summary, built on first need."""

    @property
    def end(self) -> float | None: ...

    @property
    def cost(self) -> float | None: ...

    @property
    def cost_reason(self) -> str | None: ...

    @property
    def stream_status(self) -> str | None: ...

    @property
    def error(self) -> BaseException | None: ...

    @property
    def traceback(self) -> str | None: ...

    @property
    def response(self) -> Any: ...

    @property
    def response_json(self) -> bytes | None: ...

    def summary(self) -> CallSummary: ...
