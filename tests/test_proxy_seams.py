"""The proxy's seams: a second key backend plugged into create_app, and the in-flight middleware.

In process (httpx over ASGI) against mock deployments: what is under test is how the parts
meet (the identity a backend returns reaches hooks, payloads and routes; a refusal is the
route's 401; in-flight counts exactly the LLM requests, streams to their last chunk).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import httpx
from prom import samples, value

import lmgate
from lmgate.integrations.custom_logger import CustomLogger
from lmgate.proxy.app import create_app
from lmgate.proxy.auth import UserAPIKeyAuth, hash_key, unauthorized
from lmgate.proxy.config import load_config
from lmgate.testing import CapturingLogger

HI = [{"role": "user", "content": "Hi"}]
TEAM_KEY = "sk-team-a-0123456789"


class TeamKeys:
    """A backend of the shape virtual keys will have: async, a lookup, an identity with a team."""

    def __init__(self) -> None:
        self.asked: list[str | None] = []

    async def authenticate(self, key: str | None, conn: Any) -> UserAPIKeyAuth:
        self.asked.append(key)
        if key != TEAM_KEY:
            raise unauthorized("unknown virtual key")
        return UserAPIKeyAuth(hash_key(key), key_alias="search-bot", team_id="team-a", models=["fast"])


def make_app(tmp_path: Path, backend: Any = None) -> Any:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent("""
        model_list:
          - model_name: fast
            litellm_params: {model: openai/gpt-4o-mini, mock_response: "hello there", api_key: sk-mock}
        """)
    )
    return create_app(load_config(path), backend=backend)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy")


class SeesCaller(CustomLogger):
    """Records the identity the pre-call hook is given."""

    def __init__(self) -> None:
        super().__init__()
        self.users: list[Any] = []

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str
    ) -> Any:
        self.users.append(user_api_key_dict)
        return None


async def test_a_second_backend_decides_who_calls_and_its_identity_reaches_hooks_and_payloads(
    tmp_path: Path,
) -> None:
    """create_app(backend=...) replaces the master key: its identity is what hooks and log payloads see."""
    backend = TeamKeys()
    app = make_app(tmp_path, backend)
    hook, capture = SeesCaller(), CapturingLogger()
    lmgate.callbacks.extend([hook, capture])
    async with client(app) as c:
        r = await c.post(
            "/v1/chat/completions", headers={"x-api-key": TEAM_KEY}, json={"model": "fast", "messages": HI}
        )
    assert r.status_code == 200, r.text
    assert backend.asked == [TEAM_KEY]
    [user] = hook.users
    assert (user.team_id, user["key_alias"], user.models) == ("team-a", "search-bot", ["fast"])
    assert user.api_key == hash_key(TEAM_KEY)
    assert await lmgate.aflush_callbacks(10)
    [event] = capture.of("async_log_success_event")
    metadata = event.kwargs["standard_logging_object"]["metadata"]
    assert (metadata["user_api_key_team_id"], metadata["user_api_key_alias"]) == ("team-a", "search-bot")


async def test_a_refused_key_is_the_routes_401_and_counts_like_any_failure(tmp_path: Path) -> None:
    """The backend's refusal: 401 in the OpenAI shape on the LLM and ops routes, counted in the
    metrics of the LLM route; the probes answer without a key and never ask the backend."""
    backend = TeamKeys()
    app = make_app(tmp_path, backend)
    async with client(app) as c:
        chat = await c.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer sk-wrong"},
            json={"model": "fast", "messages": HI},
        )
        models = await c.get("/v1/models", headers={"Authorization": "Bearer sk-wrong"})
        live = await c.get("/health/liveliness")
        ready = await c.get("/health/readiness")
        ready_refused = await c.get("/health/readiness", headers={"Authorization": "Bearer sk-wrong"})
        ready_detail = await c.get("/health/readiness", headers={"Authorization": f"Bearer {TEAM_KEY}"})
    for r in (chat, models, ready_refused):
        assert r.status_code == 401
        assert r.json()["error"]["message"] == "unknown virtual key"
        assert r.json()["error"]["code"] == "invalid_api_key"
    assert (live.status_code, ready.status_code) == (200, 200)
    assert "version" not in ready.json() and "version" in ready_detail.json()
    assert backend.asked == ["sk-wrong", "sk-wrong", "sk-wrong", TEAM_KEY]
    assert app.state.proxy.metrics.requests == {("chat", "other", 401): 1}


async def test_a_malformed_authorization_header_is_named_whatever_the_backend_says(tmp_path: Path) -> None:
    """A header that holds no key reaches the backend as no key; the 401 says what was wrong with the header."""
    app = make_app(tmp_path, TeamKeys())
    async with client(app) as c:
        r = await c.get("/v1/models", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert r.status_code == 401
    assert "neither 'Bearer <key>' nor a bare key" in r.json()["error"]["message"]


class ReadsInFlight(CustomLogger):
    """Reads the in-flight count while a stream's chunks go out."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: Any = None
        self.seen: list[int] = []

    async def async_post_call_streaming_hook(self, user_api_key_dict: Any, response: Any) -> Any:
        self.seen.append(self.metrics.in_flight)
        return None


async def test_in_flight_counts_llm_requests_to_their_last_chunk_and_nothing_else(tmp_path: Path) -> None:
    """A stream is in flight while its chunks go out and not after; scrapes and probes are never counted."""
    app = make_app(tmp_path)
    reader = ReadsInFlight()
    reader.metrics = app.state.proxy.metrics
    lmgate.callbacks.append(reader)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", json={"model": "fast", "messages": HI, "stream": True})
        assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
        assert reader.seen and set(reader.seen) == {1}
        assert app.state.proxy.metrics.in_flight == 0
        scrape = await c.get("/metrics")
        assert (await c.get("/health/liveliness")).status_code == 200
    assert value(samples(scrape.text), "lmgate_requests_in_flight") == 0
    assert app.state.proxy.metrics.in_flight == 0
