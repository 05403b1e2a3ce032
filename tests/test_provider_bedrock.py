"""Amazon Bedrock (``bedrock/…``) through the fake Bedrock Runtime: SigV4, the body sent, what comes back."""

from __future__ import annotations

import json

import httpx
import pytest
from fakes import BedrockReply
from fakes.bedrock import ACCESS_KEY_ID, SECRET_ACCESS_KEY
from helpers import MESSAGES, MODE_IDS, MODES, call, flush

import lmgate
from lmgate.cost import find_price
from lmgate.testing import CapturingLogger

MODEL = "bedrock/anthropic.claude-3-5-sonnet-20241022-v2:0"
PROFILE_MODEL = "bedrock/us.anthropic.claude-3-7-sonnet-20250219-v1:0"  # a cross-region inference profile
TOKEN = "FwoGZXIvYXdzEFakeSessionToken0123456789"
_AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_BEDROCK_RUNTIME_ENDPOINT",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


@pytest.fixture
def fake_bedrock(fake_bedrock_session):
    fake_bedrock_session.reset()
    return fake_bedrock_session


@pytest.fixture(autouse=True)
def _no_aws_env(monkeypatch, tmp_path):
    """No credentials from the machine: empty shared files, no instance metadata (nothing beyond loopback)."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def aws(fb, **kw):
    kw.setdefault("model", MODEL)
    return {
        "api_base": fb.base_url,
        "aws_access_key_id": ACCESS_KEY_ID,
        "aws_secret_access_key": SECRET_ACCESS_KEY,
        "aws_region_name": "us-east-1",
        **kw,
    }


def text_of(result, stream):
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in result)
    return result.choices[0].message.content


def finish_of(result, stream):
    if stream:
        return [c.choices[0].finish_reason for c in result if c.choices[0].finish_reason]
    return [c.finish_reason for c in result.choices]


def usage_of(result, stream):
    return result[-1].usage if stream else result.usage


def calls_of(result, stream):
    """(id, name, arguments) of each tool call, the streamed pieces joined."""
    if not stream:
        return [(t.id, t.function.name, t.function.arguments) for t in result.choices[0].message.tool_calls]
    calls: dict[int, list[str]] = {}
    for chunk in result:
        for tc in chunk.choices[0].delta.tool_calls or ():
            entry = calls.setdefault(tc.index, ["", "", ""])
            entry[0] += tc.id or ""
            entry[1] += tc.function.name or ""
            entry[2] += tc.function.arguments or ""
    return [tuple(calls[i]) for i in sorted(calls)]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_converse_request_signed_and_text(fake_bedrock, mode, stream):
    """bedrock/<model> posts to /model/{id}/converse (or converse-stream) signed with SigV4; text comes back."""
    checked = fake_bedrock.signatures_checked
    result = call(mode, stream, **aws(fake_bedrock))
    assert text_of(result, stream) == "Hello from fake"
    req = fake_bedrock.requests[-1]
    action = "converse-stream" if stream else "converse"
    assert fake_bedrock.raw_targets[-1] == f"/model/anthropic.claude-3-5-sonnet-20241022-v2%3A0/{action}"
    assert req.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert "/us-east-1/bedrock/aws4_request" in req.headers["authorization"]
    assert req.headers["content-type"] == "application/json"
    assert "x-amz-security-token" not in req.headers
    assert fake_bedrock.signatures_checked == checked + 1  # the fake recomputed the signature and it matched
    assert req.json == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}
    assert finish_of(result, stream) == ["stop"]
    usage = usage_of(result, stream)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 5, 12)


def test_response_headers_reach_hidden_params(fake_bedrock):
    """Bedrock's own response headers (request id, invocation latency) reach _hidden_params prefixed."""
    fake_bedrock.enqueue(BedrockReply(headers={"X-Amzn-Bedrock-Invocation-Latency": "42"}))
    r = lmgate.completion(messages=MESSAGES, **aws(fake_bedrock))
    shown = r._hidden_params["additional_headers"]
    assert shown["llm_provider-x-amzn-requestid"] == "fake-request-id"
    assert shown["llm_provider-x-amzn-bedrock-invocation-latency"] == "42"


