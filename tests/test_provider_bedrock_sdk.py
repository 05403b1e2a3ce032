"""Our Bedrock requests against what AWS's own SDK (boto3's ``bedrock-runtime`` client) sends for the same call.

Both talk to the fake Bedrock Runtime, which checks both signatures; the fake's event stream is read by
boto3's own parser too, so the fake's framing is checked against the SDK's.
"""

from __future__ import annotations

import pytest
from fakes import BedrockReply
from fakes.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY

import lmgate

boto3 = pytest.importorskip("boto3")
MODEL_ID = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"


@pytest.fixture
def fake_bedrock(fake_bedrock_session):
    fake_bedrock_session.reset()
    return fake_bedrock_session


@pytest.fixture
def sdk(fake_bedrock):
    from botocore.config import Config

    client = boto3.client(
        "bedrock-runtime",
        region_name="us-east-1",
        endpoint_url=fake_bedrock.base_url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        config=Config(retries={"max_attempts": 1}),
    )
    yield client
    client.close()


def ours(fb, messages, **kw):
    return lmgate.completion(
        model="bedrock/" + MODEL_ID,
        messages=messages,
        api_base=fb.base_url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        aws_region_name="us-east-1",
        **kw,
    )


def _sent(fb):
    req = fb.requests[-1]
    return fb.raw_targets[-1], req.headers["content-type"], req.json


def test_converse_request_matches_boto3(fake_bedrock, sdk):
    checked = fake_bedrock.signatures_checked
    sdk.converse(
        modelId=MODEL_ID,
        system=[{"text": "Be brief."}],
        messages=[
            {"role": "user", "content": [{"text": "Weather?"}]},
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Paris"}}}
                ],
            },
            {
                "role": "user",
                "content": [{"toolResult": {"toolUseId": "tu_1", "content": [{"text": "18C"}]}}],
            },
        ],
        inferenceConfig={"maxTokens": 50, "temperature": 0.5},
        toolConfig={
            "tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}],
            "toolChoice": {"auto": {}},
        },
    )
    theirs = _sent(fake_bedrock)
    ours(
        fake_bedrock,
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "tu_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "tu_1", "content": "18C"},
        ],
        max_tokens=50,
        temperature=0.5,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        tool_choice="auto",
    )
    assert _sent(fake_bedrock) == theirs
    assert fake_bedrock.signatures_checked == checked + 2  # both signatures verified by the same check


def test_converse_stream_request_matches_boto3_and_boto3_reads_the_fake_stream(fake_bedrock, sdk):
    fake_bedrock.enqueue(BedrockReply(text="abcdef", chunk_size=2))
    out = sdk.converse_stream(modelId=MODEL_ID, messages=[{"role": "user", "content": [{"text": "Hi"}]}])
    events = list(out["stream"])
    assert (
        "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
        == "abcdef"
    )
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    assert events[-1]["metadata"]["usage"]["inputTokens"] == 7
    target, content_type, body = _sent(fake_bedrock)
    assert list(ours(fake_bedrock, [{"role": "user", "content": "Hi"}], stream=True))
    assert _sent(fake_bedrock) == (target, content_type, body)
    assert target.endswith("/converse-stream")


def test_invoke_model_request_matches_boto3(fake_bedrock, sdk):
    import json

    sdk.invoke_model(
        modelId="amazon.titan-embed-text-v2:0",
        body=json.dumps({"inputText": "hello", "dimensions": 4}),
        contentType="application/json",
        accept="application/json",
    )
    target, _, body = _sent(fake_bedrock)
    theirs_accept = fake_bedrock.requests[-1].headers["accept"]
    lmgate.embedding(
        model="bedrock/amazon.titan-embed-text-v2:0",
        input="hello",
        dimensions=4,
        api_base=fake_bedrock.base_url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
        aws_region_name="us-east-1",
    )
    assert _sent(fake_bedrock)[::2] == (target, body)
    assert fake_bedrock.requests[-1].headers["accept"] == theirs_accept
