"""``POST /v1/messages`` and ``/v1/messages/count_tokens`` of a real ``lmgate serve``, with the
official ``anthropic`` SDK as the client, against a mock-, an OpenAI- and an Anthropic-backed
deployment (the last two: the fake provider on 127.0.0.1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from fakes import DEFAULT_TEXT, FakeProvider, LogReceiver, Reply
from proxy_kit import BACKENDS, MOCK_TEXT, BackendsProxy
from test_proxy_server import Served, generic_logger_extra

from lmgate._messages.translate import estimate_input_tokens
from lmgate.cost import compute_cost

MASTER = "sk-master-messages-0123456789"
UPSTREAM = "sk-upstream-messages-0123456789"
PROXY = BackendsProxy(MASTER, UPSTREAM, "MSG_MASTER_KEY", "MSG_UPSTREAM_KEY")
ENV = PROXY.env
write_config = PROXY.write_config
fake, served = PROXY.fixtures("messages")


@pytest.fixture
def client(served: Served, fake: FakeProvider) -> Iterator[anthropic.Anthropic]:
    fake.reset()
    with anthropic.Anthropic(base_url=served.url, api_key=MASTER, max_retries=0) as c:
        yield c


def expected_text(backend: str) -> str:
    return MOCK_TEXT if backend == "mock" else DEFAULT_TEXT


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


# ---- plain messages ----
@pytest.mark.parametrize("backend", BACKENDS)
def test_message_from_every_backend(client: anthropic.Anthropic, fake: FakeProvider, backend: str) -> None:
    message = client.messages.create(
        model=backend,
        max_tokens=64,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        ],
        stop_sequences=["END"],
        temperature=0.5,
        metadata={"user_id": "user-42"},
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == expected_text(backend)
    assert message.stop_reason == "end_turn"
    # translated answers name the model group; a pass-through's is Claude's own answer
    assert message.model == (fake.requests[-1].json["model"] if backend == "claude" else backend)
    if backend == "mock":
        assert fake.requests == []
        return
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 5)
    (sent,) = fake.requests
    assert sent.headers.get("authorization", sent.headers.get("x-api-key", "")).endswith(UPSTREAM)
    body = sent.json
    if backend == "openai":
        assert sent.path == "/v1/chat/completions"
        assert body["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Weather?"},
        ]
        assert (body["max_tokens"], body["stop"], body["temperature"], body["user"]) == (
            64,
            ["END"],
            0.5,
            "user-42",
        )
    else:  # passed through unchanged: only the model is the deployment's
        assert sent.path == "/v1/messages"
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert body["system"] == "Be brief."
        assert body["messages"] == [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        ]
        assert body["model"] == "claude-sonnet-4-20250514" and body["temperature"] == 0.5
        assert (body["max_tokens"], body["stop_sequences"], body["metadata"]) == (
            64,
            ["END"],
            {"user_id": "user-42"},
        )


@pytest.mark.parametrize("backend", BACKENDS)
def test_stream_helper_assembles_the_message(client: anthropic.Anthropic, backend: str) -> None:
    """The SDK's ``messages.stream`` helper folds the events into the final message: a strict
    check of the event sequence (it raises on a delta for a block that was never started)."""
    with client.messages.stream(
        model=backend, max_tokens=32, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == expected_text(backend)
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    if backend != "mock":
        assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 5)


def test_stream_event_sequence(client: anthropic.Anthropic) -> None:
    events = list(
        client.messages.create(
            model="openai", max_tokens=32, messages=[{"role": "user", "content": "Hi"}], stream=True
        )
    )
    kinds = [e.type for e in events]
    deltas = kinds.count("content_block_delta")
    assert deltas > 1
    assert kinds == [  # the SDK drops ``ping`` (the wire test sees it)
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[-2].delta.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert events[-2].usage.output_tokens == 5  # type: ignore[union-attr]


def test_stream_wire_framing(served: Served, fake: FakeProvider) -> None:
    """Named events, each data line the event's JSON with its own type, and no ``[DONE]``."""
    fake.reset()
    body = {
        "model": "openai",
        "max_tokens": 8,
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    with httpx.Client() as c:
        r = c.post(f"{served.url}/anthropic/v1/messages", json=body, headers={"x-api-key": MASTER})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in r.text.split("\n\n") if b]
    assert "[DONE]" not in r.text
    names = [b.split("\n")[0][len("event: ") :] for b in blocks]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    for block in blocks:
        event_line, data_line = block.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        assert json.loads(data_line[len("data: ") :])["type"] == event_line[len("event: ") :]


