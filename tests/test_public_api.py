"""lmgate's public surface: the pinned list of names, and an import that stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import lmgate

# Changing this list is a change to the public API: do it on purpose (like httpx's test_exported_members).
PUBLIC_NAMES = {
    # entry points and helpers
    "completion",
    "acompletion",
    "embedding",
    "aembedding",
    "completion_cost",
    "flush_callbacks",
    "aflush_callbacks",
    "callback_stats",
    "CustomLogger",
    "CustomStreamWrapper",
    "RetryPolicy",
    "Settings",
    "reset_settings",
    "Cache",
    # response types
    "ModelResponse",
    "ModelResponseStream",
    "EmbeddingResponse",
    "Usage",
    "Message",
    "Choices",
    "StreamingChoices",
    "Delta",
    "Function",
    "ChatCompletionMessageToolCall",
    "Router",
    # exceptions
    "LmgateError",
    "APIError",
    "BadRequestError",
    "ContextWindowExceededError",
    "ContentPolicyViolationError",
    "UnsupportedParamsError",
    "UnknownModelError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "UnprocessableEntityError",
    "RateLimitError",
    "RouterRateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "APIConnectionError",
    "Timeout",
    "CallbackError",
    "ConfigError",
    # the reference's further exception names (issue 13 point 2)
    "InvalidRequestError",
    "PaymentRequiredError",
    "UnsupportedEndpointError",
    "BadGatewayError",
    "APIResponseValidationError",
    "JSONSchemaValidationError",
    "OpenAIError",
    "LiteLLMUnknownProvider",
    "BudgetExceededError",
    "MockException",
    "ModelNotMappedError",
    # module-level settings
    "callbacks",
    "input_callback",
    "success_callback",
    "failure_callback",
    "cache",
    "drop_params",
    "strict_callbacks",
    "turn_off_message_logging",
    "log_raw_request_response",
    "num_retries",
    "request_timeout",
    "retry_policy",
    "callback_settings",
    "generic_logger_headers",
    "s3_callback_params",
    "client_session",
    "aclient_session",
    "TextCompletionResponse",
    "ImageResponse",
    "TranscriptionResponse",
    "anthropic_messages",
    "aanthropic_messages",
    "responses",
    "aresponses",
    "text_completion",
    "atext_completion",
}

HEAVY = [
    "httpx",
    "httpcore",
    "httpx_sse",
    "anyio",
    "redis",
    "starlette",
    "uvicorn",
    "yaml",
    "opentelemetry",
    "openai",
]


def test_all_is_pinned():
    """lmgate.__all__ is exactly the pinned public names, sorted."""
    assert set(lmgate.__all__) == PUBLIC_NAMES
    assert list(lmgate.__all__) == sorted(lmgate.__all__)


def test_every_public_name_resolves():
    """Every name in __all__ is an attribute of lmgate, and dir(lmgate) lists them."""
    for name in lmgate.__all__:
        getattr(lmgate, name)
    assert set(lmgate.__all__) <= set(dir(lmgate))


def test_unknown_attribute_raises_attribute_error():
    """A name lmgate does not have raises AttributeError naming it."""
    try:
        _ = lmgate.no_such_thing  # type: ignore[attr-defined]
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("lmgate.no_such_thing did not raise")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_lmgate_imports_nothing_heavy():
    """`import lmgate` loads no HTTP client, server, redis, YAML or telemetry module."""
    loaded = _modules_after("import lmgate")
    assert [m for m in HEAVY if m in loaded] == []


def test_mock_completion_needs_no_http_client():
    """A mock completion (the demo path) runs without importing httpx."""
    loaded = _modules_after(
        "import lmgate\n"
        "r = lmgate.completion(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}], mock_response='ok')\n"
        "assert r.choices[0].message.content == 'ok'"
    )
    assert "httpx" not in loaded and "httpcore" not in loaded


def test_a_call_loads_only_its_own_provider():
    """A sync call to one provider imports neither asyncio (nor the ssl it pulls in) nor the
    other providers' modules (Bedrock's signing, Vertex's credentials, Gemini's translation)."""
    loaded = _modules_after(
        "import lmgate\n"
        "lmgate.completion(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}], mock_response='ok')\n"
        "from lmgate.providers import resolve\n"
        "resolve('openai/gpt-4o-mini')"
    )
    others = ("bedrock", "gemini", "vertex", "_sigv4", "anthropic", "azure", "compatible")
    assert [m for m in loaded if m.startswith("lmgate.providers.") and m.rsplit(".", 1)[1] in others] == []
    assert "asyncio" not in loaded and "ssl" not in loaded
    assert "lmgate.providers.openai" in loaded


def test_every_provider_prefix_still_resolves():
    """The lazy registry lists and resolves every prefix, built-in and OpenAI-compatible cloud."""
    from lmgate.providers import PROVIDERS, resolve
    from lmgate.providers.compatible import CLOUDS

    names = set(PROVIDERS)
    assert {"openai", "azure", "anthropic", "gemini", "bedrock", "vertex_ai"} <= names
    assert {cloud.prefix for cloud in CLOUDS} <= names
    assert len(PROVIDERS) == len(names)
    for prefix in names:
        provider, name = resolve(f"{prefix}/some-model")
        assert name == "some-model" and provider is not None
    assert PROVIDERS.get("no_such_cloud") is None
    assert "no_such_cloud" not in PROVIDERS


def test_import_as_litellm():
    """`import lmgate as litellm` code finds the reference names it uses."""
    import lmgate as litellm

    for name in (
        "completion",
        "acompletion",
        "embedding",
        "ModelResponse",
        "RateLimitError",
        "drop_params",
        "success_callback",
    ):
        assert hasattr(litellm, name), name
