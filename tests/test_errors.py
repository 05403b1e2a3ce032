"""Errors: every status, stream breaks, timeouts, refused connections and unknown models map to lmgate's one tree, without leaking keys."""

from __future__ import annotations

import socket
import threading

import pytest
from fakes import Reply
from helpers import MESSAGES, MODE_IDS, MODES, call

import lmgate
from lmgate.testing import CapturingLogger

KEY = "sk-test-leaky-0123456789abcdefXYZ"


@pytest.fixture
def fake_provider(fake_provider_session):
    """The session's fake provider, reset: a fresh server per test would cost its 50 ms shutdown poll."""
    fake_provider_session.reset()
    return fake_provider_session


# provider -> (model, api_base suffix)
PROVIDERS = {
    "openai": ("gpt-4o-mini", "/v1"),
    "azure": ("azure/dep", ""),
    "anthropic": ("anthropic/claude-3-5-haiku-20241022", ""),
}
SENT_MODEL = {"openai": "gpt-4o-mini", "azure": "dep", "anthropic": "claude-3-5-haiku-20241022"}

STATUSES = [
    (400, lmgate.BadRequestError),
    (401, lmgate.AuthenticationError),
    (403, lmgate.PermissionDeniedError),
    (404, lmgate.NotFoundError),
    (422, lmgate.UnprocessableEntityError),
    (429, lmgate.RateLimitError),
    (500, lmgate.InternalServerError),
    (503, lmgate.ServiceUnavailableError),
    (529, lmgate.ServiceUnavailableError),
]


def kw(fp, provider, **extra):
    model, suffix = PROVIDERS[provider]
    return {"model": model, "api_base": fp.base_url + suffix, "api_key": KEY, **extra}


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return int(port)


@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize(("status", "cls"), STATUSES, ids=[str(s) for s, _ in STATUSES])
def test_status_maps_to_class_with_fields_and_no_key(fake_provider, provider, status, cls):
    """Each error status raises its class with status_code, message, llm_provider and model, and str() hides the key."""
    fake_provider.enqueue(Reply(status=status, error_message=f"Problem with key {KEY} here"))
    with pytest.raises(cls) as info:
        lmgate.completion(messages=MESSAGES, **kw(fake_provider, provider))
    e = info.value
    assert type(e) is cls
    assert (e.status_code, e.llm_provider, e.model) == (status, provider, SENT_MODEL[provider])
    assert "Problem with key" in e.message
    for text in (str(e), repr(e), e.message, str(e.args)):
        assert KEY not in text
        assert KEY[8:] not in text


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_error_status_in_every_mode(fake_provider, mode, stream, provider):
    """An error answer raises the mapped class whether the call is sync or async, streamed or not."""
    fake_provider.enqueue(Reply(status=429))
    with pytest.raises(lmgate.RateLimitError) as info:
        call(mode, stream, messages=MESSAGES, **kw(fake_provider, provider))
    assert info.value.status_code == 429


def test_unknown_key_shape_is_masked_too(fake_provider):
    """A key without a recognisable shape is still masked when the server quotes it back."""
    odd_key = "Zq9Vb7Lm2Np4Rt6Wx8Ya"
    fake_provider.enqueue(Reply(status=401, error_message=f"Incorrect API key provided: {odd_key}."))
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(
            model="azure/dep", messages=MESSAGES, api_base=fake_provider.base_url, api_key=odd_key
        )
    assert odd_key not in str(info.value)
    assert "Incorrect API key provided" in str(info.value)


@pytest.mark.parametrize(
    ("provider", "message", "code"),
    [
        ("openai", "This model's maximum context length is 8192 tokens.", "context_length_exceeded"),
        ("azure", "This model's maximum context length is 8192 tokens.", "context_length_exceeded"),
        ("anthropic", "prompt is too long: 210000 tokens > 200000 maximum", None),
    ],
)
def test_context_window_error(fake_provider, provider, message, code):
    """A 400 about the context window raises ContextWindowExceededError (a BadRequestError)."""
    fake_provider.enqueue(Reply(status=400, error_message=message, error_code=code))
    with pytest.raises(lmgate.ContextWindowExceededError) as info:
        lmgate.completion(messages=MESSAGES, **kw(fake_provider, provider))
    assert isinstance(info.value, lmgate.BadRequestError)
    assert info.value.status_code == 400


