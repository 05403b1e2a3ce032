"""OpenAI and OpenAI-compatible servers (bare names, ``openai/…``, ``hosted_vllm/…``, any model with api_base), through the fake provider."""

from __future__ import annotations

import asyncio
import json

import pytest
from fakes import DEFAULT_TEXT, Reply
from helpers import MESSAGES, MODE_IDS, MODES, call

import lmgate

KEY = "sk-test-openai-0123456789abcdef"


@pytest.fixture
def fake_provider(fake_provider_session):
    """The session's fake provider, reset: a fresh server per test would cost its 50 ms shutdown poll."""
    fake_provider_session.reset()
    return fake_provider_session


def text_of(result, stream):
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in result)
    return result.choices[0].message.content


def tool_calls_of(result, stream):
    """[(id, name, arguments)] from a response or from the deltas of a stream."""
    if not stream:
        return [(t.id, t.function.name, t.function.arguments) for t in result.choices[0].message.tool_calls]
    slots: dict[int, list] = {}
    for chunk in result:
        for d in chunk.choices[0].delta.tool_calls or []:
            slot = slots.setdefault(d.index, [None, None, ""])
            slot[0] = d.id or slot[0]
            slot[1] = d.function.name or slot[1]
            slot[2] += d.function.arguments or ""
    return [tuple(slots[i]) for i in sorted(slots)]


@pytest.fixture(autouse=True)
def _no_env_keys(monkeypatch):
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "OPENAI_API_BASE",
        "HOSTED_VLLM_API_KEY",
        "HOSTED_VLLM_API_BASE",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(
    ("model", "sent_model"),
    [
        ("gpt-4o-mini", "gpt-4o-mini"),
        ("o1-mini", "o1-mini"),
        ("o3-mini", "o3-mini"),
        ("openai/gpt-4o", "gpt-4o"),
    ],
)
def test_openai_names_reach_chat_completions(fake_provider, mode, stream, model, sent_model):
    """Bare OpenAI names and openai/… go to /chat/completions with a Bearer key and the model name without prefix."""
    result = call(mode, stream, model=model, api_base=fake_provider.base_url + "/v1", api_key=KEY)
    assert text_of(result, stream) == DEFAULT_TEXT
    req = fake_provider.requests[-1]
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.json["model"] == sent_model
    assert req.json["messages"] == MESSAGES


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_chat_parameters_pass_through_unchanged(fake_provider, mode, stream):
    """Every OpenAI chat parameter reaches the server exactly as given."""
    tools = [
        {
            "type": "function",
            "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    params = {
        "temperature": 0.3,
        "max_tokens": 55,
        "top_p": 0.9,
        "stop": ["END"],
        "n": 1,
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "seed": 42,
        "user": "user-7",
        "presence_penalty": 0.1,
        "logit_bias": {"50256": -100},
    }
    call(mode, stream, api_base=fake_provider.base_url + "/v1", api_key=KEY, metadata={"team": "x"}, **params)
    body = fake_provider.requests[-1].json
    for name, value in params.items():
        assert body[name] == value, name
    assert "metadata" not in body and "api_key" not in body and "api_base" not in body


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stream_asks_for_usage_and_last_chunk_carries_it(fake_provider, mode):
    """A stream adds stream_options.include_usage (keeping the caller's other options) and its last chunk has usage."""
    fake_provider.enqueue(Reply(usage=(11, 4)))
    chunks = call(
        mode, True, api_base=fake_provider.base_url + "/v1", api_key=KEY, stream_options={"x_extra": 1}
    )
    body = fake_provider.requests[-1].json
    assert body["stream"] is True
    assert body["stream_options"] == {"x_extra": 1, "include_usage": True}
    last = chunks[-1]
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (11, 4, 15)
    assert last.choices[0].delta.content is None  # the usage chunk still has a choice to read
    assert all(c.object == "chat.completion.chunk" for c in chunks)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_non_stream_does_not_send_stream_options(fake_provider, mode):
    """A plain call never sends stream or stream_options, even when the caller passes stream_options."""
    call(
        mode,
        False,
        api_base=fake_provider.base_url + "/v1",
        api_key=KEY,
        stream_options={"include_usage": True},
    )
    body = fake_provider.requests[-1].json
    assert "stream" not in body and "stream_options" not in body


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_tool_calls_come_back(fake_provider, mode, stream):
    """Tool calls come back with ids, names and JSON arguments, and finish_reason tool_calls."""
    fake_provider.enqueue(
        Reply(
            tool_calls=[
                {"id": "call_a", "name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_time", "arguments": {}},
            ]
        )
    )
    result = call(mode, stream, api_base=fake_provider.base_url + "/v1", api_key=KEY)
    calls = tool_calls_of(result, stream)
    assert [(c[0] is not None, c[1], json.loads(c[2])) for c in calls] == [
        (True, "get_weather", {"city": "Paris"}),
        (True, "get_time", {}),
    ]
    assert calls[0][0] == "call_a"
    finish = (
        [c.choices[0].finish_reason for c in result if c.choices[0].finish_reason]
        if stream
        else [result.choices[0].finish_reason]
    )
    assert finish == ["tool_calls"]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_hosted_vllm_prefix_needs_no_key(fake_provider, mode, stream):
    """hosted_vllm/<model> goes to the api_base with the prefix stripped, and without a key no Authorization header."""
    result = call(
        mode, stream, model="hosted_vllm/meta-llama/Llama-3.1-8B", api_base=fake_provider.base_url + "/v1"
    )
    assert text_of(result, stream) == DEFAULT_TEXT
    req = fake_provider.requests[-1]
    assert req.json["model"] == "meta-llama/Llama-3.1-8B"
    assert "authorization" not in req.headers


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_any_model_with_api_base_is_openai_compatible(fake_provider, mode, stream):
    """A name no provider claims goes to an OpenAI-compatible server when api_base is given."""
    result = call(mode, stream, model="llama3.2:1b", api_base=fake_provider.base_url + "/v1")
    assert text_of(result, stream) == DEFAULT_TEXT
    assert fake_provider.requests[-1].json["model"] == "llama3.2:1b"


def test_hosted_vllm_base_and_key_from_env(fake_provider, monkeypatch):
    """HOSTED_VLLM_API_BASE and HOSTED_VLLM_API_KEY are read when the call names neither."""
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", fake_provider.base_url + "/v1")
    monkeypatch.setenv("HOSTED_VLLM_API_KEY", "vllm-key-0123456789")
    r = lmgate.completion(model="hosted_vllm/qwen", messages=MESSAGES)
    assert r.choices[0].message.content == DEFAULT_TEXT
    assert fake_provider.requests[-1].headers["authorization"] == "Bearer vllm-key-0123456789"
    assert r._hidden_params["custom_llm_provider"] == "hosted_vllm"


def test_openai_key_and_base_from_env(fake_provider, monkeypatch):
    """OPENAI_API_KEY and OPENAI_BASE_URL are used when the call names neither."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789abcdef")
    monkeypatch.setenv("OPENAI_BASE_URL", fake_provider.base_url + "/v1")
    r = lmgate.completion(model="gpt-4o-mini", messages=MESSAGES)
    assert r.choices[0].message.content == DEFAULT_TEXT
    assert fake_provider.requests[-1].headers["authorization"] == "Bearer sk-env-0123456789abcdef"


def test_call_key_wins_over_env(fake_provider, monkeypatch):
    """api_key= on the call is preferred to OPENAI_API_KEY."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-0123456789abcdef")
    lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, api_base=fake_provider.base_url + "/v1", api_key=KEY
    )
    assert fake_provider.requests[-1].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_n_choices(fake_provider, mode, stream):
    """n=2 returns two choices (two indexes in a stream)."""
    result = call(mode, stream, api_base=fake_provider.base_url + "/v1", api_key=KEY, n=2)
    if stream:
        assert {c.choices[0].index for c in result if c.choices[0].delta.content} == {0, 1}
    else:
        assert [c.index for c in result.choices] == [0, 1]
        assert all(c.message.content == DEFAULT_TEXT for c in result.choices)


