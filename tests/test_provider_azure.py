"""Azure OpenAI (``azure/<deployment>``) through the fake provider: deployment paths, api-version, api-key header, env."""

from __future__ import annotations

import asyncio

import pytest
from fakes import DEFAULT_TEXT
from helpers import MODE_IDS, MODES, call

import lmgate
from lmgate.providers.azure import DEFAULT_AZURE_API_VERSION

KEY = "azure-test-key-0123456789abcdef"


@pytest.fixture
def fake_provider(fake_provider_session):
    """The session's fake provider, reset: a fresh server per test would cost its 50 ms shutdown poll."""
    fake_provider_session.reset()
    return fake_provider_session


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in (
        "AZURE_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "AZURE_API_BASE",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_API_VERSION",
        "OPENAI_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)


def text_of(result, stream):
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in result)
    return result.choices[0].message.content


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_deployment_path_version_and_key_header(fake_provider, mode, stream):
    """azure/<deployment> posts to /openai/deployments/<d>/chat/completions?api-version=… with an api-key header."""
    result = call(
        mode,
        stream,
        model="azure/my-gpt4o",
        api_base=fake_provider.base_url,
        api_key=KEY,
        api_version="2024-06-01",
    )
    assert text_of(result, stream) == DEFAULT_TEXT
    req = fake_provider.requests[-1]
    assert req.path == "/openai/deployments/my-gpt4o/chat/completions"
    assert req.query == {"api-version": "2024-06-01"}
    assert req.headers["api-key"] == KEY
    assert "authorization" not in req.headers
    assert req.json["model"] == "my-gpt4o"
    if stream:
        assert req.json["stream_options"] == {"include_usage": True}
        assert result[-1].usage.total_tokens == 12
    else:
        assert result.model == fake_provider.azure_model  # Azure names the underlying model


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_key_base_and_version_from_env(fake_provider, monkeypatch, mode):
    """AZURE_API_KEY, AZURE_API_BASE and AZURE_API_VERSION are read when the call names none of them."""
    monkeypatch.setenv("AZURE_API_KEY", KEY)
    monkeypatch.setenv("AZURE_API_BASE", fake_provider.base_url + "/")
    monkeypatch.setenv("AZURE_API_VERSION", "2025-01-01-preview")
    result = call(mode, False, model="azure/dep-env")
    assert result.choices[0].message.content == DEFAULT_TEXT
    req = fake_provider.requests[-1]
    assert req.path == "/openai/deployments/dep-env/chat/completions"
    assert req.query == {"api-version": "2025-01-01-preview"}
    assert req.headers["api-key"] == KEY
    assert result._hidden_params["custom_llm_provider"] == "azure"
    assert result._hidden_params["api_base"] == fake_provider.base_url


def test_default_api_version(fake_provider):
    """Without api_version or env, a documented default api-version is sent."""
    lmgate.completion(
        model="azure/d",
        messages=[{"role": "user", "content": "x"}],
        api_base=fake_provider.base_url,
        api_key=KEY,
    )
    assert fake_provider.requests[-1].query == {"api-version": DEFAULT_AZURE_API_VERSION}


def test_missing_key_names_the_env_var_even_with_api_base(fake_provider):
    """Azure without a key raises AuthenticationError naming AZURE_API_KEY, before anything is sent."""
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(
            model="azure/d", messages=[{"role": "user", "content": "x"}], api_base=fake_provider.base_url
        )
    assert "AZURE_API_KEY" in str(info.value)
    assert info.value.llm_provider == "azure"
    assert fake_provider.requests == []


def test_missing_base_names_the_env_var():
    """Azure without api_base raises an error naming AZURE_API_BASE."""
    with pytest.raises(lmgate.BadRequestError) as info:
        lmgate.completion(model="azure/d", messages=[{"role": "user", "content": "x"}], api_key=KEY)
    assert "AZURE_API_BASE" in str(info.value)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embeddings_on_a_deployment(fake_provider, mode):
    """azure/<deployment> embeddings go to /openai/deployments/<d>/embeddings with api-version."""
    kwargs = {"model": "azure/emb", "input": ["a"], "api_base": fake_provider.base_url, "api_key": KEY}
    e = lmgate.embedding(**kwargs) if mode == "sync" else asyncio.run(lmgate.aembedding(**kwargs))
    assert len(e.data) == 1
    req = fake_provider.requests[-1]
    assert req.path == "/openai/deployments/emb/embeddings"
    assert req.query["api-version"] == DEFAULT_AZURE_API_VERSION
    assert req.headers["api-key"] == KEY


def test_rate_limit_headers_in_hidden_params(fake_provider):
    """Azure's x-ratelimit-* headers reach _hidden_params['additional_headers']."""
    r = lmgate.completion(
        model="azure/d",
        messages=[{"role": "user", "content": "x"}],
        api_base=fake_provider.base_url,
        api_key=KEY,
    )
    headers = r._hidden_params["additional_headers"]
    assert headers["x-ratelimit-remaining-requests"] == "9999"
    assert "llm_provider-apim-request-id" in headers
