"""A real ``lmgate serve`` in front of an upstream that echoes every credential it receives:
the deployment's key and what its ``api_base`` holds reach neither the client, nor the log
receiver, nor the server's stderr, nor a CustomLogger or a proxy hook (issue 11 point 11);
and identity fields in the log records are the proxy's, whatever the client sends (point 8)."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeProvider, LogReceiver, Reply
from test_proxy_server import Served

KEY = "deploy-key-Zq8v7Xw3Rt5Yp1Lm"
PASSWORD = "pw-Hk29dLq8Ws"
QUERY_KEY = "qk-Vn47Bc1Xo9"
BASIC = base64.b64encode(f"gate-user:{PASSWORD}".encode()).decode()
SECRETS = (KEY, PASSWORD, QUERY_KEY, BASIC)
MASTER = "sk-master-secrets-0123456789"
HI = [{"role": "user", "content": "Hi"}]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("lmgate.loggers.generic_api") is None, reason="needs the generic_api logger"
)

SPY = '''
"""Writes what every callback and hook sees, as repr, one line each."""
import os

from lmgate.integrations.custom_logger import CustomLogger

OUT = os.environ["SPY_OUT"]


def _exc(e):
    return [repr(e), str(e), repr(getattr(e, "body", None)), repr(getattr(e, "message", None)),
            repr(getattr(e, "response_headers", None)), repr(e.args)]


class Spy(CustomLogger):
    def _write(self, kind, *parts):
        with open(OUT, "a") as f:
            f.write(kind + " " + " | ".join(repr(p) for p in parts) + "\\n")

    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        # a hook may change the request, but not who made it
        data["metadata"]["user_api_key_team_id"] = "team-set-by-hook"
        data["metadata"]["user_api_key_hash"] = "hash-set-by-hook"
        # what a hook changes in place in the client's metadata is not what the client sent
        for part in (data["metadata"], data["metadata"]["requester_metadata"]):
            if isinstance(part.get("nested"), dict):
                part["nested"]["changed_by_hook"] = True
        self._write("pre_call_hook", data)
        return data

    def log_pre_api_call(self, model, messages, kwargs):
        self._write("pre", dict(kwargs))

    def log_post_api_call(self, kwargs, response_obj, start_time, end_time):
        self._write("post", dict(kwargs), response_obj)

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        self._write("success", dict(kwargs), response_obj, getattr(response_obj, "_hidden_params", None))

    async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):
        self._write("failure", dict(kwargs), response_obj, *_exc(kwargs.get("exception")))

    async def async_post_call_success_hook(self, data, user_api_key_dict, response):
        self._write("success_hook", data, response, getattr(response, "_hidden_params", None))
        return response

    async def async_post_call_failure_hook(self, request_data, original_exception, user_api_key_dict, traceback_str=None):
        self._write("failure_hook", request_data, traceback_str, *_exc(original_exception))
        return None


spy = Spy()
'''


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def write_config(tmp: Path, fake: FakeProvider, receiver: LogReceiver) -> Path:
    (tmp / "spy.py").write_text(SPY)
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: leaky
            litellm_params:
              model: openai/gpt-4o-mini
              api_base: {fake.base_url}/v1
              api_key: os.environ/SECRETS_UPSTREAM_KEY
          - model_name: basic
            litellm_params:
              model: openai/gpt-4o-mini
              api_base: os.environ/SECRETS_BASIC_BASE
        litellm_settings:
          callbacks: ["spy.spy", team_webhook]
        callback_settings:
          team_webhook:
            callback_type: generic_api
            endpoint: {receiver.url}
            flush_interval: 60
            spool_dir: {tmp / "spool"}
        general_settings:
          master_key: os.environ/SECRETS_MASTER_KEY
    """)
    )
    return path


