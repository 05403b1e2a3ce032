"""The YAML samples of the generic API callback page load as written and deliver to the endpoint.

Each config in configs/ is the page's sample (indentation restored, which the saved page lost),
with only the endpoint pointed at the local receiver. It runs through the in-process proxy: one
chat request, then a flush, then the receiver's view is checked against what the page promises.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

import lmgate
from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config

CONFIGS = Path(__file__).parent / "configs"
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def env(monkeypatch, fake_provider, log_receiver):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-upstream-key-0000000000000000")
    monkeypatch.setenv("OPENAI_API_BASE", fake_provider.base_url + "/v1")
    monkeypatch.setenv("RECEIVER_URL", log_receiver.url)
    return monkeypatch


async def post_one(config: str, stream: bool = False) -> httpx.Response:
    app = create_app(load_config(CONFIGS / config))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as client:
        response = await client.post(
            "/v1/chat/completions", json={"model": "gpt-3.5-turbo", "messages": HI, "stream": stream}
        )
    assert await lmgate.aflush_callbacks(10)
    return response


async def test_quick_start(env, log_receiver):
    """Quick Start: the named generic_api callback posts a JSON array with the configured Authorization."""
    response = await post_one("quick_start.yaml")
    assert response.status_code == 200
    (request,) = log_receiver.requests
    assert request.headers["authorization"] == "Bearer sk-1234"
    assert request.headers["content-type"].startswith("application/json")
    assert isinstance(orjson.loads(request.decoded_body), list)
    (record,) = log_receiver.records
    for field in ("id", "call_type", "model", "messages", "response", "usage", "cost", "startTime", "endTime", "metadata"):
        assert field in record, field  # the page's "Payload Format"
    assert record["model"] == "gpt-3.5-turbo" and record["messages"] == HI


async def test_basic_setup_headers_and_event_types(env, log_receiver, fake_provider):
    """Basic Setup: every header is sent, and both event types (success and failure) are delivered."""
    from fakes import Reply

    assert (await post_one("basic_setup.yaml")).status_code == 200
    fake_provider.enqueue(Reply(status=500))
    assert (await post_one("basic_setup.yaml")).status_code == 500
    assert [r["status"] for r in log_receiver.records] == ["success", "failure"]
    assert all(r.headers["custom-header"] == "value" for r in log_receiver.requests)


async def test_preconfigured_rubrik_overridden(env, log_receiver):
    """Pre-configured: the rubrik preset with the endpoint and ${RUBRIK_API_KEY} header overridden."""
    env.setenv("RUBRIK_API_KEY", "rk-secret-value-123456")
    assert (await post_one("preconfigured.yaml")).status_code == 200
    (request,) = log_receiver.requests
    assert request.headers["authorization"] == "Bearer rk-secret-value-123456"
    assert log_receiver.records[0]["status"] == "success"


async def test_environment_variables(env, log_receiver):
    """Environment Variables: GENERIC_LOGGER_ENDPOINT and GENERIC_LOGGER_HEADERS configure 'generic_api'."""
    env.setenv("GENERIC_LOGGER_ENDPOINT", log_receiver.url)
    env.setenv("GENERIC_LOGGER_HEADERS", "Authorization=Bearer token,Custom-Header=value")
    assert (await post_one("env_vars.yaml")).status_code == 200
    (request,) = log_receiver.requests
    assert request.headers["authorization"] == "Bearer token" and request.headers["custom-header"] == "value"


@pytest.mark.parametrize("fmt", ["json_array", "ndjson", "single"])
async def test_log_formats(env, log_receiver, fmt):
    """Log Format Options: json_array is one array, ndjson one record per line, single one request per record."""
    for _ in range(2):
        assert (await post_one(f"log_format_{fmt}.yaml", stream=True)).status_code == 200
    body = log_receiver.requests[0].decoded_body
    if fmt == "json_array":
        assert isinstance(orjson.loads(body), list)
    elif fmt == "ndjson":
        lines = body.strip().split(b"\n")
        assert all(isinstance(orjson.loads(line), dict) for line in lines)
        assert log_receiver.requests[0].headers["content-type"].startswith("application/x-ndjson")
    else:
        assert isinstance(orjson.loads(body), dict)
        assert len(log_receiver.requests) == 2
    assert len(log_receiver.records) == 2
    assert all(r["stream"] is True for r in log_receiver.records)
