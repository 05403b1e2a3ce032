"""The reference-compatible ``kwargs`` a callback receives: an adapter over the call's facts.

It reads the running call's ``CallRecord`` (``protocols.CallFacts``): before the end (pre, post,
stream) nothing else exists; after the terminal event the record is final, and the frozen
``CallSummary`` is asked for only by the keys that need it (``standard_logging_object``), so a
callback that reads none of them costs no summary and no payload (``protocols.FinishedCall``).

Each callback gets a fresh, private dict. By default every key is in the dict's own storage (the
costlier ones, ``messages``, ``litellm_params``, ``standard_logging_object``, …, as an
``orjson.Fragment`` of JSON encoded once per call until read), so ``orjson.dumps(kwargs)`` writes
every key; a logger made with ``full_kwargs=False`` gets those keys made on first read instead, so
a callback that never reads them costs nothing for them. See ``CallbackKwargs``.
"""

from __future__ import annotations

import weakref
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import orjson

from .data import copy_data
from .encoding import encode_record
from .payload import zero_cost_diagnostic
from .redact import REDACTED_TEXT, redact_response

if TYPE_CHECKING:
    from .protocols import CallFacts, FinishedCall

LOG_EVENT_TYPES = {
    "pre": "pre_api_call",
    "post": "post_api_call",
    "stream": "stream_event",
    "success": "successful_api_call",
    "failure": "failed_api_call",
}
_PAYLOAD_KEY = "standard_logging_object"

# every key a kwargs always has, in the order the reference fills them; costlier keys after
# the plain ones, the terminal events' keys last (keys a call may lack are added after these)
_PLAIN_KEYS = (
    "stream_options",
    "model",
    "start_time",
    "api_call_start_time",
    "current_attempt_api_call_start_time",
    "first_api_call_start_time",
    "model_id",
    "standard_callback_dynamic_params",
    "applied_guardrails",
    "extra_body",
    "agentic_loop_params",
    "stream",
    "user",
    "call_type",
    "litellm_call_id",
    "litellm_trace_id",
    "custom_llm_provider",
    "completion_start_time",
    "api_key",
    "log_event_type",
    "original_response",
    "cache_hit",
)
_PART_KEYS = ("messages", "optional_params", "litellm_params", "input", "additional_args")
_TERMINAL_KEYS = {
    "success": ("end_time", "response_cost", "zero_cost_diagnostic", _PAYLOAD_KEY),
    "failure": ("end_time", "response_cost", _PAYLOAD_KEY),
}
# full layout -> event -> template (the lazy layout adds its costly keys when first read)
_TEMPLATES = {
    full: {
        event: dict.fromkeys(_PLAIN_KEYS + (_PART_KEYS + _TERMINAL_KEYS.get(event, ()) if full else ()))
        for event in LOG_EVENT_TYPES
    }
    for full in (False, True)
}


class StreamOriginalResponse:
    """``kwargs["original_response"]`` of a stream's post-call event: it stands for the stream,
    where the reference puts the stream object itself.

    ``.stream`` is the stream while the caller holds it (a weak reference: a callback must not
    keep the caller's stream alive; it must not iterate it either — the caller does). ``str()``
    names it, and copies, pickles and JSON encoders (``default=str``) see that text, so every
    way of copying ``kwargs`` keeps working."""

    __slots__ = ("_ref", "_text")

    def __init__(self, stream: Any) -> None:
        self._ref = weakref.ref(stream)
        self._text = (
            f"<stream {type(stream).__name__} of {getattr(stream, 'model', None) or 'unknown model'}>"
        )

    @property
    def stream(self) -> Any:
        return self._ref()

    def __str__(self) -> str:
        return self._text

    __repr__ = __str__

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy and pickle give its text
        return (str, (self._text,))


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts) if ts is not None else None


