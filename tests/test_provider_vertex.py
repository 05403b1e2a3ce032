"""Vertex AI (``vertex_ai/…``) through the fake Vertex server and its token endpoint.

Every call here authenticates for real: google-auth signs a JWT with a test service account's
RSA key, the fake's ``/token`` verifies the signature and issues a bearer token, and the model
endpoints refuse any request without a live one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading

import pytest
from fakes import DEFAULT_TEXT, FakeVertex, GeminiReply, Reply, make_service_account
from helpers import MESSAGES, MODE_IDS, MODES, call, flush

import lmgate
from lmgate._secrets import scrub
from lmgate.cost import find_price
from lmgate.providers import resolve
from lmgate.testing import CapturingLogger

PROJECT = "test-project"
GEMINI = "vertex_ai/gemini-2.5-flash"
CLAUDE = "vertex_ai/claude-3-5-sonnet-v2@20241022"
GEMINI_PATH = f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/gemini-2.5-flash"
CLAUDE_PATH = (
    f"/v1/projects/{PROJECT}/locations/us-central1/publishers/anthropic/models/claude-3-5-sonnet-v2@20241022"
)


@pytest.fixture(scope="module")
def server():
    with FakeVertex() as fv:
        yield fv


@pytest.fixture(scope="module")
def account(server):
    """The module's service account (its tokens are shared by the tests that do not count them)."""
    info, public = make_service_account(server.token_uri, PROJECT)
    server.register(info, public)
    return info


@pytest.fixture
def fv(server):
    server.reset()
    return server


_FRESH = itertools.count(1)


@pytest.fixture
def fresh_account(fv):
    """A service account of its own: a token source nobody else has used yet. Its own address too:
    the fake keeps one key per address, so reusing the module account's would replace that
    account's key, and whichever test first asked for the module account's token afterwards would
    fail (an order-dependent failure seen when only some tests ran)."""
    info, public = make_service_account(
        fv.token_uri, PROJECT, email=f"fresh-{next(_FRESH)}@{PROJECT}.iam.gserviceaccount.com"
    )
    fv.register(info, public)
    return info


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in (
        "VERTEXAI_PROJECT",
        "VERTEX_PROJECT",
        "GOOGLE_CLOUD_PROJECT",
        "VERTEXAI_LOCATION",
        "VERTEX_LOCATION",
        "GOOGLE_CLOUD_LOCATION",
        "VERTEXAI_CREDENTIALS",
        "VERTEX_CREDENTIALS",
        "GOOGLE_APPLICATION_CREDENTIALS",
    ):
        monkeypatch.delenv(name, raising=False)


def vx(fv, info, **kw):
    kw.setdefault("model", GEMINI)
    return {"api_base": fv.base_url, "vertex_credentials": json.dumps(info), **kw}


def text_of(result, stream):
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in result)
    return result.choices[0].message.content


def usage_of(result, stream):
    return result[-1].usage if stream else result.usage


def bearer(rec):
    scheme, _, token = rec.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


# ---------------------------------------------------------------- Gemini on Vertex


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_gemini_request_path_token_and_text(fv, account, mode, stream):
    """vertex_ai/gemini-* posts the Gemini body to the project's publisher path with a bearer token google-auth got."""
    result = call(mode, stream, **vx(fv, account))
    assert text_of(result, stream) == DEFAULT_TEXT
    req = fv.requests[-1]
    method = "streamGenerateContent" if stream else "generateContent"
    assert req.path == f"{GEMINI_PATH}:{method}"
    assert req.query == ({"alt": "sse"} if stream else {})
    assert bearer(req) in fv.issued()
    assert "x-goog-api-key" not in req.headers
    assert req.json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    usage = usage_of(result, stream)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 5, 12)


