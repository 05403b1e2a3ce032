"""The alert outbox across instances on one PostgreSQL: two instances starting at once on one
undelivered alert, and an instance killed after its hand-off and before its mark; the webhook
(which honours Idempotency-Key) gets the alert once either way. Found by the session-8 review,
each failing before the fix: an outbox alert is claimed before its hand-off
(``ledger.claim_alert``) and every delivery of it carries one Idempotency-Key
(``alerts.idempotency_key``)."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeProvider, LogReceiver
from test_proxy_alert_webhook import _alerting_config
from test_proxy_limits import Cluster, write_config
from test_proxy_server import Served

POLLS = 600  # bounded polls (each waits up to 0.05 s on a server's exit)
ALERT = {
    "type": "soft_budget_crossed",
    "scope": "team",
    "id": "t-1",
    "label": "Team=t-1",
    "soft_budget": 1.0,
    "max_budget": None,
    "spend": 1.5,
    "window_start": None,
    "window_end": None,
    "token": None,
    "key_alias": None,
    "team_id": "t-1",
    "team_alias": None,
    "user_id": None,
}


def _psycopg_url(url: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def _held_outbox_row(tmp_path: Path, config: Path, env: dict[str, str], url: str) -> Iterator[Any]:
    """A migrated PostgreSQL key store holding one undelivered outbox row (what a process killed
    between the alert's row and its hand-off leaves), locked FOR UPDATE by this test: instances
    read it (plain reads go on) and wait at their UPDATE of it. Yields (the locking connection,
    a function that waits until ``n`` sessions wait on the lock)."""
    import psycopg

    first = Cluster(tmp_path, config, env, url)
    first.start(1)  # the database made and migrated
    first.stop()
    with (
        psycopg.connect(_psycopg_url(url)) as db,
        psycopg.connect(_psycopg_url(url), autocommit=True) as watch,
    ):
        db.execute(
            "INSERT INTO lmgate_budget_alerts (scope, scope_id, window_start, soft_budget, spend,"
            " fired_at, alert, delivered_at) VALUES ('team', 't-1', 0, 1.0, 1.5, 100, %s::json, NULL)",
            (json.dumps(ALERT),),
        )
        db.commit()
        db.execute("SELECT 1 FROM lmgate_budget_alerts WHERE scope_id = 't-1' FOR UPDATE")

        def wait_for_waiters(n: int, server: Served) -> None:
            for _ in range(POLLS):
                row = watch.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                ).fetchone()
                if row and row[0] >= n:
                    return
                try:
                    server.proc.wait(timeout=0.05)
                except subprocess.TimeoutExpired:
                    continue
                raise AssertionError(server.stderr)
            raise AssertionError("the instances never reached the outbox row")

        yield db, wait_for_waiters


def _served(tmp_path: Path, config: Path, env: dict[str, str]) -> Served:
    return Served(config, tmp_path, env, args=["--data-dir", str(tmp_path / "data")])


def test_an_undelivered_alert_reaches_the_webhook_once_when_two_instances_start_at_once(
    request: pytest.FixtureRequest, tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    url = str(request.getfixturevalue("fresh_postgres_url"))
    config = _alerting_config(write_config(tmp_path, fake_provider, log_receiver, None, url))
    with LogReceiver(path="/budget-alerts") as webhook:
        webhook.dedupe_by_idempotency_key = True  # a receiver that honours the key sees a repeat as one
        env = {"WEBHOOK_URL": webhook.url}
        with _held_outbox_row(tmp_path, config, env, url) as (db, wait_for_waiters):
            servers = [_served(tmp_path, config, env) for _ in range(2)]
            try:
                wait_for_waiters(2, servers[0])  # both at the row (to claim it, or to mark it)
                db.rollback()  # the row let go
                for server in servers:
                    server.wait_ready()
            finally:
                for server in servers:
                    server.stop()  # a graceful stop sends what its webhook queue holds
        assert len(webhook.records) == 1, [r.headers.get("idempotency-key") for r in webhook.all_requests]


def test_an_alert_spooled_but_not_marked_before_a_kill_reaches_the_webhook_once(
    request: pytest.FixtureRequest, tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    url = str(request.getfixturevalue("fresh_postgres_url"))
    config = _alerting_config(write_config(tmp_path, fake_provider, log_receiver, None, url))
    with LogReceiver(path="/budget-alerts") as webhook:
        webhook.dedupe_by_idempotency_key = True
        env = {"WEBHOOK_URL": webhook.url}
        with _held_outbox_row(tmp_path, config, env, url) as (db, wait_for_waiters):
            server = _served(tmp_path, config, env)
            try:
                wait_for_waiters(1, server)  # handed over (spooled), its mark waiting on the row
                server.proc.send_signal(signal.SIGKILL)
                assert server.proc.wait(timeout=30) == -signal.SIGKILL
            finally:
                server.stop()
            db.rollback()
        again = _served(tmp_path, config, env)
        try:
            again.wait_ready()
        finally:
            again.stop()
        assert len(webhook.records) == 1, [r.headers.get("idempotency-key") for r in webhook.all_requests]
