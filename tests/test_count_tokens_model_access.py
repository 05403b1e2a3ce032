"""``/v1/messages/count_tokens`` refuses a model the key may not use, as ``/v1/messages`` does
(a Claude deployment's count goes upstream with the deployment's credentials). Through a real
``lmgate serve`` with virtual keys."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes import FakeProvider
from test_proxy_server import Served

pytest.importorskip("starlette")

MASTER = "sk-master-count-access-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}


@pytest.fixture
def served(tmp_path: Path, fake_provider: FakeProvider) -> Iterator[Served]:
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake_provider.base_url}/v1, api_key: sk-upstream-0123456789}}
          - model_name: other
            litellm_params: {{model: openai/gpt-4o, api_base: {fake_provider.base_url}/v1, api_key: sk-upstream-0123456789}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        """)
    )
    server = Served(config, tmp_path, args=["--data-dir", str(tmp_path / "data")])
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_count_tokens_refuses_a_model_the_key_may_not_use(served: Served) -> None:
    made = httpx.post(f"{served.url}/key/generate", headers=ADMIN, json={"models": ["fast"]})
    assert made.status_code == 200, made.text
    headers = {"Authorization": f"Bearer {made.json()['key']}"}
    body = {"messages": [{"role": "user", "content": "hi"}]}
    allowed = httpx.post(
        f"{served.url}/v1/messages/count_tokens", headers=headers, json={**body, "model": "fast"}
    )
    assert allowed.status_code == 200, allowed.text
    refused = httpx.post(
        f"{served.url}/v1/messages/count_tokens", headers=headers, json={**body, "model": "other"}
    )
    assert refused.status_code == 401, refused.text
    assert "not allowed to access model" in refused.json()["error"]["message"]  # the Messages API error shape
