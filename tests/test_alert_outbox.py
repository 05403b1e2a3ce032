"""The soft-budget alerts' outbox (migration 5, ``spend.SpendWriter``): an alert's row is written
before anyone is told, and marked delivered once its webhook spool has it. A real ``lmgate
serve`` stopped (``LMGATE_TEST_HOLD_ALERT``) right after the row and SIGKILLed there delivers the
alert at its next start, once; a database made by schema version 4 is upgraded with its alerts
counted as delivered."""

from __future__ import annotations

import os
import select
import signal
from pathlib import Path

import pytest
from fakes import FakeProvider, LogReceiver, RedisServer
from test_proxy_alert_webhook import _alerting_config
from test_proxy_limits import CALL_COST, Cluster, chat, generate, write_config

from lmgate.control import migrations
from lmgate.control.store import KeyStore
from lmgate.proxy import spend


def _held(fifo: Path, timeout_s: float = 60.0) -> int:
    """Wait (bounded) until the server stops at the hold point; its pid. The server opens the
    FIFO for writing there, so this wakes exactly then."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # the server's open for writing waits for a reader
    try:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        assert ready, "the server never reached the point after the alert's row"
        return int(os.read(fd, 64).decode())
    finally:
        os.close(fd)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_an_alert_whose_process_is_killed_after_its_row_arrives_once_after_the_restart(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fake_provider: FakeProvider,
    log_receiver: LogReceiver,
    redis_server: RedisServer,
    database: str,
) -> None:
    url = str(request.getfixturevalue("fresh_postgres_url")) if database == "postgresql" else None
    redis_server.flushall()
    config = _alerting_config(write_config(tmp_path, fake_provider, log_receiver, redis_server.url, url))
    fifo = tmp_path / "held"
    os.mkfifo(fifo)
    with LogReceiver(path="/budget-alerts") as webhook:
        env = {"WEBHOOK_URL": webhook.url, "LMGATE_SPEND_FLUSH_INTERVAL_S": "0.05"}
        held = Cluster(tmp_path, config, {**env, "LMGATE_TEST_HOLD_ALERT": str(fifo)}, url)
        (server,) = held.start(1)
        try:
            made = generate(server, soft_budget=CALL_COST / 2, budget_duration="30d")
            assert chat(server, made["key"]).choices[0].message.content
            assert _held(fifo) == server.proc.pid
            server.proc.send_signal(signal.SIGKILL)
            assert server.proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            held.stop()
        # the row is there and undelivered; nothing reached the webhook or its spool
        rows = held.query("SELECT scope, scope_id, delivered_at FROM lmgate_budget_alerts")
        assert rows == [("key", made["token"], None)]
        assert webhook.all_requests == []
        # its claim (the insert's) held for its lease: the lease over, the next start takes it
        held.execute(
            f"UPDATE lmgate_budget_alerts SET claimed_at = claimed_at - {spend.ALERT_CLAIM_LEASE_S + 1}"
        )

        again = Cluster(tmp_path, config, env, url)
        try:
            again.start(1)
            assert webhook.wait_for_records(1, timeout=30)
        finally:
            again.stop()  # a graceful stop sends whatever its webhook queue still holds
        (row,) = again.query("SELECT delivered_at FROM lmgate_budget_alerts")
        assert row[0] is not None

        third = Cluster(tmp_path, config, env, url)  # marked delivered: never sent again
        third.start(1)
        third.stop()
        assert len(webhook.records) == 1 and len(webhook.all_requests) == 1
        (event,) = webhook.records
        assert event["event"] == "soft_budget_crossed" and event["event_group"] == "key"
        assert event["token"] == made["token"] and event["soft_budget"] == CALL_COST / 2
        assert made["key"] not in webhook.all_requests[0].body.decode()


def test_an_alert_delivered_twice_after_a_kill_between_its_handoff_and_its_mark_carries_one_key(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver, redis_server: RedisServer
) -> None:
    """At least once, one identity: a process killed after the webhook's spool took the alert and
    before the outbox's mark leaves it spooled and undelivered; once its claim's lease is over,
    the next start delivers it from the outbox as well as from the spool. Every POST carries the
    alert's own Idempotency-Key (and ``alert_id``), so a receiver honouring it keeps one."""
    redis_server.flushall()
    config = _alerting_config(write_config(tmp_path, fake_provider, log_receiver, redis_server.url, None))
    fifo = tmp_path / "held"
    os.mkfifo(fifo)
    with LogReceiver(path="/budget-alerts") as webhook:
        webhook.dedupe_by_idempotency_key = True
        env = {"WEBHOOK_URL": webhook.url, "LMGATE_SPEND_FLUSH_INTERVAL_S": "0.05"}
        hold = {"LMGATE_TEST_HOLD_ALERT": str(fifo), "LMGATE_TEST_HOLD_ALERT_AT": "handoff"}
        held = Cluster(tmp_path, config, {**env, **hold})
        (server,) = held.start(1)
        try:
            made = generate(server, soft_budget=CALL_COST / 2, budget_duration="30d")
            assert chat(server, made["key"]).choices[0].message.content
            assert _held(fifo) == server.proc.pid  # spooled, not marked
            server.proc.send_signal(signal.SIGKILL)
            assert server.proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            held.stop()
        (row,) = held.query("SELECT scope, scope_id, window_start, delivered_at FROM lmgate_budget_alerts")
        assert row[3] is None
        held.execute(
            f"UPDATE lmgate_budget_alerts SET claimed_at = claimed_at - {spend.ALERT_CLAIM_LEASE_S + 1}"
        )

        again = Cluster(tmp_path, config, env)
        try:
            again.start(1)  # its spool's copy and the outbox's: two hand-offs
            assert webhook.wait_for_records(1, timeout=30)
        finally:
            again.stop()  # a graceful stop sends whatever its webhook queue still holds
        assert again.query("SELECT delivered_at FROM lmgate_budget_alerts")[0][0] is not None
    assert len(webhook.all_requests) >= 2 and len(webhook.records) == 1
    (event,) = webhook.records
    assert event["alert_id"] == spend.alert_id(*row[:3])
    assert {r.headers["idempotency-key"] for r in webhook.all_requests} == {
        f"lmgate-alert-{event['alert_id']}"
    }


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
async def test_migration_5_counts_the_alerts_of_a_version_4_database_as_delivered(
    request: pytest.FixtureRequest, tmp_path: Path, database: str
) -> None:
    """A database made by schema version 4 (its alerts' table without the outbox's columns)
    gains them; the alerts it holds are not sent again, a new one waits in the outbox until
    marked, and is marked once."""
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from lmgate.control.ledger import Ledger
    from lmgate.control.store import async_url

    if database == "postgresql":
        url = str(request.getfixturevalue("fresh_postgres_url"))
    else:
        url = f"sqlite:///{tmp_path / 'keys.db'}"
    old = sa.MetaData()
    alerts_v4 = sa.Table(
        "lmgate_budget_alerts",
        old,
        sa.Column("scope", sa.String(16), primary_key=True),
        sa.Column("scope_id", sa.String(128), primary_key=True),
        sa.Column("window_start", sa.Float, primary_key=True),
        sa.Column("soft_budget", sa.Float, nullable=False),
        sa.Column("spend", sa.Float, nullable=False),
        sa.Column("fired_at", sa.Float, nullable=False),
    )
    version = sa.Table("lmgate_schema_version", old, sa.Column("version", sa.Integer, nullable=False))
    engine = create_async_engine(sa.make_url(async_url(url)))
    s = migrations.schema
    async with engine.begin() as conn:
        # versions 1 to 4 as their steps made them, but for the alerts' table, made as version 4 had it
        await conn.run_sync(lambda c: s.metadata.create_all(
            c, tables=[s.teams, s.users, s.keys, s.spend_ledger, s.customers]))  # fmt: skip
        await conn.run_sync(old.create_all)
        await conn.execute(version.insert().values(version=4))
        await conn.execute(
            alerts_v4.insert().values(
                scope="team", scope_id="t-old", window_start=0.0, soft_budget=1.0, spend=1.5, fired_at=100.0
            )
        )
    await engine.dispose()

    store = KeyStore(url)
    try:
        assert await store.start() == [5]
        ledger = Ledger(store)
        assert await ledger.undelivered_alerts() == []  # the old alert is not sent again
        alert = {"type": "soft_budget_crossed", "scope": "key", "label": "Key=sk-...abcd", "spend": 2.0}
        assert await ledger.record_alert("key", "h" * 64, 60.0, 1.0, 2.0, 200.0, alert)
        assert not await ledger.record_alert("key", "h" * 64, 60.0, 1.0, 2.5, 201.0, alert)  # once a window
        assert await ledger.undelivered_alerts() == [(("key", "h" * 64, 60.0), alert)]
        assert await ledger.mark_alert_delivered("key", "h" * 64, 60.0, 202.0)
        assert not await ledger.mark_alert_delivered("key", "h" * 64, 60.0, 203.0)  # marked once
        assert await ledger.undelivered_alerts() == []
        async with store.engine.begin() as conn:  # an instance not upgraded yet: its own row, as v4 wrote it
            await conn.execute(
                alerts_v4.insert().values(
                    scope="user",
                    scope_id="u-old",
                    window_start=0.0,
                    soft_budget=1.0,
                    spend=1.5,
                    fired_at=300.0,
                )
            )
        assert await ledger.undelivered_alerts() == []  # it delivers its own alerts: not sent again here
        async with store.engine.connect() as conn:
            got = (
                await conn.execute(
                    sa.select(s.budget_alerts.c.scope_id, s.budget_alerts.c.delivered_at).order_by(
                        s.budget_alerts.c.scope_id
                    )
                )
            ).all()
        assert [tuple(r) for r in got] == [("h" * 64, 202.0), ("t-old", 100.0), ("u-old", None)]
    finally:
        await store.close()
