"""The spend ledger's batches written by a child process (proxy/spend_process.py): the serving
process names the journal files, the child writes their rows; a file is deleted only after the
child said its rows are in the database, and a child that dies mid-batch — after its commit or
before — leaves every row written exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from lmgate.control.ledger import Ledger
from lmgate.control.schema import keys as keys_table
from lmgate.control.schema import spend_ledger
from lmgate.control.store import KeyStore
from lmgate.proxy.spend import SpendWriter
from lmgate.proxy.spend_process import LedgerProcess, LedgerProcessError, writer_choice


def _row(i: int, cost: float = 0.25) -> dict:
    return {
        "request_id": f"req-{i}",
        "token": "tok",
        "team_id": None,
        "user_id": None,
        "end_user": None,
        "model": "gpt-4o-mini",
        "cost": cost,
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "started_at": 100.0 + i,
        "ended_at": 101.0 + i,
    }


# the child, but one that exits hard right after it committed its first batch, before answering
# (the marker file makes only the first child do it): the commit happened, the answer never came
_DIES_AFTER_COMMIT = """
import os, sys
import lmgate.proxy.spend_process as sp
marker = sys.argv[1]
real = sp.write_frame
def write_frame(stream, body):
    if not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(9)
    real(stream, body)
sp.write_frame = write_frame
raise SystemExit(sp.main())
"""


async def _store(tmp_path: Path) -> KeyStore:
    store = KeyStore(f"sqlite:///{tmp_path / 'keys.db'}")
    await store.start()
    async with store.engine.begin() as conn:
        await conn.execute(
            keys_table.insert(),
            [
                {
                    "token": "tok",
                    "key_name": "sk-...abcd",
                    "models": [],
                    "tags": [],
                    "metadata": {},
                    "blocked": False,
                    "spend": 0.0,
                    "created_at": 0.0,
                    "updated_at": 0.0,
                }
            ],
        )
    return store


async def _ledger_rows(store: KeyStore) -> tuple[list[str], float]:
    async with store.engine.connect() as conn:
        ids = [r[0] for r in await conn.execute(sa.select(spend_ledger.c.request_id))]
        spend = (await conn.execute(sa.select(keys_table.c.spend))).scalar()
    return sorted(ids), float(spend)


def _journals(directory: Path) -> list[Path]:
    return sorted(directory.glob("journal-*.jsonl"))


async def test_a_batch_is_written_by_the_child_and_its_journal_deleted_after(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    process = LedgerProcess(store.url)
    writer = SpendWriter(Ledger(store), tmp_path / "journal", interval_s=3600, process=process)
    try:
        await writer.start()
        for i in range(5):
            writer.record(_row(i))
        assert await writer.flush()
        assert process.pid is not None and process.pid != os.getpid()  # a child wrote them
        assert writer.written == 5
        for i in range(5, 8):
            writer.record(_row(i))
        assert await writer.flush()
        assert process.started == 1  # the same child for every batch
        ids, spend = await _ledger_rows(store)
        assert ids == [f"req-{i}" for i in range(8)] and spend == pytest.approx(2.0)
        assert len(_journals(tmp_path / "journal")) == 1  # only the live (empty) journal is left
        assert (tmp_path / "journal").joinpath(_journals(tmp_path / "journal")[0].name).stat().st_size == 0
    finally:
        await writer.close()
        await store.close()
    assert process.pid is None and not _journals(tmp_path / "journal")


async def test_a_child_that_dies_after_its_commit_leaves_each_row_written_once(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    marker = tmp_path / "died"
    process = LedgerProcess(store.url, command=[sys.executable, "-c", _DIES_AFTER_COMMIT, str(marker)])
    writer = SpendWriter(Ledger(store), tmp_path / "journal", interval_s=3600, process=process)
    try:
        await writer.start()
        for i in range(4):
            writer.record(_row(i))
        assert not await writer.flush()  # committed, but no answer: not known to be written
        assert marker.exists() and writer.failures == 1
        assert len(writer.pending) == 4  # kept, and so is its journal
        assert sum(p.read_bytes().count(b"\n") for p in _journals(tmp_path / "journal")) == 4
        writer.record(_row(4))
        assert await writer.flush()  # a new child: the 4 rows it has are skipped
        assert process.started == 2
        ids, spend = await _ledger_rows(store)
        assert ids == [f"req-{i}" for i in range(5)]
        assert spend == pytest.approx(1.25)  # each row's cost counted once
        assert writer.written == 1  # the one new row
    finally:
        await writer.close()
        await store.close()


async def test_a_child_killed_between_batches_is_replaced(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    process = LedgerProcess(store.url)
    writer = SpendWriter(Ledger(store), tmp_path / "journal", interval_s=3600, process=process)
    try:
        await writer.start()
        writer.record(_row(0))
        assert await writer.flush()
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        writer.record(_row(1))
        # the kill may or may not be seen before the batch: either way the rows get written
        if not await writer.flush():
            assert await writer.flush()
        assert process.pid not in (None, pid)
        ids, spend = await _ledger_rows(store)
        assert ids == ["req-0", "req-1"] and spend == pytest.approx(0.5)
    finally:
        await writer.close()
        await store.close()


async def test_a_database_the_child_cannot_write_keeps_the_journal(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"  # no ledger table: the child's insert fails, it says why
    process = LedgerProcess(f"sqlite:///{empty}")
    journal = tmp_path / "journal-x.jsonl"
    journal.write_bytes(b'{"request_id": "r", "token": "t", "cost": 1.0}\n')
    try:
        with pytest.raises(LedgerProcessError, match="spend_ledger"):
            await process.write([journal])
        pid = process.pid
        assert pid is not None  # the child is fine: the database said no
        with pytest.raises(LedgerProcessError):
            await process.write([journal])
        assert process.pid == pid and process.started == 1
    finally:
        await process.close()
    assert journal.exists()


def test_the_writer_is_chosen_by_the_environment() -> None:
    assert writer_choice({}) == "inline"
    assert writer_choice({"LMGATE_SPEND_WRITER": "process"}) == "process"
    assert writer_choice({"LMGATE_SPEND_WRITER": "Thread"}) == "inline"
    assert writer_choice({"LMGATE_SPEND_WRITER": "nonsense"}) == "inline"
    # auto, lmgate serve's default: the child only when there is a second CPU for it
    assert writer_choice({"LMGATE_SPEND_WRITER": "auto"}, cpus=2) == "process"
    assert writer_choice({"LMGATE_SPEND_WRITER": "auto"}, cpus=1) == "inline"


# the child, but its first batch waits until the test opens the FIFO (argv[1]) for writing
_WAITS_FOR_THE_TEST = """
import os, sys
import lmgate.proxy.spend_process as sp
fifo = sys.argv[1]
real = sp.read_journal
waited = []
def read_journal(path):
    if not waited:
        waited.append(os.open(fifo, os.O_RDONLY))  # blocks until the test opens the other end
    return real(path)
