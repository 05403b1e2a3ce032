"""Gemini and an OpenAI-compatible cloud behind a real ``lmgate serve``, driven by the official openai client."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fakes import FakeGemini, FakeProvider, GeminiReply, Reply
from test_proxy_server import Served

MASTER = "sk-master-gemini-0123456789"
GEMINI_KEY = "AIza-serve-0123456789"
CLOUD_KEY = "sk-deepseek-serve-0123456789"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeGemini, FakeProvider]]:
    with FakeGemini() as fg, FakeProvider() as fp:
        yield fg, fp


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    fg, fp = fakes
    tmp = tmp_path_factory.mktemp("serve-gemini")
    config = Path(tmp) / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: flash
            litellm_params:
              model: gemini/gemini-2.0-flash
              api_base: {fg.base_url}
              api_key: os.environ/SERVE_GEMINI_KEY
          - model_name: gemini-embed
            litellm_params: {{model: gemini/gemini-embedding-001, api_base: {fg.base_url}, api_key: os.environ/SERVE_GEMINI_KEY}}
          - model_name: reasoner
            litellm_params:
              model: deepseek/deepseek-reasoner
              api_base: {fp.base_url}
              api_key: os.environ/SERVE_CLOUD_KEY
        general_settings:
          master_key: os.environ/SERVE_MASTER_KEY
        """)
    )
    served = Served(
        config,
        tmp,
        {"SERVE_GEMINI_KEY": GEMINI_KEY, "SERVE_CLOUD_KEY": CLOUD_KEY, "SERVE_MASTER_KEY": MASTER},
    )
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture
def gemini(fakes) -> FakeGemini:
    fakes[0].reset()
    return fakes[0]


@pytest.fixture
def client(server: Served) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


def test_plain_call(client, gemini):
    r = client.chat.completions.create(
        model="flash", messages=[{"role": "user", "content": "Hi"}], temperature=0.1
    )
    assert r.choices[0].message.content == "Hello from fake"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 5)
    req = gemini.requests[-1]
    assert req.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert req.headers["x-goog-api-key"] == GEMINI_KEY
    assert req.json["generationConfig"] == {"temperature": 0.1}


def test_stream(client, gemini):
    stream = client.chat.completions.create(
        model="flash",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert gemini.requests[-1].query == {"alt": "sse"}


def test_tool_call_round_trip(client, gemini):
    """A functionCall comes back as a tool call; its result goes back as a functionResponse named after it."""
    gemini.enqueue(GeminiReply(tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}}]))
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model="flash", messages=messages, tools=tools)
    (tc,) = r.choices[0].message.tool_calls
    assert (tc.function.name, json.loads(tc.function.arguments), r.choices[0].finish_reason) == (
        "get_weather",
        {"city": "Paris"},
        "tool_calls",
    )
    messages += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tc.id, "content": "18C"},
    ]
    client.chat.completions.create(model="flash", messages=messages, tools=tools)
    contents = gemini.requests[-1].json["contents"]
    assert contents[-1] == {
        "role": "user",
        "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "18C"}}}],
    }


def test_embeddings(client, gemini):
    r = client.embeddings.create(model="gemini-embed", input=["a", "b"])
    assert [d.index for d in r.data] == [0, 1]
    assert gemini.requests[-1].path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"


def test_errors_keep_their_status(client, gemini):
    gemini.enqueue(GeminiReply(status=429, error_message="Resource has been exhausted (e.g. check quota)."))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="flash", messages=[{"role": "user", "content": "Hi"}])
    gemini.enqueue(GeminiReply(status=400, error_message="Invalid value at 'contents'"))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="flash", messages=[{"role": "user", "content": "Hi"}])


def test_cloud_reasoning_content_reaches_the_client(client, fakes):
    fp = fakes[1]
    fp.reset()
    body = {
        "id": "ds-1",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Yes.", "reasoning_content": "Hmm."},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    fp.enqueue(Reply(json=body))
    r = client.chat.completions.create(model="reasoner", messages=[{"role": "user", "content": "Hi"}])
    assert r.choices[0].message.model_dump()["reasoning_content"] == "Hmm."
    assert fp.requests[-1].headers["authorization"] == f"Bearer {CLOUD_KEY}"
    assert fp.requests[-1].path == "/chat/completions"
