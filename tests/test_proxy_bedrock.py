"""Bedrock behind a real ``lmgate serve``, driven by the official openai client; every request SigV4-checked."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from fakes import BedrockReply, FakeBedrock
from fakes.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from test_proxy_server import Served

MASTER = "sk-master-bedrock-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fb:
        yield fb


@pytest.fixture(scope="module")
def server(fake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("serve-bedrock")
    config = Path(tmp) / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: sonnet
            litellm_params:
              model: bedrock/us.anthropic.claude-3-5-sonnet-20241022-v2:0
              aws_bedrock_runtime_endpoint: {fake.base_url}
              aws_region_name: us-east-1
              aws_access_key_id: os.environ/SERVE_AWS_KEY_ID
              aws_secret_access_key: os.environ/SERVE_AWS_SECRET
          - model_name: titan-embed
            litellm_params:
              model: bedrock/amazon.titan-embed-text-v2:0
              aws_bedrock_runtime_endpoint: {fake.base_url}
              aws_region_name: us-east-1
              aws_access_key_id: os.environ/SERVE_AWS_KEY_ID
              aws_secret_access_key: os.environ/SERVE_AWS_SECRET
        general_settings:
          master_key: os.environ/SERVE_MASTER_KEY
        """)
    )
    env = {
        "SERVE_AWS_KEY_ID": ACCESS_KEY_ID,
        "SERVE_AWS_SECRET": SECRET_ACCESS_KEY,
        "SERVE_MASTER_KEY": MASTER,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    served = Served(config, tmp, env)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture
def bedrock(fake) -> FakeBedrock:
    fake.reset()
    return fake


@pytest.fixture
def client(server: Served) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=f"{server.url}/v1", api_key=MASTER, max_retries=0)
    yield c
    c.close()


def test_plain_call(client, bedrock):
    checked = bedrock.signatures_checked
    r = client.chat.completions.create(
        model="sonnet", messages=[{"role": "user", "content": "Hi"}], max_tokens=20
    )
    assert r.choices[0].message.content == "Hello from fake"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (7, 5)
    assert bedrock.raw_targets[-1] == "/model/us.anthropic.claude-3-5-sonnet-20241022-v2%3A0/converse"
    assert bedrock.requests[-1].json["inferenceConfig"] == {"maxTokens": 20}
    assert bedrock.signatures_checked == checked + 1


def test_stream(client, bedrock):
    stream = client.chat.completions.create(
        model="sonnet",
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        "stop"
    ]
    assert [c.usage.total_tokens for c in chunks if c.usage] == [12]
    assert bedrock.raw_targets[-1].endswith("/converse-stream")


def test_tool_call_round_trip(client, bedrock):
    """A toolUse comes back as a tool call; its result goes back as a toolResult with the same id."""
    bedrock.enqueue(
        BedrockReply(
            text=None, tool_calls=[{"id": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}]
        )
    )
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]  # fmt: skip
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    r = client.chat.completions.create(model="sonnet", messages=messages, tools=tools)
    (tc,) = r.choices[0].message.tool_calls
    assert (tc.id, tc.function.name, json.loads(tc.function.arguments), r.choices[0].finish_reason) == (
        "tooluse_1",
        "get_weather",
        {"city": "Paris"},
        "tool_calls",
    )
    messages += [
        r.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": tc.id, "content": "18C"},
    ]
    client.chat.completions.create(model="sonnet", messages=messages, tools=tools)
    sent = bedrock.requests[-1].json["messages"]
    assert sent[1] == {
        "role": "assistant",
        "content": [
            {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
        ],
    }
    assert sent[2] == {
        "role": "user",
        "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"text": "18C"}]}}],
    }


def test_embeddings(client, bedrock):
    r = client.embeddings.create(model="titan-embed", input="hello world")
    assert len(r.data) == 1 and r.usage.prompt_tokens == 2
    assert bedrock.raw_targets[-1] == "/model/amazon.titan-embed-text-v2%3A0/invoke"


def test_errors_keep_their_status(client, bedrock):
    bedrock.enqueue(
        BedrockReply(status=429, error_type="ThrottlingException", error_message="Too many requests")
    )
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "Hi"}])
    bedrock.enqueue(
        BedrockReply(status=400, error_type="ValidationException", error_message="Malformed input request")
    )
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "Hi"}])
    assert SECRET_ACCESS_KEY not in str(info.value)