def test_exact_body_for_a_tool_conversation_with_images(fake_bedrock):
    """System, multi-turn, parallel calls and their results, images, cache points, tools and inference settings."""
    messages = [
        {
            "role": "system",
            "content": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        },
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And this:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "tu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "tu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "tu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "tu_2", "content": "21C"},
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    guardrail = {"guardrailIdentifier": "gr-1", "guardrailVersion": "1", "trace": "enabled"}
    lmgate.completion(
        messages=messages,
        tools=tools,
        tool_choice="auto",
        max_tokens=100,
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop="END",
        guardrailConfig=guardrail,
        requestMetadata={"team": "a"},
        **aws(fake_bedrock),
    )
    assert fake_bedrock.requests[-1].json == {
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"text": "Weather in Paris and Rome?"},
                    {"text": "And this:"},
                    {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"toolUse": {"toolUseId": "tu_1", "name": "get_weather", "input": {"city": "Paris"}}},
                    {"toolUse": {"toolUseId": "tu_2", "name": "get_weather", "input": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "18C"}]}},
                    {"toolResult": {"toolUseId": "tu_2", "content": [{"text": "21C"}]}},
                ],
            },
        ],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
        "toolConfig": {
            "tools": [
                {
                    "toolSpec": {
                        "name": "get_weather",
                        "description": "Weather of a city",
                        "inputSchema": {
                            "json": {"type": "object", "properties": {"city": {"type": "string"}}}
                        },
                    }
                }
            ],
            "toolChoice": {"auto": {}},
        },
        "additionalModelRequestFields": {"top_k": 40},
        "guardrailConfig": guardrail,
        "requestMetadata": {"team": "a"},
    }


def test_cache_points_written_in_messages_pass_through(fake_bedrock):
    """A Converse ``cachePoint`` part written in a message is sent as it is; cache_control on a message adds one."""
    messages = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "long doc"}, {"cachePoint": {"type": "default"}}],
        },
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "question", "cache_control": {"type": "ephemeral"}},
    ]
    lmgate.completion(messages=messages, **aws(fake_bedrock))
    assert fake_bedrock.requests[-1].json["messages"] == [
        {"role": "user", "content": [{"text": "long doc"}, {"cachePoint": {"type": "default"}}]},
        {"role": "assistant", "content": [{"text": "ok"}]},
        {"role": "user", "content": [{"text": "question"}, {"cachePoint": {"type": "default"}}]},
    ]


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", {"auto": {}}),
        ("required", {"any": {}}),
        ({"type": "function", "function": {"name": "f"}}, {"tool": {"name": "f"}}),
        (None, None),
    ],
)
def test_tool_choice_translation(fake_bedrock, choice, sent):
    kw = {"tool_choice": choice} if choice is not None else {}
    lmgate.completion(messages=MESSAGES, tools=[TOOL], **kw, **aws(fake_bedrock))
    config = fake_bedrock.requests[-1].json["toolConfig"]
    assert config.get("toolChoice") == sent


