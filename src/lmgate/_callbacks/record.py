"""The record of one call, and the two views callbacks get of it.

A ``CallRecord`` is filled by the pipeline as the call goes (request sent, raw answer, final
response, cost, error) and is never changed after the terminal event. From it:

* ``kwargs_view(event, redact)`` builds a fresh ``kwargs`` dict for one callback: the keys the
  spec documents, with secrets masked and containers copied, so what one callback changes no
  other callback and not the library sees;
* ``payload(status)`` builds the standard logging payload (``standard_logging_object``) that
  built-in loggers ship; its schema is ``lmgate/schemas/standard_logging_payload.schema.json``.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from .._secrets import mask_headers, mask_key, mask_secrets
from ..types import _plain
from .encoding import ENCODING_ERRORS_KEY, encode_salvaged
from .redact import REDACTED_TEXT, redact_messages, redact_response

LOG_EVENT_TYPES = {
    "pre": "pre_api_call",
    "post": "post_api_call",
    "stream": "stream_event",
    "success": "successful_api_call",
    "failure": "failed_api_call",
}

# metadata keys of the reference implementation's payload, present (None) unless set
_STANDARD_METADATA_KEYS = (
    "user_api_key_hash",
    "user_api_key_alias",
    "user_api_key_team_id",
    "user_api_key_user_id",
    "user_api_key_org_id",
    "user_api_key_team_alias",
    "user_api_key_end_user_id",
    "requester_ip_address",
)


# how deep ``copy_data`` recurses; deeper data (a client's metadata may nest 1000 levels) is
# copied by a loop instead, so no depth of data exhausts Python's recursion limit
_RECURSIVE_COPY_DEPTH = 64
_CONTAINERS = (dict, list, tuple)
CYCLE_MARKER = "<unencodable: circular reference>"


def copy_data(value: Any, _depth: int = 0) -> Any:
    """A deep copy of JSON-like data: dicts (keeping their class), lists, tuples; other objects shared.

    Any depth is copied (beyond ``_RECURSIVE_COPY_DEPTH`` by ``_copy_deep``'s loop); a container
    that contains itself is replaced, where it recurs, by ``CYCLE_MARKER``."""
    if not isinstance(value, _CONTAINERS):
        return value
    if _depth >= _RECURSIVE_COPY_DEPTH:
        return _copy_deep(value)
    if isinstance(value, dict):
        return _rebuild(value, {k: copy_data(v, _depth + 1) for k, v in value.items()})
    if isinstance(value, list):
        return [copy_data(v, _depth + 1) for v in value]
    return tuple(copy_data(v, _depth + 1) for v in value)


def _rebuild(value: dict[Any, Any], items: dict[Any, Any]) -> Any:
    """``items`` (the copied entries of ``value``) as an object of ``value``'s class."""
    cls = type(value)
    if cls is dict:
        return items
    try:
        new = cls._build(items)  # type: ignore[attr-defined]  # our response types: skip re-validation
    except AttributeError:
        new = cls(items)
    hidden = getattr(value, "__dict__", None)
    if hidden:
        for k, v in hidden.items():
            object.__setattr__(new, k, copy_data(v))
    return new


def _copy_deep(root: Any) -> Any:
    """``copy_data`` without recursion: a stack of the containers being copied, innermost last."""

    def frame(source: Any) -> list[Any]:
        # [source, its (key, child) iterator, the copied entries, the key the copy goes under in its parent]
        entries = iter(source.items()) if isinstance(source, dict) else enumerate(source)
        return [source, entries, {} if isinstance(source, dict) else [], None]

    def put(entries: Any, key: Any, child: Any) -> None:
        if isinstance(entries, dict):
            entries[key] = child
        else:
            entries.append(child)

    stack = [frame(root)]
    on_stack = {id(root)}
    while True:
        top = stack[-1]
        for key, child in top[1]:
            if not isinstance(child, _CONTAINERS):
                put(top[2], key, child)
            elif id(child) in on_stack:
                put(top[2], key, CYCLE_MARKER)
            else:
                top[3] = key
                stack.append(frame(child))
                on_stack.add(id(child))
                break
        else:  # every entry copied: build this container and hand it to its parent
            source, _, entries, _ = stack.pop()
            on_stack.discard(id(source))
            if isinstance(source, dict):
                done = _rebuild(source, entries)
            else:
                done = entries if isinstance(source, list) else tuple(entries)
            if not stack:
                return done
            parent = stack[-1]
            put(parent[2], parent[3], done)


def plain(value: Any) -> Any:
    """JSON-ready plain data (dict subclasses become dicts)."""
    return _plain(value)


def _encode(value: Any) -> tuple[bytes | None, Any]:
    """(JSON snapshot, None), or (None, a deep copy) for data orjson cannot encode."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS), None
    except TypeError:
        return None, copy_data(value)


def _fragment(raw_json: bytes | None, fallback: Any) -> Any:
    return orjson.Fragment(raw_json) if raw_json is not None else fallback


def _json_default(value: Any) -> Any:
    """What the payload may hold beyond JSON types: shown as text rather than failing."""
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return repr(value)


_NON_STR_KEYS = orjson.OPT_NON_STR_KEYS


def encode_payload(payload: Any) -> bytes:
    """The payload as JSON; parts that cannot be encoded are replaced and flagged (``encoding``)."""
    try:
        return orjson.dumps(payload, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # orjson.JSONEncodeError: a value of the caller's has no JSON form
        return encode_salvaged(payload, _json_default)[0]


def request_tags(metadata: dict[str, Any]) -> tuple[list[str], str | None]:
    """``metadata["tags"]`` as the payload's ``request_tags`` (a list of strings), and what was
    wrong with it, if anything: a string or a dict is not taken apart into characters or keys."""
    tags = metadata.get("tags")
    if tags is None:
        return [], None
    if isinstance(tags, (list, tuple)) and all(isinstance(t, str) for t in tags):
        return list(tags), None
    if isinstance(tags, (list, tuple)):
        kinds = ", ".join(sorted({type(t).__name__ for t in tags if not isinstance(t, str)}))
        kept = [t for t in tags if isinstance(t, str)]
        return kept, f"metadata.tags must hold strings only; left out: {kinds}"
    return [], f"metadata.tags must be a list of strings, got {type(tags).__name__}"


def _dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts) if ts is not None else None


class CallbackKwargs(dict):  # type: ignore[type-arg]
    """The ``kwargs`` a callback receives: a plain dict whose costlier keys fill in on first use.

    Every way of reading a dict works as usual (``[]``, ``get``, ``in``, iteration, ``len``,
    ``dict(kwargs)``, ``repr``, copying); values are computed the first time they are needed.
    ``payload_json()`` gives the standard logging payload as JSON bytes without building a dict,
    which is what batch loggers ship.
    """

    __slots__ = ("_lazy", "_record", "_redact")

    def __init__(
        self, data: dict[str, Any], lazy: dict[str, Any], record: CallRecord | None = None, redact: bool = False
    ) -> None:
        dict.__init__(self, data)
        self._lazy = lazy
        self._record = record
        self._redact = redact

    def _load(self, key: str) -> Any:
        value = self._lazy.pop(key)()
        dict.__setitem__(self, key, value)
        return value

    def _load_all(self) -> None:
        for key in list(self._lazy):
            if key in self._lazy:
                self._load(key)

    def __missing__(self, key: str) -> Any:
        if key in self._lazy:
            return self._load(key)
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._lazy

    def get(self, key: str, default: Any = None) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        if key in self._lazy:
            return self._load(key)
        return default

    def __iter__(self) -> Any:
        self._load_all()
        return dict.__iter__(self)

    def keys(self) -> Any:
        self._load_all()
        return dict.keys(self)

    def values(self) -> Any:
        self._load_all()
        return dict.values(self)

    def items(self) -> Any:
        self._load_all()
        return dict.items(self)

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._lazy)

    def __repr__(self) -> str:
        self._load_all()
        return dict.__repr__(self)

    def __eq__(self, other: object) -> bool:
        self._load_all()
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]

    def __setitem__(self, key: str, value: Any) -> None:
        self._lazy.pop(key, None)
        dict.__setitem__(self, key, value)

    def __delitem__(self, key: str) -> None:
        if self._lazy.pop(key, None) is not None and not dict.__contains__(self, key):
            return
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
        if self._record is None or "standard_logging_object" not in self:
            return None
        if dict.__contains__(self, "standard_logging_object") or (self._redact and not self._record.redact_all):
            # read (and maybe changed) as a dict, or redacted for this logger: encode that dict
            return encode_payload(self["standard_logging_object"])
        return self._record.payload_bytes()


class CallRecord:
    """Everything known about one call; see the module docstring."""

    def __init__(
        self,
        *,
        call_type: str,
        model: str,
        provider: str,
        messages: Any,
        optional_params: dict[str, Any],
        litellm_params: dict[str, Any] | Callable[[], dict[str, Any]],
        metadata: dict[str, Any],
        stream: bool,
        user: Any,
        call_id: str,
        trace_id: str,
        start: float,
        is_async: bool,
        api_base: str | None = None,
        api_key: str | None = None,
        redact_all: bool = False,
    ) -> None:
        self.call_type = call_type
        self.model = model
        self.provider = provider
        self.messages = messages  # snapshotted as JSON: the caller may change its list later
        self.optional_params = copy_data(optional_params)
        self._litellm_params = litellm_params
        self.metadata = copy_data(metadata)
        self.stream = stream
        self.user = user
        self.call_id = call_id
        self.trace_id = trace_id
        self.start = start
        self.is_async = is_async
        self.api_base = api_base
        self.api_key_masked = mask_key(api_key) if api_key else None
        self.redact_all = redact_all
        # filled as the call goes
        self._body_json: bytes | None = None
        self._body_raw: Any = None
        self.request_headers: dict[str, Any] = {}
        self.attempt = 0
        self.original_response: str | None = None
        self.response: Any = None  # the final (or, for a cut stream, partial) response object
        self.response_json: bytes | None = None
        self.response_id: str | None = None
        self.usage: dict[str, Any] | None = None
        self.cost: float | None = None
        self.cost_breakdown: dict[str, float] | None = None
        self.cost_reason: str | None = None
        self.price_key: str | None = None
        self.completion_start: float | None = None
        self.end: float | None = None
        self.error: BaseException | None = None
        self.traceback: str | None = None
        self.cache_hit = False
        self.cache_key: str | None = None
        self.saved_cache_cost = 0.0
        self.stream_status: str | None = None  # complete | abandoned | broken
        self.hidden_params: dict[str, Any] = {}
        self.model_id: str | None = None
        self.model_group: str | None = None
        self.response_model: str | None = None
        self.status: str | None = None
        self.overhead_ms: float | None = None
        self._payload: dict[str, Any] | None = None
        self._payload_bytes: bytes | None = None
        # the payload names parts it could not take as given in metadata.lmgate_encoding_errors
        self.payload_flagged = False
        self._data_cache: dict[tuple[Any, ...], Any] = {}
        self._lock = threading.Lock()
        # per-callback tail of the async delivery chain (touched only on the callback loop)
        self.tails: dict[int, Any] = {}

    # ---- snapshots ----
    @property
    def messages(self) -> Any:
        return orjson.loads(self._messages_json) if self._messages_json is not None else self._messages_raw

    @messages.setter
    def messages(self, value: Any) -> None:
        self._messages_json, self._messages_raw = _encode(value)

    @property
    def litellm_params(self) -> dict[str, Any]:
        """Built on first use, off the caller's path (a factory is passed in)."""
        if callable(self._litellm_params):
            self._litellm_params = self._litellm_params()
        return self._litellm_params  # type: ignore[no-any-return]

    @property
    def request_body(self) -> Any:
        return orjson.loads(self._body_json) if self._body_json is not None else self._body_raw

    # ---- filled by the pipeline ----
    def set_request(self, body: dict[str, Any] | None, headers: dict[str, Any], api_base: str | None) -> None:
        self._body_json, self._body_raw = _encode(body) if body is not None else (None, None)
        self.request_headers = mask_headers(headers)
        if api_base:
            self.api_base = api_base

    def finish_success(self, response: Any, end: float) -> None:
        self.status = "success"
        self.response = response
        self._snapshot_response(response)
        self.end = end
        if self.completion_start is None:
            self.completion_start = end

    def finish_failure(self, error: BaseException, end: float, partial: Any = None) -> None:
        self.status = "failure"
        self.error = error
        self.traceback = mask_secrets("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        self.end = end
        if partial is not None:
            self.response = partial
            self._snapshot_response(partial)

    def _snapshot_response(self, response: Any) -> None:
        """Encode the response now: the caller may change the object after the call returns."""
        if not isinstance(response, dict):
            return
        self.response_id = response.get("id")
        try:
            self.response_json = orjson.dumps(response, default=_json_default, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:
            self.response_json = orjson.dumps(plain(response), default=_json_default)

    @property
    def response_snapshot(self) -> dict[str, Any] | None:
        return orjson.loads(self.response_json) if self.response_json else None  # type: ignore[no-any-return]

    # ---- views ----
    def _data(self, redact: bool) -> dict[str, Any]:
        """A fresh copy of the call's plain data (messages, params, request body).

        The data is serialised once per (attempt, redact) and each callback gets its own
        ``orjson.loads`` of it: far cheaper than a deep copy, and just as private.
        """
        key = (self.attempt, redact, self._body_json is not None or self._body_raw is not None)
        cached = self._data_cache.get(key)
        if cached is None:
            messages: Any
            body: Any
            if redact:
                messages, body = redact_messages(self.messages), self.request_body
            else:
                messages = _fragment(self._messages_json, self._messages_raw)
                body = _fragment(self._body_json, self._body_raw)
            if redact and isinstance(body, dict):
                body = dict(body)
                for name in ("messages", "input", "prompt", "system"):
                    if name in body:
                        body[name] = redact_messages(body[name]) if name == "messages" else REDACTED_TEXT
            data = {
                "messages": messages,
                "optional_params": self.optional_params,
                "litellm_params": self.litellm_params,
                "body": body,
                "headers": self.request_headers,
            }
            try:
                cached = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
            except TypeError:  # something orjson cannot encode: fall back to a deep copy
                cached = data
            self._data_cache[key] = cached
        if isinstance(cached, bytes):
            return orjson.loads(cached)  # type: ignore[no-any-return]
        return copy_data(cached)  # type: ignore[no-any-return]

    def kwargs_view(
        self,
        event: str,
        redact: bool = False,
        extra: dict[str, Any] | None = None,
        snapshot: tuple[int, str | None] | None = None,
    ) -> dict[str, Any]:
        """A fresh kwargs dict for one callback and one event.

        The keys that need a private copy of the call's data (``messages``, ``litellm_params``,
        ``additional_args``, ``standard_logging_object``, …) are filled on first access, so a
        callback that never reads them costs no copy (see ``CallbackKwargs``).
        """
        redact = redact or self.redact_all
        data: dict[str, Any] = {}

        def part(name: str) -> Any:
            if not data:
                data.update(self._data(redact))
            return data[name]

        def input_value() -> Any:
            body = part("body")
            if isinstance(body, dict):
                return body.get("messages", body.get("input", part("messages")))
            return part("messages")

        # (attempt, original_response) as they were when the event happened: a retry changes both
        attempt, original_response = snapshot if snapshot is not None else (self.attempt, self.original_response)
        if redact and original_response:
            original_response = REDACTED_TEXT

        def additional_args() -> dict[str, Any]:
            return {
                "complete_input_dict": part("body"),
                "headers": part("headers"),
                "api_base": self.api_base,
                "attempt": attempt,
            }

        eager: dict[str, Any] = copy_data(self.optional_params) if self.optional_params else {}
        eager.update(
            {
                "model": self.model,
                "start_time": _dt(self.start),
                "stream": self.stream,
                "user": self.user,
                "call_type": self.call_type,
                "litellm_call_id": self.call_id,
                "litellm_trace_id": self.trace_id,
                "custom_llm_provider": self.provider,
                "completion_start_time": _dt(self.completion_start),
                "api_key": self.api_key_masked,
                "log_event_type": LOG_EVENT_TYPES[event],
                "original_response": original_response,
                "cache_hit": self.cache_hit,
            }
        )
        lazy: dict[str, Any] = {
            "messages": lambda: part("messages"),
            "optional_params": lambda: part("optional_params"),
            "litellm_params": lambda: part("litellm_params"),
            "input": input_value,
            "additional_args": additional_args,
        }
        if event in ("success", "failure"):
            eager["end_time"] = _dt(self.end)
            eager["response_cost"] = self.cost
            lazy["standard_logging_object"] = lambda: self.payload_copy(redact)
            if self.cost is None:
                eager["response_cost_failure_debug_information"] = {
                    "error_str": self.cost_reason,
                    "model": self.model,
                    "custom_llm_provider": self.provider,
                    "cache_hit": self.cache_hit,
                    "call_type": self.call_type,
                }
            if self.stream:
                eager["stream_status"] = self.stream_status
                lazy["complete_streaming_response"] = lambda: self._assembled_copy(redact)
                lazy["async_complete_streaming_response"] = lambda: self._assembled_copy(redact)
        if event == "failure":
            eager["exception"] = self.error
            eager["traceback_exception"] = self.traceback
        if extra:
            eager.update(extra)
        return CallbackKwargs(eager, lazy, self, redact)

    def response_copy(self, response: Any) -> Any:
        """A private copy of a response object: from its JSON snapshot when it is the call's response
        (an orjson parse and one typed rebuild, several times cheaper than a deep copy)."""
        if response is self.response and self.response_json is not None and hasattr(type(response), "_nested"):
            clone = type(response)(orjson.loads(self.response_json))
            hidden = getattr(response, "__dict__", {}).get("_hidden_params")
            if hidden is not None:
                object.__setattr__(clone, "_hidden_params", copy_data(hidden))
            return clone
        return copy_data(response)

    def _assembled_copy(self, redact: bool) -> Any:
        """This callback's own copy of the assembled stream response."""
        response = self.response
        if not isinstance(response, dict):
            return response
        if not redact:
            return self.response_copy(response)
        copy = copy_data(redact_response(response))
        if redact and hasattr(type(response), "_build"):
            return type(response)._build(copy)  # type: ignore[attr-defined]
        return copy

    def payload_copy(self, redact: bool = False) -> dict[str, Any]:
        """A private copy of the payload (redacted for loggers that asked for it)."""
        copy: dict[str, Any] = orjson.loads(self.payload_bytes())
        if redact and not self.redact_all:
            copy["messages"] = redact_messages(copy["messages"])
            copy["response"] = redact_response(copy["response"])
        return copy

    def payload_bytes(self) -> bytes:
        """The payload as JSON, encoded once: what batch loggers ship and callbacks get copies of."""
        if self._payload_bytes is None:
            payload = self.payload()
            try:
                self._payload_bytes = orjson.dumps(payload, default=_json_default, option=_NON_STR_KEYS)
            except TypeError:  # orjson.JSONEncodeError: a value of the caller's has no JSON form
                self._payload_bytes, flagged = encode_salvaged(payload, _json_default)
                self.payload_flagged = self.payload_flagged or flagged
        return self._payload_bytes

    def payload(self) -> dict[str, Any]:
        """The payload's parts, built once; large parts are pre-encoded ``orjson.Fragment``s.

        Read it through ``payload_copy()`` (a dict of your own) or ``payload_bytes()`` (JSON).
        """
        if self._payload is None:
            with self._lock:
                if self._payload is None:
                    self._payload = self._build_payload()
        return self._payload

    def _build_payload(self) -> dict[str, Any]:
        usage = self.usage or {}
        prompt = int(usage.get("prompt_tokens") or 0)
        completion = int(usage.get("completion_tokens") or 0)
        total = int(usage.get("total_tokens") or (prompt + completion))
        response_id = self.response_id or self.call_id
        if self.cache_hit:
            response_id = f"{response_id}_cache_hit{int(time.time())}"
        end = self.end if self.end is not None else time.time()
        completion_start = self.completion_start if self.completion_start is not None else end
        metadata: dict[str, Any] = dict.fromkeys(_STANDARD_METADATA_KEYS)
        given = self.metadata if isinstance(self.metadata, dict) else {}
        metadata.update(given)
        metadata.pop(ENCODING_ERRORS_KEY, None)  # ours: set below, never taken from the caller
        metadata.setdefault("requester_metadata", given)
        flags: dict[str, str] = {}
        if self.metadata and not isinstance(self.metadata, dict):
            flags["metadata"] = f"must be an object, got {type(self.metadata).__name__}; left out"
        tags, tags_error = request_tags(metadata)
        if tags_error:
            flags["request_tags"] = tags_error
        if flags:
            metadata[ENCODING_ERRORS_KEY] = flags
            self.payload_flagged = True
        error_info = {"error_code": "", "error_class": "", "llm_provider": "", "traceback": "", "error_message": ""}
        error_str = None
        if self.error is not None:
            error_str = mask_secrets(str(self.error))
            error_info = {
                "error_code": str(getattr(self.error, "status_code", "") or ""),
                "error_class": type(self.error).__name__,
                "llm_provider": getattr(self.error, "llm_provider", None) or self.provider or "",
                "traceback": self.traceback or "",
                "error_message": mask_secrets(str(getattr(self.error, "message", None) or self.error)),
            }
        messages: Any = (
            redact_messages(self.messages) if self.redact_all else _fragment(self._messages_json, self._messages_raw)
        )
        response: Any = orjson.Fragment(self.response_json) if self.response_json else {}
        if self.redact_all and self.response_json:
            response = redact_response(self.response_snapshot)
        hidden = {
            "model_id": self.model_id,
            "cache_key": self.cache_key,
            "api_base": self.api_base,
            "response_cost": self.cost,
            "litellm_overhead_time_ms": self.overhead_ms,
            "additional_headers": self.hidden_params.get("additional_headers") or {},
            "litellm_model_name": self.model,
        }
        return {
            "id": response_id,
            "litellm_call_id": self.call_id,
            "trace_id": self.trace_id,
            "session_id": "",
            "call_type": self.call_type,
            "stream": self.stream,
            "stream_status": self.stream_status,
            "status": self.status or "failure",
            "status_fields": {"llm_api_status": self.status or "failure", "guardrail_status": "not_run"},
            "response_cost": self.cost,
            "cost": self.cost,
            "cost_breakdown": self.cost_breakdown,
            "response_cost_failure_debug_info": None if self.cost is not None else {"error_str": self.cost_reason},
            "custom_llm_provider": self.provider,
            "total_tokens": total,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "usage": usage,
            "startTime": self.start,
            "endTime": end,
            "completionStartTime": completion_start,
            "response_time": end - self.start,
            "model": self.model,
            "response_model": self.response_model,
            "model_id": self.model_id,
            "model_group": self.model_group,
            "api_base": (self.api_base or "").rstrip("/"),
            "metadata": metadata,
            "cache_hit": self.cache_hit,
            "cache_key": self.cache_key,
            "saved_cache_cost": self.saved_cache_cost,
            "request_tags": tags,
            "end_user": self.user,
            "requester_ip_address": metadata.get("requester_ip_address"),
            "user_agent": None,
            "messages": messages,
            "response": response,
            "error_str": error_str,
            "error_information": error_info,
            "model_parameters": self.optional_params,
            "hidden_params": hidden,
            "guardrail_information": None,
            "standard_built_in_tools_params": None,
        }
