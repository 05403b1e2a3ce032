"""What the call pipeline asks of the cache: ``lookup``/``alookup`` before a call,
``store``/``astore`` after a successful one.

``lookup`` decides once per call whether and how the cache applies (mode, ``caching=``,
``cache={...}``), computes the key, and leaves that decision on the call for ``store``.
Entries are orjson documents; every hit decodes a fresh response, so no two callers share
an object.
"""

from __future__ import annotations

from typing import Any

import orjson

from .. import exceptions as exc
from ..types import (
    ChatCompletionMessageToolCall,
    Choices,
    Embedding,
    EmbeddingResponse,
    Function,
    Message,
    ModelResponse,
    Usage,
)
from .cache import Cache
from .key import chat_key, combined_key, embedding_keys

#: the per-call controls ``cache={...}`` accepts
CONTROL_KEYS = ("no-cache", "no-store", "ttl", "s-maxage", "namespace", "use-cache")
_EMPTY: dict[str, Any] = {}


class _State:
    """One call's cache decision."""

    __slots__ = ("cache", "keys", "read", "write", "ttl_s", "max_age_s", "prefix")

    def __init__(self, cache: Cache, controls: dict[str, Any]) -> None:
        self.cache = cache
        self.keys: list[str] = []
        self.read = not controls.get("no-cache")
        self.write = not controls.get("no-store")
        self.ttl_s = controls.get("ttl", cache.ttl)
        self.max_age_s = controls.get("s-maxage")
        self.prefix = (controls.get("namespace") or cache.namespace) + ":"

    def storage_keys(self) -> list[str]:
        return [self.prefix + key for key in self.keys]


def _controls(value: Any) -> dict[str, Any]:
    if value is None:
        return _EMPTY
    if not isinstance(value, dict):
        raise exc.BadRequestError(f"cache must be a dict like {{'no-cache': True, 'ttl': 60}}, got {value!r}")
    for name, item in value.items():
        if name not in CONTROL_KEYS:
            raise exc.BadRequestError(
                f"cache: unknown key {name!r}; expected one of {', '.join(CONTROL_KEYS)}"
            )
        if name in ("no-cache", "no-store", "use-cache"):
            if not isinstance(item, bool):
                raise exc.BadRequestError(f"cache: {name!r} must be True or False, got {item!r}")
        elif name == "namespace":
            if not isinstance(item, str) or not item:
                raise exc.BadRequestError(f"cache: 'namespace' must be a non-empty string, got {item!r}")
        elif (
            isinstance(item, bool)
            or not isinstance(item, (int, float))
            or item < 0
            or (name == "ttl" and item == 0)
        ):
            raise exc.BadRequestError(f"cache: {name!r} must be a positive number of seconds, got {item!r}")
    return value


def _plan(call: Any, cache: Cache) -> _State | None:
    """How the cache applies to this call (None: not at all); raises on bad controls."""
    caching = call.control.get("caching")
    if caching is not None and not isinstance(caching, bool):
        raise exc.BadRequestError(f"caching must be True or False, got {caching!r}")
    controls = _controls(call.control.get("cache"))
    if caching is False:
        return None
    if caching is None and not cache.default_on and not controls.get("use-cache"):
        return None
    if call.call_type not in cache.supported_call_types:
        return None
    state = _State(cache, controls)
    if not (state.read or state.write):
        return None
    state.keys = [chat_key(call)] if call.kind == "chat" else embedding_keys(call)
    if call.record is not None:
        call.record.cache_key = combined_key(state.keys) if state.keys else None
    return state


def _start(call: Any, cache: Any) -> _State | None:
    if not isinstance(cache, Cache):
        raise TypeError(f"lmgate.cache must be an lmgate.Cache or None, got {type(cache).__name__}")
    state = _plan(call, cache)
    call.cache_state = state  # a declared attribute of Call: store reads the decision back
    if state is None or not state.read or not state.keys:
        return None
    return state


