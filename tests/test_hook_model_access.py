"""A pre-call hook that sends the request to another model is held to the key's ``models`` too:
the model is checked again after the hooks (``routes/llm.py``; without hooks the group is the
model already checked). Through a real ``lmgate serve``."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes import FakeProvider
from test_proxy_server import Served

pytest.importorskip("starlette")

MASTER = "sk-master-hook-model-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}

HOOKS = """
from lmgate.integrations.custom_logger import CustomLogger


class Rerouting(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        if data.get("metadata", {}).get("requester_metadata", {}).get("reroute"):
            data["model"] = "dear"
        return data


rerouting = Rerouting()
"""


@pytest.fixture
def served(tmp_path: Path, fake_provider: FakeProvider) -> Iterator[Served]:
    (tmp_path / "reroute_hooks.py").write_text(HOOKS)
    config = tmp_path / "config.yaml"
    upstream = f"api_base: {fake_provider.base_url}/v1, api_key: sk-upstream-0123456789"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, {upstream}}}
          - model_name: dear
            litellm_params: {{model: openai/gpt-4o, {upstream}}}
        litellm_settings:
          callbacks: [reroute_hooks.rerouting]
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


def test_a_hook_that_reroutes_to_a_model_outside_the_key_s_models_is_refused(served: Served) -> None:
    made = httpx.post(f"{served.url}/key/generate", headers=ADMIN, json={"models": ["fast"]}, timeout=10)
    assert made.status_code == 200, made.text
    headers = {"Authorization": f"Bearer {made.json()['key']}"}
    body = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}

    def ask(**extra: object) -> httpx.Response:
        return httpx.post(
            f"{served.url}/v1/chat/completions", headers=headers, json={**body, **extra}, timeout=10
        )

    assert ask().status_code == 200  # the model the key may call
    refused = ask(metadata={"reroute": True})  # the hook sends it to "dear"
    assert refused.status_code == 401, refused.text
    error = refused.json()["error"]
    assert error["type"] == "key_model_access_denied" and "Tried to access dear" in error["message"]
