"""``answered_by_pre_call_hook`` is the proxy's to say: a client's metadata naming it is
stripped (kept under ``requester_metadata`` only), so a call a provider answered is never logged
as one a hook answered. Through a real ``lmgate serve`` and a ``generic_api`` logger."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes import FakeProvider, LogReceiver
from test_proxy_server import Served

pytest.importorskip("starlette")

MASTER = "sk-master-claim-hook-0123456789"


@pytest.fixture
def served(tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver) -> Iterator[Served]:
    config = tmp_path / "config.yaml"
    config.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake_provider.base_url}/v1, api_key: sk-upstream-0123456789}}
        litellm_settings:
          callbacks: [sink]
        callback_settings:
          sink: {{callback_type: generic_api, endpoint: {log_receiver.url}, batch_size: 1, spool_dir: {tmp_path / "spool"}}}
        general_settings:
          master_key: {MASTER}
        """)
    )
    server = Served(config, tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def test_a_client_cannot_say_a_hook_answered_its_call(served: Served, log_receiver: LogReceiver) -> None:
    r = httpx.post(
        f"{served.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {MASTER}"},
        json={
            "model": "fast",
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"answered_by_pre_call_hook": True, "mine": 1},
        },
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert log_receiver.wait_for_records(1, timeout=10)
    [record] = log_receiver.records
    metadata = record["metadata"]
    assert not metadata.get("answered_by_pre_call_hook")
    assert metadata["requester_metadata"]["answered_by_pre_call_hook"] is True  # what was sent