def test_extra_headers_and_extra_body_are_sent(fake_provider):
    """extra_headers become request headers and extra_body keys join the JSON body."""
    lmgate.completion(
        model="gpt-4o-mini",
        messages=MESSAGES,
        api_base=fake_provider.base_url + "/v1",
        api_key=KEY,
        extra_headers={"X-Trace": "t-1"},
        extra_body={"top_k": 5},
    )
    req = fake_provider.requests[-1]
    assert req.headers["x-trace"] == "t-1"
    assert req.json["top_k"] == 5


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embeddings(fake_provider, mode):
    """text-embedding-* goes to /embeddings and returns one vector per input, with usage and hidden params."""
    kwargs = {
        "model": "text-embedding-3-small",
        "input": ["a", "b"],
        "api_base": fake_provider.base_url + "/v1",
        "api_key": KEY,
        "dimensions": 8,
    }
    e = lmgate.embedding(**kwargs) if mode == "sync" else asyncio.run(lmgate.aembedding(**kwargs))
    assert isinstance(e, lmgate.EmbeddingResponse)
    assert [d.index for d in e.data] == [0, 1]
    assert len(e.data[0].embedding) == 8
    assert e.usage.prompt_tokens == 7
    req = fake_provider.requests[-1]
    assert req.path == "/v1/embeddings"
    assert req.json == {"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 8}
    assert e._hidden_params["custom_llm_provider"] == "openai"


def test_single_string_embedding_input_is_sent_as_a_list(fake_provider):
    """A single string input is sent as a one-item list."""
    e = lmgate.embedding(
        model="openai/text-embedding-3-small",
        input="hello",
        api_base=fake_provider.base_url + "/v1",
        api_key=KEY,
    )
    assert len(e.data) == 1
    assert fake_provider.requests[-1].json["input"] == ["hello"]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_hidden_params_carry_provider_base_cost_and_rate_limit_headers(fake_provider, mode, stream):
    """The response (or, for a stream, the assembled response) has provider, api_base, cost and x-ratelimit-* headers."""
    from lmgate.testing import CapturingLogger

    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, api_base=fake_provider.base_url + "/v1", api_key=KEY)
    lmgate.flush_callbacks(10)
    response = (
        capture.of("log_success_event", "async_log_success_event")[0].response_obj if stream else result
    )
    hidden = response._hidden_params
    assert hidden["custom_llm_provider"] == "openai"
    assert hidden["api_base"] == fake_provider.base_url + "/v1"
    assert hidden["response_cost"] > 0
    headers = hidden["additional_headers"]
    assert headers["x-ratelimit-remaining-requests"] == "9999"
    assert headers["x-ratelimit-limit-tokens"] == "2000000"
    assert headers["llm_provider-x-request-id"].startswith("req_fake")
