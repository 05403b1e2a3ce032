"""Spend written off the request path, and never lost: a journal, batches, a replay.

A settled request's ledger row is appended to a journal file (one ``write`` of one JSON line:
the kernel keeps it if the process is killed the next instant) and to a list in memory. A
background task writes the list to the ledger in batches (every ``interval_s``, or at once when
``batch_size`` rows wait) and then deletes the journal those rows were in: before each batch
the writer starts a new journal file, so a file is deleted only once every row in it is in the
database. At shutdown (SIGTERM) the last batch is written; if the database cannot take it, the
journal stays. At start, ``recover`` replays the journals no live process holds (each writer
keeps an exclusive ``flock`` on its files) — after a SIGKILL, say — into the ledger, which
skips rows it already has: nothing is lost and nothing counted twice.

Journals live in ``<data dir>/spend-journal/``: with several instances on one machine sharing a
data directory each has its own files.

Soft budgets: a settled request of a key, team or user with a ``soft_budget`` has its scope
watched (``watch``); after the batch that wrote its row, the scope's spend in its budget window
is read from the ledger, and if it reached the soft budget an alert fires — once per window
across every instance (the ledger records it; the instance whose record goes in first fires):
a WARNING log line, ``soft_budget_alerts`` counted, and each ``on_alert`` subscriber called
with the alert. Never a refusal.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from .spend_journal import ROW_FIELDS, row_of

if TYPE_CHECKING:  # sqlalchemy is imported only by a proxy with virtual keys
    from ..control.ledger import Ledger
    from .spend_process import LedgerProcess

logger = logging.getLogger("lmgate.proxy")


class Scope(Protocol):
    """What a soft-budget alert reads of a key's, team's or user's limits (``budgets.Scope``;
    declared here so that the spend writer does not import the enforcer that imports it)."""

    @property
    def kind(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def label(self) -> str: ...
    @property
    def max_budget(self) -> float | None: ...
    @property
    def soft_budget(self) -> float | None: ...
    @property
    def window_s(self) -> float | None: ...


# how long an alert's claim (``Ledger.claim_alert``) holds before another instance may take it
# again: far longer than a hand-off (a write to the webhook's spool on local disk and the row's
# mark) takes; also how often a running instance looks at the outbox
ALERT_CLAIM_LEASE_S = 60.0
JOURNAL_DIR = "spend-journal"
_INDEX = {name: i for i, name in enumerate(ROW_FIELDS)}
_COST, _STARTED = _INDEX["cost"], _INDEX["started_at"]
_ROW_DEFAULTS = {"prompt_tokens": 0, "completion_tokens": 0}


class _Journal:
    """One journal file, locked by its writer for as long as it lives (``SpendWriter.record``
    appends each line with one ``os.write`` to ``fd``)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"journal-{uuid.uuid4().hex}.jsonl"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def close(self, delete: bool) -> None:
        if delete:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self.fd)


