"""A call answered by a proxy pre-call hook (``async_pre_call_hook`` returning a string) is
logged with the same identity as a call that reached a provider: the end user the request was
made for (``user``; ``metadata.user_id`` on ``/v1/messages``), the key's hash and alias, its team
and its user. Through a real ``lmgate serve`` with virtual keys and a ``generic_api`` logger."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes import FakeProvider, LogReceiver
from test_proxy_server import Served

pytest.importorskip("starlette")

MASTER = "sk-master-hook-answer-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER}"}

HOOKS = """
from lmgate.integrations.custom_logger import CustomLogger


class AnswerEverything(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        return "answered by the hook"


answer_everything = AnswerEverything()
"""


def write_config(tmp: Path, fake: FakeProvider, receiver: LogReceiver) -> Path:
    (tmp / "answer_hooks.py").write_text(HOOKS)
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: sk-upstream-0123456789}}
        litellm_settings:
          callbacks: [answer_hooks.answer_everything, sink]
        callback_settings:
          sink: {{callback_type: generic_api, endpoint: {receiver.url}, batch_size: 1, spool_dir: {tmp / "spool"}}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        """)
    )
    return path


@pytest.fixture
def served(tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver) -> Iterator[Served]:
    server = Served(
        write_config(tmp_path, fake_provider, log_receiver),
        tmp_path,
        args=["--data-dir", str(tmp_path / "data")],
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def make_key(served: Served) -> dict[str, Any]:
    team = httpx.post(
        f"{served.url}/team/new", headers=ADMIN, json={"team_id": "t-9", "team_alias": "search"}
    )
    assert team.status_code == 200, team.text
    made = httpx.post(
        f"{served.url}/key/generate",
        headers=ADMIN,
        json={"key_alias": "bot", "team_id": "t-9", "user_id": "u-7"},
    )
    assert made.status_code == 200, made.text
    return made.json()  # type: ignore[no-any-return]


# (route, body): every API the proxy serves over chat, each naming its end user its own way
REQUESTS = [
    (
        "/v1/chat/completions",
        {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "user": "end-7"},
    ),
    (
        "/v1/chat/completions",
        {"model": "fast", "messages": [{"role": "user", "content": "hi"}], "user": "end-7", "stream": True},
    ),
    (
        "/v1/messages",
        {
            "model": "fast",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"user_id": "end-7"},
        },
    ),
    ("/v1/responses", {"model": "fast", "input": "hi", "user": "end-7"}),
]


@pytest.mark.parametrize(("route", "body"), REQUESTS, ids=["chat", "chat-stream", "messages", "responses"])
def test_a_hook_answered_call_is_logged_with_its_end_user_and_key_identity(
    served: Served, log_receiver: LogReceiver, fake_provider: FakeProvider, route: str, body: dict[str, Any]
) -> None:
    made = make_key(served)
    r = httpx.post(
        f"{served.url}{route}", headers={"Authorization": f"Bearer {made['key']}"}, json=body, timeout=10
    )
    assert r.status_code == 200, r.text
    if body.get("stream"):  # the answer in pieces: its deltas put together
        deltas = [orjson.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        text = "".join(d["choices"][0]["delta"].get("content") or "" for d in deltas if d["choices"])
    else:
        text = r.text
    assert "answered by the hook" in text
    assert log_receiver.wait_for_records(1, timeout=10)
    [record] = log_receiver.records
    metadata = record["metadata"]
    assert metadata["answered_by_pre_call_hook"] is True
    assert record["end_user"] == "end-7"
    assert metadata["user_api_key_end_user_id"] == "end-7"
    assert metadata["user_api_key_hash"] == made["token"]
    assert metadata["user_api_key_alias"] == "bot"
    assert (metadata["user_api_key_team_id"], metadata["user_api_key_team_alias"]) == ("t-9", "search")
    assert metadata["user_api_key_user_id"] == "u-7"
    assert metadata["user_api_key_request_route"] == route
    assert fake_provider.requests == []  # no provider was called
