"""``lmgate.anthropic_messages`` / ``aanthropic_messages`` and the translation under them:
round trips checked field by field, the event sequence, and one first-class call per request
(call type ``anthropic_messages``, one terminal event, usage and exact cost)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fakes import DEFAULT_TEXT, FakeProvider, Reply
from helpers import flush
from payload_schema import assert_valid_payload

import lmgate
from lmgate._messages.events import EventTranslator
from lmgate._messages.translate import MessagesRequestError, check_request, to_chat, to_message
from lmgate.cost import compute_cost
from lmgate.providers.anthropic import translate_messages, translate_tool, translate_tool_choice
from lmgate.testing import CapturingLogger
from lmgate.types import ModelResponse, ModelResponseStream

TOOL = {"name": "lookup", "description": "Look it up", "input_schema": {"type": "object", "properties": {}}}
CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "Find x"},
    {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Looking."},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "x"}},
        ],
    },
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "x is 1"}]},
    {
        "role": "user",
        "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
            {"type": "text", "text": "And this?"},
        ],
    },
]
REQUEST: dict[str, Any] = {
    "model": "m",
    "max_tokens": 100,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": CONVERSATION,
    "tools": [TOOL],
    "tool_choice": {"type": "tool", "name": "lookup", "disable_parallel_tool_use": True},
    "stop_sequences": ["END"],
    "temperature": 0.3,
    "top_k": 5,
    "metadata": {"user_id": "u-1"},
}


# ---- translation ----
def test_request_to_chat_field_by_field() -> None:
    messages, params = to_chat(REQUEST)
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Find x"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "x is 1"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "And this?"},
            ],
        },
    ]
    assert params == {
        "max_tokens": 100,
        "temperature": 0.3,
        "top_k": 5,
        "stop": ["END"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": TOOL["input_schema"],
                    "description": "Look it up",
                },
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "parallel_tool_calls": False,
        "user": "u-1",
    }


def test_round_trip_through_the_anthropic_provider() -> None:
    """Anthropic → chat (here) → Anthropic (providers/anthropic.py) gives the request back."""
    messages, params = to_chat(REQUEST)
    system, turns = translate_messages(messages)
    assert system == "Be brief."
    # the provider merges the two consecutive user turns, as Anthropic's API wants turns to alternate
    assert turns == [
        CONVERSATION[0],
        CONVERSATION[1],
        {"role": "user", "content": CONVERSATION[2]["content"] + CONVERSATION[3]["content"]},
    ]
    assert [translate_tool(t) for t in params["tools"]] == [TOOL]
    assert (
        translate_tool_choice(params["tool_choice"], params["parallel_tool_calls"]) == REQUEST["tool_choice"]
    )


@pytest.mark.parametrize(
    ("choice", "chat"),
    [({"type": "auto"}, "auto"), ({"type": "any"}, "required"), ({"type": "none"}, "none")],
)
def test_tool_choice_round_trip(choice: dict[str, Any], chat: Any) -> None:
    _, params = to_chat({**REQUEST, "tool_choice": choice})
    assert params["tool_choice"] == chat and "parallel_tool_calls" not in params
    assert translate_tool_choice(chat, None) == choice


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
        ({"temperature": 2}, "temperature"),
        ({"stream": "yes"}, "stream"),
        ({"frequency_penalty": 1}, "frequency_penalty"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "custom tools"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
    ],
)
def test_refusals_name_the_field(change: dict[str, Any], words: str) -> None:
    with pytest.raises(MessagesRequestError, match=words):
        request = {k: v for k, v in {**REQUEST, **change}.items() if v is not None}
        check_request(request)
        to_chat(request)


def test_answer_to_message_field_by_field() -> None:
    response = ModelResponse._build(
        {
            "id": "chatcmpl-1",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "Sure.",
                        "reasoning_content": "think",
                        "tool_calls": [
                            {
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q": 2}'},
                            }
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": 30,
                "completion_tokens": 4,
                "total_tokens": 34,
                "prompt_tokens_details": {"cached_tokens": 20, "cache_creation_tokens": 3},
            },
        }
    )
    message = to_message(response, "group")
    assert message["id"].startswith("msg_")
    assert {k: v for k, v in message.items() if k != "id"} == {
        "type": "message",
        "role": "assistant",
        "model": "group",
        "content": [
            {"type": "thinking", "thinking": "think", "signature": ""},
            {"type": "text", "text": "Sure."},
            {"type": "tool_use", "id": "call_9", "name": "lookup", "input": {"q": 2}},
        ],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 7,
            "output_tokens": 4,
            "cache_creation_input_tokens": 3,
            "cache_read_input_tokens": 20,
        },
    }


@pytest.mark.parametrize(
    ("finish", "stop"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
    ],
)
def test_finish_reasons(finish: str, stop: str) -> None:
    response = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}], "usage": {}}
    assert to_message(response, "m")["stop_reason"] == stop


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> ModelResponseStream:
    data: dict[str, Any] = {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        data["usage"] = usage
    return ModelResponseStream._build(data)


def test_chunks_become_blocks_in_order() -> None:
    """Thinking, text and two tool calls: each a block, opened and closed in sequence."""
    t = EventTranslator("m")
    chunks = [
        _chunk({"role": "assistant", "reasoning_content": "hm"}),
        _chunk({"content": "A"}),
        _chunk({"content": "B"}),
        _chunk({"tool_calls": [{"index": 0, "id": "t0", "function": {"name": "f", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "t1", "function": {"name": "g", "arguments": "{}"}}]}),
        _chunk({}, "tool_calls", {"prompt_tokens": 3, "completion_tokens": 2}),
    ]
    out = [e for c in chunks for e in t.feed(c)] + t.finish_events()
    summary = [
        (e["type"], e.get("index"), (e.get("delta") or e.get("content_block") or {}).get("type")) for e in out
    ]
    assert summary == [
        ("message_start", None, None),
        ("ping", None, None),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1, None),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2, None),
        ("content_block_start", 3, "tool_use"),
        ("content_block_delta", 3, "input_json_delta"),
        ("content_block_stop", 3, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert out[9]["content_block"] == {"type": "tool_use", "id": "t0", "name": "f", "input": {}}
    assert out[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert out[-2]["usage"]["input_tokens"] == 3 and out[-2]["usage"]["output_tokens"] == 2


# ---- the library calls ----
@pytest.fixture
def capture() -> Any:
    logger = CapturingLogger()
    lmgate.callbacks = [logger]
    yield logger
    lmgate.reset_settings()


def _terminal(capture: CapturingLogger) -> list[Any]:
    flush()
    return capture.of(
        "log_success_event", "async_log_success_event", "log_failure_event", "async_log_failure_event"
    )


def _run(is_async: bool, stream: bool, **kwargs: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(message, events): one call, sync or async, its stream consumed."""
    if not is_async:
        result = lmgate.anthropic_messages(stream=stream, **kwargs)
        return (None, list(result)) if stream else (result, [])

    async def go() -> Any:
        result = await lmgate.aanthropic_messages(stream=stream, **kwargs)
        if stream:
            return None, [e async for e in result]
        return result, []

    return asyncio.run(go())  # type: ignore[no-any-return]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_call_is_first_class(
    capture: CapturingLogger, fake_provider: FakeProvider, is_async: bool, stream: bool
) -> None:
    message, events = _run(
        is_async,
        stream,
        model="openai/gpt-4o-mini",
        max_tokens=16,
        messages=[{"role": "user", "content": "Hi"}],
        metadata={"user_id": "u-5"},
        api_base=f"{fake_provider.base_url}/v1",
        api_key="sk-fake-0123456789",
        litellm_metadata={"team": "t"},
    )
    if stream:
        assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
        text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
        assert events[-2]["usage"]["output_tokens"] == 5
    else:
        assert message is not None
        text = message["content"][0]["text"]
        assert message["usage"]["input_tokens"] == 7
    assert text == DEFAULT_TEXT
    (event,) = _terminal(capture)
    kwargs = event.kwargs
    assert kwargs["call_type"] == "anthropic_messages"
    assert kwargs["standard_logging_object"]["call_type"] == "anthropic_messages"
    assert_valid_payload(kwargs["standard_logging_object"])
    assert (
        kwargs["standard_logging_object"]["metadata"].get("team") == "t"
        or kwargs["litellm_params"]["metadata"]["team"] == "t"
    )
    price = compute_cost(["gpt-4o-mini"], {"prompt_tokens": 7, "completion_tokens": 5}, None).cost
    assert kwargs["response_cost"] == price > 0
    assert fake_provider.requests[-1].json["user"] == "u-5"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_claude_is_passed_through(
    capture: CapturingLogger, fake_provider: FakeProvider, stream: bool
) -> None:
    """A Claude model gets the request as written (a document block translation could not
    carry) and its answer comes back as Claude sent it; the call is priced like any other."""
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "D"}}
            ],
        }
    ]
    message, events = _run(
        False,
        stream,
        model="anthropic/claude-sonnet-4-20250514",
        max_tokens=16,
        messages=messages,
        api_base=fake_provider.base_url,
        api_key="sk-fake-0123456789",
    )
    sent = fake_provider.requests[-1]
    assert sent.path == "/v1/messages" and sent.json["messages"] == messages
    if stream:
        # Claude's own events: its model id (a translation would name the model asked for)
        assert events[0]["type"] == "message_start"
        assert events[0]["message"]["model"] == "claude-sonnet-4-20250514"
        assert events[-1] == {"type": "message_stop"}
    else:
        assert message is not None and message["model"] == "claude-sonnet-4-20250514"
        assert message["content"] == [{"type": "text", "text": DEFAULT_TEXT}]
    (event,) = _terminal(capture)
    assert event.kwargs["call_type"] == "anthropic_messages"
    usage = {"prompt_tokens": 7, "completion_tokens": 5}
    assert event.kwargs["response_cost"] == compute_cost(["claude-sonnet-4-20250514"], usage, None).cost