def test_tool_choice_none_leaves_the_tools_out(fake_bedrock):
    """Converse has no "none": the tools are not offered at all."""
    lmgate.completion(messages=MESSAGES, tools=[TOOL], tool_choice="none", **aws(fake_bedrock))
    assert "toolConfig" not in fake_bedrock.requests[-1].json


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_parallel_tool_calls_come_back(fake_bedrock, mode, stream):
    fake_bedrock.enqueue(
        BedrockReply(
            text=None,
            tool_calls=[
                {"id": "tooluse_a", "name": "get_weather", "input": {"city": "Paris"}},
                {"id": "tooluse_b", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        )
    )
    result = call(mode, stream, tools=[TOOL], **aws(fake_bedrock))
    calls = calls_of(result, stream)
    assert [(i, n, json.loads(a)) for i, n, a in calls] == [
        ("tooluse_a", "get_weather", {"city": "Paris"}),
        ("tooluse_b", "get_weather", {"city": "Rome"}),
    ]
    assert finish_of(result, stream) == ["tool_calls"]


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("guardrail_intervened", "content_filter"),
        ("content_filtered", "content_filter"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_finish_reasons(fake_bedrock, stream, stop, finish):
    fake_bedrock.enqueue(BedrockReply(stop_reason=stop))
    result = call("sync", stream, **aws(fake_bedrock))
    assert finish_of(result, stream) == [finish]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_reasoning_cache_tokens_and_exact_cost_of_an_inference_profile(fake_bedrock, mode, stream):
    """reasoningContent → reasoning_content; cache reads and writes counted and priced at their own rates;
    a cross-region inference profile id (us.…) is priced as its base model."""
    fake_bedrock.enqueue(
        BedrockReply(
            text="42",
            reasoning="Let me think.",
            usage={
                "inputTokens": 100,
                "outputTokens": 50,
                "cacheReadInputTokens": 600,
                "cacheWriteInputTokens": 300,
            },
        )
    )
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, reasoning_effort="low", **aws(fake_bedrock, model=PROFILE_MODEL))
    assert fake_bedrock.requests[-1].json["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 1024}
    }
    assert fake_bedrock.raw_targets[-1].startswith("/model/us.anthropic.claude-3-7-sonnet-20250219-v1%3A0/")
    if stream:
        assert "".join(c.choices[0].delta.get("reasoning_content") or "" for c in result) == "Let me think."
    else:
        assert result.choices[0].message.reasoning_content == "Let me think."
    assert text_of(result, stream) == "42"
    usage = usage_of(result, stream)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 50, 1050)
    assert usage.prompt_tokens_details == {"cached_tokens": 600, "cache_creation_tokens": 300}
    flush()
    (event,) = capture.of("log_success_event", "async_log_success_event")
    key, price = find_price("us.anthropic.claude-3-7-sonnet-20250219-v1:0")
    assert key == "anthropic.claude-3-7-sonnet-20250219-v1:0"
    expected = (
        100 * price["input_cost_per_token"]
        + 600 * price["cache_read_input_token_cost"]
        + 300 * price["cache_creation_input_token_cost"]
        + 50 * price["output_cost_per_token"]
    )
    assert expected == pytest.approx(100 * 3e-6 + 600 * 3e-7 + 300 * 3.75e-6 + 50 * 1.5e-5, rel=1e-12)
    assert event.kwargs["response_cost"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_titan_embedding_one_input_and_exact_cost(fake_bedrock, mode):
    import asyncio

    kw = aws(
        fake_bedrock, model="bedrock/amazon.titan-embed-text-v2:0", input="hello big world", dimensions=8
    )
    r = lmgate.embedding(**kw) if mode == "sync" else asyncio.run(lmgate.aembedding(**kw))
    req = fake_bedrock.requests[-1]
    assert fake_bedrock.raw_targets[-1] == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert req.json == {"inputText": "hello big world", "dimensions": 8}
    assert len(r.data) == 1 and len(r.data[0]["embedding"]) == 8
    assert r.usage.prompt_tokens == 3
    assert r._hidden_params["response_cost"] == pytest.approx(3 * 2e-8, rel=1e-12)


def test_titan_refuses_a_batch_with_a_clear_error(fake_bedrock):
    with pytest.raises(lmgate.BadRequestError, match="one input per request"):
        lmgate.embedding(**aws(fake_bedrock, model="bedrock/amazon.titan-embed-text-v2:0", input=["a", "b"]))
    assert fake_bedrock.requests == []


def test_cohere_embeddings_batch(fake_bedrock):
    r = lmgate.embedding(
        **aws(
            fake_bedrock, model="bedrock/cohere.embed-english-v3", input=["a", "b"], input_type="search_query"
        )
    )
    assert fake_bedrock.requests[-1].json == {"texts": ["a", "b"], "input_type": "search_query"}
    assert [d["index"] for d in r.data] == [0, 1]
    assert r._hidden_params["response_cost"] is None  # Bedrock's Cohere body reports no token counts


ERRORS = [
    ("ValidationException", 400, lmgate.BadRequestError),
    ("AccessDeniedException", 403, lmgate.PermissionDeniedError),
    ("ResourceNotFoundException", 404, lmgate.NotFoundError),
    ("ThrottlingException", 429, lmgate.RateLimitError),
    ("ServiceQuotaExceededException", 400, lmgate.RateLimitError),
    ("InternalServerException", 500, lmgate.InternalServerError),
    ("ServiceUnavailableException", 503, lmgate.ServiceUnavailableError),
    ("ModelNotReadyException", 429, lmgate.ServiceUnavailableError),
    ("ModelTimeoutException", 408, lmgate.Timeout),
    ("ModelStreamErrorException", 424, lmgate.InternalServerError),
]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("kind", "status", "cls"), ERRORS, ids=[e[0] for e in ERRORS])
def test_errors_map_by_their_type(fake_bedrock, mode, stream, kind, status, cls):
    """x-amzn-ErrorType decides the class (ModelNotReady is sent 429 but means 503); the message is kept."""
    fake_bedrock.enqueue(BedrockReply(status=status, error_type=kind, error_message="nope from bedrock"))
    with pytest.raises(cls) as info:
        call(mode, stream, **aws(fake_bedrock))
    assert info.value.llm_provider == "bedrock"
    assert "nope from bedrock" in str(info.value)


def test_context_window_error(fake_bedrock):
    fake_bedrock.enqueue(
        BedrockReply(
            status=400,
            error_type="ValidationException",
            error_message="Input is too long for requested model.",
        )
    )
    with pytest.raises(lmgate.ContextWindowExceededError):
        lmgate.completion(messages=MESSAGES, **aws(fake_bedrock))


def test_a_wrong_secret_fails_the_signature_check(fake_bedrock):
    """The fake recomputes the signature from the secret it knows: another secret is refused, 403 → AuthenticationError."""
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(
            messages=MESSAGES, **aws(fake_bedrock, aws_secret_access_key="not/the-right+secret0123456789")
        )
    assert info.value.status_code == 403
    assert "signature" in str(info.value)


def test_an_unknown_key_id_is_refused(fake_bedrock):
    with pytest.raises(lmgate.AuthenticationError, match="security token"):
        lmgate.completion(messages=MESSAGES, **aws(fake_bedrock, aws_access_key_id="AKIAUNKNOWN000000000"))


def test_a_body_changed_after_signing_is_refused(fake_bedrock):
    """The signature covers the body: extra_headers are signed, and the body the fake received is the one signed."""
    lmgate.completion(messages=MESSAGES, extra_headers={"X-Team": "blue"}, **aws(fake_bedrock))
    req = fake_bedrock.requests[-1]
    assert "x-team" in req.headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_session_token_is_sent_and_signed(fake_bedrock, stream):
    fake_bedrock.expect_token = TOKEN
    call("sync", stream, aws_session_token=TOKEN, **aws(fake_bedrock))
    req = fake_bedrock.requests[-1]
    assert req.headers["x-amz-security-token"] == TOKEN
    assert "x-amz-security-token" in req.headers["authorization"]


def test_every_retry_is_signed_again(fake_bedrock):
    """A throttled attempt is retried with a fresh signature (X-Amz-Date of its own); the wait is injected, not slept."""
    delays: list[float] = []
    policy = lmgate.RetryPolicy(sleep=delays.append)
    fake_bedrock.enqueue(
        BedrockReply(status=429, error_type="ThrottlingException", error_message="slow down")
    )
    checked = fake_bedrock.signatures_checked
    r = lmgate.completion(messages=MESSAGES, num_retries=1, retry_policy=policy, **aws(fake_bedrock))
    assert r.choices[0].message.content == "Hello from fake"
    assert fake_bedrock.signatures_checked == checked + 2 and len(delays) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_exception_mid_stream_fails_the_call_once(fake_bedrock, mode):
    """An event-stream ``exception`` message (throttlingException) after some text: a RateLimitError, one failure event."""
    fake_bedrock.enqueue(
        BedrockReply(stream_exception=("throttlingException", "Too many tokens, please wait."))
    )
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.RateLimitError, match="Too many tokens"):
        call(mode, True, **aws(fake_bedrock))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert len(terminal) == 1 and "failure" in terminal[0]


