"""Google AI Studio's Gemini API (``gemini/…``) through the fake Gemini server: the body sent, what comes back."""

from __future__ import annotations

import json

import pytest
from fakes import DEFAULT_TEXT, GeminiReply
from helpers import MESSAGES, MODE_IDS, MODES, call, flush

import lmgate
from lmgate.cost import find_price
from lmgate.testing import CapturingLogger

KEY = "AIza-test-0123456789abcdef"
MODEL = "gemini/gemini-2.0-flash"


@pytest.fixture
def fake_gemini(fake_gemini_session):
    fake_gemini_session.reset()
    return fake_gemini_session


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_BASE"):
        monkeypatch.delenv(name, raising=False)


def gem(fg, **kw):
    kw.setdefault("model", MODEL)
    return {"api_base": fg.base_url, "api_key": KEY, **kw}


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


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_generate_content_request_and_text(fake_gemini, mode, stream):
    """gemini/<model> posts to :generateContent (or :streamGenerateContent?alt=sse) with x-goog-api-key; text comes back."""
    result = call(mode, stream, **gem(fake_gemini))
    assert text_of(result, stream) == DEFAULT_TEXT
    req = fake_gemini.requests[-1]
    method = "streamGenerateContent" if stream else "generateContent"
    assert req.path == f"/v1beta/models/gemini-2.0-flash:{method}"
    assert req.query == ({"alt": "sse"} if stream else {})
    assert req.headers["x-goog-api-key"] == KEY
    assert "authorization" not in req.headers
    assert req.json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}
    assert finish_of(result, stream) == ["stop"]
    usage = usage_of(result, stream)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 5, 12)


def test_exact_body_for_a_tool_conversation_with_images(fake_gemini):
    """System, multi-turn, parallel calls and their results, images, tools, tool_choice and sampling take Gemini's form."""
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Also these:"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
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
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 18}'},
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
                    "additionalProperties": False,
                },
            },
        },
        {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}},
    ]
    lmgate.completion(
        messages=messages,
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stop="END",
        temperature=0.2,
        top_p=0.8,
        max_tokens=100,
        **gem(fake_gemini),
    )
    assert fake_gemini.requests[-1].json == {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Weather in Paris and Rome?"},
                    {"text": "Also these:"},
                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/cat.jpg"}},
                ],
            },
            {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}},
                ],
            },
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp": 18}}},
                    {"functionResponse": {"name": "get_weather", "response": {"content": "24C"}}},
                    {"text": "Thanks"},
                ],
            },
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "get_weather",
                        "description": "Current weather",
                        "parameters": {
                            "type": "object",
                            "properties": {"city": {"type": "string"}},
                            "required": ["city"],
                        },
                    },
                    {"name": "now"},
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.8,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
        },
    }