# ---- decoding ----
def _decode(call: Any, state: _State, values: list[bytes | None]) -> Any:
    """The response the stored values make, or None (a miss)."""
    now = state.cache._clock()
    entries = []
    for raw in values:
        if raw is None:
            return None
        try:
            entry = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None  # not ours, or damaged: a miss, and the next store replaces it
        if state.max_age_s is not None and now - float(entry.get("at") or 0) > state.max_age_s:
            return None
        entries.append(entry)
    if call.kind == "chat":
        data = entries[0].get("r")
        return _chat_response(data) if isinstance(data, dict) else None
    data = [
        Embedding._build({"object": "embedding", "index": i, "embedding": entry.get("e")})
        for i, entry in enumerate(entries)
    ]
    tokens = sum(int(entry.get("t") or 0) for entry in entries)
    return EmbeddingResponse._build(
        {
            "object": "list",
            "data": data,
            "model": entries[0].get("m"),
            "usage": Usage._build({"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}),
        }
    )


def _chat_response(data: dict[str, Any]) -> ModelResponse:
    """The typed response for decoded data (what ``ModelResponse(data)`` makes, without its
    generic coercion pass: this is the hit path)."""
    choices = []
    for choice in data.get("choices") or ():
        message = choice.get("message")
        if isinstance(message, dict):
            tool_calls = message.get("tool_calls")
            if tool_calls:
                message["tool_calls"] = [
                    ChatCompletionMessageToolCall._build(
                        dict(call, function=Function._build(call["function"]))
                        if call.get("function")
                        else call
                    )
                    for call in tool_calls
                ]
            choice["message"] = Message._build(message)
        choices.append(Choices._build(choice))
    data["choices"] = choices
    usage = data.get("usage")
    if isinstance(usage, dict):
        data["usage"] = Usage._build(usage)
    return ModelResponse._build(data)  # type: ignore[no-any-return]


def _result(call: Any, state: _State, values: list[bytes | None] | None) -> Any:
    response = _decode(call, state, values) if values is not None else None
    state.cache._count("hits" if response is not None else "misses")
    return response


def lookup(call: Any, cache: Any) -> Any:
    """A fresh response from the cache, or None."""
    state = _start(call, cache)
    if state is None:
        return None
    return _result(call, state, state.cache._get(state.storage_keys()))


async def alookup(call: Any, cache: Any) -> Any:
    state = _start(call, cache)
    if state is None:
        return None
    return _result(call, state, await state.cache._aget(state.storage_keys()))


# ---- encoding ----
def _items(call: Any, response: Any) -> tuple[_State, list[tuple[str, bytes]]] | None:
    state: _State | None = call.cache_state
    if state is None or not state.write or not isinstance(response, dict):
        return None
    now = state.cache._clock()
    keys = state.storage_keys()
    if call.kind == "chat":
        choices = response.get("choices")
        # never keep an answer cut short: every choice must have finished
        if not choices or any(choice.get("finish_reason") is None for choice in choices):
            return None
        return state, [(keys[0], orjson.dumps({"at": now, "r": response}))]
    data = response.get("data") or []
    if len(data) != len(keys):
        return None
    by_index = sorted(data, key=lambda item: item.get("index", 0))
    tokens = _split_tokens(call.payload, int((response.get("usage") or {}).get("prompt_tokens") or 0))
    model = response.get("model")
    items = [
        (key, orjson.dumps({"at": now, "m": model, "e": item.get("embedding"), "t": share}))
        for key, item, share in zip(keys, by_index, tokens, strict=True)
    ]
    return state, items


def _split_tokens(inputs: list[Any], total: int) -> list[int]:
    """Share a call's prompt tokens between its inputs by length (largest remainder), so a
    hit on the same inputs reports the same usage."""
    sizes = [max(1, len(item) if isinstance(item, (str, list)) else 1) for item in inputs]
    whole = sum(sizes)
    exact = [total * size / whole for size in sizes]
    shares = [int(x) for x in exact]
    order = sorted(range(len(inputs)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def store(call: Any, response: Any) -> None:
    """Keep a successful answer (when the call's decision allows)."""
    plan = _items(call, response)
    if plan is not None:
        state, items = plan
        state.cache._set(items, state.ttl_s)


async def astore(call: Any, response: Any) -> None:
    plan = _items(call, response)
    if plan is not None:
        state, items = plan
        await state.cache._aset(items, state.ttl_s)