def test_credentials_and_region_from_the_environment(fake_bedrock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", TOKEN)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_BEDROCK_RUNTIME_ENDPOINT", fake_bedrock.base_url)
    fake_bedrock.region = "eu-west-1"
    fake_bedrock.expect_token = TOKEN
    r = lmgate.completion(model=MODEL, messages=MESSAGES)
    assert r.choices[0].message.content == "Hello from fake"
    assert "/eu-west-1/bedrock/aws4_request" in fake_bedrock.requests[-1].headers["authorization"]
    # a session token from the environment is masked like a passed one when an error quotes it
    fake_bedrock.enqueue(
        BedrockReply(status=400, error_type="ValidationException", error_message=f"token {TOKEN}")
    )
    with pytest.raises(lmgate.BadRequestError) as info:
        lmgate.completion(model=MODEL, messages=MESSAGES)
    assert TOKEN not in str(info.value)


def test_credentials_and_region_from_a_named_profile(fake_bedrock, monkeypatch, tmp_path):
    (tmp_path / "credentials").write_text(
        f"[team]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"
    )
    (tmp_path / "config").write_text("[profile team]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    fake_bedrock.region = "ap-south-1"
    lmgate.completion(model=MODEL, messages=MESSAGES, api_base=fake_bedrock.base_url, aws_profile_name="team")
    assert "/ap-south-1/bedrock/aws4_request" in fake_bedrock.requests[-1].headers["authorization"]


def test_no_credentials_and_no_region_are_clear_errors(fake_bedrock):
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(
            model=MODEL, messages=MESSAGES, api_base=fake_bedrock.base_url, aws_region_name="us-east-1"
        )
    assert "AWS_ACCESS_KEY_ID" in str(info.value) and "aws_profile_name" in str(info.value)
    with pytest.raises(lmgate.BadRequestError) as info2:
        lmgate.completion(
            model=MODEL,
            messages=MESSAGES,
            api_base=fake_bedrock.base_url,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )
    assert "aws_region_name" in str(info2.value) and "AWS_REGION" in str(info2.value)
    assert fake_bedrock.requests == []


def test_default_url_is_the_regional_runtime_endpoint():
    from lmgate.providers import resolve

    provider, name = resolve(
        "bedrock/arn:aws:bedrock:us-east-1:123:inference-profile/us.amazon.nova-pro-v1:0"
    )
    ep = provider.endpoint(name, None, None, None)
    ep = provider.configure(
        ep, {"aws_region_name": "us-west-2", "aws_access_key_id": "AKIA1", "aws_secret_access_key": "s"}
    )
    req = provider.chat_request(ep, MESSAGES, {}, stream=False)
    assert req.url == (
        "https://bedrock-runtime.us-west-2.amazonaws.com/model/"
        "arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Ainference-profile%2Fus.amazon.nova-pro-v1%3A0/converse"
    )
    signed = provider.sign(req, req.body_bytes(), ep)
    # Host is signed, and left to the client to send: what httpx (and aiohttp) derive for :443
    assert "Host" not in signed.headers
    assert httpx.URL(signed.url).netloc == b"bedrock-runtime.us-west-2.amazonaws.com"
    assert (
        "/us-west-2/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date,"
        in signed.headers["Authorization"]
    )


@pytest.mark.parametrize(
    ("base", "sent"),
    [
        ("https://bedrock.example:443", None),  # default port: the client's Host is the signed one
        ("http://127.0.0.1:8080", None),
        ("https://Bedrock.Example", "Bedrock.Example"),  # clients lower-case it: the signed one is sent
        ("https://user@bedrock.example", "bedrock.example"),  # user info: sent as signed
        ("http://[::1]:8080", "[::1]:8080"),
    ],
)
def test_host_is_sent_as_signed_unless_the_client_derives_the_same(base, sent):
    from lmgate.providers import resolve

    provider, name = resolve("bedrock/amazon.nova-pro-v1:0")
    ep = provider.endpoint(name, base, None, None)
    ep = provider.configure(
        ep, {"aws_region_name": "us-west-2", "aws_access_key_id": "AKIA1", "aws_secret_access_key": "s"}
    )
    req = provider.chat_request(ep, MESSAGES, {}, stream=False)
    signed = provider.sign(req, req.body_bytes(), ep)
    assert signed.headers.get("Host") == sent
    assert "SignedHeaders=content-type;host;x-amz-date," in signed.headers["Authorization"]


def test_secrets_never_reach_callbacks_headers_or_errors(fake_bedrock):
    """The secret key and session token stay out of optional_params, the logged request and _hidden_params;
    an error body quoting them is masked."""
    fake_bedrock.expect_token = TOKEN
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    r = lmgate.completion(messages=MESSAGES, aws_session_token=TOKEN, **aws(fake_bedrock))
    flush()
    (pre,) = capture.of("log_pre_api_call")
    (event,) = capture.of("log_success_event")
    shown = json.dumps([pre.kwargs, event.kwargs["standard_logging_object"], r._hidden_params], default=str)
    assert SECRET_ACCESS_KEY not in shown and TOKEN not in shown
    assert "aws_secret_access_key" not in json.dumps(event.kwargs["optional_params"], default=str)
    fake_bedrock.enqueue(
        BedrockReply(
            status=400,
            error_type="ValidationException",
            error_message=f"bad token {TOKEN} / {SECRET_ACCESS_KEY}",
        )
    )
    with pytest.raises(lmgate.BadRequestError) as info:
        lmgate.completion(messages=MESSAGES, aws_session_token=TOKEN, **aws(fake_bedrock))
    assert TOKEN not in str(info.value) and SECRET_ACCESS_KEY not in str(info.value)


@pytest.mark.parametrize("param", [{"user": "u1"}, {"n": 2}, {"parallel_tool_calls": False}])
def test_unsupported_parameter_names_it_and_the_provider(fake_bedrock, param):
    with pytest.raises(lmgate.UnsupportedParamsError) as info:
        lmgate.completion(messages=MESSAGES, **param, **aws(fake_bedrock))
    assert next(iter(param)) in str(info.value) and "bedrock" in str(info.value)
    assert fake_bedrock.requests == []
    lmgate.completion(messages=MESSAGES, **param, drop_params=True, **aws(fake_bedrock))
    assert fake_bedrock.requests[-1].json == {"messages": [{"role": "user", "content": [{"text": "Hi"}]}]}


def test_an_image_link_is_refused_with_the_fix(fake_bedrock):
    messages = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}],
        }
    ]
    with pytest.raises(lmgate.BadRequestError, match="data URLs"):
        lmgate.completion(messages=messages, **aws(fake_bedrock))


