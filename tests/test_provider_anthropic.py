"""Anthropic's Messages API (``anthropic/…`` and bare ``claude-*``) through the fake provider: the body sent, what comes back."""

from __future__ import annotations

import json

import pytest
from fakes import DEFAULT_TEXT, Reply
from helpers import MESSAGES, MODE_IDS, MODES, call

import lmgate
from lmgate.providers.anthropic import ANTHROPIC_VERSION, DEFAULT_MAX_TOKENS
from lmgate.testing import CapturingLogger

KEY = "sk-ant-test-0123456789abcdef"


@pytest.fixture
def fake_provider(fake_provider_session):
    """The session's fake provider, reset: a fresh server per test would cost its 50 ms shutdown poll."""
    fake_provider_session.reset()
    return fake_provider_session


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def anth(fp, **kw):
    kw.setdefault("model", "claude-3-5-haiku-20241022")
    return {"api_base": fp.base_url, "api_key": KEY, **kw}


def text_of(result, stream):
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in result)
    return result.choices[0].message.content


def finish_of(result, stream):
    if stream:
        return [c.choices[0].finish_reason for c in result if c.choices[0].finish_reason]
    return [result.choices[0].finish_reason]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(
    ("model", "sent"),
    [
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku-20241022"),
        ("anthropic/claude-sonnet-4", "claude-sonnet-4"),
    ],
)
def test_messages_api_request_and_text(fake_provider, mode, stream, model, sent):
    """Bare claude-* and anthropic/… post to /v1/messages with x-api-key and anthropic-version, and text comes back."""
    result = call(mode, stream, **anth(fake_provider, model=model))
    assert text_of(result, stream) == DEFAULT_TEXT
    req = fake_provider.requests[-1]
    assert req.path == "/v1/messages"
    assert req.headers["x-api-key"] == KEY
    assert req.headers["anthropic-version"] == ANTHROPIC_VERSION
    assert "authorization" not in req.headers
    expected = {
        "model": sent,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": DEFAULT_MAX_TOKENS,
    }
    if stream:
        expected["stream"] = True
    assert req.json == expected
    assert finish_of(result, stream) == ["stop"]


def test_exact_body_for_a_tool_conversation(fake_provider):
    """System, stop, tools, tool_choice, assistant tool calls, tool results and same-role runs take Anthropic's form."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "user", "content": [{"type": "text", "text": "Celsius please."}]},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "24C"},
        {"role": "user", "content": "Thanks"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    lmgate.completion(
        messages=messages,
        stop="END",
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        temperature=0.2,
        top_p=0.8,
        user="u-1",
        **anth(fake_provider),
    )
    assert fake_provider.requests[-1].json == {
        "model": "claude-3-5-haiku-20241022",
        "system": "Be brief.\n\nUse tools.",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Weather in Paris and Rome?"},
                    {"type": "text", "text": "Celsius please."},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"city": "Rome"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": "24C"},
                    {"type": "text", "text": "Thanks"},
                ],
            },
        ],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "temperature": 0.2,
        "top_p": 0.8,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ],
        "tool_choice": {"type": "tool", "name": "get_weather"},
        "metadata": {"user_id": "u-1"},
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "sent"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice_translation(fake_provider, choice, parallel, sent):
    """OpenAI tool_choice values (and parallel_tool_calls=False) become Anthropic's tool_choice."""
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    extra = {} if parallel is None else {"parallel_tool_calls": parallel}
    lmgate.completion(messages=MESSAGES, tools=tools, tool_choice=choice, **extra, **anth(fake_provider))
    assert fake_provider.requests[-1].json["tool_choice"] == sent


def test_max_tokens_and_stop_list(fake_provider):
    """max_tokens (or max_completion_tokens) replaces the default; a stop list is sent as stop_sequences."""
    lmgate.completion(messages=MESSAGES, max_tokens=50, stop=["a", "b"], **anth(fake_provider))
    body = fake_provider.requests[-1].json
    assert (body["max_tokens"], body["stop_sequences"]) == (50, ["a", "b"])
    lmgate.completion(messages=MESSAGES, max_completion_tokens=70, **anth(fake_provider))
    assert fake_provider.requests[-1].json["max_tokens"] == 70


def test_api_base_with_v1_suffix_is_accepted(fake_provider):
    """An api_base ending in /v1 still posts to /v1/messages."""
    lmgate.completion(messages=MESSAGES, **anth(fake_provider, api_base=fake_provider.base_url + "/v1"))
    assert fake_provider.requests[-1].path == "/v1/messages"


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_tool_calls_come_back(fake_provider, mode, stream):
    """tool_use blocks (and their streamed input_json deltas) become OpenAI tool_calls with JSON arguments."""
    fake_provider.enqueue(
        Reply(
            text="Let me check.",
            tool_calls=[{"id": "toolu_1", "name": "get_weather", "arguments": {"city": "Paris", "days": 2}}],
        )
    )
    result = call(mode, stream, **anth(fake_provider))
    if stream:
        deltas = [d for c in result for d in (c.choices[0].delta.tool_calls or [])]
        assert (deltas[0].id, deltas[0].function.name, deltas[0].index) == ("toolu_1", "get_weather", 0)
        assert all(d.index == 0 for d in deltas)
        arguments = "".join(d.function.arguments or "" for d in deltas)
        assert text_of(result, stream) == "Let me check."
    else:
        (tc,) = result.choices[0].message.tool_calls
        assert (tc.id, tc.type, tc.function.name) == ("toolu_1", "function", "get_weather")
        arguments = tc.function.arguments
        assert result.choices[0].message.content == "Let me check."
    assert json.loads(arguments) == {"city": "Paris", "days": 2}
    assert finish_of(result, stream) == ["tool_calls"]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("stop", "stop"), ("length", "length"), ("stop_sequence", "stop"), ("refusal", "content_filter")],
)
def test_stop_reason_becomes_finish_reason(fake_provider, mode, stream, stop_reason, finish):
    """end_turn/stop_sequence → stop, max_tokens → length, refusal → content_filter."""
    fake_provider.enqueue(Reply(finish_reason=stop_reason))
    result = call(mode, stream, **anth(fake_provider))
    assert finish_of(result, stream) == [finish]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_usage_is_mapped(fake_provider, mode, stream):
    """input/output tokens become prompt/completion/total tokens (the stream's last chunk carries them)."""
    fake_provider.enqueue(Reply(usage=(13, 8)))
    result = call(mode, stream, **anth(fake_provider))
    usage = result[-1].usage if stream else result.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (13, 8, 21)