@pytest.mark.parametrize(
    ("choice", "sent"),
    [("auto", {"mode": "AUTO"}), ("required", {"mode": "ANY"}), ("none", {"mode": "NONE"})],
)
def test_tool_choice_translation(fake_gemini, choice, sent):
    tools = [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {}}}},
        }
    ]
    lmgate.completion(messages=MESSAGES, tools=tools, tool_choice=choice, **gem(fake_gemini))
    assert fake_gemini.requests[-1].json["toolConfig"] == {"functionCallingConfig": sent}


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_parallel_tool_calls_come_back(fake_gemini, mode, stream):
    """Two functionCall parts become two tool_calls with ids, names and JSON arguments; finish is tool_calls."""
    fake_gemini.enqueue(
        GeminiReply(
            tool_calls=[
                {"name": "get_weather", "args": {"city": "Paris"}},
                {"name": "get_weather", "args": {"city": "Rome"}},
            ]
        )
    )
    result = call(mode, stream, **gem(fake_gemini))
    if stream:
        deltas = [d for c in result for d in (c.choices[0].delta.tool_calls or [])]
        calls = [(d.index, d.function.name, json.loads(d.function.arguments)) for d in deltas]
        ids = [d.id for d in deltas]
    else:
        tcs = result.choices[0].message.tool_calls
        calls = [(i, t.function.name, json.loads(t.function.arguments)) for i, t in enumerate(tcs)]
        ids = [t.id for t in tcs]
        assert result.choices[0].message.content is None
    assert calls == [(0, "get_weather", {"city": "Paris"}), (1, "get_weather", {"city": "Rome"})]
    assert all(i and i.startswith("call_") for i in ids) and len(set(ids)) == 2
    assert finish_of(result, stream) == ["tool_calls"]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_thought_signature_travels_in_the_tool_call_id(fake_gemini, mode, stream):
    """A signed functionCall's thoughtSignature rides in the tool call id and goes back beside the call next turn."""
    fake_gemini.enqueue(
        GeminiReply(tool_calls=[{"name": "f", "args": {"a": 1}, "signature": "c2lnbmF0dXJl"}])
    )
    result = call(mode, stream, **gem(fake_gemini, model="gemini/gemini-2.5-flash"))
    if stream:
        (tc,) = [d for c in result for d in (c.choices[0].delta.tool_calls or [])]
    else:
        (tc,) = result.choices[0].message.tool_calls
    assert tc.id.startswith("call_") and tc.id.endswith("__thought__c2lnbmF0dXJl")
    history = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [{"id": tc.id, "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]},
        {"role": "tool", "tool_call_id": tc.id, "content": "ok"},
    ]  # fmt: skip
    lmgate.completion(messages=history, **gem(fake_gemini, model="gemini/gemini-2.5-flash"))
    assert fake_gemini.requests[-1].json["contents"][1:] == [
        {
            "role": "model",
            "parts": [{"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "c2lnbmF0dXJl"}],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"content": "ok"}}}]},
    ]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(
    ("reply", "finish"),
    [
        (GeminiReply(finish_reason="MAX_TOKENS"), "length"),
        (GeminiReply(finish_reason="SAFETY", text=""), "content_filter"),
        (GeminiReply(finish_reason="RECITATION"), "content_filter"),
        (GeminiReply(block_reason="SAFETY"), "content_filter"),
    ],
    ids=["max-tokens", "safety", "recitation", "prompt-blocked"],
)
def test_finish_reasons(fake_gemini, mode, stream, reply, finish):
    """MAX_TOKENS → length; SAFETY, RECITATION and a blocked prompt (no candidates) → content_filter."""
    fake_gemini.enqueue(reply)
    result = call(mode, stream, **gem(fake_gemini))
    assert finish_of(result, stream) == [finish]


def test_n_becomes_candidate_count(fake_gemini):
    """n=2 → generationConfig.candidateCount, and each candidate is a choice."""
    result = lmgate.completion(messages=MESSAGES, n=2, **gem(fake_gemini))
    assert fake_gemini.requests[-1].json["generationConfig"] == {"candidateCount": 2}
    assert [c.index for c in result.choices] == [0, 1]
    assert all(c.message.content == DEFAULT_TEXT for c in result.choices)


def test_stream_with_two_candidates(fake_gemini):
    chunks = list(lmgate.completion(messages=MESSAGES, n=2, stream=True, **gem(fake_gemini)))
    by_index: dict[int, str] = {}
    for c in chunks:
        by_index[c.choices[0].index] = by_index.get(c.choices[0].index, "") + (
            c.choices[0].delta.content or ""
        )
    assert by_index == {0: DEFAULT_TEXT, 1: DEFAULT_TEXT}


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("model", "fmt", "sent"),
    [
        ("gemini/gemini-2.0-flash", {"type": "json_object"}, {"responseMimeType": "application/json"}),
        (
            "gemini/gemini-2.0-flash",
            {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}},
            {
                "responseMimeType": "application/json",
                "responseSchema": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}},
                    "required": ["name"],
                },
            },
        ),
        (
            "gemini/gemini-2.5-flash",
            {"type": "json_schema", "json_schema": {"name": "p", "schema": SCHEMA}},
            {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA},
        ),
    ],
    ids=["json-mode", "schema-2.0", "json-schema-2.5"],
)
def test_response_format(fake_gemini, model, fmt, sent):
    """JSON mode → responseMimeType; a schema → responseSchema (OpenAPI subset) before 2.5, responseJsonSchema after."""
    lmgate.completion(messages=MESSAGES, response_format=fmt, **gem(fake_gemini, model=model))
    assert fake_gemini.requests[-1].json["generationConfig"] == sent