# ---- tools ----
@pytest.mark.parametrize("backend", ["openai", "claude"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_round_trip(client: anthropic.Anthropic, fake: FakeProvider, backend: str, stream: bool) -> None:
    fake.enqueue(
        Reply(text=None, tool_calls=[{"id": "call_1", "name": "get_weather", "arguments": {"city": "Paris"}}])
    )
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    kwargs: dict[str, Any] = {
        "model": backend,
        "max_tokens": 64,
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "messages": ask,
    }
    if stream:
        with client.messages.stream(**kwargs) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(**kwargs)
    assert first.stop_reason == "tool_use"
    (use,) = [b for b in first.content if b.type == "tool_use"]
    assert (use.id, use.name, use.input) == ("call_1", "get_weather", {"city": "Paris"})
    sent = fake.requests[-1].json
    if backend == "openai":
        assert sent["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "The weather in a city",
                    "parameters": WEATHER_TOOL["input_schema"],
                },
            }
        ]
        assert (sent["tool_choice"], sent["parallel_tool_calls"]) == ("required", False)
    else:
        assert sent["tools"] == [WEATHER_TOOL]
        assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}

    # the second turn: the tool's result goes back
    answer = client.messages.create(
        model=backend,
        max_tokens=64,
        tools=[WEATHER_TOOL],
        messages=[
            *ask,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"}],
            },
        ],
    )
    assert answer.content[0].text == DEFAULT_TEXT
    sent = fake.requests[-1].json
    if backend == "openai":
        assistant, tool = sent["messages"][1:]
        assert assistant["tool_calls"] == [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ]
        assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}
    else:
        assistant, result = sent["messages"][1:]
        # passed through as the SDK wrote it; newer SDKs also write their optional fields as null
        blocks = [{k: v for k, v in block.items() if v is not None} for block in assistant["content"]]
        assert blocks == [{"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}]
        assert result["content"] == [{"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"}]


def test_image_block_is_translated(client: anthropic.Anthropic, fake: FakeProvider) -> None:
    client.messages.create(
        model="openai",
        max_tokens=8,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
                    },
                    {"type": "text", "text": "What is this?"},
                ],
            }
        ],
    )
    assert fake.requests[-1].json["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "text", "text": "What is this?"},
            ],
        }
    ]


# ---- count_tokens ----
@pytest.mark.parametrize("backend", ["mock", "openai"])
def test_count_tokens_estimates(client: anthropic.Anthropic, fake: FakeProvider, backend: str) -> None:
    messages: list[Any] = [{"role": "user", "content": "How many tokens is this sentence?"}]
    counted = client.messages.count_tokens(
        model=backend, system="Be brief.", messages=messages, tools=[WEATHER_TOOL]
    )
    expected = estimate_input_tokens(
        {"model": backend, "system": "Be brief.", "messages": messages, "tools": [WEATHER_TOOL]}
    )
    assert counted.input_tokens == expected > 10
    assert fake.requests == []  # an estimate: no provider was asked


def test_count_tokens_passes_through_to_claude(client: anthropic.Anthropic, fake: FakeProvider) -> None:
    fake.enqueue(Reply(usage=(42, 0)))
    messages: list[Any] = [{"role": "user", "content": "Count me."}]
    counted = client.messages.count_tokens(
        model="claude", messages=messages, extra_headers={"anthropic-beta": "token-counting-2024-11-01"}
    )
    assert counted.input_tokens == 42
    (sent,) = fake.requests
    assert sent.path == "/v1/messages/count_tokens"
    assert sent.json == {"model": "claude-sonnet-4-20250514", "messages": messages}
    assert sent.headers["x-api-key"] == UPSTREAM
    assert sent.headers["anthropic-beta"] == "token-counting-2024-11-01"
    fake.enqueue(Reply(status=429))
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.count_tokens(model="claude", messages=messages)
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


# ---- errors ----
def _raw(served: Served, body: Any, key: str = MASTER) -> httpx.Response:
    with httpx.Client() as c:
        return c.post(
            f"{served.url}/v1/messages",
            json=body,
            headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        )


