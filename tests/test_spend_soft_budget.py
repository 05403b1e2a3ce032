"""The soft-budget check counts only its own window's spend (a check made late, after the next
window's rows were written, must not alert the old window with the new window's spend)."""

from __future__ import annotations

from pathlib import Path

from lmgate.control.ledger import Ledger
from lmgate.control.store import KeyStore
from lmgate.proxy import spend
from lmgate.proxy.budgets import Scope
from lmgate.proxy.spend import SpendWriter

HOUR = 3600.0


def _row(request_id: str, started_at: float, cost: float) -> dict:
    return {
        "request_id": request_id,
        "token": "tok",
        "team_id": None,
        "model": "gpt-4o-mini",
        "cost": cost,
        "prompt_tokens": 1,
        "completion_tokens": 1,
        "started_at": started_at,
        "ended_at": started_at + 1,
    }


async def test_a_late_check_of_a_window_does_not_count_the_next_window(tmp_path: Path) -> None:
    store = KeyStore(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await store.start()
    try:
        ledger = Ledger(store)
        writer = SpendWriter(ledger, tmp_path / "journal")
        alerts: list[dict] = []
        writer.on_alert.append(alerts.append)
        scope = Scope("key", "tok", "Key=sk-...abcd", soft_budget=1.0, window_s=HOUR)
        # the first window spent 0.5 (under its soft budget of 1); the next window already 5
        await ledger.write([_row("r1", 10.0, 0.5), _row("r2", HOUR + 10.0, 5.0)])
        assert await writer._check_soft_budgets({("key", "tok", 0.0): scope}) == 0
        assert alerts == []
        # the next window's own check does alert, once, with its own spend
        assert await writer._check_soft_budgets({("key", "tok", HOUR): scope}) == 1
        assert [a["spend"] for a in alerts] == [5.0]
        assert alerts[0]["window_start"] == HOUR and alerts[0]["window_end"] == 2 * HOUR
    finally:
        await store.close()


async def test_the_outbox_claims_an_alert_once_and_takes_a_claim_again_after_its_lease(
    tmp_path: Path,
) -> None:
    """``redeliver_alerts`` hands over only the alerts it claims: a claim within its lease (the
    claimer is handing it over) is left alone, one older than the lease (its claimer died) is
    taken; the alert carries the same ``alert_id`` whoever delivers it."""
    store = KeyStore(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await store.start()
    try:
        ledger = Ledger(store)
        now = [1000.0]
        writers = [SpendWriter(ledger, tmp_path / f"journal{i}") for i in range(2)]
        got: list[list[dict]] = [[], []]
        for writer, alerts in zip(writers, got, strict=True):
            writer.clock = lambda: now[0]
            writer.on_alert.append(alerts.append)
        alert = {"type": "soft_budget_crossed", "scope": "team", "label": "Team=t", "spend": 2.0}
        assert await ledger.record_alert("team", "t", 0.0, 1.0, 2.0, now[0], alert)  # claimed by its insert
        assert [await w.redeliver_alerts() for w in writers] == [0, 0]  # within the lease: its claimer's
        now[0] += spend.ALERT_CLAIM_LEASE_S + 1  # the claimer died before its hand-off
        assert [await w.redeliver_alerts() for w in writers] == [1, 0]  # the first to look takes it
        assert got[1] == [] and got[0][0]["alert_id"] == spend.alert_id("team", "t", 0)
        now[0] += 10 * spend.ALERT_CLAIM_LEASE_S
        assert [await w.redeliver_alerts() for w in writers] == [0, 0]  # marked delivered: never again
    finally:
        await store.close()


async def test_a_malformed_outbox_row_neither_stops_the_others_nor_the_writer(tmp_path: Path) -> None:
    """An outbox row whose alert cannot be logged (a hand-edited ``window_end``) is left in the
    outbox with an error; the alerts after it are still delivered, and ``redeliver_alerts``,
    which the writer's task calls once a lease, returns instead of raising (it would end the
    task, and with it every later batch of spend rows)."""
    store = KeyStore(f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}")
    await store.start()
    try:
        ledger = Ledger(store)
        writer = SpendWriter(ledger, tmp_path / "journal")
        now = [1000.0]
        writer.clock = lambda: now[0]
        got: list[dict] = []
        writer.on_alert.append(got.append)
        bad = {"type": "soft_budget_crossed", "label": "Team=a", "spend": 2.0, "window_end": "soon"}
        good = {"type": "soft_budget_crossed", "label": "Team=b", "spend": 2.0}
        assert await ledger.record_alert("team", "a", 0.0, 1.0, 2.0, now[0], bad)
        assert await ledger.record_alert("team", "b", 0.0, 1.0, 2.0, now[0] + 1, good)
        now[0] += spend.ALERT_CLAIM_LEASE_S + 2  # both claimers died before their hand-off
        assert await writer.redeliver_alerts() == 1
        assert [a["label"] for a in got] == ["Team=b"]
        assert [outbox for outbox, _ in await ledger.undelivered_alerts()] == [("team", "a", 0.0)]
    finally:
        await store.close()
