"""``lmgate ui``: the dashboard on a local store file, as a subprocess on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import orjson
import pytest
from test_proxy_server import READY_ATTEMPTS, free_port

pytest.importorskip("sqlalchemy")
pytest.importorskip("jinja2")

from lmgate.store import open_store  # noqa: E402
from lmgate.store.rows import row_from_payload  # noqa: E402


def fill(db: Path, n: int) -> None:
    store = open_store(str(db))
    store.write(
        row_from_payload(
            orjson.dumps(
                {
                    "litellm_call_id": f"local-{i}",
                    "startTime": 1_700_000_000.0 + i,
                    "endTime": 1_700_000_000.5 + i,
                    "status": "success",
                    "model": "gpt-4o-mini",
                    "total_tokens": 12,
                    "response_cost": 0.001,
                    "messages": [{"role": "user", "content": f"local question {i}"}],
                }
            )
        )
        for i in range(n)
    )
    store.close()


@contextmanager
def lmgate_ui(db: Path, env: dict[str, str] | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    port = free_port()
    log = db.parent / f"ui-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lmgate", "ui", "--db", str(db), "--host", host, "--port", str(port)],
            stdout=out,
            stderr=out,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(READY_ATTEMPTS):
            try:
                httpx.get(f"{url}/ui/login", timeout=2)
                break
            except httpx.TransportError:
                try:
                    proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
                raise AssertionError(f"lmgate ui exited: {log.read_text()}") from None
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_on_loopback_the_local_dashboard_needs_no_login(tmp_path: Path) -> None:
    db = tmp_path / "logs.sqlite3"
    fill(db, 7)
    with lmgate_ui(db) as url:
        totals = httpx.get(f"{url}/ui/api/overview", params={"range": "all"}, timeout=10).json()["totals"]
        assert totals["requests"] == 7 and totals["cost"] == pytest.approx(0.007)
        page = httpx.get(f"{url}/ui/logs", timeout=10)
        assert page.status_code == 200 and page.text.count('class="detail"') == 7
        assert httpx.get(f"{url}/ui/logs/local-3", timeout=10).status_code == 200
        assert httpx.get(f"{url}/", timeout=10, follow_redirects=True).url.path == "/ui"


def test_with_a_key_it_asks_for_a_login(tmp_path: Path) -> None:
    db = tmp_path / "logs.sqlite3"
    fill(db, 2)
    with lmgate_ui(db, {"LMGATE_UI_KEY": "sk-local-ui-key"}) as url:
        assert httpx.get(f"{url}/ui/api/overview", timeout=10).status_code == 401
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.post("/ui/login", data={"key": "sk-local-ui-key"}).status_code == 303
            assert client.get("/ui/api/overview", params={"range": "all"}).json()["totals"]["requests"] == 2


def test_beyond_loopback_without_a_key_it_refuses_to_start(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lmgate", "ui", "--db", str(tmp_path / "x.sqlite3"), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "LMGATE_UI_KEY"},
    )
    assert done.returncode == 2 and "LMGATE_UI_KEY" in done.stderr