@pytest.mark.parametrize(
    ("body", "status", "kind", "words"),
    [
        (
            {"model": "openai", "messages": [{"role": "user", "content": "x"}]},
            400,
            "invalid_request_error",
            "max_tokens",
        ),
        ({"model": "openai", "max_tokens": 5, "messages": []}, 400, "invalid_request_error", "messages"),
        (
            {"model": "openai", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            400,
            "invalid_request_error",
            "role",
        ),
        (
            {"model": "openai", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "n": 2},
            400,
            "invalid_request_error",
            "n: Extra inputs",
        ),
        (
            {
                "model": "openai",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": [{"type": "document"}]}],
            },
            400,
            "invalid_request_error",
            "'document'",
        ),
        (
            {"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
            404,
            "not_found_error",
            "nope",
        ),
    ],
)
def test_malformed_requests_get_anthropic_errors(
    served: Served, fake: FakeProvider, body: Any, status: int, kind: str, words: str
) -> None:
    fake.reset()
    r = _raw(served, body)
    assert r.status_code == status
    error = r.json()
    assert error["type"] == "error" and error["error"]["type"] == kind
    assert words in error["error"]["message"]
    assert fake.requests == []


def test_sdk_raises_its_own_errors(served: Served, client: anthropic.Anthropic, fake: FakeProvider) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model="openai", max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert bad.value.status_code == 400 and bad.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    with anthropic.Anthropic(base_url=served.url, api_key="sk-wrong-key-000000", max_retries=0) as wrong:
        with pytest.raises(anthropic.AuthenticationError) as denied:
            wrong.messages.create(model="openai", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert denied.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    fake.enqueue(Reply(status=429))
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="openai", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_error_mid_stream_is_an_error_event(client: anthropic.Anthropic, fake: FakeProvider) -> None:
    fake.enqueue(Reply(cut_after_chunks=2))
    with pytest.raises(anthropic.APIStatusError) as broken:
        with client.messages.stream(
            model="openai", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        ) as s:
            s.get_final_message()
    assert broken.value.body["type"] == "error"  # type: ignore[index]


# ---- one logged call per request ----
def test_one_record_per_request_with_call_type_and_cost(
    tmp_path: Path, fake: FakeProvider, log_receiver: LogReceiver
) -> None:
    fake.reset()
    config = write_config(tmp_path, fake, generic_logger_extra(log_receiver, tmp_path, 60))
    served = Served(
        config,
        tmp_path,
        {**ENV, "SERVE_RECEIVER_URL": log_receiver.url, "SERVE_WEBHOOK_TOKEN": "tok-0123456789"},
    )
    try:
        served.wait_ready()
        with anthropic.Anthropic(base_url=served.url, api_key=MASTER, max_retries=0) as c:
            ask: list[Any] = [{"role": "user", "content": "Hi"}]
            c.messages.create(model="openai", max_tokens=8, messages=ask, metadata={"user_id": "user-7"})
            with c.messages.stream(model="openai", max_tokens=8, messages=ask) as s:
                s.get_final_message()
            c.messages.create(model="mock", max_tokens=8, messages=ask)
            with c.messages.stream(model="claude", max_tokens=8, messages=ask) as s:  # passed through
                s.get_final_message()
            fake.enqueue(Reply(status=400))  # the upstream refuses: one failure record
            with pytest.raises(anthropic.BadRequestError):
                c.messages.create(model="openai", max_tokens=8, messages=ask)
    finally:
        code = served.stop()
    assert code == 0, served.stderr
    assert log_receiver.wait_for_records(5, timeout=10)
    records = log_receiver.records
    assert len(records) == 5, [r.get("call_type") for r in records]
    by_status = sorted(records, key=lambda r: r["status"])
    assert [r["call_type"] for r in records] == ["anthropic_messages"] * 5
    success = [r for r in by_status if r["status"] == "success"]
    assert len(success) == 4
    usage = {"prompt_tokens": 7, "completion_tokens": 5}
    price = compute_cost(["gpt-4o-mini"], usage, None).cost
    assert [r["response_cost"] for r in success if r["model_group"] == "openai"] == [price, price]
    (claude,) = [r for r in records if r["model_group"] == "claude"]
    assert claude["response_cost"] == compute_cost(["claude-sonnet-4-20250514"], usage, None).cost > 0
    assert (claude["prompt_tokens"], claude["completion_tokens"]) == (7, 5)
    assert all(r["metadata"]["user_api_key_hash"] for r in records)
    assert any(r.get("end_user") == "user-7" for r in records)


# ---- pass-through to a Claude deployment ----
THINKING_EVENTS: list[dict[str, Any]] = [
    {
        "type": "message_start",
        "message": {
            "id": "msg_upstream_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-20250514",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 11, "output_tokens": 1, "cache_read_input_tokens": 4},
        },
    },
    {"type": "ping"},
    {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    },
    {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "Let me think."},
    },
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig-abc"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Done."}},
    {"type": "content_block_stop", "index": 1},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 9},
    },
    {"type": "message_stop"},
]


