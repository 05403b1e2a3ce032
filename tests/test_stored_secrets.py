"""Secrets in the log store and at every exit from it, through a real ``lmgate serve``.

Calls carry credentials everywhere a caller or an admin can put them: the deployment's own
``api_key``, ``extra_headers`` and a secret in its ``api_base`` query; a virtual key whose admin
metadata holds an ``api_key``; request metadata with credential names (``api_key``, ``password``,
an ``Authorization`` header dict) and key-shaped text (``sk-…``); request headers that carry
tokens. None of them may be readable in the stored row (every byte of the SQLite files), in
``lmgate logs show``, ``lmgate logs export --format jsonl|csv``, or ``/ui/api/logs/{id}``; the
payload is masked where it is built, so the exits have nothing left to leak.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from fakes import FakeProvider, Reply
from test_proxy_server import Served

pytest.importorskip("sqlalchemy")
pytest.importorskip("starlette")

MASTER = "sk-master-stored-secrets-0123456789"
UPSTREAM_KEY = "upstreamplainsecretAAAA1111"  # not key-shaped: only knowing it masks it
HEADER_SECRET = "extraheadersecretBBBB2222"
QUERY_SECRET = "querysecretCCCC3333"
KEY_META_SECRET = "keymetasecretDDDD4444"
META_SECRET = "metaplainsecretEEEE5555"
META_SK = "sk-metashapedabcdefghij1234"
META_BEARER = "metabearerFFFF6666"
META_PASSWORD = "hunter2hunter2"
META_NESTED = "nestedtokenIIII0000"
REQUEST_HEADER = "customhdrGGGG7777"
SECRETS = {
    "deployment api_key": UPSTREAM_KEY,
    "deployment extra_headers": HEADER_SECRET,
    "api_base query": QUERY_SECRET,
    "key metadata api_key": KEY_META_SECRET,
    "request metadata api_key": META_SECRET,
    "key-shaped text in metadata": META_SK,
    "Authorization in metadata": META_BEARER,
    "metadata password": META_PASSWORD,
    "nested metadata token": META_NESTED,
    "request header": REQUEST_HEADER,
    "master key": MASTER,
}
POLLS = 400


def leaks(text: str | bytes, virtual_key: str) -> list[str]:
    data = text.encode() if isinstance(text, str) else text
    found = [name for name, secret in SECRETS.items() if secret.encode() in data]
    return found + (["virtual key"] if virtual_key.encode() in data else [])


@dataclass
class Stored:
    db: Path
    virtual_key: str
    call_ids: list[str]
    ui_details: dict[str, str]


def write_config(tmp: Path, fake: FakeProvider, db: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params:
              model: openai/gpt-4o-mini
              api_base: "{fake.base_url}/v1?api-key={QUERY_SECRET}"
              api_key: {UPSTREAM_KEY}
              extra_headers: {{x-api-key: {HEADER_SECRET}, x-plain: plain}}
          - model_name: mock
            litellm_params: {{model: openai/gpt-4o, mock_response: "a mock answer"}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        litellm_settings:
          callbacks: ["store"]
        callback_settings:
          store: {{path: {db}, flush_interval: 0.05}}
        """)
    )
    return path


