"""``lmgate.responses`` / ``aresponses`` and ``lmgate.text_completion`` / ``atext_completion``,
and the translation under them: round trips checked field by field, the event sequence, the
response store, and one first-class call per request (the reference's call types, one
terminal event, usage and exact cost) — bridged over chat and passed through to OpenAI."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from fakes import DEFAULT_TEXT, FakeProvider, Reply
from helpers import flush
from payload_schema import assert_valid_payload

import lmgate
from lmgate._responses.events import EventTranslator
from lmgate._responses.store import ResponseStore, expand
from lmgate._responses.translate import (
    ResponsesRequestError,
    check_request,
    skeleton,
    to_chat,
    to_response,
)
from lmgate.cost import compute_cost
from lmgate.providers.base import Endpoint
from lmgate.providers.openai_apis import parse_api
from lmgate.testing import CapturingLogger
from lmgate.types import ModelResponse, ModelResponseStream

TOOL: dict[str, Any] = {
    "type": "function",
    "name": "lookup",
    "description": "Look it up",
    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
}
ITEMS: list[dict[str, Any]] = [
    {"role": "developer", "content": "Answer in French."},
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Find x"}]},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Looking."}]},
    {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": '{"q":"x"}'},
    {"type": "function_call", "call_id": "call_2", "name": "lookup", "arguments": '{"q":"y"}'},
    {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
    {"type": "function_call_output", "call_id": "call_1", "output": "x is 1"},
    {"type": "function_call_output", "call_id": "call_2", "output": "y is 2"},
    {
        "role": "user",
        "content": [
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": "low"},
            {"type": "input_text", "text": "And this?"},
        ],
    },
]
USAGE = {"prompt_tokens": 7, "completion_tokens": 5}


# ---- the request, field by field ----
def test_request_to_chat_field_by_field() -> None:
    data = {
        "model": "m",
        "instructions": "Be brief.",
        "input": ITEMS,
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "lookup"},
        "parallel_tool_calls": False,
        "max_output_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "u-1",
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "high", "summary": "auto"},
        "include": ["reasoning.encrypted_content"],
        "store": True,
    }
    check_request(data)
    messages, params = to_chat(data)
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Find x"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"q":"y"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "x is 1"},
        {"role": "tool", "tool_call_id": "call_2", "content": "y is 2"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "text", "text": "And this?"},
            ],
        },
    ]
    assert params == {
        "max_tokens": 100,
        "temperature": 0.3,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "user": "u-1",
        "tools": [
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": TOOL["parameters"], "description": "Look it up"},
            }
        ],
        "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        "response_format": {"type": "json_object"},
        "reasoning_effort": "high",
    }


def test_a_tool_call_without_text_is_an_assistant_turn_of_its_own() -> None:
    messages, _ = to_chat(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "q"},
                {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
                {
                    "type": "function_call_output",
                    "call_id": "c",
                    "output": [{"type": "input_text", "text": "r"}],
                },
            ],
        }
    )
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": "c", "content": "r"}


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"input": None}, "input"),
        ({"input": 3}, "input"),
        ({"model": ""}, "model"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": 2.5}, "temperature"),
        ({"max_output_tokens": 1}, "max_output_tokens"),
        ({"seed": 1}, "seed"),
        ({"prompt": {"id": "p"}}, "prompt"),
    ],
)
def test_refused_requests_name_the_parameter(patch: dict[str, Any], param: str) -> None:
    data = {"model": "m", "input": "x", **patch}
    if patch.get("input", 0) is None:
        del data["input"]
    with pytest.raises(ResponsesRequestError) as refused:
        check_request(data)
    assert refused.value.param == param and refused.value.status_code == 400


def test_passed_through_requests_may_carry_what_chat_cannot() -> None:
    data = {"model": "m", "input": [{"type": "item_reference", "id": "x"}], "background": True}
    check_request(data, strict=False)
    with pytest.raises(ResponsesRequestError):
        check_request(data)
    with pytest.raises(ResponsesRequestError):
        to_chat({"model": "m", "input": [{"type": "item_reference", "id": "x"}]})
    assert to_chat({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}, strict=False)[0] == []


# ---- the answer, field by field ----
def _chat_answer(finish: str = "tool_calls") -> ModelResponse:
    return ModelResponse(
        {
            "id": "chatcmpl-1",
            "model": "gpt-x",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": finish,
                    "message": {
                        "role": "assistant",
                        "content": "Here.",
                        "reasoning_content": "Thinking.",
                        "tool_calls": [
                            {
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "lookup", "arguments": '{"q":1}'},
                            }
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": 6,
                "total_tokens": 17,
                "prompt_tokens_details": {"cached_tokens": 4},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        }
    )


def test_chat_answer_to_response_field_by_field() -> None:
    request = {"model": "group", "input": "x", "instructions": "I", "tools": [TOOL], "metadata": {"a": "b"}}
    response = to_response(_chat_answer(), request, "resp_1", "group")
    assert (response["id"], response["object"], response["status"], response["model"]) == (
        "resp_1",
        "response",
        "completed",
        "group",
    )
    reasoning, message, call = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["content"] == [
        {"type": "reasoning_text", "text": "Thinking."}
    ]
    assert (
        message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    )
    assert message["content"] == [{"type": "output_text", "text": "Here.", "annotations": [], "logprobs": []}]
    assert {k: call[k] for k in ("type", "call_id", "name", "arguments", "status")} == {
        "type": "function_call",
        "call_id": "call_9",
        "name": "lookup",
        "arguments": '{"q":1}',
        "status": "completed",
    }
    assert response["usage"] == {
        "input_tokens": 11,
        "input_tokens_details": {"cached_tokens": 4},
        "output_tokens": 6,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 17,
    }
    assert (response["instructions"], response["tools"], response["metadata"]) == ("I", [TOOL], {"a": "b"})
    truncated = to_response(_chat_answer("length"), request, "resp_2", "group")
    assert truncated["status"] == "incomplete"
    assert truncated["incomplete_details"] == {"reason": "max_output_tokens"}


def test_response_body_round_trips_through_chat() -> None:
    """OpenAI's answer → chat (for usage, cost and callbacks) → a response again: same content."""
    body = {
        "id": "resp_up",
        "object": "response",
        "created_at": 1,
        "status": "completed",
        "model": "gpt-4o-mini",
        "output": [
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hi", "annotations": []}],
            },
            {"id": "fc_1", "type": "function_call", "call_id": "call_1", "name": "f", "arguments": "{}"},
        ],
        "usage": {
            "input_tokens": 9,
            "output_tokens": 3,
            "total_tokens": 12,
            "input_tokens_details": {"cached_tokens": 2},
            "output_tokens_details": {"reasoning_tokens": 1},
        },
    }
    chat = parse_api(
        "responses", body, Endpoint(provider="openai", model="gpt-4o-mini", api_base="http://x", api_key=None)
    )
    assert chat["usage"]["prompt_tokens"] == 9 and chat["usage"]["completion_tokens"] == 3
    assert chat["usage"]["prompt_tokens_details"]["cached_tokens"] == 2
    assert chat["choices"][0]["finish_reason"] == "tool_calls"
    assert to_response(chat, {"model": "g", "input": "x"}, "resp_x", "g") is body  # passed through as sent
    again = to_response(chat, {"model": "g", "input": "x"}, "resp_x", "g", raw=False)
    assert [i["type"] for i in again["output"]] == ["message", "function_call"]
    assert again["output"][0]["content"][0]["text"] == "Hi"
    assert again["output"][1]["call_id"] == "call_1"
    assert again["usage"] == body["usage"]