# ---------------------------------------------------------------- the callback contract on Bedrock


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_every_hook_in_order_and_one_terminal_event(fake_bedrock, mode, stream):
    """pre → post → each chunk → one success event, the request sent as Converse's body, the exact cost."""
    fake_bedrock.enqueue(BedrockReply(text="abcdefg", usage={"inputTokens": 11, "outputTokens": 4}))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, **aws(fake_bedrock, model="bedrock/amazon.nova-pro-v1:0"))
    flush()
    prefix = "async_" if mode == "async" else ""
    n_chunks = len(result) if stream else 0
    expected = [
        f"{prefix}log_pre_api_call",
        "log_post_api_call",
        *[f"{prefix}log_stream_event"] * n_chunks,
        f"{prefix}log_success_event",
    ]
    assert capture.hooks() == expected
    (pre,) = capture.of("log_pre_api_call", "async_log_pre_api_call")
    assert pre.kwargs["additional_args"]["complete_input_dict"] == fake_bedrock.requests[-1].json
    (event,) = capture.of("log_success_event", "async_log_success_event")
    assert event.kwargs["custom_llm_provider"] == "bedrock"
    assert event.response_obj.choices[0].message.content == "abcdefg"
    assert event.kwargs["response_cost"] == pytest.approx(11 * 8e-7 + 4 * 3.2e-6, rel=1e-12)
    assert event.kwargs["standard_logging_object"]["response_cost"] == event.kwargs["response_cost"]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_failure_gets_exactly_one_failure_event(fake_bedrock, mode, stream):
    fake_bedrock.enqueue(
        BedrockReply(status=429, error_type="ThrottlingException", error_message="Too many requests")
    )
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.RateLimitError):
        call(mode, stream, **aws(fake_bedrock))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert terminal == ["async_log_failure_event" if mode == "async" else "log_failure_event"]
    assert capture.events[-1].kwargs["standard_logging_object"]["error_information"]["error_code"] == "429"