@pytest.mark.parametrize(
    ("kwargs", "sent"),
    [
        ({"reasoning_effort": "low"}, {"thinkingBudget": 1024, "includeThoughts": True}),
        ({"reasoning_effort": "high"}, {"thinkingBudget": 4096, "includeThoughts": True}),
        ({"reasoning_effort": "none"}, {"thinkingBudget": 0}),
        (
            {"thinking": {"type": "enabled", "budget_tokens": 3000}},
            {"thinkingBudget": 3000, "includeThoughts": True},
        ),
    ],
)
def test_thinking_budget(fake_gemini, kwargs, sent):
    lmgate.completion(messages=MESSAGES, **kwargs, **gem(fake_gemini, model="gemini/gemini-2.5-flash"))
    assert fake_gemini.requests[-1].json["generationConfig"] == {"thinkingConfig": sent}


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_thoughts_cached_tokens_and_exact_cost(fake_gemini, mode, stream):
    """Thought parts → reasoning_content; thoughtsTokenCount and cachedContentTokenCount → usage details; cost exact."""
    fake_gemini.enqueue(
        GeminiReply(
            text="42",
            thoughts="Let me think.",
            usage={"prompt": 1000, "candidates": 10, "thoughts": 90, "cached": 600},
        )
    )
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(mode, stream, reasoning_effort="low", **gem(fake_gemini, model="gemini/gemini-2.5-flash"))
    if stream:
        assert "".join(c.choices[0].delta.get("reasoning_content") or "" for c in result) == "Let me think."
    else:
        assert result.choices[0].message.reasoning_content == "Let me think."
    assert text_of(result, stream) == "42"
    usage = usage_of(result, stream)
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 100, 1100)
    assert usage.prompt_tokens_details == {"cached_tokens": 600}
    assert usage.completion_tokens_details == {"reasoning_tokens": 90}
    flush()
    (event,) = capture.of("log_success_event", "async_log_success_event")
    price = find_price("gemini-2.5-flash")[1]
    expected = (
        400 * price["input_cost_per_token"]
        + 600 * price["cache_read_input_token_cost"]
        + 100 * price["output_cost_per_token"]
    )
    assert event.kwargs["response_cost"] == pytest.approx(expected, rel=1e-12)
    assert event.response_obj.choices[0].message.reasoning_content == "Let me think."