# ---- the stream ----
def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> ModelResponseStream:
    data: dict[str, Any] = {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if usage:
        data["usage"] = usage
    return ModelResponseStream(data)


def test_stream_events_for_text_then_two_tool_calls() -> None:
    events = EventTranslator(skeleton({"model": "g", "input": "x"}, "resp_s", "g"))
    out: list[dict[str, Any]] = []
    for chunk in [
        _chunk({"role": "assistant", "content": "Let "}),
        _chunk({"content": "me."}),
        _chunk({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f", "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g", "arguments": "{}"}}]}),
        _chunk({}, "tool_calls", {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}),
    ]:
        out += events.feed(chunk)
    out += events.finish_events()
    assert [e["type"] for e in out] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    assert out[6]["text"] == "Let me."
    assert out[12]["arguments"] == '{"a":1}' and out[12]["output_index"] == 1
    final = out[-1]["response"]
    assert [i["type"] for i in final["output"]] == ["message", "function_call", "function_call"]
    assert final["output"][2]["call_id"] == "call_b"
    assert final["usage"]["output_tokens"] == 4 and final["status"] == "completed"
    assert events.result() is events.response


# ---- the store ----
def test_store_is_bounded_and_counts_what_it_drops() -> None:
    store = ResponseStore(capacity=2)
    for i in range(3):
        store.put({"id": f"resp_{i}", "output": []}, [])
    assert store.get("resp_0") is None and store.get("resp_2") is not None
    assert store.evicted == 1 and len(store) == 2


def test_a_key_never_continues_another_keys_response() -> None:
    store = ResponseStore()
    store.put({"id": "resp_k", "output": []}, [{"role": "user", "content": "secret"}], owner="hash-a")
    request = {"model": "m", "input": "more", "previous_response_id": "resp_k"}
    assert expand(request, store, False, "hash-a")[1][0]["content"] == "secret"
    with pytest.raises(ResponsesRequestError) as refused:
        expand(request, store, False, "hash-b")
    assert refused.value.param == "previous_response_id"


# ---- first-class calls ----
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


def _run(fn: str, is_async: bool, stream: bool, **kwargs: Any) -> tuple[Any, list[Any]]:
    if not is_async:
        result = getattr(lmgate, fn)(stream=stream, **kwargs)
        return (None, list(result)) if stream else (result, [])

    async def go() -> Any:
        result = await getattr(lmgate, "a" + fn)(stream=stream, **kwargs)
        if stream:
            return None, [e async for e in result]
        return result, []

    return asyncio.run(go())  # type: ignore[no-any-return]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("upstream", ["bridged", "passed_through"])
def test_responses_is_a_first_class_call(
    capture: CapturingLogger, fake_provider: FakeProvider, is_async: bool, stream: bool, upstream: str
) -> None:
    model = "azure/gpt-4o-mini" if upstream == "bridged" else "openai/gpt-4o-mini"
    base = fake_provider.base_url if upstream == "bridged" else f"{fake_provider.base_url}/v1"
    response, events = _run(
        "responses",
        is_async,
        stream,
        model=model,
        input="Hi",
        metadata={"ticket": "T-9"},
        api_base=base,
        api_key="sk-fake-0123456789",
        litellm_metadata={"team": "t"},
    )
    sent = fake_provider.requests[-1]
    assert sent.path.endswith("/chat/completions" if upstream == "bridged" else "/v1/responses")
    if stream:
        assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
        response = events[-1]["response"]
    assert response["output"][0]["content"][0]["text"] == DEFAULT_TEXT
    assert response["usage"]["input_tokens"] == 7 and response["metadata"] == {"ticket": "T-9"}
    (event,) = _terminal(capture)
    kwargs = event.kwargs
    call_type = "aresponses" if is_async else "responses"
    assert kwargs["call_type"] == call_type
    assert kwargs["standard_logging_object"]["call_type"] == call_type
    assert_valid_payload(kwargs["standard_logging_object"])
    assert kwargs["litellm_params"]["metadata"]["team"] == "t"
    assert kwargs["response_cost"] == compute_cost(["gpt-4o-mini"], USAGE, None).cost > 0
    # stored: the next request continues it
    lmgate.responses(
        model="gpt-4o-mini", input="More", previous_response_id=response["id"], mock_response="ok"
    )


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("upstream", ["bridged", "passed_through"])
def test_text_completion_is_a_first_class_call(
    capture: CapturingLogger, fake_provider: FakeProvider, is_async: bool, stream: bool, upstream: str
) -> None:
    model = "azure/gpt-4o-mini" if upstream == "bridged" else "openai/gpt-4o-mini"
    base = fake_provider.base_url if upstream == "bridged" else f"{fake_provider.base_url}/v1"
    result, chunks = _run(
        "text_completion",
        is_async,
        stream,
        model=model,
        prompt="Say",
        max_tokens=9,
        api_base=base,
        api_key="sk-fake-0123456789",
    )
    sent = fake_provider.requests[-1]
    if upstream == "bridged":
        assert sent.json["messages"] == [{"role": "user", "content": "Say"}] and sent.json["max_tokens"] == 9
    else:
        assert (
            sent.path == "/v1/completions" and sent.json["prompt"] == "Say" and sent.json["max_tokens"] == 9
        )
    text = (
        "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
        if stream
        else result["choices"][0]["text"]
    )
    assert text == DEFAULT_TEXT
    (event,) = _terminal(capture)
    assert event.kwargs["call_type"] == ("atext_completion" if is_async else "text_completion")
    assert event.kwargs["response_cost"] == compute_cost(["gpt-4o-mini"], USAGE, None).cost > 0


def test_a_stream_closed_early_ends_the_call_once(capture: CapturingLogger) -> None:
    events = lmgate.responses(model="gpt-4o-mini", input="Hi", mock_response="a b c d", stream=True)
    assert next(events)["type"] == "response.created"
    events.close()
    assert len(_terminal(capture)) == 1


def test_upstream_error_is_one_failure_event(capture: CapturingLogger, fake_provider: FakeProvider) -> None:
    fake_provider.enqueue(Reply(status=400))
    with pytest.raises(lmgate.BadRequestError):
        lmgate.responses(
            model="openai/gpt-4o-mini",
            input="x",
            api_base=f"{fake_provider.base_url}/v1",
            api_key="sk-fake-0123456789",
        )
    (event,) = _terminal(capture)
    assert event.hook.endswith("failure_event") and event.kwargs["call_type"] == "responses"


def test_bad_request_raises_before_any_call(capture: CapturingLogger) -> None:
    with pytest.raises(lmgate.BadRequestError, match="input"):
        lmgate.responses(model="gpt-4o-mini", input=None)  # type: ignore[arg-type]
    with pytest.raises(lmgate.BadRequestError, match="previous_response_id|not found"):
        lmgate.responses(model="gpt-4o-mini", input="x", previous_response_id="resp_nope", mock_response="x")
    assert _terminal(capture) == []


def test_stream_error_from_openai_is_one_failure(
    capture: CapturingLogger, fake_provider: FakeProvider
) -> None:
    fake_provider.enqueue(Reply(stream_error={"message": "boom"}))
    with pytest.raises(lmgate.APIError):
        list(
            lmgate.responses(
                model="openai/gpt-4o-mini",
                input="x",
                stream=True,
                api_base=f"{fake_provider.base_url}/v1",
                api_key="sk-fake-0123456789",
            )
        )
    (event,) = _terminal(capture)
    assert event.hook.endswith("failure_event")
    assert json.dumps(event.kwargs["call_type"]) == '"responses"'