def test_the_reference_s_converse_route_is_the_same_call(fake_bedrock):
    lmgate.completion(messages=MESSAGES, **aws(fake_bedrock, model="bedrock/converse/amazon.nova-lite-v1:0"))
    assert fake_bedrock.raw_targets[-1] == "/model/amazon.nova-lite-v1%3A0/converse"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_frames_split_across_reads_are_reassembled(fake_bedrock, mode):
    """The stream written 7 bytes at a time: botocore's buffer joins the pieces into whole messages."""
    fake_bedrock.enqueue(BedrockReply(text="abcdefghij", chunk_size=2, piece_size=7))
    result = call(mode, True, **aws(fake_bedrock))
    assert text_of(result, True) == "abcdefghij"
    assert finish_of(result, True) == ["stop"] and result[-1].usage.total_tokens == 12


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_corrupt_frame_fails_the_call_once(fake_bedrock, mode):
    """A frame whose CRC does not match is a broken connection (APIConnectionError), one failure event."""
    fake_bedrock.enqueue(BedrockReply(corrupt_frame=2))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.APIConnectionError, match="broken event stream"):
        call(mode, True, **aws(fake_bedrock))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert len(terminal) == 1 and "failure" in terminal[0]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_stream_cut_before_its_end_fails_the_call_once(fake_bedrock, mode):
    fake_bedrock.enqueue(BedrockReply(cut_after_frames=3))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.APIConnectionError):
        call(mode, True, **aws(fake_bedrock))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert len(terminal) == 1 and "failure" in terminal[0]