def test_gemini_translation_is_the_studio_one(fv, account):
    """System, tools, tool_choice and sampling parameters take the same Gemini form as on AI Studio."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    fv.gemini.enqueue(GeminiReply(tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}}]))
    r = lmgate.completion(
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
        tools=tools,
        tool_choice="required",
        temperature=0.2,
        max_tokens=50,
        **vx(fv, account),
    )
    assert fv.requests[-1].json == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 50},
    }
    assert r.choices[0].finish_reason == "tool_calls"
    assert json.loads(r.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris"}


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_gemini_thoughts_cached_tokens_and_exact_cost(fv, account, mode, stream):
    fv.gemini.enqueue(
        GeminiReply(
            text="42",
            thoughts="Hmm.",
            usage={"prompt": 1000, "candidates": 10, "thoughts": 90, "cached": 600},
        )
    )
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, reasoning_effort="low", **vx(fv, account))
    assert text_of(result, stream) == "42"
    usage = usage_of(result, stream)
    assert (usage.prompt_tokens, usage.completion_tokens) == (1000, 100)
    flush()
    (event,) = capture.of("log_success_event", "async_log_success_event")
    price = find_price("vertex_ai/gemini-2.5-flash")[1]
    expected = (
        400 * price["input_cost_per_token"]
        + 600 * price["cache_read_input_token_cost"]
        + 100 * price["output_cost_per_token"]
    )
    assert event.kwargs["response_cost"] == pytest.approx(expected, rel=1e-12)
    assert event.kwargs["custom_llm_provider"] == "vertex_ai"


def test_vertex_prices_where_they_differ_from_ai_studio(fv, account):
    """gemini-2.0-flash has its own price on Vertex (AI Studio's is unconfirmed): the vertex_ai/ entry is used."""
    r = lmgate.completion(messages=MESSAGES, **vx(fv, account, model="vertex_ai/gemini-2.0-flash"))
    vertex = find_price("vertex_ai/gemini-2.0-flash")
    assert vertex[0] == "vertex_ai/gemini-2.0-flash"
    assert vertex[1]["input_cost_per_token"] != find_price("gemini-2.0-flash")[1].get("input_cost_per_token")
    expected = 7 * vertex[1]["input_cost_per_token"] + 5 * vertex[1]["output_cost_per_token"]
    assert r._hidden_params["response_cost"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embeddings_through_predict(fv, account, mode):
    kwargs = vx(fv, account, model="vertex_ai/text-embedding-005")
    kwargs.update(input=["hello world", "bye"], dimensions=3, task_type="RETRIEVAL_QUERY")
    if mode == "sync":
        r = lmgate.embedding(**kwargs)
    else:
        r = asyncio.run(lmgate.aembedding(**kwargs))
    req = fv.requests[-1]
    assert (
        req.path
        == f"/v1/projects/{PROJECT}/locations/us-central1/publishers/google/models/text-embedding-005:predict"
    )
    assert req.json == {
        "instances": [
            {"content": "hello world", "task_type": "RETRIEVAL_QUERY"},
            {"content": "bye", "task_type": "RETRIEVAL_QUERY"},
        ],
        "parameters": {"outputDimensionality": 3},
    }
    assert [len(d["embedding"]) for d in r.data] == [3, 3]
    assert r.usage.prompt_tokens == 3  # the statistics' token counts, summed


# ---------------------------------------------------------------- Claude on Vertex


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_claude_raw_predict_body_and_exact_cost(fv, account, mode, stream):
    """vertex_ai/claude-*: the Messages body with anthropic_version vertex-2023-10-16 and no model, at (stream)rawPredict."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, max_tokens=100, **vx(fv, account, model=CLAUDE))
    assert text_of(result, stream) == DEFAULT_TEXT
    req = fv.requests[-1]
    assert req.path == f"{CLAUDE_PATH}:{'streamRawPredict' if stream else 'rawPredict'}"
    assert bearer(req) in fv.issued()
    assert "x-api-key" not in req.headers and "anthropic-version" not in req.headers
    expected_body = {"anthropic_version": "vertex-2023-10-16", "messages": MESSAGES, "max_tokens": 100}
    if stream:
        expected_body["stream"] = True
    assert req.json == expected_body
    flush()
    (event,) = capture.of("log_success_event", "async_log_success_event")
    price = find_price("vertex_ai/claude-3-5-sonnet-v2@20241022")
    assert price[0] == "vertex_ai/claude-3-5-sonnet-v2"
    assert event.kwargs["response_cost"] == pytest.approx(
        7 * price[1]["input_cost_per_token"] + 5 * price[1]["output_cost_per_token"], rel=1e-12
    )


def test_claude_tools_and_cache_control(fv, account):
    fv.anthropic.enqueue(Reply(tool_calls=[{"id": "toolu_1", "name": "lookup", "arguments": {"q": "x"}}]))
    r = lmgate.completion(
        messages=MESSAGES,
        tools=[
            {
                "type": "function",
                "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
            }
        ],
        **vx(fv, account, model=CLAUDE),
    )
    assert r.choices[0].message.tool_calls[0].function.name == "lookup"
    assert fv.requests[-1].json["tools"][0]["name"] == "lookup"


def test_claude_unsupported_parameter_names_it_and_the_provider(fv, account):
    with pytest.raises(lmgate.UnsupportedParamsError) as info:
        lmgate.completion(
            messages=MESSAGES, response_format={"type": "json_object"}, **vx(fv, account, model=CLAUDE)
        )
    assert "response_format" in str(info.value) and "vertex_ai" in str(info.value)
    assert fv.requests == []


# ---------------------------------------------------------------- tokens


def test_one_token_serves_many_calls(fv, fresh_account):
    for _ in range(3):
        lmgate.completion(messages=MESSAGES, **vx(fv, fresh_account))
    (claims,) = fv.token_requests
    assert claims["iss"] == fresh_account["client_email"]
    assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert len({bearer(r) for r in fv.requests}) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_token_about_to_expire_is_refreshed_before_use(fv, fresh_account, mode):
    """A token living less than the refresh margin is never reused: each call exchanges a new one."""
    fv.expires_in = 60
    call(mode, False, **vx(fv, fresh_account))
    call(mode, True, **vx(fv, fresh_account))
    assert len(fv.token_requests) == 2
    tokens = [bearer(r) for r in fv.requests]
    assert len(set(tokens)) == 2


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_expired_token_refreshed_once_on_401(fv, fresh_account, mode, stream):
    """The server says the token has expired (its clock moved on): one refresh, the attempt repeated, one success."""
    lmgate.completion(messages=MESSAGES, **vx(fv, fresh_account))
    old = bearer(fv.requests[-1])
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    fv.clock += 7200  # on the server's clock the token has expired; the client still thinks it is good
    try:
        result = call(mode, stream, **vx(fv, fresh_account))
    finally:
        fv.clock -= 7200
    assert text_of(result, stream) == DEFAULT_TEXT
    first, second = fv.requests[-2:]
    assert bearer(first) == old and bearer(second) != old
    assert len(fv.token_requests) == 2
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert len(terminal) == 1 and "success" in terminal[0]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_401_after_the_refresh_is_an_authentication_error_once(fv, fresh_account, mode):
    body = FakeVertex.error_body(401, "Request had invalid authentication credentials.", "UNAUTHENTICATED")
    fv.enqueue_error(401, body)
    fv.enqueue_error(401, body)
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.AuthenticationError) as info:
        call(mode, False, num_retries=3, **vx(fv, fresh_account))
    assert info.value.status_code == 401 and info.value.llm_provider == "vertex_ai"
    assert len(fv.requests) == 2 and len(fv.token_requests) == 2  # one refresh, no retries of a 401
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert len(terminal) == 1 and "failure" in terminal[0]


def test_the_async_token_fetch_leaves_the_event_loop_free(fv, fresh_account):
    """The token exchange runs in a worker thread: while the token endpoint holds its answer, the loop runs
    the task that releases it (a fetch on the loop would block it until the fake gives up)."""
    gate = threading.Event()
    fv.token_gate = gate

    async def main():
        async def release():
            await asyncio.to_thread(fv.token_arrived.wait, 10)
            gate.set()

        releaser = asyncio.create_task(release())
        result = await lmgate.acompletion(messages=MESSAGES, vertex_project=PROJECT, **vx(fv, fresh_account))
        await releaser
        return result

    assert asyncio.run(main()).choices[0].message.content == DEFAULT_TEXT
    assert fv.gate_results == [True]


def test_an_unknown_service_account_is_an_authentication_error(fv):
    info, _ = make_service_account(
        fv.token_uri, PROJECT, email="stranger@test-project.iam.gserviceaccount.com"
    )
    with pytest.raises(lmgate.AuthenticationError) as error:
        lmgate.completion(messages=MESSAGES, **vx(fv, info))
    assert "unknown issuer" in str(error.value)
    assert fv.requests == []


def test_a_token_endpoint_that_is_down_is_a_connection_error(fv):
    info, _ = make_service_account("http://127.0.0.1:9/token", PROJECT)
    with pytest.raises(lmgate.APIConnectionError):
        lmgate.completion(messages=MESSAGES, **vx(fv, info))


def test_the_httpx_transport_adapter_gets_a_token(fv, fresh_account):
    """google-auth's Request interface over httpx: what is used when requests is not installed."""
    from google.oauth2 import service_account

    from lmgate.providers._google_auth import GoogleTokenSource, HttpxRequest

    def load():
        creds = service_account.Credentials.from_service_account_info(
            fresh_account, scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        return creds, PROJECT

    transport = HttpxRequest()
    source = GoogleTokenSource(load, transport=transport)
    header = source.auth_header()
    assert header["Authorization"].removeprefix("Bearer ") in fv.issued()
    assert source.cached_header() == header and source.refreshes == 1
    fresh = source.auth_header(refused=header)
    assert fresh != header and source.refreshes == 2
    # a second call refused the same old token finds it replaced already: no second exchange
    assert source.auth_header(refused=header) is fresh and source.refreshes == 2
    transport._client.close()


def test_an_injected_clock_decides_when_the_token_is_stale(fv, fresh_account):
    from google.oauth2 import service_account

    from lmgate.providers._google_auth import REFRESH_MARGIN_S, GoogleTokenSource

    now = [0.0]

    def load():
        creds = service_account.Credentials.from_service_account_info(
            fresh_account, scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        return creds, PROJECT

    import time

    now[0] = time.time()
    source = GoogleTokenSource(load, clock=lambda: now[0])
    first = source.auth_header()
    assert source.auth_header() is first
    now[0] += 3600 - REFRESH_MARGIN_S + 1  # inside the margin before expiry
    assert source.cached_header() is None
    assert source.auth_header() != first and source.refreshes == 2


# ---------------------------------------------------------------- credentials, project, location


def test_credentials_from_a_file_path(fv, fresh_account, tmp_path):
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(fresh_account))
    r = lmgate.completion(messages=MESSAGES, model=GEMINI, api_base=fv.base_url, vertex_credentials=str(path))
    assert r.choices[0].message.content == DEFAULT_TEXT
    assert fv.token_requests[-1]["iss"] == fresh_account["client_email"]


def test_default_credentials_project_and_location_from_the_environment(
    fv, fresh_account, tmp_path, monkeypatch
):
    """No vertex_credentials: google.auth.default() reads GOOGLE_APPLICATION_CREDENTIALS; VERTEXAI_* name the place."""
    path = tmp_path / "adc.json"
    path.write_text(json.dumps(fresh_account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    monkeypatch.setenv("VERTEXAI_PROJECT", "other-project")
    monkeypatch.setenv("VERTEXAI_LOCATION", "europe-west4")
    lmgate.completion(messages=MESSAGES, model=GEMINI, api_base=fv.base_url)
    assert fv.requests[-1].path.startswith(
        "/v1/projects/other-project/locations/europe-west4/publishers/google/"
    )
    assert fv.token_requests[-1]["iss"] == fresh_account["client_email"]


def test_options_win_over_the_environment(fv, account, monkeypatch):
    monkeypatch.setenv("VERTEXAI_PROJECT", "env-project")
    lmgate.completion(
        messages=MESSAGES, vertex_project="p-1", vertex_location="asia-northeast1", **vx(fv, account)
    )
    assert fv.requests[-1].path.startswith("/v1/projects/p-1/locations/asia-northeast1/")


def test_default_base_urls():
    """us-central1 by default, {location}-aiplatform.googleapis.com, and aiplatform.googleapis.com for global."""
    info = {"type": "service_account", "project_id": "p"}
    for location, url in (
        (None, "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1"),
        ("us-east5", "https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5"),
        ("global", "https://aiplatform.googleapis.com/v1/projects/p/locations/global"),
    ):
        for model, publisher, method in (
            ("gemini-2.5-flash", "google", "generateContent"),
            ("claude-sonnet-4@20250514", "anthropic", "rawPredict"),
        ):
            provider, name = resolve(f"vertex_ai/{model}")
            ep = provider.endpoint(name, None, None, None)
            ep, _ = provider.credentials(
                ep, {"vertex_project": "p", "vertex_location": location, "vertex_credentials": info}
            )
            req = provider.chat_request(ep, MESSAGES, {}, stream=False)
            assert req.url == f"{url}/publishers/{publisher}/models/{model}:{method}"


def test_api_base_as_a_scoped_path_or_a_whole_model_path(fv, account):
    """A base with /projects/… is used as it is; one ending /models/{model} (the reference's form) gets :method."""
    scoped = f"{fv.base_url}/v1/projects/{PROJECT}/locations/us-central1"
    lmgate.completion(messages=MESSAGES, **{**vx(fv, account), "api_base": scoped})
    assert fv.requests[-1].path == f"{GEMINI_PATH}:generateContent"
    whole = f"{fv.base_url}{GEMINI_PATH}"
    lmgate.completion(messages=MESSAGES, stream=True, **{**vx(fv, account), "api_base": whole})
    assert (fv.requests[-1].path, fv.requests[-1].query) == (
        f"{GEMINI_PATH}:streamGenerateContent",
        {"alt": "sse"},
    )


@pytest.mark.parametrize(
    ("kwargs", "cls", "words"),
    [
        ({"vertex_credentials": "{not json"}, lmgate.AuthenticationError, "not valid JSON"),
        ({"vertex_credentials": "/nonexistent/sa.json"}, lmgate.AuthenticationError, "cannot be read"),
        ({"vertex_location": "us-central1/../x"}, lmgate.BadRequestError, "not a Vertex AI location"),
        ({"api_key": "AIza-some-key-123"}, lmgate.BadRequestError, "not an api_key"),
    ],
)
def test_bad_settings_are_clear_errors(fv, account, kwargs, cls, words):
    params = vx(fv, account)
    params.update(kwargs)
    with pytest.raises(cls) as info:
        lmgate.completion(messages=MESSAGES, **params)
    assert words in str(info.value)
    assert fv.requests == []


def test_no_project_anywhere_is_a_clear_error(fv, account):
    info = {k: v for k, v in account.items() if k != "project_id"}
    with pytest.raises(lmgate.BadRequestError) as error:
        lmgate.completion(messages=MESSAGES, **vx(fv, info))
    assert "vertex_project" in str(error.value) and "VERTEXAI_PROJECT" in str(error.value)


# ---------------------------------------------------------------- errors, headers, secrets

STATUSES = [
    (400, "INVALID_ARGUMENT", lmgate.BadRequestError),
    (403, "PERMISSION_DENIED", lmgate.PermissionDeniedError),
    (404, "NOT_FOUND", lmgate.NotFoundError),
    (429, "RESOURCE_EXHAUSTED", lmgate.RateLimitError),
    (500, "INTERNAL", lmgate.InternalServerError),
    (503, "UNAVAILABLE", lmgate.ServiceUnavailableError),
]


@pytest.mark.parametrize("model", [GEMINI, CLAUDE])
@pytest.mark.parametrize(("status", "rpc", "cls"), STATUSES, ids=[str(s) for s, _, _ in STATUSES])
def test_vertex_errors_map_to_the_exception_tree(fv, account, model, status, rpc, cls):
    fv.enqueue_error(
        status, FakeVertex.error_body(status, f"nope from vertex ({rpc})", rpc), {"retry-after": "7"}
    )
    with pytest.raises(cls) as info:
        lmgate.completion(messages=MESSAGES, **vx(fv, account, model=model))
    assert info.value.status_code == status
    assert info.value.llm_provider == "vertex_ai"
    assert "nope from vertex" in str(info.value)
    assert info.value.retry_after == 7.0


def test_claude_model_errors_keep_anthropic_s_shape(fv, account):
    fv.anthropic.enqueue(
        Reply(status=400, error_message="prompt is too long: 300000 tokens > 200000 maximum")
    )
    with pytest.raises(lmgate.ContextWindowExceededError):
        lmgate.completion(messages=MESSAGES, **vx(fv, account, model=CLAUDE))


def test_response_headers_reach_hidden_params(fv, account):
    fv.gemini.enqueue(
        GeminiReply(
            headers={"x-ratelimit-remaining-requests": "99", "x-vertex-ai-llm-request-type": "shared"}
        )
    )
    r = lmgate.completion(messages=MESSAGES, **vx(fv, account))
    headers = r._hidden_params["additional_headers"]
    assert headers["x-ratelimit-remaining-requests"] == "99"
    assert headers["llm_provider-x-vertex-ai-llm-request-type"] == "shared"


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_private_key_and_token_never_reach_a_callback_or_error(fv, fresh_account, mode, stream):
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call(mode, stream, **vx(fv, fresh_account))
    token = bearer(fv.requests[-1])
    # an upstream quoting the token back in an error: masked
    fv.enqueue_error(400, FakeVertex.error_body(400, f"bad request with token {token}", "INVALID_ARGUMENT"))
    with pytest.raises(lmgate.BadRequestError) as info:
        call(mode, stream, **vx(fv, fresh_account))
    flush()
    key_body = "".join(x for x in fresh_account["private_key"].splitlines() if not x.startswith("-----"))
    seen = json.dumps([(e.kwargs, str(e.response_obj)) for e in capture.events], default=str)
    for secret in (token, key_body, fresh_account["private_key"], json.dumps(fresh_account)):
        assert secret not in seen
        assert secret not in str(info.value)
        assert scrub(f"x {secret} y") != f"x {secret} y"  # remembered: masked in any text
    assert "vertex_credentials" not in json.dumps(
        [e.kwargs.get("litellm_params") for e in capture.events], default=str
    )


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_every_hook_in_order_and_one_terminal_event(fv, account, mode, stream):
    fv.gemini.enqueue(GeminiReply(text="abcdefg", usage={"prompt": 11, "candidates": 4}))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, **vx(fv, account))
    flush()
    prefix = "async_" if mode == "async" else ""
    n_chunks = len(result) if stream else 0
    assert capture.hooks() == [
        f"{prefix}log_pre_api_call",
        "log_post_api_call",
        *[f"{prefix}log_stream_event"] * n_chunks,
        f"{prefix}log_success_event",
    ]
    (pre,) = capture.of("log_pre_api_call", "async_log_pre_api_call")
    assert pre.kwargs["additional_args"]["complete_input_dict"] == fv.requests[-1].json
    assert "authorization" not in json.dumps(pre.kwargs["additional_args"]["headers"]).lower()
    (event,) = capture.of("log_success_event", "async_log_success_event")
    price = find_price("gemini-2.5-flash")[1]
    assert event.kwargs["response_cost"] == pytest.approx(
        11 * price["input_cost_per_token"] + 4 * price["output_cost_per_token"], rel=1e-12
    )


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_failure_gets_exactly_one_failure_event(fv, account, mode, stream):
    fv.enqueue_error(429, FakeVertex.error_body(429, "Resource exhausted", "RESOURCE_EXHAUSTED"))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.RateLimitError):
        call(mode, stream, **vx(fv, account, model=CLAUDE))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert terminal == ["async_log_failure_event" if mode == "async" else "log_failure_event"]
