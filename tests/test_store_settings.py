"""The default store's settings in a real ``lmgate serve``: message capture off (for the store,
or for every logger), and retention on ClickHouse (partitions dropped on servers without TTL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_proxy_server import Served
from test_store_no_loss import env_for, send_calls, write_config

from lmgate.store import open_store

pytest.importorskip("sqlalchemy")
pytest.importorskip("starlette")


@pytest.mark.parametrize(
    "config",
    [
        "general_settings:\n  store: {turn_off_message_logging: true}\n",
        "litellm_settings:\n  turn_off_message_logging: true\n",
    ],
    ids=["the store's own", "global"],
)
def test_message_capture_off_keeps_the_columns_but_not_the_messages(tmp_path: Path, config: str) -> None:
    served = Served(write_config(tmp_path, config), tmp_path, env_for(tmp_path))
    served.wait_ready()
    made = send_calls(served, 3)
    assert served.stop() == 0
    store = open_store(str(tmp_path / "data" / "logs.sqlite3"))
    try:
        for call_id in made:
            row = store.get(call_id)
            assert row is not None and row["model_group"] == "mock" and row["total_tokens"]
            text = str(row["payload"]["messages"]) + str(row["payload"]["response"])
            assert "q0" not in text and "q1" not in text and "stored" not in text, text
    finally:
        store.close()


def test_clickhouse_retention_drops_old_days(clickhouse_server) -> None:
    import orjson

    from lmgate.store.rows import row_from_payload

    now = time.time()
    url = clickhouse_server.create_database()
    store = open_store(type="clickhouse", url=url)

    def row(call_id: str, start: float) -> dict:
        return row_from_payload(
            orjson.dumps(
                {"litellm_call_id": call_id, "startTime": start, "status": "success", "metadata": {}}
            )
        )

    store.write([row("old", now - 10 * 86400), row("recent", now - 3600), row("older", now - 40 * 86400)])
    store.close()
    kept = open_store(type="clickhouse", url=url, retention_days=7)  # prunes on open
    try:
        assert [r["call_id"] for r in kept.query()] == ["recent"]
        if kept.has_ttl:  # current releases: the table has a TTL too
            assert "TTL" in clickhouse_server.query(f"SHOW CREATE TABLE {kept.table}")
    finally:
        kept.close()


def test_a_clickhouse_down_at_start_gets_every_call_once_it_is_up(tmp_path: Path) -> None:
    from clickhouse import ClickHouseError, ClickHouseServer
    from test_store_no_loss import CALLS, stored_ids, wait_for_count

    try:
        ch = ClickHouseServer()  # its port is chosen; the server is not started yet
    except ClickHouseError as error:
        pytest.skip(str(error))
    url = f"{ch.url}/default"
    config = write_config(tmp_path, f"general_settings:\n  store: {{type: clickhouse, url: '{url}'}}\n")
    served = Served(config, tmp_path, env_for(tmp_path))
    try:
        served.wait_ready()  # the proxy starts without its store
        made = send_calls(served, CALLS)
        assert "cannot reach the clickhouse store" in served.stderr
        with ch:
            store = open_store(type="clickhouse", url=url)
            try:
                wait_for_count(store, CALLS, served)
                assert served.stop() == 0
                assert sorted(stored_ids(store)) == sorted(made)
            finally:
                store.close()
    finally:
        served.stop()


def test_a_team_with_message_logging_off_gets_redacted_rows_and_keys_are_named(tmp_path: Path) -> None:
    """Per key/team (the team's metadata, docs/keys.md): the store keeps the columns, the key's
    alias and team, but not the messages of that team's calls; another key's calls keep theirs."""
    import httpx

    master = "sk-master-store-settings"
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: mock\n"
        '    litellm_params: {model: openai/gpt-4o-mini, mock_response: "stored answer", api_key: sk-mock}\n'
        f"general_settings:\n  master_key: {master}\n  virtual_keys: true\n"
    )
    served = Served(config, tmp_path, env_for(tmp_path))
    served.wait_ready()
    try:
        admin = {"Authorization": f"Bearer {master}"}

        def post(path: str, body: dict, key: str | None = None) -> dict:
            headers = admin if key is None else {"Authorization": f"Bearer {key}"}
            answer = httpx.post(f"{served.url}{path}", json=body, headers=headers, timeout=30)
            assert answer.status_code == 200, answer.text
            return answer.json()

        post("/team/new", {"team_id": "quiet", "metadata": {"turn_off_message_logging": True}})
        quiet = post("/key/generate", {"key_alias": "quiet-key", "team_id": "quiet"})["key"]
        loud = post("/key/generate", {"key_alias": "loud-key"})["key"]
        for key, text in ((quiet, "secret plan"), (loud, "public plan")):
            post(
                "/v1/chat/completions",
                {"model": "mock", "messages": [{"role": "user", "content": text}]},
                key,
            )
    finally:
        assert served.stop() == 0
    store = open_store(str(tmp_path / "data" / "logs.sqlite3"))
    try:
        rows = {r["key_alias"]: store.get(r["call_id"]) for r in store.query()}
    finally:
        store.close()
    assert set(rows) == {"quiet-key", "loud-key"}
    assert rows["quiet-key"]["team_id"] == "quiet" and rows["quiet-key"]["total_tokens"]
    assert "secret plan" not in str(rows["quiet-key"]["payload"])
    assert "stored answer" not in str(rows["quiet-key"]["payload"])
    assert "public plan" in str(rows["loud-key"]["payload"]["messages"])