sp.read_journal = read_journal
raise SystemExit(sp.main())
"""


async def test_a_budget_window_started_while_a_batch_is_written_counts_that_batch(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    process = LedgerProcess(store.url, command=[sys.executable, "-c", _WAITS_FOR_THE_TEST, str(fifo)])
    writer = SpendWriter(Ledger(store), tmp_path / "journal", interval_s=3600, process=process)
    try:
        await writer.start()
        for i in range(4):
            writer.record(_row(i))
        flushing = asyncio.create_task(writer.flush())
        await asyncio.sleep(0)  # the flush took its rows: they are in no list, not in the ledger yet
        assert not writer.pending
        seeding = asyncio.create_task(writer.spent("key", "token", "tok", 0.0))
        fd = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)  # the child may write now
        os.close(fd)
        assert await seeding == pytest.approx(1.0)  # read after the batch, with its rows
        assert await flushing
    finally:
        await writer.close()
        await store.close()


def _children(pid: int) -> list[str]:
    """The command lines of a process's children (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                out.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return out


def test_lmgate_serve_writes_the_ledger_through_its_child(tmp_path: Path) -> None:
    from test_proxy_server import Served

    master = "sk-master-spend-process-0123"
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fast\n"
        "    litellm_params: {model: openai/gpt-4o-mini, mock_response: Hello, input_cost_per_token: 0.001}\n"
        f"general_settings: {{master_key: {master}, virtual_keys: true}}\n"
    )
    data = tmp_path / "data"
    server = Served(
        config,
        tmp_path,
        # process, not serve's auto: a one-CPU machine would rightly write in the worker
        {"LMGATE_SPEND_FLUSH_INTERVAL_S": "0.05", "LMGATE_SPEND_WRITER": "process"},
        args=["--data-dir", str(data)],
    )
    try:
        server.wait_ready()
        admin = {"Authorization": f"Bearer {master}"}
        made = httpx.post(f"{server.url}/key/generate", json={}, headers=admin, timeout=10).json()
        body = {"model": "fast", "messages": [{"role": "user", "content": "Hi"}]}
        for _ in range(3):
            r = httpx.post(
                f"{server.url}/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {made['key']}"},
                timeout=10,
            )
            assert r.status_code == 200, r.text
        for _ in range(400):  # the first batch starts the child (0.05 s batches)
            if any("lmgate.proxy.spend_process" in c for c in _children(server.proc.pid)):
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.proc.wait(timeout=0.05)
        else:
            raise AssertionError(f"no spend writer child: {_children(server.proc.pid)}")
    finally:
        assert server.stop() == 0
    db = sqlite3.connect(data / "lmgate.db")
    try:
        rows = db.execute("SELECT count(*), sum(cost) FROM lmgate_spend_ledger").fetchone()
        spend = db.execute("SELECT spend FROM lmgate_keys WHERE token = ?", (made["token"],)).fetchone()[0]
    finally:
        db.close()
    assert rows[0] == 3 and rows[1] > 0 and spend == pytest.approx(rows[1])
    assert not list((data / "spend-journal").glob("journal-*.jsonl"))