@pytest.mark.parametrize("model", ["mistral-large", "nosuch/model-x", "anthropic/"])
def test_unknown_model_lists_what_is_supported(model):
    """A model no provider claims raises UnknownModelError whose message says what is supported."""
    with pytest.raises(lmgate.UnknownModelError) as info:
        lmgate.completion(model=model, messages=MESSAGES, api_key=KEY)
    text = str(info.value)
    assert info.value.model == model
    if model != "anthropic/":
        for hint in (
            "openai/",
            "azure/",
            "anthropic/",
            "hosted_vllm/",
            "gpt-*",
            "claude-*",
            "api_base",
            "mock_response",
        ):
            assert hint in text, hint


def test_unknown_custom_llm_provider():
    """An unknown custom_llm_provider raises UnknownModelError naming the supported prefixes."""
    with pytest.raises(lmgate.UnknownModelError) as info:
        lmgate.completion(model="m", custom_llm_provider="nope", messages=MESSAGES)
    assert "nope/m" in str(info.value) and "anthropic/" in str(info.value)


@pytest.mark.parametrize(
    ("provider", "env"),
    [("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"), ("azure", "AZURE_API_KEY")],
)
def test_missing_key_names_the_env_var(fake_provider, monkeypatch, provider, env):
    """A provider that needs a key and has none raises AuthenticationError naming the env var."""
    for name in (
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "AZURE_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_API_BASE",
    ):
        monkeypatch.delenv(name, raising=False)
    model = PROVIDERS[provider][0]
    extra = {"api_base": fake_provider.base_url} if provider == "azure" else {}
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(model=model, messages=MESSAGES, **extra)
    assert env in str(info.value)
    assert info.value.status_code == 401
    assert fake_provider.requests == []


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_connection_refused_is_api_connection_error(mode, stream):
    """A port nothing listens on raises APIConnectionError (not a raw httpx error, not a Timeout)."""
    with pytest.raises(lmgate.APIConnectionError) as info:
        call(mode, stream, api_base=f"http://127.0.0.1:{closed_port()}/v1", api_key=KEY)
    assert type(info.value) is lmgate.APIConnectionError
    assert info.value.llm_provider == "openai" and info.value.model == "gpt-4o-mini"
    assert KEY not in str(info.value)


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_read_timeout_is_timeout(fake_provider, mode, stream):
    """A server that does not answer within timeout= raises lmgate.Timeout (status 408)."""
    release = threading.Event()
    fake_provider.enqueue(Reply(delay_event=release))
    try:
        with pytest.raises(lmgate.Timeout) as info:
            call(mode, stream, api_base=fake_provider.base_url + "/v1", api_key=KEY, timeout=0.2)
    finally:
        release.set()
    assert info.value.status_code == 408
    assert isinstance(info.value, lmgate.APIConnectionError)


