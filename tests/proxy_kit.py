"""Proxies for the API-format tests (``/v1/messages``, ``/v1/responses``, chat), shared.

* ``BackendsProxy``: a real ``lmgate serve`` over three deployments of one model group name
  each: ``mock`` (a mock answer), ``openai`` (OpenAI's API on the fake provider) and ``claude``
  (Anthropic's API on the fake provider); the master and upstream keys come from the
  environment under names of the test module's choosing.
* ``hooks_proxy``: the in-process app of tests/proxy_configs/hooks.yaml (every proxy hook, in
  tests/proxy_configs/custom_callbacks.py) and its handler, reset.
* ``disconnect_mid_stream``: drives an in-process app through one streamed request over raw ASGI
  and leaves as soon as the first body bytes arrive, the upstream still holding the rest.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeProvider
from test_proxy_server import Served

HOOKS_CONFIG = Path(__file__).parent / "proxy_configs" / "hooks.yaml"
HOOKS_MASTER = "sk-master-hooks-0123456789"
BACKENDS = ["mock", "openai", "claude"]
MOCK_TEXT = "hello from the mock"


@dataclass(frozen=True)
class BackendsProxy:
    """How a test module runs the three-backend proxy: its keys and the environment names
    the config reads them from."""

    master: str
    upstream: str
    master_env: str
    upstream_env: str

    @property
    def env(self) -> dict[str, str]:
        return {self.upstream_env: self.upstream, self.master_env: self.master}

    def write_config(self, tmp: Path, fake: FakeProvider, extra: str = "") -> Path:
        path = tmp / "config.yaml"
        path.write_text(
            textwrap.dedent(f"""
            model_list:
              - model_name: mock
                litellm_params: {{model: openai/gpt-4o-mini, mock_response: {MOCK_TEXT}}}
              - model_name: openai
                litellm_params:
                  model: openai/gpt-4o-mini
                  api_base: {fake.base_url}/v1
                  api_key: os.environ/{self.upstream_env}
              - model_name: claude
                litellm_params:
                  model: anthropic/claude-sonnet-4-20250514
                  api_base: {fake.base_url}
                  api_key: os.environ/{self.upstream_env}
            general_settings:
              master_key: os.environ/{self.master_env}
            """)
            + textwrap.dedent(extra)
        )
        return path

    def fixtures(self, name: str) -> tuple[Any, Any]:
        """A test module's ``fake`` (the fake provider) and ``served`` (the proxy on it) fixtures,
        one of each for the module: ``fake, served = PROXY.fixtures("messages")``."""

        @pytest.fixture(scope="module")
        def fake() -> Iterator[FakeProvider]:
            with FakeProvider() as fp:
                yield fp

        @pytest.fixture(scope="module")
        def served(tmp_path_factory: pytest.TempPathFactory, fake: FakeProvider) -> Iterator[Served]:
            with self.serve(tmp_path_factory.mktemp(name), fake) as server:
                yield server

        return fake, served

    @contextmanager
    def serve(self, tmp: Path, fake: FakeProvider) -> Iterator[Served]:
        """The proxy on this config, ready; stopped at the end."""
        server = Served(self.write_config(tmp, fake), tmp, self.env)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


def fast_and_claude(fake: FakeProvider, upstream: str) -> str:
    """A ``model_list`` for ``make_app`` (tests/test_proxy_app.py): ``fast``, OpenAI's API, and
    ``claude``, Anthropic's, both on ``fake`` with the key ``upstream``."""
    return f"""
    model_list:
      - model_name: fast
        litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: {upstream}}}
      - model_name: claude
        litellm_params: {{model: anthropic/claude-sonnet-4-20250514, api_base: {fake.base_url}, api_key: {upstream}}}
    """


def hooks_proxy(fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The app of tests/proxy_configs/hooks.yaml over ``fake_provider``, and its ``ProxyHandler``
    with what it recorded forgotten."""
    import lmgate
    from lmgate.proxy.app import create_app
    from lmgate.proxy.config import load_config

    monkeypatch.setenv("LMGATE_TEST_PROVIDER", f"{fake_provider.base_url}/v1")
    monkeypatch.setenv("LMGATE_TEST_UPSTREAM_KEY", "sk-upstream-hooks-0123456789")
    monkeypatch.setenv("LMGATE_TEST_MASTER_KEY", HOOKS_MASTER)
    app = create_app(load_config(HOOKS_CONFIG))
    handler = next(c for c in lmgate.callbacks if type(c).__name__ == "ProxyHandler")
    handler.calls.clear()
    handler.wait_for_provider = None
    handler.moderation_saw_provider_call = None
    return app, handler


async def disconnect_mid_stream(
    app: Any, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
) -> list[dict[str, Any]]:
    """POST ``body`` to ``path`` of ``app`` (a streamed request), and go away once the first
    body bytes are out; returns every ASGI message the app sent, after it has finished."""
    sent: list[dict[str, Any]] = []
    got_event = asyncio.Event()
    disconnect = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            got_event.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [*headers, (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("proxy", 80),
    }
    task = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait_for(got_event.wait(), 10)
    disconnect.set()  # the upstream is still holding the rest of the stream
    await asyncio.wait_for(task, 10)
    return sent


__all__ = [
    "BACKENDS",
    "HOOKS_CONFIG",
    "HOOKS_MASTER",
    "MOCK_TEXT",
    "BackendsProxy",
    "disconnect_mid_stream",
    "fast_and_claude",
    "hooks_proxy",
]
