"""Response objects built straight from a decoded OpenAI body: the same objects, made faster.

``ModelResponse(body)`` walks every class's generic ``__init__`` (``*args``, the ``_nested``
table, ``isinstance`` checks) for each choice, message and usage; for an OpenAI-compatible
deployment that was a twentieth of the proxy's CPU per forwarded call, and per streamed event
the largest part lmgate itself spends (issue 18). These builders know the usual shapes of a
body ``orjson.loads`` gave (plain dicts and lists) and make exactly what the constructors make:
the same classes at every level, the same keys in the same order, the same defaults. Anything
less usual (tool calls, a choice that is not a dict, …) goes to the constructor itself.
``tests/test_decoded_types.py`` holds the two to each other.
"""

from __future__ import annotations

import time
from typing import Any

from . import (
    Choices,
    Delta,
    Message,
    ModelResponse,
    ModelResponseStream,
    StreamingChoices,
    Usage,
    new_completion_id,
)

_new = dict.__new__
_update = dict.update
_get = dict.get
_set_attr = object.__setattr__


def chat_completion(body: dict[str, Any]) -> ModelResponse:
    """``ModelResponse(body)`` for a decoded chat completion."""
    response: ModelResponse = _new(ModelResponse)
    _update(response, body)
    choices = _get(body, "choices")
    if type(choices) is list:
        built = []  # a loop, not a comprehension (its function and frame): once a call
        for c in choices:
            built.append(_choice(c) if type(c) is dict else _as(Choices, c))
        response["choices"] = built
    elif choices is not None:
        response["choices"] = _as(Choices, choices)
    usage = _get(body, "usage")
    if type(usage) is dict:
        response["usage"] = _usage(usage)
    elif usage is not None:
        response["usage"] = _as(Usage, usage)
    # the response holds exactly the body's keys so far: asked of the plain dict (a typed one's
    # ``in`` goes through its class's slot, several times slower; once a call: issue 18)
    if "id" not in body:
        response["id"] = new_completion_id()
    if "object" not in body:
        response["object"] = "chat.completion"
    if "created" not in body:
        response["created"] = int(time.time())
    if "choices" not in body:
        response["choices"] = []
    _set_attr(response, "_hidden_params", {})
    return response


def chat_chunk(body: dict[str, Any]) -> ModelResponseStream:
    """``ModelResponseStream(body)`` for a decoded stream event."""
    chunk: ModelResponseStream = _new(ModelResponseStream)
    _update(chunk, body)
    choices = _get(body, "choices")
    if type(choices) is list:
        chunk["choices"] = [
            _streaming_choice(c) if type(c) is dict else _as(StreamingChoices, c) for c in choices
        ]
    elif choices is not None:
        chunk["choices"] = _as(StreamingChoices, choices)
    usage = _get(body, "usage")
    if type(usage) is dict:
        chunk["usage"] = _usage(usage)
    elif usage is not None:
        chunk["usage"] = _as(Usage, usage)
    if "object" not in chunk:
        chunk["object"] = "chat.completion.chunk"
    if "choices" not in chunk:
        chunk["choices"] = []
    return chunk


def is_plain_chunk(body: Any) -> bool:
    """Whether ``chat_chunk(body)`` would hold exactly ``body``'s keys and values, in the same
    order, and carry a choice: then only the classes differ, and a reader of plain mappings and
    JSON (the proxy's stream, when no hook or callback reads its chunks) can take ``body`` itself.
    The usual event is (``object`` set, no usage, choices whose delta is a dict without tool calls)."""
    if type(body) is not dict or "object" not in body or _get(body, "usage") is not None:
        return False
    choices = _get(body, "choices")
    if type(choices) is not list or not choices:  # an empty list gets a choice made up (streaming)
        return False
    for choice in choices:
        if type(choice) is not dict:
            return False
        delta = _get(choice, "delta")
        if delta is not None and (type(delta) is not dict or _get(delta, "tool_calls") is not None):
            return False
    return True


def _as(cls: type, value: Any) -> Any:
    """What the constructor's walk makes of a value that is not a plain dict."""
    return cls(value) if isinstance(value, dict) and not isinstance(value, cls) else value


def _choice(data: dict[str, Any]) -> Choices:
    return _wrapped(data, Choices, "message", Message)


def _streaming_choice(data: dict[str, Any]) -> StreamingChoices:
    return _wrapped(data, StreamingChoices, "delta", Delta)


def _wrapped(data: dict[str, Any], cls: type[Any], inner_key: str, inner_cls: type[Any]) -> Any:
    """A choice built from a decoded choice: its ``message`` / ``delta`` wrapped in its class.
    A list of messages or tool calls to wrap takes the constructor's walk."""
    inner = _get(data, inner_key)
    if inner is not None and (type(inner) is not dict or _get(inner, "tool_calls") is not None):
        return cls(data)
    choice = _new(cls)
    _update(choice, data)
    if inner is not None:
        wrapped = _new(inner_cls)
        _update(wrapped, inner)
        choice[inner_key] = wrapped
    return choice


def _usage(data: dict[str, Any]) -> Usage:
    usage: Usage = _new(Usage)
    _update(usage, data)
    if "prompt_tokens" not in data:  # the same keys as ``usage`` so far (see chat_completion)
        usage["prompt_tokens"] = 0
    if "completion_tokens" not in data:
        usage["completion_tokens"] = 0
    if _get(usage, "total_tokens") is None:
        usage["total_tokens"] = (usage["prompt_tokens"] or 0) + (usage["completion_tokens"] or 0)
    return usage


__all__ = ["chat_chunk", "chat_completion", "is_plain_chunk"]