class SpendWriter:
    def __init__(
        self,
        ledger: Ledger,
        directory: Path,
        *,
        batch_size: int = 2000,
        interval_s: float = 1.0,
        process: LedgerProcess | None = None,
    ) -> None:
        self.ledger = ledger
        # a child process that writes the batches from their journal files (spend_process.py):
        # the serving process then pays nothing per row beyond the journal line
        self.process = process
        self._unjournaled = False  # a row recorded before start(): only in memory, written here
        self.directory = directory
        self.batch_size = batch_size
        self.interval_s = interval_s
        self.pending: list[tuple[Any, ...]] = []  # rows not written yet, in ``ROW_FIELDS``' order
        self.written = 0  # rows the ledger took (new ones)
        self.failures = 0  # batches the database refused (kept, tried again)
        self._journal: _Journal | None = None
        self._retained: list[_Journal] = []  # journals whose rows wait for a successful batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushing = asyncio.Lock()
        # soft budgets: (kind, id, window start) → the scope, watched until its batch is written
        self._watched: dict[tuple[str, str, float], Scope] = {}
        self._alerted: set[tuple[str, str, float]] = set()  # windows this process saw alerted
        self.soft_budget_alerts = 0  # alerts this process fired
        self.on_alert: list[Callable[[dict[str, Any]], Any]] = []
        self.clock: Callable[[], float] = time.time
        # tests only (tests/test_alert_outbox.py): a path; once an alert's row is recorded and
        # before anyone is told, the process writes that file and stops there, to be SIGKILLed
        self._hold_alert = os.environ.get("LMGATE_TEST_HOLD_ALERT") or None
        # ... or, with LMGATE_TEST_HOLD_ALERT_AT=handoff, once every subscriber took it and before
        # its row is marked delivered
        self._hold_at_handoff = os.environ.get("LMGATE_TEST_HOLD_ALERT_AT") == "handoff"

    async def start(self) -> int:
        """Replay dead writers' journals, then start the background task; the rows replayed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        replayed = await self.recover()
        redelivered = await self.redeliver_alerts()
        if redelivered:
            logger.warning("soft budget alerts: %d delivered that a stopped process had not", redelivered)
        self._journal = _Journal(self.directory)
        self._task = asyncio.create_task(self._run(), name="lmgate-spend-writer")
        return replayed

    def record(self, row: dict[str, Any]) -> None:
        """A settled request's ledger row (the ledger's columns by name): ``record_values``."""
        self.record_values(tuple(row.get(name, _ROW_DEFAULTS.get(name)) for name in ROW_FIELDS))

    def record_values(self, values: tuple[Any, ...]) -> None:
        """A settled request's ledger row, its values in ``ROW_FIELDS``' order: journaled now
        (one JSON array a line), written to the database soon."""
        journal = self._journal
        if journal is not None:  # ``_Journal.append``, inline: once a request
            os.write(journal.fd, orjson.dumps(values, option=orjson.OPT_APPEND_NEWLINE))
        else:
            self._unjournaled = True
        self.pending.append(values)
        if len(self.pending) >= self.batch_size:
            self._wake.set()

    def watch(self, scope: Scope, window_start: float) -> None:
        """A request of ``scope`` (which has a soft budget) settled: check it after the next batch."""
        name = (scope.kind, scope.id, window_start)
        if name not in self._alerted:
            self._watched[name] = scope

    async def _check_soft_budgets(self, watched: dict[tuple[str, str, float], Scope]) -> int:
        """Alert for every watched scope whose window's spend reached its soft budget (the rows
        written so far); the alerts fired."""
        fired = 0
        for (kind, scope_id, start), scope in watched.items():
            soft = scope.soft_budget
            if soft is None:
                continue
            try:
                # the window's own rows: a check made after the next window began must not count it
                until = start + scope.window_s if scope.window_s else None
                spend = await self.ledger.spent(kind, scope_id, start, until)
                if spend < soft:
                    continue
                alert = _alert(scope, start, spend)
                # the row is the outbox entry: written before anyone is told (docs/keys.md)
                first = await self.ledger.record_alert(
                    kind, scope_id, start, soft, spend, self.clock(), alert
                )
            except Exception as error:  # checked again with the scope's next request
                logger.error("soft budget of %s: the check failed: %s", scope.label, error)
                continue
            self._alerted.add((kind, scope_id, start))
            if first:
                fired += 1
                if self._hold_alert is not None and not self._hold_at_handoff:
                    _hold(self._hold_alert)
                await self._deliver((kind, scope_id, start), alert)
        return fired

    async def _deliver(self, outbox: tuple[str, str, float], alert: dict[str, Any]) -> bool:
        """Hand an alert recorded in the ledger to its subscribers, then mark it delivered; True
        when it is. Not marked when a subscriber failed to take it (the webhook's spool write
        failed, say): the next start delivers it again."""
        self.soft_budget_alerts += 1
        if "alert_id" not in alert:  # a row recorded without it: the same id from the same row
            alert = {**alert, "alert_id": alert_id(*outbox)}
        end = alert.get("window_end")
        logger.warning(
            "budget alert: %s crossed its soft budget %s: spend %.6f in this budget window%s",
            alert.get("label"),
            alert.get("soft_budget"),
            alert.get("spend") or 0.0,
            f" (it resets at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(end))})" if end else "",
        )
        taken = True
        for subscriber in self.on_alert:
            try:
                subscriber(alert)
            except Exception as error:  # a subscriber never stops the writer
                taken = False
                logger.error("soft budget alert subscriber %r raised: %s", subscriber, error)
        if not taken:
            return False
        if self._hold_alert is not None and self._hold_at_handoff:
            _hold(self._hold_alert)
        try:
            await self.ledger.mark_alert_delivered(*outbox, self.clock())
        except Exception as error:  # left in the outbox: the next start delivers it again
            logger.error(
                "soft budget alert of %s: marking it delivered failed: %s", alert.get("label"), error
            )
            return False
        return True

    async def redeliver_alerts(self) -> int:
        """Deliver the alerts a process recorded and died before handing over (the outbox's
        undelivered rows); how many were delivered."""
        try:
            waiting = await self.ledger.undelivered_alerts()
        except Exception as error:  # they stay in the outbox for the next start
            logger.error("soft budget alerts: reading the undelivered ones failed: %s", error)
            return 0
        delivered = 0
        for outbox, alert in waiting:
            self._alerted.add(outbox)
            try:  # claimed before it is handed over: of instances starting at once, one delivers
                if not await self.ledger.claim_alert(*outbox, self.clock(), ALERT_CLAIM_LEASE_S):
                    continue  # another instance has it (or had it within the lease)
            except Exception as error:  # it stays in the outbox for the next start
                logger.error("soft budget alerts: claiming one failed: %s", error)
                continue
            try:
                if await self._deliver(outbox, alert):
                    delivered += 1
            except Exception as error:  # a row that cannot be read as an alert: left, and said
                logger.error("soft budget alerts: delivering one of %s failed: %s", outbox, error)
        return delivered

    def pending_spend(self, scope_field: str, scope_id: str, since: float) -> float:
        """What this process settled for one scope since ``since`` and has not written yet."""
        i = _INDEX[scope_field]
        return sum(r[_COST] for r in self.pending if r[i] == scope_id and r[_STARTED] >= since)

    async def spent(self, scope: str, field: str, scope_id: str, since: float) -> float:
        """A scope's spend since ``since``: the ledger's rows and the rows this process has not
        written yet. Read between batches: while a batch is being written its rows are in
        neither the list nor (until its commit) the ledger, and a budget window started then
        would miss them."""
        async with self._flushing:
            written = await self.ledger.spent(scope, scope_id, since)
            return written + self.pending_spend(field, scope_id, since)

    async def flush(self) -> bool:
        """Write every pending row now; True when the ledger took them."""
        async with self._flushing:
            if not self.pending:
                return True
            rows, self.pending = self.pending, []
            watched, self._watched = self._watched, {}  # the scopes of these rows
            if self._journal is not None:  # the rows after this point go to a new file
                self._retained.append(self._journal)
                self._journal = _Journal(self.directory)
            try:
                if self.process is not None and self._retained and not self._unjournaled:
                    # every row is in the retained journals (the rows of a failed batch too)
                    self.written += await self.process.write([j.path for j in self._retained])
                else:
                    self.written += await self.ledger.write(
                        [dict(zip(ROW_FIELDS, r, strict=True)) for r in rows]
                    )
                    self._unjournaled = False
            except Exception as error:
                self.failures += 1
                self.pending = rows + self.pending
                self._watched.update(watched)
                logger.error(
                    "spend ledger: writing %d rows failed (%s); kept, trying again", len(rows), error
                )
                return False
            for journal in self._retained:
                journal.close(delete=True)
            self._retained.clear()
            if watched:
                await self._check_soft_budgets(watched)
            return True

    async def close(self, timeout_s: float = 10.0) -> bool:
        """Stop the task and write what is left (SIGTERM); a journal stays for what could not be."""
        if self._task is not None:
            # a batch being written finishes first: cancelled mid-transaction, its connection
            # could keep the database locked for the last batch below
            held = False
            with contextlib.suppress(asyncio.TimeoutError):
                held = await asyncio.wait_for(self._flushing.acquire(), timeout_s)
            self._task.cancel()
            if held:
                self._flushing.release()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        done = False
        with contextlib.suppress(asyncio.TimeoutError):
            done = await asyncio.wait_for(self.flush(), timeout_s)
        for journal in self._retained:
            journal.close(delete=False)
        self._retained.clear()
        if self.process is not None:
            await self.process.close(timeout_s)
        if self._journal is not None:
            self._journal.close(delete=done and not self.pending)
            self._journal = None
        if not done:
            logger.error(
                "spend ledger: %d rows kept in %s for the next start", len(self.pending), self.directory
            )
        return done

    async def recover(self) -> int:
        """Write the rows of every journal no live writer holds into the ledger; the rows new to it."""
        replayed = 0
        for path in sorted(self.directory.glob("journal-*.jsonl")):
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process writes it
                rows = []
                for line in path.read_bytes().split(b"\n"):
                    if not line.strip():
                        continue
                    try:
                        rows.append(row_of(orjson.loads(line)))
                    except orjson.JSONDecodeError:  # a line torn by the crash: never settled
                        logger.warning("spend journal %s: a torn line skipped", path.name)
                new = await self.ledger.write(rows) if rows else 0
                replayed += new
                path.unlink()
                if rows:
                    logger.info(
                        "spend journal %s replayed: %d rows, %d new to the ledger", path.name, len(rows), new
                    )
            finally:
                os.close(fd)
        return replayed

    async def _run(self) -> None:
        # the outbox is looked at again once a lease: an alert whose claimer died before its
        # hand-off (or its mark) is delivered by a running instance, not only by the next start
        next_outbox = time.monotonic() + ALERT_CLAIM_LEASE_S
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as error:  # never let the writer die
                logger.error("spend ledger writer: %s", error)
            if time.monotonic() >= next_outbox:
                next_outbox = time.monotonic() + ALERT_CLAIM_LEASE_S
                try:
                    if redelivered := await self.redeliver_alerts():
                        logger.warning(
                            "soft budget alerts: %d delivered whose claimer had stopped", redelivered
                        )
                except Exception as error:  # never let the writer die
                    logger.error("soft budget alerts: %s", error)


def alert_id(scope: str, scope_id: str, window_start: float) -> str:
    """An alert's identity: derived from its outbox row's primary key (one alert per scope and
    window), so every delivery of that alert, by any instance, carries the same id (and the
    webhook the same Idempotency-Key, ``proxy/alerts.py``)."""
    name = f"{scope}\0{scope_id}\0{float(window_start)!r}".encode()
    return hashlib.sha256(name).hexdigest()[:32]


def _alert(scope: Scope, start: float, spend: float) -> dict[str, Any]:
    """What an alert's subscribers get (and its outbox row keeps): plain JSON values."""
    end = start + scope.window_s if scope.window_s else 0.0  # ``start`` opens the window (budgets.window_of)
    key = scope.kind == "key"
    return {
        "type": "soft_budget_crossed",
        "alert_id": alert_id(scope.kind, scope.id, start),
        "scope": scope.kind,
        "id": scope.id if not key else None,  # a key is named by its masked form
        "label": scope.label,
        "soft_budget": scope.soft_budget,
        "max_budget": scope.max_budget,
        "spend": spend,
        "window_start": start or None,
        "window_end": end or None,
        # who owns the budget (the webhook's fields, proxy/alerts.py): a key by its hash
        "token": scope.id if key else None,
        "key_alias": getattr(scope, "alias", None) if key else None,
        "team_id": getattr(scope, "team_id", None),
        "team_alias": getattr(scope, "alias", None) if scope.kind == "team" else None,
        "user_id": getattr(scope, "user_id", None),
    }


def _hold(path: str) -> None:
    """Stop this process where it stands (tests only: ``LMGATE_TEST_HOLD_ALERT``): say so in
    ``path``, then block the event loop until the test kills the process."""
    import threading

    Path(path).write_text(str(os.getpid()))
    threading.Event().wait()


__all__ = ["ALERT_CLAIM_LEASE_S", "JOURNAL_DIR", "ROW_FIELDS", "SpendWriter", "alert_id", "row_of"]
