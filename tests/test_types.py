"""Response types: attribute and dict access agree, JSON dumps, hidden params, and the public type names."""

from __future__ import annotations

import copy
import json
import pickle

import orjson
import pytest
from fakes import Reply
from helpers import MODE_IDS, MODES, call

import lmgate

KEY = "sk-test-types-0123456789abcdef"


@pytest.fixture
def fake_provider(fake_provider_session):
    """The session's fake provider, reset: a fresh server per test would cost its 50 ms shutdown poll."""
    fake_provider_session.reset()
    return fake_provider_session


TYPE_NAMES = [
    "ModelResponse",
    "ModelResponseStream",
    "EmbeddingResponse",
    "Usage",
    "Message",
    "Choices",
    "StreamingChoices",
    "Delta",
]


def providers(fp):
    return {
        "openai": {"model": "gpt-4o-mini", "api_base": fp.base_url + "/v1", "api_key": KEY},
        "anthropic": {"model": "claude-3-5-haiku-20241022", "api_base": fp.base_url, "api_key": KEY},
    }


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_attribute_and_dict_access_agree(fake_provider, provider, mode):
    """r.choices[0].message.content is r['choices'][0]['message']['content'], for every field, tool calls included."""
    fake_provider.enqueue(Reply(text="hi", tool_calls=[{"id": "t1", "name": "f", "arguments": {"a": 1}}]))
    r = call(mode, False, **providers(fake_provider)[provider])
    assert r.choices[0].message.content == r["choices"][0]["message"]["content"] == "hi"
    assert r.choices[0].finish_reason == r["choices"][0]["finish_reason"] == "tool_calls"
    tc = r.choices[0].message.tool_calls[0]
    assert tc.function.arguments == r["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    assert json.loads(tc.function.arguments) == {"a": 1}
    assert r.usage.total_tokens == r["usage"]["total_tokens"] == 12
    assert r.id == r["id"] and r.model == r["model"] and r.object == r["object"] == "chat.completion"
    assert isinstance(r, lmgate.ModelResponse) and isinstance(r.choices[0], lmgate.Choices)
    assert isinstance(r.choices[0].message, lmgate.Message) and isinstance(r.usage, lmgate.Usage)
    assert isinstance(tc, lmgate.ChatCompletionMessageToolCall) and isinstance(tc.function, lmgate.Function)


@pytest.mark.parametrize(
    ("mode", "stream"),
    [m for m in MODES if m[1]],
    ids=[i for i, m in zip(MODE_IDS, MODES, strict=True) if m[1]],
)
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_chunks_are_typed_and_agree(fake_provider, mode, stream, provider):
    """Stream chunks are ModelResponseStream with StreamingChoices and Delta, attribute and dict access agreeing."""
    chunks = call(mode, stream, **providers(fake_provider)[provider])
    for c in chunks:
        assert isinstance(c, lmgate.ModelResponseStream)
        assert isinstance(c.choices[0], lmgate.StreamingChoices) and isinstance(
            c.choices[0].delta, lmgate.Delta
        )
        assert c.choices[0].delta.content == c["choices"][0]["delta"].get("content")
        json.loads(c.model_dump_json())
    assert isinstance(chunks[-1].usage, lmgate.Usage)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_json_dumps_round_trip_and_hidden_params_stay_out(fake_provider, mode):
    """json.dumps(r), r.model_dump_json() and r.model_dump() give the same plain data, without _hidden_params."""
    r = call(mode, False, **providers(fake_provider)["openai"])
    assert r._hidden_params["custom_llm_provider"] == "openai"
    via_json = json.loads(json.dumps(r))
    via_model = json.loads(r.model_dump_json())
    dumped = r.model_dump()
    assert via_json == via_model == dumped == orjson.loads(orjson.dumps(r))
    assert type(dumped) is dict and type(dumped["choices"][0]) is dict
    assert "_hidden_params" not in r.model_dump_json()
    assert via_json["choices"][0]["message"]["content"] == "Hello from fake"


def test_embedding_response_dumps(fake_provider):
    """EmbeddingResponse has attribute/dict access and dumps to JSON."""
    e = lmgate.embedding(
        model="text-embedding-3-small", input=["x"], api_base=fake_provider.base_url + "/v1", api_key=KEY
    )
    assert e.data[0].embedding == e["data"][0]["embedding"]
    assert json.loads(e.model_dump_json())["data"][0]["index"] == 0
    assert json.loads(json.dumps(e))["object"] == "list"


def test_missing_declared_fields_read_as_defaults_and_unknown_ones_raise():
    """A declared field that is absent reads as its default; an unknown attribute raises AttributeError."""
    m = lmgate.Message({"role": "assistant"})
    assert m.content is None and m.tool_calls is None
    d = lmgate.Delta({})
    assert d.content is None and d.role is None
    with pytest.raises(AttributeError):
        _ = m.nonexistent
    assert not hasattr(m, "nonexistent")
    u = lmgate.Usage({"prompt_tokens": 3, "completion_tokens": 4})
    assert u.total_tokens == 7


def test_plain_dicts_are_wrapped_into_the_nested_types():
    """Building a ModelResponse from plain dicts gives typed choices, messages and usage."""
    r = lmgate.ModelResponse(
        {
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2},
        }
    )
    assert isinstance(r.choices[0], lmgate.Choices) and isinstance(r.choices[0].message, lmgate.Message)
    assert r.usage.total_tokens == 3
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"


def test_attribute_assignment_writes_the_data():
    """Setting an attribute writes the dict key; underscore attributes stay beside the data."""
    r = lmgate.ModelResponse({"choices": []})
    r.model = "m"
    r._private = 1
    assert r["model"] == "m"
    assert "_private" not in r


def test_copies_keep_hidden_params_and_pickle_round_trips(fake_provider):
    """copy, deepcopy and pickle keep the data; copies keep _hidden_params."""
    r = lmgate.completion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "x"}],
        api_base=fake_provider.base_url + "/v1",
        api_key=KEY,
    )
    for clone in (copy.copy(r), copy.deepcopy(r)):
        assert clone == r and type(clone) is lmgate.ModelResponse
        assert clone._hidden_params["custom_llm_provider"] == "openai"
    back = pickle.loads(pickle.dumps(r))
    assert back == r and back.choices[0].message.content == "Hello from fake"


@pytest.mark.parametrize("name", TYPE_NAMES)
def test_public_type_names_import_from_lmgate(name):
    """The reference implementation's type names import from lmgate and from lmgate.types."""
    from lmgate import types

    assert getattr(lmgate, name) is getattr(types, name)
    exec(f"from lmgate import {name}", {})
