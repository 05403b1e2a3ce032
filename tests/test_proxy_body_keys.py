"""What a request body may carry on to a provider, on every route that takes one.

A client's unknown keys go on to the provider (``top_k`` and other vendor parameters must
pass, as the reference passes "provider-specific params"), but no key may change where the
call goes, with which credentials, or which callbacks hear of it: ``api_base``, ``api_key``,
``extra_headers``, ``callbacks``, the reference's own configuration (``litellm_params``,
``model_list``, ``user_config``), cloud credentials (``aws_*``, ``vertex_*``) and any key named
like a credential. Through a real ``lmgate serve``: a second fake provider stands where a body
would redirect the call, and a second log receiver where it would add a callback; neither may
hear anything, and the real provider must get the configured key and a body without those keys.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeProvider, LogReceiver
from test_proxy_server import Served

pytest.importorskip("starlette")

MASTER = "sk-master-body-keys-0123456789"
UPSTREAM = "sk-upstream-body-keys-0123456789"
EVIL_KEY = "sk-evil-body-keys-0123456789"
HI = [{"role": "user", "content": "hi"}]


def write_config(tmp: Path, fake: FakeProvider, sink: LogReceiver, other: LogReceiver) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
          - model_name: embed
            litellm_params: {{model: openai/text-embedding-3-small, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
          - model_name: claude
            litellm_params: {{model: anthropic/claude-3-5-haiku-20241022, api_base: {fake.base_url}, api_key: {UPSTREAM}}}
        litellm_settings:
          callbacks: [sink]
        callback_settings:
          sink: {{callback_type: generic_api, endpoint: {sink.url}, batch_size: 1, spool_dir: {tmp / "spool-sink"}}}
          other: {{callback_type: generic_api, endpoint: {other.url}, batch_size: 1, spool_dir: {tmp / "spool-other"}}}
        general_settings:
          master_key: {MASTER}
        """)
    )
    return path


class Setup:
    def __init__(
        self, served: Served, fake: FakeProvider, evil: FakeProvider, sink: LogReceiver, other: LogReceiver
    ):
        self.served, self.fake, self.evil, self.sink, self.other = served, fake, evil, sink, other


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("body-keys")
    with FakeProvider() as fake, FakeProvider() as evil, LogReceiver() as sink, LogReceiver() as other:
        served = Served(write_config(tmp, fake, sink, other), tmp, args=["--no-store"])
        try:
            served.wait_ready()
            yield Setup(served, fake, evil, sink, other)
        finally:
            served.stop()


def nasty(evil: FakeProvider) -> dict[str, Any]:
    """Every key a body might use to redirect the call, swap its credentials or add callbacks."""
    url = f"{evil.base_url}/v1"
    return {
        "api_base": url,
        "base_url": url,
        "api_key": EVIL_KEY,
        "api_version": "2099-01-01",
        "extra_headers": {"Authorization": f"Bearer {EVIL_KEY}", "x-evil": "1"},
        "headers": {"Authorization": f"Bearer {EVIL_KEY}"},
        "extra_body": {"api_base": url, "evil_param": 1},
        "callbacks": ["other"],
        "success_callback": ["other"],
        "failure_callback": ["other"],
        "litellm_params": {"api_base": url, "api_key": EVIL_KEY},
        "litellm_metadata": {"callbacks": ["other"]},
        "model_list": [{"model_name": "fast", "litellm_params": {"model": "openai/x", "api_base": url}}],
        "user_config": {"model_list": [{"model_name": "fast", "litellm_params": {"api_base": url}}]},
        "fallbacks": ["claude"],
        "custom_llm_provider": "anthropic",
        "mock_response": "mocked by the client",
        "aws_access_key_id": "AKIAEVILEVILEVIL",
        "aws_secret_access_key": EVIL_KEY,
        "aws_region_name": "evil-1",
        "aws_bedrock_runtime_endpoint": url,
        "aws_web_identity_token": EVIL_KEY,
        "vertex_credentials": '{"type": "service_account"}',
        "vertex_project": "evil",
        "azure_ad_token": EVIL_KEY,
        "anthropic_api_key": EVIL_KEY,
        "organization": "org-evil",
    }