@pytest.mark.parametrize(
    ("mode", "provider"), [(m, p) for m in ("sync", "async") for p in ("openai", "anthropic")]
)
def test_stream_cut_midway_is_connection_error_with_one_broken_failure_event(fake_provider, mode, provider):
    """A stream cut midway raises APIConnectionError and the callback gets one failure event, 'broken', with the partial text."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    fake_provider.enqueue(Reply(cut_after_chunks=4))
    seen: list[str] = []

    async def consume_async():
        async for chunk in await lmgate.acompletion(
            messages=MESSAGES, stream=True, **kw(fake_provider, provider)
        ):
            seen.append(chunk.choices[0].delta.content or "")

    with pytest.raises(lmgate.APIConnectionError) as info:
        if mode == "sync":
            for chunk in lmgate.completion(messages=MESSAGES, stream=True, **kw(fake_provider, provider)):
                seen.append(chunk.choices[0].delta.content or "")
        else:
            import asyncio

            asyncio.run(consume_async())
    assert type(info.value) is lmgate.APIConnectionError
    assert info.value.llm_provider == provider
    lmgate.flush_callbacks(10)
    terminal = [e for e in capture.events if "success" in e.hook or "failure" in e.hook]
    assert [e.hook for e in terminal] == [
        "async_log_failure_event" if mode == "async" else "log_failure_event"
    ]
    kwargs = terminal[0].kwargs
    assert kwargs["stream_status"] == "broken"
    assert isinstance(kwargs["exception"], lmgate.APIConnectionError)
    partial = kwargs["complete_streaming_response"]
    assert partial.choices[0].message.content == "".join(seen)
    assert (
        "".join(seen) and "Hello from fake".startswith("".join(seen)) and "".join(seen) != "Hello from fake"
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_body_cut_midway_is_connection_error(fake_provider, mode):
    """A non-streamed body cut short raises APIConnectionError."""
    fake_provider.enqueue(Reply(cut_after_chunks=0))
    with pytest.raises(lmgate.APIConnectionError):
        call(mode, False, api_base=fake_provider.base_url + "/v1", api_key=KEY)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("provider", "stream_error", "cls", "status"),
    [
        ("openai", {}, lmgate.InternalServerError, 500),
        (
            "openai",
            {"type": "requests", "code": "rate_limit_exceeded", "message": "slow down"},
            lmgate.RateLimitError,
            429,
        ),
        (
            "openai",
            {"type": "invalid_request_error", "code": "context_length_exceeded", "message": "too long"},
            lmgate.ContextWindowExceededError,
            400,
        ),
        ("anthropic", {}, lmgate.ServiceUnavailableError, 529),
        ("anthropic", {"type": "rate_limit_error", "message": "slow down"}, lmgate.RateLimitError, 429),
        ("anthropic", {"type": "api_error", "message": "boom"}, lmgate.InternalServerError, 500),
        (
            "anthropic",
            {"type": "invalid_request_error", "message": "prompt is too long"},
            lmgate.ContextWindowExceededError,
            400,
        ),
    ],
)
def test_error_event_inside_a_stream(fake_provider, mode, provider, stream_error, cls, status):
    """An error event mid-stream raises the class its type names, and the failure event says 'broken'."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    fake_provider.enqueue(Reply(stream_error=stream_error))
    with pytest.raises(cls) as info:
        call(mode, True, **kw(fake_provider, provider))
    assert type(info.value) is cls
    assert (info.value.status_code, info.value.llm_provider) == (status, provider)
    lmgate.flush_callbacks(10)
    failures = capture.of("log_failure_event", "async_log_failure_event")
    assert len(failures) == 1 and failures[0].kwargs["stream_status"] == "broken"
    assert not capture.of("log_success_event", "async_log_success_event")


def test_exception_tree():
    """The tree is the documented one: status errors under APIError, Timeout under APIConnectionError."""
    assert issubclass(lmgate.ContextWindowExceededError, lmgate.BadRequestError)
    assert issubclass(lmgate.UnsupportedParamsError, lmgate.BadRequestError)
    assert issubclass(lmgate.UnknownModelError, lmgate.BadRequestError)
    for _, cls in STATUSES:
        assert issubclass(cls, lmgate.APIError)
    assert issubclass(lmgate.Timeout, lmgate.APIConnectionError)
    assert not issubclass(lmgate.APIConnectionError, lmgate.APIError)
    for name in ("APIError", "APIConnectionError", "CallbackError"):
        assert issubclass(getattr(lmgate, name), lmgate.LmgateError)
    for name in lmgate.__all__:
        value = getattr(lmgate, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert value.__doc__ and value.__doc__.strip(), name


def test_error_pickles_with_its_fields():
    """An error survives pickling (for process pools) with class, message, provider, model and status."""
    import pickle

    e = lmgate.RateLimitError("slow", "openai", "gpt-4o", status_code=429)
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), back.message, back.llm_provider, back.model, back.status_code) == (
        lmgate.RateLimitError,
        "slow",
        "openai",
        "gpt-4o",
        429,
    )
