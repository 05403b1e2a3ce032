"""``lmgate.types.decoded`` builds exactly what the response constructors build (issue 18).

Every body below goes through both the constructor and the fast builder; the two results must
be the same classes at every level, with the same keys in the same order and the same values.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from lmgate.streaming import ChunkAccumulator
from lmgate.types import (
    ChatCompletionMessageToolCall,
    Choices,
    Message,
    ModelResponse,
    ModelResponseStream,
    Usage,
)
from lmgate.types.decoded import chat_chunk, chat_completion, is_plain_chunk

TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
MESSAGE = {"role": "assistant", "content": "hi"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}

COMPLETIONS: list[dict[str, Any]] = [
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "message": MESSAGE, "finish_reason": "stop"}],
        "usage": USAGE,
    },
    {
        "choices": [{"index": 0, "message": {**MESSAGE, "tool_calls": [TOOL_CALL]}}],
        "usage": {"prompt_tokens": 3},
    },
    {"choices": [{"index": 0, "message": {**MESSAGE, "tool_calls": None}, "logprobs": {"content": []}}]},
    {"choices": [{"index": 0, "message": None}, {"index": 1}, "odd", 7]},
    {
        "choices": [{"index": 0, "message": [MESSAGE]}],
        "usage": {"total_tokens": None, "completion_tokens": 2},
    },
    {"choices": {"index": 0, "message": MESSAGE}, "usage": "n/a"},
    {"choices": None, "usage": None, "system_fingerprint": "fp", "extra": {"a": 1}},
    {"choices": [Choices({"message": MESSAGE}), Message(MESSAGE)], "usage": Usage({"prompt_tokens": 1})},
    {"id": "x", "model": "m"},
    {},
]
CHUNKS: list[dict[str, Any]] = [
    {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": "he"}, "finish_reason": None}],
    },
    {"id": "c", "choices": [], "usage": USAGE},
    {"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]},
    {"choices": [{"index": 0, "delta": None}, {"index": 1}, "odd"]},
    {"choices": [{"delta": {"role": "assistant", "tool_calls": None}}], "usage": {"completion_tokens": 1}},
    {"choices": {"delta": {"content": "x"}}, "usage": []},
    {},
    {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant"}}],
        "usage": None,
    },
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "finish_reason": "stop"}]},
    {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "x"}}], "usage": USAGE},
    {"object": "chat.completion.chunk", "choices": []},
    {"id": "c", "choices": [{"index": 0, "delta": {"content": "no object"}}]},
]


def _shape(value: Any) -> Any:
    """Every level's class, keys in order and values, as one comparable structure."""
    if isinstance(value, dict):
        hidden = value.__dict__.get("_hidden_params") if hasattr(value, "__dict__") else None
        return (type(value), [(k, _shape(v)) for k, v in dict.items(value)], hidden)
    if isinstance(value, list):
        return (list, [_shape(v) for v in value])
    return (type(value), value)


@pytest.mark.parametrize("body", COMPLETIONS)
def test_chat_completion_is_the_constructors_object(body: dict[str, Any]) -> None:
    made = ModelResponse(copy.deepcopy(body))
    fast = chat_completion(copy.deepcopy(body))
    if "id" not in body:  # drawn: a new one each time
        fast["id"] = made["id"]
    if "created" not in body:  # the clock, read by each
        fast["created"] = made["created"]
    assert _shape(fast) == _shape(made)
    assert fast._hidden_params == {} and fast.choices == made.choices


@pytest.mark.parametrize("body", CHUNKS)
def test_chat_chunk_is_the_constructors_object(body: dict[str, Any]) -> None:
    assert _shape(chat_chunk(copy.deepcopy(body))) == _shape(ModelResponseStream(copy.deepcopy(body)))


def test_tool_calls_are_wrapped() -> None:
    response = chat_completion({"choices": [{"message": {**MESSAGE, "tool_calls": [TOOL_CALL]}}]})
    assert isinstance(response.choices[0].message.tool_calls[0], ChatCompletionMessageToolCall)


def _plain(value: Any) -> Any:
    """``_shape`` with every mapping's class forgotten: what a reader of JSON sees."""
    if isinstance(value, dict):
        return (dict, [(k, _plain(v)) for k, v in dict.items(value)])
    if isinstance(value, list):
        return (list, [_plain(v) for v in value])
    return (type(value), value)


PLAIN = [c for c in CHUNKS if is_plain_chunk(c)]


def test_the_usual_events_are_plain() -> None:
    # the usual OpenAI events are; a usage, tool calls, no choice, no object or odd shapes are not
    assert [CHUNKS.index(c) for c in PLAIN] == [0, 7, 8]


@pytest.mark.parametrize("body", PLAIN)
def test_a_plain_chunk_holds_what_the_typed_one_holds(body: dict[str, Any]) -> None:
    # the proxy's stream may pass such an event on as decoded (issue 18): the same JSON on the
    # wire, the same values for every reader of mappings, the same response assembled at the end
    typed = chat_chunk(copy.deepcopy(body))
    assert _plain(body) == _plain(typed)
    assert orjson.dumps(body) == orjson.dumps(typed)
    from_plain, from_typed = ChunkAccumulator(), ChunkAccumulator()
    from_plain.add(copy.deepcopy(body))
    from_typed.add(typed)
    built, expected = from_plain.build(), from_typed.build()
    assert _shape(built) == _shape(expected)