def test_long_prompt_uses_the_tiered_price(fake_gemini):
    """Gemini 2.5 Pro past 200k prompt tokens costs its *_above_200k_tokens prices."""
    fake_gemini.enqueue(GeminiReply(usage={"prompt": 250_000, "candidates": 1000}))
    result = lmgate.completion(messages=MESSAGES, **gem(fake_gemini, model="gemini/gemini-2.5-pro"))
    assert result._hidden_params["response_cost"] == pytest.approx(
        250_000 * 2.5e-6 + 1000 * 1.5e-5, rel=1e-12
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embeddings_single_and_batch(fake_gemini, mode):
    """One input → :embedContent; several → :batchEmbedContents with models/<name> per request; dimensions passed."""
    import asyncio

    def run(inp):
        kwargs = gem(fake_gemini, model="gemini/gemini-embedding-001", dimensions=8)
        if mode == "sync":
            return lmgate.embedding(input=inp, **kwargs)
        return asyncio.run(lmgate.aembedding(input=inp, **kwargs))

    one = run("hello")
    req = fake_gemini.requests[-1]
    assert req.path == "/v1beta/models/gemini-embedding-001:embedContent"
    assert req.json == {"content": {"parts": [{"text": "hello"}]}, "outputDimensionality": 8}
    assert len(one.data) == 1 and len(one.data[0].embedding) == 8
    many = run(["a", "b"])
    req = fake_gemini.requests[-1]
    assert req.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    assert req.json == {
        "requests": [
            {
                "model": "models/gemini-embedding-001",
                "content": {"parts": [{"text": t}]},
                "outputDimensionality": 8,
            }
            for t in ("a", "b")
        ]
    }
    assert [d.index for d in many.data] == [0, 1] and many.data[0].embedding != many.data[1].embedding
    # the API reports no token counts for embeddings: the cost is unknown, not 0
    assert many._hidden_params["response_cost"] is None


STATUSES = [
    (400, lmgate.BadRequestError),
    (403, lmgate.PermissionDeniedError),
    (404, lmgate.NotFoundError),
    (429, lmgate.RateLimitError),
    (500, lmgate.InternalServerError),
    (503, lmgate.ServiceUnavailableError),
]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize(("status", "cls"), STATUSES, ids=[str(s) for s, _ in STATUSES])
def test_errors_map_to_the_exception_tree(fake_gemini, mode, stream, status, cls):
    fake_gemini.enqueue(GeminiReply(status=status, error_message="nope from gemini"))
    with pytest.raises(cls) as info:
        call(mode, stream, **gem(fake_gemini))
    assert info.value.status_code == status
    assert info.value.llm_provider == "gemini"
    assert "nope from gemini" in str(info.value)


def test_bad_key_is_an_authentication_error(fake_gemini):
    """Gemini answers a bad key 400 INVALID_ARGUMENT (reason API_KEY_INVALID): that is a 401 AuthenticationError."""
    fake_gemini.expect_key = "AIza-the-right-one"
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(messages=MESSAGES, **gem(fake_gemini))
    assert info.value.status_code == 401


def test_context_window_error(fake_gemini):
    fake_gemini.enqueue(
        GeminiReply(
            status=400,
            error_message="The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        )
    )
    with pytest.raises(lmgate.ContextWindowExceededError):
        lmgate.completion(messages=MESSAGES, **gem(fake_gemini))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_error_mid_stream_fails_the_call_once(fake_gemini, mode):
    fake_gemini.enqueue(
        GeminiReply(stream_error={"code": 503, "status": "UNAVAILABLE", "message": "overloaded"})
    )
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.ServiceUnavailableError):
        call(mode, True, **gem(fake_gemini))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert len(terminal) == 1 and "failure" in terminal[0]


@pytest.mark.parametrize("param", [{"user": "u1"}, {"logit_bias": {"1": 2}}, {"parallel_tool_calls": False}])
def test_unsupported_parameter_names_it_and_the_provider(fake_gemini, param):
    with pytest.raises(lmgate.UnsupportedParamsError) as info:
        lmgate.completion(messages=MESSAGES, **param, **gem(fake_gemini))
    assert next(iter(param)) in str(info.value) and "gemini" in str(info.value)
    assert fake_gemini.requests == []
    lmgate.completion(messages=MESSAGES, **param, drop_params=True, **gem(fake_gemini))
    assert fake_gemini.requests[-1].json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_parallel_tool_calls_true_is_gemini_s_own_behaviour(fake_gemini):
    lmgate.completion(messages=MESSAGES, parallel_tool_calls=True, **gem(fake_gemini))
    assert fake_gemini.requests[-1].json == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_key_and_base_from_env(fake_gemini, monkeypatch):
    """GEMINI_API_KEY and GEMINI_API_BASE are used when the call names neither; a base ending in /v1beta is accepted."""
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-env-key")
    monkeypatch.setenv("GEMINI_API_BASE", fake_gemini.base_url + "/v1beta")
    r = lmgate.completion(model=MODEL, messages=MESSAGES)
    req = fake_gemini.requests[-1]
    assert req.headers["x-goog-api-key"] == "AIza-env-key"
    assert req.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert r._hidden_params["custom_llm_provider"] == "gemini"


def test_key_in_the_api_base_query(fake_gemini):
    """A key written into api_base (``?key=…``, the API's other way to take it) is sent as the query, never shown."""
    r = lmgate.completion(model=MODEL, messages=MESSAGES, api_base=f"{fake_gemini.base_url}/v1beta?key={KEY}")
    req = fake_gemini.requests[-1]
    assert req.query == {"key": KEY} and "x-goog-api-key" not in req.headers
    assert req.path == "/v1beta/models/gemini-2.0-flash:generateContent"
    assert KEY not in r._hidden_params["api_base"]


def test_the_key_never_comes_back_in_headers(fake_gemini):
    """A careless upstream echoing x-goog-api-key: the header is dropped from _hidden_params, the key never shown."""
    fake_gemini.enqueue(GeminiReply(headers={"x-goog-api-key": KEY, "x-echo": f"key={KEY}"}))
    r = lmgate.completion(messages=MESSAGES, **gem(fake_gemini))
    shown = json.dumps(r._hidden_params["additional_headers"])
    assert "x-goog-api-key" not in shown and KEY not in shown
    assert r._hidden_params["additional_headers"]["llm_provider-x-echo"].startswith("key=")


def test_default_base_url_and_missing_key():
    """Without GEMINI_API_BASE the call goes to generativelanguage.googleapis.com; without a key it is refused."""
    from lmgate.providers import resolve

    provider, name = resolve(MODEL)
    ep = provider.endpoint(name, None, "k", None)
    req = provider.chat_request(ep, MESSAGES, {}, stream=False)
    assert (
        req.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"
    )
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(model=MODEL, messages=MESSAGES)
    assert "GEMINI_API_KEY" in str(info.value)


# ---------------------------------------------------------------- the callback contract on Gemini


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_every_hook_in_order_and_one_terminal_event(fake_gemini, mode, stream):
    """pre → post → each chunk → one success event, the request sent as Gemini's body, the exact cost."""
    fake_gemini.enqueue(GeminiReply(text="abcdefg", usage={"prompt": 11, "candidates": 4}))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    # a model whose price is confirmed (gemini-2.0-flash's is not: see prices.json)
    result = call(mode, stream, **gem(fake_gemini, model="gemini/gemini-2.5-flash-lite"))
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
    assert pre.kwargs["additional_args"]["complete_input_dict"] == fake_gemini.requests[-1].json
    assert KEY not in json.dumps(pre.kwargs["additional_args"]["headers"])
    (event,) = capture.of("log_success_event", "async_log_success_event")
    assert event.kwargs["custom_llm_provider"] == "gemini"
    assert event.response_obj.choices[0].message.content == "abcdefg"
    assert event.kwargs["response_cost"] == pytest.approx(11 * 1e-7 + 4 * 4e-7, rel=1e-12)  # 0.10 / 0.40
    assert event.kwargs["standard_logging_object"]["response_cost"] == event.kwargs["response_cost"]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_failure_gets_exactly_one_failure_event(fake_gemini, mode, stream):
    fake_gemini.enqueue(GeminiReply(status=429, error_message="Resource has been exhausted"))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    with pytest.raises(lmgate.RateLimitError):
        call(mode, stream, **gem(fake_gemini))
    flush()
    terminal = [h for h in capture.hooks() if "success" in h or "failure" in h]
    assert terminal == ["async_log_failure_event" if mode == "async" else "log_failure_event"]
    assert capture.events[-1].kwargs["standard_logging_object"]["error_information"]["error_code"] == "429"
