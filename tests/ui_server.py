"""A real ``lmgate serve`` that served real traffic, for the dashboard's tests (API and browser).

Mock models (no network), virtual keys on, the ``store`` logger writing a SQLite file; traffic
sent with the official ``openai`` client by the admin and by two virtual keys (alice, bob), a
failing model included. ``UiTraffic`` knows what was sent, and opens the store file itself so
tests compare what the pages show with what the store holds.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
from test_proxy_server import Served

MASTER = "sk-master-ui-test-0123456789"
POLLS = 400  # bounded waits (each one an HTTP round trip to the proxy)


def write_config(tmp: Path, db: Path) -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: gpt-4o-mini
            litellm_params: {{model: openai/gpt-4o-mini, mock_response: "Hello from a mock gpt-4o-mini", mock_delay: 0.01}}
          - model_name: claude-3-5-haiku
            litellm_params: {{model: anthropic/claude-3-5-haiku-20241022, mock_response: "Hello from a mock Claude", mock_delay: 0.02}}
          - model_name: flaky
            litellm_params: {{model: openai/gpt-4o, mock_response: "litellm.RateLimitError"}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        litellm_settings:
          callbacks: ["store"]
        callback_settings:
          store: {{path: {db}, flush_interval: 0.05, spool: "off"}}
        """)
    )
    return path


@dataclass
class UiTraffic:
    served: Served
    db: Path
    keys: dict[str, str] = field(default_factory=dict)  # alias -> the key's text
    hashes: dict[str, str] = field(default_factory=dict)  # alias -> its token (SHA-256)
    sent: dict[str, int] = field(default_factory=dict)  # who -> calls made (stored or failed)
    total: int = 0

    @property
    def url(self) -> str:
        return self.served.url

    def store(self) -> Any:
        from lmgate.store import open_store

        return open_store(str(self.db))

    def api(self, path: str, as_key: str | None = MASTER, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {as_key}"} if as_key else {}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=10)

    def wait_stored(self, count: int) -> None:
        """Poll the store (through the API) until ``count`` calls are in it, a bounded number of times."""
        for _ in range(POLLS):
            found = self.api("/ui/api/overview", range="all").json()["totals"]["requests"]
            if found >= count:
                assert found == count, f"{found} calls stored, {count} sent"
                return
            try:
                self.served.proc.wait(timeout=0.025)  # waits a moment, and notices a server that died
            except Exception:
                continue
            raise AssertionError(f"lmgate serve exited: {self.served.stderr}")
        raise AssertionError(f"the store never reached {count} calls")


def chat(url: str, key: str, model: str, text: str, **extra: Any) -> Any:
    with openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0) as client:
        return client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": text}], **extra
        )


def start(tmp: Path) -> Iterator[UiTraffic]:
    db = tmp / "logs.sqlite3"
    served = Served(write_config(tmp, db), tmp, args=["--data-dir", str(tmp / "data")])
    try:
        served.wait_ready()
        traffic = UiTraffic(served, db)
        for alias in ("alice", "bob"):
            r = httpx.post(
                f"{served.url}/key/generate",
                json={"key_alias": alias, "user_id": f"user-{alias}"},
                headers={"Authorization": f"Bearer {MASTER}"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            traffic.keys[alias] = r.json()["key"]
            traffic.hashes[alias] = r.json()["token_id"]
        plan = [("admin", MASTER, 6), ("alice", traffic.keys["alice"], 4), ("bob", traffic.keys["bob"], 3)]
        for who, key, n in plan:
            for i in range(n):
                model = "claude-3-5-haiku" if i % 3 == 2 else "gpt-4o-mini"
                chat(
                    served.url,
                    key,
                    model,
                    f"question {i} from {who} about needle-{who}-{i}",
                    user=f"end-{who}",
                    extra_body={"metadata": {"tags": [f"team-{who}", "ui-test"]}},
                )
            traffic.sent[who] = n
        # one failure for the admin and one for alice: a model whose mock answers 429
        for who, key in (("admin", MASTER), ("alice", traffic.keys["alice"])):
            try:
                chat(served.url, key, "flaky", f"this one fails for {who}")
            except openai.RateLimitError:
                traffic.sent[who] += 1
            else:
                raise AssertionError("the flaky model answered")
        traffic.total = sum(traffic.sent.values())
        traffic.wait_stored(traffic.total)
        yield traffic
    finally:
        served.stop()