def test_stream_closed_early_ends_the_call_once(capture: CapturingLogger) -> None:
    events = lmgate.anthropic_messages(
        model="gpt-4o-mini",
        max_tokens=8,
        messages=[{"role": "user", "content": "Hi"}],
        mock_response="a b c d",
        stream=True,
    )
    assert next(events)["type"] == "message_start"
    events.close()
    assert len(_terminal(capture)) == 1


def test_bad_request_raises_before_any_call(capture: CapturingLogger) -> None:
    with pytest.raises(lmgate.BadRequestError, match="max_tokens"):
        lmgate.anthropic_messages(
            model="gpt-4o-mini", max_tokens=0, messages=[{"role": "user", "content": "x"}]
        )


def test_upstream_error_is_one_failure_event(capture: CapturingLogger, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue(Reply(status=400))
    with pytest.raises(lmgate.BadRequestError):
        lmgate.anthropic_messages(
            model="openai/gpt-4o-mini",
            max_tokens=8,
            messages=[{"role": "user", "content": "x"}],
            api_base=f"{fake_provider.base_url}/v1",
            api_key="sk-fake-0123456789",
        )
    (event,) = _terminal(capture)
    assert event.hook.endswith("failure_event") and event.kwargs["call_type"] == "anthropic_messages"
