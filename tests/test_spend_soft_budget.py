"""The soft-budget check counts only its own window's spend (a check made late, after the next
window's rows were written, must not alert the old window with the new window's spend)."""

from __future__ import annotations

from pathlib import Path

from lmgate.control.ledger import Ledger
from lmgate.control.store import KeyStore
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