def _cache_message():
    return {
        "id": "msg_cache",
        "type": "message",
        "role": "assistant",
        "model": "claude-3-5-haiku-20241022",
        "content": [{"type": "text", "text": "cached"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 100,
            "cache_creation_input_tokens": 20,
        },
    }


def _sse(name, obj):
    return f"event: {name}\ndata: {json.dumps(obj)}\n\n"


def _cache_events():
    start = dict(
        _cache_message(),
        content=[],
        stop_reason=None,
        usage={**_cache_message()["usage"], "output_tokens": 1},
    )
    return [
        _sse("message_start", {"type": "message_start", "message": start}),
        _sse(
            "content_block_start",
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ),
        _sse("ping", {"type": "ping"}),
        _sse(
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "cached"}},
        ),
        _sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 5},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_cache_tokens_count_as_prompt_tokens_with_details(fake_provider, mode, stream):
    """Cache reads and writes join prompt_tokens and are itemised in prompt_tokens_details."""
    fake_provider.enqueue(Reply(events=_cache_events()) if stream else Reply(json=_cache_message()))
    result = call(mode, stream, **anth(fake_provider))
    usage = result[-1].usage if stream else result.usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (130, 5, 135)
    assert usage.prompt_tokens_details == {"cached_tokens": 100, "cache_creation_tokens": 20}
    assert text_of(result, stream) == "cached"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sse_events_become_openai_chunks(fake_provider, mode):
    """message_start opens with the assistant role, text deltas carry content, message_delta ends with finish and usage."""
    fake_provider.enqueue(Reply(text="abcdefg", chunk_size=3))
    chunks = call(mode, True, **anth(fake_provider))
    assert [
        (c.choices[0].delta.role, c.choices[0].delta.content, c.choices[0].finish_reason) for c in chunks
    ] == [
        ("assistant", "", None),
        (None, "abc", None),
        (None, "def", None),
        (None, "g", None),
        (None, None, "stop"),
    ]
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].id.startswith("msg_fake")
    assert all(c.object == "chat.completion.chunk" and c.model == "claude-3-5-haiku-20241022" for c in chunks)
    assert chunks[-1].usage.total_tokens == 12


@pytest.mark.parametrize(
    "param", [{"seed": 1}, {"response_format": {"type": "json_object"}}, {"logprobs": True}, {"n": 2}]
)
def test_unsupported_parameter_raises(fake_provider, param):
    """A parameter the Messages API cannot take raises UnsupportedParamsError naming it, and nothing is sent."""
    with pytest.raises(lmgate.UnsupportedParamsError) as info:
        lmgate.completion(messages=MESSAGES, **param, **anth(fake_provider))
    assert next(iter(param)) in str(info.value)
    assert "drop_params" in str(info.value)
    assert fake_provider.requests == []


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("where", ["call", "module"])
def test_drop_params_drops_them(fake_provider, monkeypatch, mode, stream, where):
    """drop_params=True (per call or lmgate.drop_params) drops what Anthropic cannot take and sends the rest."""
    extra = {"drop_params": True} if where == "call" else {}
    if where == "module":
        monkeypatch.setattr(lmgate, "drop_params", True)
    result = call(
        mode,
        stream,
        seed=1,
        response_format={"type": "json_object"},
        temperature=0.5,
        **extra,
        **anth(fake_provider),
    )
    assert text_of(result, stream) == DEFAULT_TEXT
    body = fake_provider.requests[-1].json
    assert "seed" not in body and "response_format" not in body
    assert body["temperature"] == 0.5


def test_key_from_env(fake_provider, monkeypatch):
    """ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL are used when the call names neither."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env-0123456789")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_provider.base_url)
    lmgate.completion(model="claude-3-5-haiku-20241022", messages=MESSAGES)
    assert fake_provider.requests[-1].headers["x-api-key"] == "sk-ant-env-0123456789"


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_callbacks_see_the_translated_request_and_assembled_response(fake_provider, mode, stream):
    """The success event carries provider anthropic, the body actually sent, and the OpenAI-shaped response."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call(mode, stream, stop="X", **anth(fake_provider))
    lmgate.flush_callbacks(10)
    (event,) = capture.of("log_success_event", "async_log_success_event")
    assert event.kwargs["custom_llm_provider"] == "anthropic"
    (pre,) = capture.of("log_pre_api_call", "async_log_pre_api_call")
    sent = pre.kwargs["additional_args"]["complete_input_dict"]
    assert sent == fake_provider.requests[-1].json
    assert sent["stop_sequences"] == ["X"]
    assert KEY not in json.dumps(pre.kwargs["additional_args"]["headers"])
    assert event.response_obj.choices[0].message.content == DEFAULT_TEXT
    assert event.response_obj.usage.total_tokens == 12
    assert (
        event.response_obj._hidden_params["additional_headers"]["anthropic-ratelimit-requests-remaining"]
        == "3999"
    )