@pytest.fixture
def served(tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver) -> Any:
    fake_provider.echo_credentials = True
    env = {
        "SECRETS_UPSTREAM_KEY": KEY,
        "SECRETS_BASIC_BASE": f"http://gate-user:{PASSWORD}@127.0.0.1:{fake_provider.port}/v1?api-key={QUERY_KEY}",
        "SECRETS_MASTER_KEY": MASTER,
        "SPY_OUT": str(tmp_path / "spy.log"),
    }
    server = Served(write_config(tmp_path, fake_provider, log_receiver), tmp_path, env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def post(server: Served, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {MASTER}"},
        timeout=30,
    )


def test_no_channel_carries_the_deployment_key_or_api_base_secrets(
    served: Served, fake_provider: FakeProvider, log_receiver: LogReceiver, tmp_path: Path
) -> None:
    """Success, stream and upstream error, for a key deployment and a user:pw@…?api-key= deployment:
    the upstream echoes every credential, and no client answer, record, log line, callback or hook shows one."""
    client_seen: list[str] = []

    def check(response: httpx.Response, status: int) -> None:
        assert response.status_code == status, response.text
        client_seen.append(response.text)
        client_seen.append(repr(list(response.headers.items())))

    for model in ("leaky", "basic"):
        ok = post(served, {"model": model, "messages": HI})
        check(ok, 200)
        assert "llm_provider-x-request-id" in ok.headers  # upstream headers are still passed on …
        assert "llm_provider-x-echo-credential" in ok.headers  # … masked
        for name in ("set-cookie", "authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"):
            assert f"llm_provider-{name}" not in ok.headers and name not in ok.headers
        check(post(served, {"model": model, "messages": HI, "stream": True}), 200)
        fake_provider.enqueue(Reply(status=401))
        error = post(served, {"model": model, "messages": HI})
        check(error, 401)
        assert "credentials received" in error.json()["error"]["message"]

    sent = fake_provider.requests
    assert sent[0].headers["authorization"] == f"Bearer {KEY}"  # the real requests used every secret
    assert sent[-1].headers["authorization"] == f"Basic {BASIC}" and sent[-1].query == {"api-key": QUERY_KEY}
    assert served.stop() == 0
    assert log_receiver.wait_for_records(6, timeout=10)
    records = log_receiver.records
    assert len(records) == 6
    assert {r["api_base"] for r in records} == {
        f"{fake_provider.base_url}/v1",
        f"http://gate-user:****@127.0.0.1:{fake_provider.port}/v1?api-key=****",
    }
    spy = (tmp_path / "spy.log").read_text()
    kinds = [line.split(" ", 1)[0] for line in spy.splitlines()]
    for kind in ("pre", "post", "success", "failure", "success_hook", "failure_hook"):
        assert kind in kinds, kinds
    assert leaks("\n".join(client_seen)) == []
    assert leaks(json.dumps(records)) == []
    assert leaks(served.stderr) == []
    assert leaks(spy) == []
    assert "gate-user:****@" in served.stderr  # the startup line names the bases, masked


def test_identity_fields_come_from_the_proxy_not_the_client_or_a_hook(
    served: Served, log_receiver: LogReceiver, tmp_path: Path
) -> None:
    """user_api_key_*, requester_ip_address sent in metadata (or set by a pre-call hook) are replaced by the
    proxy's values; the client's own go under requester_metadata."""
    sent = {
        "team": "search",
        "user_api_key_hash": "spoofed-hash",
        "user_api_key_team_id": "spoofed-team",
        "user_api_key_alias": "spoofed-alias",
        "requester_ip_address": "203.0.113.9",
        "nested": {"a": [1, 2]},
    }
    original = json.loads(json.dumps(sent))
    assert post(served, {"model": "leaky", "messages": HI, "metadata": sent}).status_code == 200
    assert served.stop() == 0
    assert log_receiver.wait_for_records(1, timeout=10)
    (record,) = log_receiver.records
    metadata = record["metadata"]
    assert metadata["user_api_key_hash"] == hashlib.sha256(MASTER.encode()).hexdigest()
    assert metadata["user_api_key_team_id"] is None
    assert metadata["user_api_key_alias"] is None
    assert metadata["requester_ip_address"] == "127.0.0.1"
    assert record["requester_ip_address"] == "127.0.0.1"
    assert metadata["team"] == "search"  # the client's other metadata is kept
    assert metadata["requester_metadata"] == original  # as sent, whatever a hook changed in place
    assert metadata["nested"] == {"a": [1, 2], "changed_by_hook": True}  # the request is the hooks' to change
    hook_view = [
        line for line in (tmp_path / "spy.log").read_text().splitlines() if line.startswith("pre_call_hook")
    ]
    assert "'requester_ip_address': '127.0.0.1'" in hook_view[0]  # hooks see the proxy's values too


ENCODED_QUERY_KEY = "qv%2Fenc0ded+99"  # as written in api_base: percent-encoded, with a +
HEADER_SECRETS = ("xgoog-Lq93Mn2Rt7", "azurekey-Pq81Lk0Zm2", "hdrbearer-Wd82Jf5Ks0")


def test_encoded_query_secrets_and_extra_header_credentials_are_masked(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """A query secret written percent-encoded in api_base, and credentials in ``extra_headers``, are
    masked in every form an upstream error may echo them: client answer, records, server log."""
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: encoded
            litellm_params:
              model: openai/gpt-4o-mini
              api_base: "{fake_provider.base_url}/v1?key={ENCODED_QUERY_KEY}"
              api_key: {KEY}
              extra_headers:
                x-goog-api-key: {HEADER_SECRETS[0]}
                api-key: {HEADER_SECRETS[1]}
                authorization: Bearer {HEADER_SECRETS[2]}
        litellm_settings:
          callbacks: [team_webhook]
        callback_settings:
          team_webhook:
            callback_type: generic_api
            endpoint: {log_receiver.url}
            flush_interval: 60
            spool_dir: {tmp_path / "spool"}
        general_settings:
          master_key: {MASTER}
    """)
    )
    forms = (ENCODED_QUERY_KEY, "qv/enc0ded+99", "qv/enc0ded 99", *HEADER_SECRETS)
    echo = "upstream saw " + " | ".join(forms)
    server = Served(path, tmp_path, {})
    try:
        server.wait_ready()
        fake_provider.enqueue(Reply(status=400, error_message=echo))
        error = post(server, {"model": "encoded", "messages": HI})
        assert error.status_code == 400, error.text
        assert "upstream saw" in error.text
    finally:
        assert server.stop() == 0
    assert fake_provider.requests[-1].headers["x-goog-api-key"] == HEADER_SECRETS[0]  # they were sent
    assert log_receiver.wait_for_records(1, timeout=10)
    for channel, text in (
        ("client", error.text + repr(list(error.headers.items()))),
        ("records", json.dumps(log_receiver.records)),
        ("stderr", server.stderr),
    ):
        assert [f for f in forms if f in text] == [], channel