def test_credentials_of_a_role_the_profile_assumes(fake_bedrock, monkeypatch, tmp_path):
    """A profile with role_arn + source_profile: botocore calls STS AssumeRole (a fake on loopback) with the
    source keys, and the call is signed with the role's temporary credentials and session token."""
    from fakes.bedrock import ROLE_KEY_ID, ROLE_SECRET, ROLE_TOKEN, FakeSts

    (tmp_path / "credentials").write_text(
        f"[base]\naws_access_key_id = {ACCESS_KEY_ID}\naws_secret_access_key = {SECRET_ACCESS_KEY}\n"
    )
    (tmp_path / "config").write_text(
        "[profile caller]\nrole_arn = arn:aws:iam::123456789012:role/bedrock-caller\n"
        "source_profile = base\nrole_session_name = lmgate-test\nregion = us-east-1\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    fake_bedrock.credentials = {ROLE_KEY_ID: ROLE_SECRET}  # only the role's keys are accepted
    fake_bedrock.expect_token = ROLE_TOKEN
    with FakeSts() as sts:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", sts.base_url)
        r = lmgate.completion(
            model=MODEL, messages=MESSAGES, api_base=fake_bedrock.base_url, aws_profile_name="caller"
        )
        lmgate.completion(
            model=MODEL, messages=MESSAGES, api_base=fake_bedrock.base_url, aws_profile_name="caller"
        )
    assert r.choices[0].message.content == "Hello from fake"
    assert f"Credential={ROLE_KEY_ID}/" in fake_bedrock.requests[-1].headers["authorization"]
    assert fake_bedrock.requests[-1].headers["x-amz-security-token"] == ROLE_TOKEN
    (assume,) = sts.calls  # assumed once, then cached until it nears expiry
    assert (assume["RoleArn"], assume["RoleSessionName"]) == (
        "arn:aws:iam::123456789012:role/bedrock-caller",
        "lmgate-test",
    )


def test_an_explicit_role_is_assumed_with_the_given_keys(fake_bedrock):
    """aws_role_name (+ aws_session_name, aws_external_id, aws_sts_endpoint), as the reference names them: STS AssumeRole with the given keys,
    once; the calls are signed with the role's temporary credentials."""
    from fakes.bedrock import ROLE_KEY_ID, ROLE_SECRET, ROLE_TOKEN, FakeSts

    fake_bedrock.credentials = {ROLE_KEY_ID: ROLE_SECRET}
    fake_bedrock.expect_token = ROLE_TOKEN
    role = "arn:aws:iam::123456789012:role/explicit-role"
    with FakeSts() as sts:
        for _ in range(2):
            r = lmgate.completion(
                messages=MESSAGES,
                aws_role_name=role,
                aws_session_name="nightly-job",
                aws_external_id="ext-42",
                aws_sts_endpoint=sts.base_url,
                **aws(fake_bedrock),
            )
    assert r.choices[0].message.content == "Hello from fake"
    assert f"Credential={ROLE_KEY_ID}/" in fake_bedrock.requests[-1].headers["authorization"]
    (assume,) = sts.calls
    assert (assume["RoleArn"], assume["RoleSessionName"], assume["ExternalId"]) == (
        role,
        "nightly-job",
        "ext-42",
    )


def test_an_unknown_profile_is_an_authentication_error_naming_it(fake_bedrock):
    with pytest.raises(lmgate.AuthenticationError, match="no-such-profile"):
        lmgate.completion(
            model=MODEL, messages=MESSAGES, api_base=fake_bedrock.base_url, aws_profile_name="no-such-profile"
        )
    assert fake_bedrock.requests == []


def test_signed_thinking_comes_back_as_thinking_blocks_and_goes_back_as_reasoning_content(fake_bedrock):
    """Claude's signed reasoning survives a tool round trip: thinking_blocks out, reasoningContent back in."""
    fake_bedrock.enqueue(
        BedrockReply(text=None, reasoning="Use the tool.", tool_calls=[{"id": "tu_9", "name": "f"}])
    )
    r = lmgate.completion(messages=MESSAGES, tools=[TOOL], reasoning_effort="low", **aws(fake_bedrock))
    message = r.choices[0].message
    assert message.thinking_blocks == [{"type": "thinking", "thinking": "Use the tool.", "signature": "sig"}]
    follow_up = [*MESSAGES, dict(message), {"role": "tool", "tool_call_id": "tu_9", "content": "done"}]
    lmgate.completion(messages=follow_up, tools=[TOOL], reasoning_effort="low", **aws(fake_bedrock))
    assert fake_bedrock.requests[-1].json["messages"][1]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Use the tool.", "signature": "sig"}}},
        {"toolUse": {"toolUseId": "tu_9", "name": "f", "input": {}}},
    ]


