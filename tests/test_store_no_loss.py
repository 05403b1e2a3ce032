"""The default log store of ``lmgate serve`` keeps every call: the stored records equal the calls
made (none lost, none twice) after a SIGTERM, and after a SIGKILL followed by a restart (the
write-ahead spool replayed into the store). On SQLite, a real clickhouse-server and a real PostgreSQL.

Also: the store is on by default (a config without callbacks), in the data directory, and
``--no-store`` / ``general_settings.store: false`` turn it off."""

from __future__ import annotations

import asyncio
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_proxy_server import Served

from lmgate.store import open_store

pytest.importorskip("sqlalchemy")
pytest.importorskip("starlette")

CALLS = 200
POLL_ATTEMPTS = 600  # x 0.05 s wait on the server process: a bounded poll, not a sleep


def write_config(tmp: Path, store: str = "") -> Path:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent("""
        model_list:
          - model_name: mock
            litellm_params: {model: openai/gpt-4o-mini, mock_response: "stored", api_key: sk-mock}
        """)
        + store
    )
    return path


def env_for(tmp: Path) -> dict[str, str]:
    # a data dir and a cache dir (the spool) of this test alone, shared by the restarted server;
    # LMGATE_STORE empty: lmgate serve's own default (conftest.py turns the store off for the rest)
    return {"LMGATE_DATA_DIR": str(tmp / "data"), "LMGATE_CACHE_DIR": str(tmp / "cache"), "LMGATE_STORE": ""}


async def _send(url: str, n: int) -> list[str]:
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def one(i: int) -> str:
            answer = await client.post(
                "/v1/chat/completions",
                json={"model": "mock", "messages": [{"role": "user", "content": f"q{i}"}]},
            )
            assert answer.status_code == 200, answer.text
            return answer.headers.get("x-litellm-call-id", "")

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def send_calls(served: Served, n: int = CALLS) -> list[str]:
    ids = asyncio.run(_send(served.url, n))
    assert len(set(ids)) == n
    return ids


def stored_ids(store: Any) -> list[str]:
    return [r["call_id"] for r in store.query(page=_page(10 * CALLS))]


def _page(limit: int) -> Any:
    from lmgate.store.base import Page

    return Page(limit=limit)


def wait_for_count(store: Any, want: int, served: Served) -> None:
    for _ in range(POLL_ATTEMPTS):
        if store.count() >= want:
            return
        try:
            served.proc.wait(timeout=0.05)
        except Exception:  # noqa: BLE001, S110 - still running: poll again
            pass
    raise AssertionError(
        f"the store holds {store.count()} of {want} calls; server log: {served.stderr[-2000:]}"
    )


@pytest.fixture(params=["sqlite", "clickhouse", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The ``general_settings.store`` block and a function that opens the same store to read it."""
    if request.param == "sqlite":
        return {"config": "", "open": lambda: open_store(str(tmp_path / "data" / "logs.sqlite3"))}
    if request.param == "postgres":
        pytest.importorskip("psycopg", reason="the PostgreSQL store uses psycopg 3 (the dev extra)")
        url = request.getfixturevalue("fresh_postgres_url")
    else:
        url = request.getfixturevalue("clickhouse_server").create_database()
    kind = request.param
    config = f"general_settings:\n  store: {{type: {kind}, url: '{url}'}}\n"
    return {"config": config, "open": lambda: open_store(type=kind, url=url)}


def test_sigterm_stores_every_call_once(tmp_path: Path, backend: dict[str, Any]) -> None:
    served = Served(write_config(tmp_path, backend["config"]), tmp_path, env_for(tmp_path))
    served.wait_ready()
    made = send_calls(served)
    assert served.stop() == 0
    store = backend["open"]()
    try:
        got = stored_ids(store)
        assert sorted(got) == sorted(made)  # none lost, none twice
        assert store.count() == CALLS
    finally:
        store.close()


def test_sigkill_then_restart_stores_every_call_once(tmp_path: Path, backend: dict[str, Any]) -> None:
    config = write_config(tmp_path, backend["config"])
    served = Served(config, tmp_path, env_for(tmp_path))
    served.wait_ready()
    made = send_calls(served)
    served.proc.send_signal(signal.SIGKILL)  # no exit flush: what is not written is in the spool only
    served.proc.wait(30)
    served.stop()
    store = backend["open"]()
    try:
        before = store.count()
        restarted = Served(config, tmp_path, env_for(tmp_path))
        restarted.wait_ready()
        try:
            wait_for_count(store, CALLS, restarted)  # the spool is replayed into the store
            more = send_calls(restarted, 10)
        finally:
            assert restarted.stop() == 0
        got = stored_ids(store)
        assert sorted(got) == sorted(made + more), f"{before} stored before the restart"
        assert store.count() == CALLS + 10
    finally:
        store.close()


def children_of(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux: /proc/<pid>/task/*/children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def test_sigkill_of_the_worker_and_its_writer_then_restart_stores_every_call_once(
    tmp_path: Path, backend: dict[str, Any]
) -> None:
    """The writer child reads the spool the worker wrote (``spool_tail.py``): both killed at
    once, mid-way, the restarted worker's new child writes what is left, once."""
    config = write_config(tmp_path, backend["config"])
    served = Served(config, tmp_path, env_for(tmp_path))
    served.wait_ready()
    made = send_calls(served)
    store = backend["open"]()
    try:
        wait_for_count(store, 1, served)  # the writer child runs: it wrote a first batch
        writers = children_of(served.proc.pid)
        assert writers, "no writer child"
        served.proc.send_signal(signal.SIGKILL)
        for pid in writers:
            os.kill(pid, signal.SIGKILL)
        served.proc.wait(30)
        served.stop()
        restarted = Served(config, tmp_path, env_for(tmp_path))
        restarted.wait_ready()
        try:
            wait_for_count(store, CALLS, restarted)
            more = send_calls(restarted, 10)
        finally:
            assert restarted.stop() == 0
        got = stored_ids(store)
        assert sorted(got) == sorted(made + more)
        assert store.count() == CALLS + 10
    finally:
        store.close()


def test_the_store_is_on_by_default_in_the_data_dir(tmp_path: Path) -> None:
    served = Served(write_config(tmp_path), tmp_path, env_for(tmp_path))
    served.wait_ready()
    made = send_calls(served, 5)
    assert "callbacks: [store]" in served.stderr
    assert served.stop() == 0
    store = open_store(str(tmp_path / "data" / "logs.sqlite3"))
    try:
        assert sorted(stored_ids(store)) == sorted(made)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "config"),
    [(["--no-store"], ""), ([], "general_settings:\n  store: false\n")],
    ids=["--no-store", "store: false"],
)
def test_the_store_can_be_turned_off(tmp_path: Path, args: list[str], config: str) -> None:
    served = Served(write_config(tmp_path, config), tmp_path, env_for(tmp_path), args=args)
    served.wait_ready()
    asyncio.run(_send(served.url, 3))
    assert "callbacks: [store]" not in served.stderr
    assert served.stop() == 0
    assert not (tmp_path / "data" / "logs.sqlite3").exists()


def test_a_bad_store_setting_names_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path, "general_settings:\n  store: {type: mongodb, url: x}\n")
    served = Served(config, tmp_path, env_for(tmp_path))
    assert served.proc.wait(60) == 2
    served.stop()
    assert "general_settings.store.type" in served.stderr
    assert "sqlite, clickhouse, postgres" in served.stderr