# (route, body before the nasty keys, the provider path the call must reach, a vendor
# parameter that must reach the provider as sent, or None where the route has none). A request
# bridged over chat is checked strictly, as the API it speaks does: a key it cannot translate is
# a 400 naming it, before any provider is called (upstream_path None).
ROUTES = [
    ("/v1/chat/completions", {"model": "fast", "messages": HI, "top_k": 3}, "/v1/chat/completions", "top_k"),
    ("/v1/embeddings", {"model": "embed", "input": "hi"}, "/v1/embeddings", None),
    (
        "/v1/messages",
        {"model": "claude", "max_tokens": 5, "messages": HI, "top_k": 3},
        "/v1/messages",
        "top_k",
    ),
    ("/v1/messages", {"model": "fast", "max_tokens": 5, "messages": HI, "top_k": 3}, None, None),
    ("/v1/responses", {"model": "fast", "input": "hi"}, "/v1/responses", None),
    ("/v1/responses", {"model": "claude", "input": "hi"}, None, None),
    (
        "/v1/completions",
        {"model": "fast", "prompt": "hi", "max_tokens": 5, "top_k": 3},
        "/v1/completions",
        "top_k",
    ),
]
IDS = [
    "chat",
    "embeddings",
    "messages-claude",
    "messages-bridged",
    "responses",
    "responses-bridged",
    "completions",
]


@pytest.mark.parametrize(("route", "body", "upstream_path", "vendor"), ROUTES, ids=IDS)
def test_no_body_key_redirects_the_call_swaps_its_key_or_adds_a_callback(
    setup: Setup, route: str, body: dict[str, Any], upstream_path: str | None, vendor: str | None
) -> None:
    setup.fake.reset()
    before = len(setup.sink.records)
    keys = nasty(setup.evil)
    sent = {**body, **keys, "metadata": {"callbacks": ["other"], "logging": [{"callback_name": "other"}]}}
    if route == "/v1/messages":  # Anthropic's metadata holds a user id only
        sent["metadata"] = {"user_id": "end-1"}
    r = httpx.post(
        f"{setup.served.url}{route}", headers={"Authorization": f"Bearer {MASTER}"}, json=sent, timeout=10
    )
    assert "mocked by the client" not in r.text
    assert setup.evil.requests == []
    if upstream_path is None:
        assert r.status_code == 400, r.text
        assert any(name in r.text for name in keys), r.text  # names the field it refused
        assert setup.fake.requests == []
    else:
        assert r.status_code == 200, r.text
        [request] = setup.fake.requests
        assert request.path == upstream_path
        credential = request.headers.get("authorization") or f"Bearer {request.headers.get('x-api-key')}"
        assert credential == f"Bearer {UPSTREAM}"
        assert EVIL_KEY not in str(request.headers) and EVIL_KEY not in request.raw.decode()
        assert "x-evil" not in request.headers
        forwarded = set(request.json or {})
        assert not forwarded & set(keys), forwarded
        assert "evil_param" not in forwarded
        if vendor is not None:
            assert request.json[vendor] == body[vendor]
        assert setup.sink.wait_for_records(before + 1, timeout=10)
    assert setup.other.records == []


def test_a_credential_named_or_configuration_key_never_reaches_a_provider() -> None:
    """The rule behind the list: lmgate's control parameters, the reference's configuration
    names, cloud credential prefixes and credential-shaped names are the client's to never set;
    vendor parameters and OpenAI's own (``prompt_cache_key``, ``max_completion_tokens``) pass."""
    from lmgate.proxy.client_body import client_may_set

    for name in (
        "api_base",
        "litellm_params",
        "model_list",
        "user_config",
        "aws_web_identity_token",
        "vertex_ai_credentials",
        "azure_ad_token",
        "my_api_key",
        "client_secret",
        "x-api-key",
        "litellm_anything",
        "headers",
        "organization",
        "fallbacks",
        "callbacks",
    ):
        assert not client_may_set(name), name
    for name in (
        "top_k",
        "min_p",
        "repetition_penalty",
        "prompt_cache_key",
        "max_completion_tokens",
        "max_tokens",
        "safety_identifier",
        "stop_token_ids",
        "timeout",
        "user",
        "reasoning_effort",
    ):
        assert client_may_set(name), name