def test_claude_sonnet_4_past_200k_tokens_costs_its_long_context_prices(fake_bedrock):
    """Claude Sonnet 4's 1M context is priced apart past 200k prompt tokens (cache reads and writes
    too): $6 / $22.50 per MTok, $0.60 cache read, $7.50 cache write (Anthropic's long-context prices,
    which Bedrock follows)."""
    fake_bedrock.enqueue(
        BedrockReply(
            text="ok",
            usage={
                "inputTokens": 150_000,
                "outputTokens": 1_000,
                "cacheReadInputTokens": 40_000,
                "cacheWriteInputTokens": 20_000,
            },
        )
    )
    result = lmgate.completion(
        messages=[{"role": "user", "content": "long"}],
        **aws(fake_bedrock, model="bedrock/us.anthropic.claude-sonnet-4-20250514-v1:0"),
    )
    expected = 150_000 * 6e-6 + 40_000 * 6e-7 + 20_000 * 7.5e-6 + 1_000 * 2.25e-5
    assert result._hidden_params["response_cost"] == pytest.approx(expected, rel=1e-12)


def test_explicit_keys_configure_once_and_each_secret_token_and_region_is_its_own():
    """A deployment's explicit keys and region configure once; any change of them is another endpoint."""
    from lmgate.providers import resolve

    provider, name = resolve("bedrock/amazon.nova-pro-v1:0")
    ep = provider.endpoint(name, None, None, None)
    opts = {"aws_region_name": "us-west-2", "aws_access_key_id": "AKIA1", "aws_secret_access_key": "s1"}
    first = provider.configure(ep, opts)
    assert provider.configure(ep, dict(opts)) is first
    other_secret = provider.configure(ep, {**opts, "aws_secret_access_key": "s2"})
    with_token = provider.configure(ep, {**opts, "aws_session_token": "t1"})
    other_region = provider.configure(ep, {**opts, "aws_region_name": "eu-west-1"})
    assert first.secrets == ("s1",) and other_secret.secrets == ("s2",) and with_token.secrets == ("s1", "t1")
    assert other_secret.options.signer is not first.options.signer
    assert other_region.api_base == "https://bedrock-runtime.eu-west-1.amazonaws.com"
    assert other_region.options.region == "eu-west-1"
    assert provider.configure(ep, dict(opts)) is first  # still kept
