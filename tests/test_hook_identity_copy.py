"""A pre-call hook gets its own copy of the caller's identity: what it changes on
``user_api_key_dict`` (its metadata, its lists, its fields) is gone on the key's next request,
as with the reference (which builds a ``UserAPIKeyAuth`` per request). The virtual-key backend
shares one identity per cached row between the key's requests. Through a real ``lmgate serve``."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes import FakeProvider
from test_proxy_server import Served

pytest.importorskip("starlette")

MASTER = "sk-master-hook-copy-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}

HOOKS = """
from lmgate.integrations.custom_logger import CustomLogger


class Counting(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        seen = user_api_key_dict.metadata.get("calls", 0)
        user_api_key_dict.metadata["calls"] = seen + 1
        user_api_key_dict.models.append("extra-model")
        return f"calls={seen} models={len(user_api_key_dict.models)}"


counting = Counting()
"""


@pytest.fixture
def served(tmp_path: Path, fake_provider: FakeProvider) -> Iterator[Served]:
    (tmp_path / "copy_hooks.py").write_text(HOOKS)
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake_provider.base_url}/v1, api_key: sk-upstream-0123456789}}
        litellm_settings:
          callbacks: [copy_hooks.counting]
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


@pytest.mark.parametrize("which", ["virtual", "master"])
def test_what_a_hook_changes_on_the_identity_does_not_reach_the_next_request(
    served: Served, which: str
) -> None:
    if which == "virtual":
        made = httpx.post(f"{served.url}/key/generate", headers=ADMIN, json={"models": ["fast"]})
        assert made.status_code == 200, made.text
        headers = {"Authorization": f"Bearer {made.json()['key']}"}
        models = 2  # fast + the hook's
    else:
        headers = ADMIN
        models = 1
    body = {"model": "fast", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(3):
        r = httpx.post(f"{served.url}/v1/chat/completions", headers=headers, json=body, timeout=10)
        assert r.status_code == 200, r.text
        assert f"calls=0 models={models}" in r.text