def test_claude_stream_events_pass_through_unchanged(served: Served, fake: FakeProvider) -> None:
    """Thinking with its signature, Claude's message id, cache usage: every event as Claude sent it."""
    fake.reset()
    fake.enqueue(Reply(events=[f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in THINKING_EVENTS]))
    body = {
        "model": "claude",
        "max_tokens": 2048,
        "stream": True,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": [{"role": "user", "content": "Hi"}],
    }
    with httpx.Client() as c:
        r = c.post(f"{served.url}/v1/messages", json=body, headers={"x-api-key": MASTER})
    assert r.status_code == 200
    got = [json.loads(b.split("\ndata: ", 1)[1]) for b in r.text.split("\n\n") if b]
    assert got == THINKING_EVENTS
    assert fake.requests[-1].json["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_claude_gets_what_translation_cannot_carry(served: Served, fake: FakeProvider) -> None:
    """A document block, cache_control, a server tool and anthropic-beta reach Claude as sent;
    the same request to an OpenAI deployment is refused with the block named."""
    fake.reset()
    messages = [
        {
            "role": "user",
            "content": [
                {
                    "type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": "A doc."},
                },
                {"type": "text", "text": "Summarise.", "cache_control": {"type": "ephemeral"}},
            ],
        }
    ]
    tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]
    with anthropic.Anthropic(base_url=served.url, api_key=MASTER, max_retries=0) as c:
        message = c.messages.create(
            model="claude",
            max_tokens=64,
            messages=messages,  # type: ignore[arg-type]
            tools=tools,  # type: ignore[arg-type]
            service_tier="auto",
            extra_headers={"anthropic-beta": "files-api-2025-04-14"},
        )
        assert fake.requests[-1].json["service_tier"] == "auto"
        assert message.content[0].text == DEFAULT_TEXT  # type: ignore[union-attr]
        sent = fake.requests[-1]
        assert sent.json["messages"] == messages and sent.json["tools"] == tools
        assert sent.headers["anthropic-beta"] == "files-api-2025-04-14"
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.headers["x-api-key"] == UPSTREAM
        with pytest.raises(anthropic.BadRequestError, match="document"):
            c.messages.create(model="openai", max_tokens=64, messages=messages)  # type: ignore[arg-type]
        with pytest.raises(anthropic.BadRequestError, match="service_tier"):
            c.messages.create(
                model="openai",
                max_tokens=64,
                messages=[{"role": "user", "content": "x"}],
                service_tier="auto",
            )
    assert len(fake.requests) == 1


def test_claude_message_passes_through_unchanged(served: Served, fake: FakeProvider) -> None:
    fake.reset()
    upstream = {
        "id": "msg_upstream_2",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-20250514",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "sig-xyz"},
            {"type": "text", "text": "Yes.", "citations": None},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 3,
            "output_tokens": 2,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    fake.enqueue(Reply(json=upstream))
    with httpx.Client() as c:
        r = c.post(
            f"{served.url}/v1/messages",
            json={"model": "claude", "max_tokens": 8, "messages": [{"role": "user", "content": "?"}]},
            headers={"x-api-key": MASTER},
        )
    assert r.status_code == 200 and r.json() == upstream


def test_metrics_count_messages_requests_and_tokens(tmp_path: Path, fake: FakeProvider) -> None:
    """/metrics: the route label ``messages``, and the tokens of a plain and a streamed answer."""
    fake.reset()
    served = Served(write_config(tmp_path, fake), tmp_path, ENV)
    try:
        served.wait_ready()
        with anthropic.Anthropic(base_url=served.url, api_key=MASTER, max_retries=0) as c:
            ask: list[Any] = [{"role": "user", "content": "Hi"}]
            c.messages.create(model="openai", max_tokens=8, messages=ask)
            with c.messages.stream(model="openai", max_tokens=8, messages=ask) as s:
                s.get_final_message()
            with pytest.raises(anthropic.BadRequestError):
                c.messages.create(model="openai", max_tokens=0, messages=ask)
        text = httpx.get(f"{served.url}/metrics", headers={"x-api-key": MASTER}).text
    finally:
        served.stop()
    assert 'lmgate_requests_total{model="openai",route="messages",status="200"} 2.0' in text
    assert 'lmgate_requests_total{model="openai",route="messages",status="400"} 1.0' in text
    assert 'lmgate_tokens_total{model="openai",type="completion"} 10.0' in text