def request_body(model: str) -> dict[str, object]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "user": "end-user-1",
        "metadata": {
            "api_key": META_SECRET,
            "note": f"see {META_SK}",
            "headers": {"Authorization": f"Bearer {META_BEARER}"},
            "password": META_PASSWORD,
            "deep": [{"session_token": META_NESTED}],
            "tags": ["kept"],
        },
    }


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stored]:
    tmp = tmp_path_factory.mktemp("stored-secrets")
    db = tmp / "logs.sqlite3"
    with FakeProvider() as fake:
        served = Served(write_config(tmp, fake, db), tmp, args=["--data-dir", str(tmp / "data")])
        admin = {"Authorization": f"Bearer {MASTER}"}
        try:
            served.wait_ready()
            r = httpx.post(
                f"{served.url}/key/generate",
                headers=admin,
                json={"key_alias": "holder", "metadata": {"api_key": KEY_META_SECRET, "owner": "ops"}},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            virtual_key = r.json()["key"]
            sent = {"Authorization": f"Bearer {virtual_key}", "x-custom-token": REQUEST_HEADER}
            ids = []
            for model in ("fast", "mock"):
                r = httpx.post(
                    f"{served.url}/v1/chat/completions", headers=sent, json=request_body(model), timeout=10
                )
                assert r.status_code == 200, r.text
                ids.append(r.headers["x-litellm-call-id"])
            # a failure whose upstream error quotes the deployment's key
            fake.enqueue(Reply(status=401, json={"error": {"message": f"bad key {UPSTREAM_KEY}"}}))
            r = httpx.post(
                f"{served.url}/v1/chat/completions", headers=sent, json=request_body("fast"), timeout=10
            )
            assert r.status_code == 401, r.text
            details: dict[str, str] = {}
            for _ in range(POLLS):  # bounded: each poll is a round trip to the proxy
                listed = httpx.get(f"{served.url}/ui/api/logs", headers=admin, timeout=10).json()["rows"]
                if len(listed) >= 3:
                    break
                try:
                    served.proc.wait(timeout=0.025)  # waits a moment, and notices a server that died
                except subprocess.TimeoutExpired:
                    continue
                raise AssertionError(f"lmgate serve exited: {served.stderr}")
            assert len(listed) == 3, listed
            for row in listed:
                detail = httpx.get(f"{served.url}/ui/api/logs/{row['call_id']}", headers=admin, timeout=10)
                assert detail.status_code == 200, detail.text
                details[row["call_id"]] = detail.text
        finally:
            code = served.stop()
        assert code == 0, served.stderr
    yield Stored(db, virtual_key, [*ids, *(set(details) - set(ids))], details)


def logs(db: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "lmgate", "logs", "--db", str(db), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


def test_the_stored_rows_hold_no_secret(stored: Stored) -> None:
    on_disk = b"".join(p.read_bytes() for p in stored.db.parent.glob(stored.db.name + "*"))
    assert b"end-user-1" in on_disk and b"holder" in on_disk  # the check can see what is stored
    assert leaks(on_disk, stored.virtual_key) == []


def test_the_stored_metadata_is_masked_and_keeps_the_rest(stored: Stored) -> None:
    from lmgate.store import open_store

    store = open_store(str(stored.db))
    try:
        row = store.get(stored.call_ids[0])
    finally:
        store.close()
    assert row is not None
    meta = row["payload"]["metadata"]
    for where in (meta, meta["requester_metadata"]):
        assert where["api_key"] == "****" and where["password"] == "****"
        assert where["headers"] == {"Authorization": "****"}
        assert where["deep"] == [{"session_token": "****"}]
        assert where["note"].startswith("see sk-meta") and where["note"].endswith("****")
        assert where["tags"] == ["kept"]
    assert meta["user_api_key_auth_metadata"] == {"api_key": "****", "owner": "ops"}
    assert meta["user_api_key_alias"] == "holder" and len(meta["user_api_key_hash"]) == 64
    assert row["payload"]["request_tags"] == ["kept"]


@pytest.mark.parametrize("which", [0, 1, 2])
def test_logs_show_masks_every_secret(stored: Stored, which: int) -> None:
    out = logs(stored.db, "show", stored.call_ids[which])
    assert "payload:" in out
    assert leaks(out, stored.virtual_key) == []


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_logs_export_masks_every_secret(stored: Stored, fmt: str) -> None:
    out = logs(stored.db, "export", "--format", fmt)
    assert len(out.splitlines()) == (3 if fmt == "jsonl" else 4)
    assert leaks(out, stored.virtual_key) == []
    if fmt == "jsonl":
        rows = [orjson.loads(line) for line in out.splitlines()]
        assert all(r["payload"]["metadata"]["api_key"] == "****" for r in rows)


def test_the_dashboard_api_masks_every_secret(stored: Stored) -> None:
    assert len(stored.ui_details) == 3
    for text in stored.ui_details.values():
        assert leaks(text, stored.virtual_key) == []