class CallbackKwargs(dict):  # type: ignore[type-arg]
    """The ``kwargs`` a callback receives: a dict whose costlier values are parsed on first read.

    ``_lazy`` maps each costly key not read yet to how its value is made. Two layouts:

    * *full* (``absent`` false; the default): every key is in the dict's own storage from the start, a costly one holding an ``orjson.Fragment`` of its JSON,
      so orjson — which reads that storage, not these methods — writes every key;
    * *lazy* (a logger made with ``full_kwargs=False``): a costly key is absent from the storage until first read, so a
      callback that never reads it costs nothing for it (no payload built, no parts encoded).

    Every way of reading a dict from Python goes through the methods below and sees every key:
    ``[]``, ``get``, ``in``, ``len``, iteration, ``dict(kwargs)`` and ``{**kwargs}`` (``__iter__``
    is overridden, which sends CPython's dict copy down its mapping path), ``json.dumps``,
    ``copy``, ``pickle``. ``payload_json()`` gives the standard logging payload as JSON bytes.
    """

    __slots__ = ("_lazy", "_absent")

    def __init__(self, data: dict[str, Any], lazy: dict[str, tuple[Any, Any]], absent: bool = False) -> None:
        dict.__init__(self, data)
        self._lazy = lazy
        self._absent = absent

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._lazy

    def __len__(self) -> int:
        return dict.__len__(self) + (len(self._lazy) if self._absent else 0)

    def keys(self) -> Any:
        if self._absent:
            self._load_all()
        return dict.keys(self)

    def _load(self, key: str) -> Any:
        make, arg = self._lazy.pop(key)
        value = make(arg)
        dict.__setitem__(self, key, value)
        return value

    def _load_all(self) -> None:
        for key in list(self._lazy):
            self._load(key)

    def __getitem__(self, key: str) -> Any:
        if key in self._lazy:
            return self._load(key)
        return dict.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._lazy:
            return self._load(key)
        return dict.get(self, key, default)

    def __iter__(self) -> Any:
        if self._absent:
            self._load_all()
        return dict.__iter__(self)

    def values(self) -> Any:
        self._load_all()
        return dict.values(self)

    def items(self) -> Any:
        self._load_all()
        return dict.items(self)

    def __repr__(self) -> str:
        self._load_all()
        return dict.__repr__(self)

    def __eq__(self, other: object) -> bool:
        self._load_all()
        return dict.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        self._load_all()
        return dict.__ne__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __or__(self, other: Any) -> Any:
        self._load_all()
        return dict.__or__(self, other)

    def __ror__(self, other: Any) -> Any:
        self._load_all()
        return dict.__ror__(self, other)

    def __setitem__(self, key: str, value: Any) -> None:
        self._lazy.pop(key, None)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        if self._lazy.pop(key, None) is not None and self._absent:
            return  # never built
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: Any) -> Any:
        if key in self._lazy:
            self._load(key)
        return dict.pop(self, key, *default)

    def clear(self) -> None:
        self._lazy.clear()
        dict.clear(self)

    def popitem(self) -> tuple[str, Any]:
        self._load_all()
        return dict.popitem(self)

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key in self._lazy:
            self._load(key)
        return dict.setdefault(self, key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._load_all()
        dict.update(self, *args, **kwargs)

    def copy(self) -> dict[str, Any]:
        self._load_all()
        return dict(dict.items(self))

    def __reduce_ex__(self, protocol: Any) -> Any:  # copy, deepcopy and pickle see a plain dict
        self._load_all()
        return (dict, (dict(dict.items(self)),))

    def payload_json(self) -> bytes | None:
        """The standard logging payload as JSON bytes (terminal events only), or None."""
        lazy = self._lazy.get(_PAYLOAD_KEY)
        if lazy is not None:
            make, arg = lazy
            if make is orjson.loads:
                return arg  # type: ignore[no-any-return]
            facts, redact = arg
            return facts.summary().payload_json(redact)  # type: ignore[no-any-return]
        if not dict.__contains__(self, _PAYLOAD_KEY):
            return None
        return encode_record(dict.__getitem__(self, _PAYLOAD_KEY))  # read (maybe changed) as a dict


def _part_copy(arg: tuple[CallFacts, bool, str]) -> Any:
    facts, redact, name = arg
    part = facts.encoded_parts(redact)[name]
    return orjson.loads(part) if isinstance(part, bytes) else copy_data(part)


def _additional_args(arg: tuple[CallFacts, bool, int]) -> Any:
    facts, redact, attempt = arg
    return {
        "complete_input_dict": _part_copy((facts, redact, "body")),
        "headers": _part_copy((facts, redact, "headers")),
        "api_base": facts.api_base,
        "attempt": attempt,
    }


def _payload_copy(arg: tuple[FinishedCall, bool]) -> Any:
    facts, redact = arg
    return orjson.loads(facts.summary().payload_json(redact))


def _put(data: dict[str, Any], lazy: dict[str, tuple[Any, Any]], key: str, part: Any) -> None:
    """A costly key: a Fragment until read (bytes), or a private copy now (data orjson cannot encode)."""
    if isinstance(part, bytes):
        data[key] = orjson.Fragment(part)
        lazy[key] = (orjson.loads, part)
    else:
        data[key] = copy_data(part)


def prepare_shared(facts: FinishedCall, views: list[tuple[bool, bool]]) -> None:
    """Make now what the kwargs of a finished call's callbacks share (the encoded request
    parts, the summary and its encoded payload), for each (redact, full) view they will be
    built with: every later ``build_kwargs`` of the call reads them made. A view that is not
    full shares nothing (its callbacks make what they read)."""
    for redact, full in set(views):
        if full:
            redact = redact or facts.redact_all
            facts.encoded_parts(redact)
            facts.summary().payload_json(redact)


def build_kwargs(
    facts: CallFacts,
    event: str,
    redact: bool = False,
    extra: dict[str, Any] | None = None,
    snapshot: tuple[int, str | None] | None = None,
    full: bool = False,
) -> CallbackKwargs:
    """A fresh kwargs dict for one callback and one event (``facts``: the summary for terminal
    events, the record before). ``snapshot`` is (attempt, original_response) as they were when
    the event happened: a retry changes both on the record afterwards. ``full``: every key in
    the dict's own storage (see ``CallbackKwargs``)."""
    redact = redact or facts.redact_all
    attempt, original_response = (
        snapshot if snapshot is not None else (facts.attempt, facts.original_response)
    )
    if original_response is None and facts.stream and event in ("success", "failure"):
        # a stream has no raw body: its text is the assembled response, as JSON (what the
        # reference's post_call makes of a dict); the post-call event had the stream itself
        response_json = cast("FinishedCall", facts).response_json
        original_response = response_json.decode() if response_json else None
    if redact and original_response:
        original_response = REDACTED_TEXT
    # the fixed keys come from a template holding them in order: stores into a copy of it cost
    # a fraction of building the dict key by key (it grows and rehashes as it is built)
    template = _TEMPLATES[full][event]
    params = facts.optional_params
    if params:
        data: dict[str, Any] = {k: copy_data(v) for k, v in params.items()}
        stream_options = data.get("stream_options")
        data.update(template)  # a key the call also set (user) keeps the call's place
        data["stream_options"] = stream_options
    else:
        data = template.copy()
    start = _dt(facts.start)
    data["model"] = facts.model
    data["start_time"] = start
    # the reference's per-attempt send times; lmgate's attempts share the call's start
    data["api_call_start_time"] = start
    data["current_attempt_api_call_start_time"] = start
    data["first_api_call_start_time"] = start
    data["model_id"] = facts.model_id  # the Router/proxy deployment's id, None in library mode
    # what the reference fills from features lmgate has not got (per-call callback keys,
    # guardrails, agentic loops) or folds into the body (extra_body): empty, fresh each
    data["standard_callback_dynamic_params"] = {}
    data["applied_guardrails"] = []
    data["extra_body"] = {}
    data["agentic_loop_params"] = {"model": facts.model, "custom_llm_provider": facts.provider}
    data["stream"] = facts.stream
    data["user"] = facts.user
    data["call_type"] = facts.call_type
    data["litellm_call_id"] = facts.call_id
    data["litellm_trace_id"] = facts.trace_id
    data["custom_llm_provider"] = facts.provider
    completion_start = facts.completion_start
    data["completion_start_time"] = _dt(completion_start) if completion_start != facts.start else start
    data["api_key"] = facts.api_key_masked
    data["log_event_type"] = LOG_EVENT_TYPES[event]
    data["original_response"] = original_response
    data["cache_hit"] = facts.cache_hit
    if not full:
        return _lazy_kwargs(facts, event, redact, data, extra, attempt)
    parts = facts.encoded_parts(redact)
    lazy: dict[str, tuple[Any, Any]] = {}
    for name in ("messages", "optional_params", "litellm_params", "input"):
        _put(data, lazy, name, parts[name])
    body, headers = parts["body"], parts["headers"]
    if isinstance(body, bytes) and isinstance(headers, bytes):
        _put(
            data,
            lazy,
            "additional_args",
            b'{"complete_input_dict":%b,"headers":%b,"api_base":%b,"attempt":%d}'
            % (body, headers, orjson.dumps(facts.api_base), attempt),
        )
    else:
        data["additional_args"] = {
            "complete_input_dict": copy_data(body if not isinstance(body, bytes) else orjson.loads(body)),
            "headers": copy_data(headers if not isinstance(headers, bytes) else orjson.loads(headers)),
            "api_base": facts.api_base,
            "attempt": attempt,
        }
    if event in ("success", "failure"):
        _terminal(facts, event, redact, data, lazy)  # type: ignore[arg-type]
    if extra:
        _put_extra(data, lazy, extra, redact)
    return CallbackKwargs(data, lazy)


def _lazy_kwargs(
    facts: CallFacts,
    event: str,
    redact: bool,
    data: dict[str, Any],
    extra: dict[str, Any] | None,
    attempt: int,
) -> CallbackKwargs:
    """The default layout: the costly keys are made on first read (nothing is encoded for them)."""
    lazy: dict[str, tuple[Any, Any]] = {
        "messages": (_part_copy, (facts, redact, "messages")),
        "optional_params": (_part_copy, (facts, redact, "optional_params")),
        "litellm_params": (_part_copy, (facts, redact, "litellm_params")),
        "input": (_part_copy, (facts, redact, "input")),
        "additional_args": (_additional_args, (facts, redact, attempt)),
    }
    if event in ("success", "failure"):
        s: FinishedCall = facts  # type: ignore[assignment]
        data["end_time"] = _end_time(s, data)
        data["response_cost"] = s.cost
        if event == "success":
            data["zero_cost_diagnostic"] = zero_cost_diagnostic(s.cost, s.cache_hit, s.model)
        lazy[_PAYLOAD_KEY] = (_payload_copy, (s, redact))
        if s.cost is None:
            data["response_cost_failure_debug_information"] = {
                "error_str": s.cost_reason,
                "model": s.model,
                "custom_llm_provider": s.provider,
                "cache_hit": s.cache_hit,
                "call_type": s.call_type,
            }
        if s.stream:
            data["stream_status"] = s.stream_status
            lazy["complete_streaming_response"] = (_assembled, (s, redact))
            lazy["async_complete_streaming_response"] = (_assembled, (s, redact))
        if event == "failure":
            data["exception"] = s.error
            data["traceback_exception"] = s.traceback
    if extra:
        _put_extra(data, lazy, extra, redact)
    return CallbackKwargs(data, lazy, absent=True)


def _put_extra(
    data: dict[str, Any], lazy: dict[str, tuple[Any, Any]], extra: dict[str, Any], redact: bool
) -> None:
    for key, value in extra.items():
        lazy.pop(key, None)
        # a stream's post-call original_response is the stream: redacted like any response text
        data[key] = REDACTED_TEXT if redact and key == "original_response" and value is not None else value


def _assembled(arg: tuple[FinishedCall, bool]) -> Any:
    return assembled_copy(*arg)


def _end_time(s: FinishedCall, data: dict[str, Any]) -> datetime | None:
    """The end as a datetime; the one made for completion_start_time when they are the same
    instant (a plain call's first byte is its end: one local-time conversion fewer)."""
    end = s.end
    return data["completion_start_time"] if end == s.completion_start else _dt(end)


def _terminal(
    s: FinishedCall, event: str, redact: bool, data: dict[str, Any], lazy: dict[str, tuple[Any, Any]]
) -> None:
    data["end_time"] = _end_time(s, data)
    data["response_cost"] = s.cost
    if event == "success":
        data["zero_cost_diagnostic"] = zero_cost_diagnostic(s.cost, s.cache_hit, s.model)
    # the payload is encoded once per call and shared: each callback only parses it if it reads it
    _put(data, lazy, _PAYLOAD_KEY, s.summary().payload_json(redact))
    if s.cost is None:
        data["response_cost_failure_debug_information"] = {
            "error_str": s.cost_reason,
            "model": s.model,
            "custom_llm_provider": s.provider,
            "cache_hit": s.cache_hit,
            "call_type": s.call_type,
        }
    if s.stream:
        data["stream_status"] = s.stream_status
        for key in ("complete_streaming_response", "async_complete_streaming_response"):
            _put_response(s, redact, data, lazy, key)
    if event == "failure":
        data["exception"] = s.error
        data["traceback_exception"] = s.traceback


def _put_response(
    s: FinishedCall, redact: bool, data: dict[str, Any], lazy: dict[str, tuple[Any, Any]], key: str
) -> None:
    response = s.response
    if not isinstance(response, dict):
        data[key] = response
        return
    if redact or s.response_json is None:
        data[key] = assembled_copy(s, redact)
        return
    data[key] = orjson.Fragment(s.response_json)
    lazy[key] = (lambda summary: response_copy(summary, summary.response), s)


def response_copy(s: FinishedCall, response: Any) -> Any:
    """A private copy of a response object: from its JSON snapshot when it is the call's response
    (an orjson parse and one typed rebuild, several times cheaper than a deep copy)."""
    if response is s.response and s.response_json is not None and hasattr(type(response), "_nested"):
        clone = type(response)(orjson.loads(s.response_json))
        hidden = getattr(response, "__dict__", {}).get("_hidden_params")
        if hidden is not None:
            object.__setattr__(clone, "_hidden_params", copy_data(hidden))
        return clone
    return copy_data(response)


def assembled_copy(s: FinishedCall, redact: bool) -> Any:
    """One callback's own copy of the assembled stream response."""
    response = s.response
    if not isinstance(response, dict):
        return response
    if not redact:
        return response_copy(s, response)
    copy = copy_data(redact_response(response))
    if hasattr(type(response), "_build"):
        return type(response)._build(copy)  # type: ignore[attr-defined]
    return copy