async def test_a_journal_of_arrays_and_of_older_objects_is_read_by_the_child_and_replayed_at_start(
    tmp_path: Path,
) -> None:
    """A journal line is a JSON array of ``ROW_FIELDS`` (a third of an object's cost); a journal
    an older lmgate left (objects, one without its token counts) is read all the same, by the
    child and by ``recover``, and both give the same rows as the object lines'."""
    import orjson

    from lmgate.proxy.spend import ROW_FIELDS, row_of
    from lmgate.proxy.spend_process import read_journal

    store = await _store(tmp_path)
    directory = tmp_path / "journal"
    writer = SpendWriter(Ledger(store), directory, interval_s=3600)
    try:
        await writer.start()
        writer.record(_row(0))  # a dict, as callers before record_values gave it
        writer.record_values(tuple(_row(1)[name] for name in ROW_FIELDS))
        (mine,) = _journals(directory)
        lines = mine.read_bytes().splitlines()
        assert [orjson.loads(line) for line in lines] == [
            [_row(i)[name] for name in ROW_FIELDS] for i in (0, 1)
        ]
        old = {k: v for k, v in _row(2).items() if k not in ("prompt_tokens", "completion_tokens")}
        older = directory / "journal-older.jsonl"  # no live writer holds it: replayed at start
        older.write_bytes(orjson.dumps(_row(3)) + b"\n" + orjson.dumps(old) + b"\n" + lines[1] + b"\n")
        assert [row_of(orjson.loads(line)) for line in lines] == [_row(0), _row(1)]
        assert read_journal(older) == [_row(3), old, _row(1)]
        assert writer.pending_spend("token", "tok", 100.5) == 0.25  # row 1 only (started at 101)
        assert await writer.recover() == 3  # rows 3, 2 and 1 (its copy in the older journal)
        assert await writer.flush()  # rows 0 and 1: row 1 is in the ledger already, counted once
        assert await _ledger_rows(store) == ([f"req-{i}" for i in range(4)], 1.0)
    finally:
        await writer.close()
        await store.close()
