"""The spend ledger's batches written by a child process: the serving process only names files.

With ``LMGATE_SPEND_WRITER=process`` (``lmgate serve``'s ``auto`` with two CPUs) a ``SpendWriter``'s batch is
not written by the serving process: the rows are in its journal files already (``spend.py``:
one line per settled request, appended when it settled), so the batch is handed over as the
*names* of the journal files it lives in, and a child Python process
(``python -m lmgate.proxy.spend_process``) reads them, builds the rows and writes them with
``Ledger.write`` — the same code, one transaction, rows the ledger has already skipped. It
answers how many rows were new. The serving process deletes a journal file only after that
answer, so the journal stays the durability point: a child that dies, hangs up, answers
nonsense or cannot reach the database leaves the files in place and the batch is tried again
(through a new child when it died); a row written by a batch that died after its commit is
skipped the second time (request ids are unique), so each row is written once.

Why (``docs/keys.md``, "Cost"): building the batch's parameters and the database driver's
work cost ~60,000 instructions per request in the serving process, on the event loop; in the
child they run on another core, and the serving process's cost per request is the journal line
it already wrote.

The wire: frames of a 4-byte big-endian length and that many bytes, both ways. The parent's
first frame is the settings as JSON (the database URL: on the pipe, not the command line, where
a password would show in ``ps``); each batch is a JSON list of journal paths, answered by
``{"new": n}`` or ``{"error": "..."}``. The child exits when its stdin closes; it ignores
SIGINT and SIGTERM (a terminal or a process-group kill sends them to the whole group), so the
parent's own exit flush can still go through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

import orjson

from ..loggers.writer_child import LENGTH, frame, read_frame, run, write_frame
from .spend_journal import row_of

logger = logging.getLogger("lmgate.proxy")

# "process": batches written by a child; "inline": in this process; "auto" (`lmgate serve`'s
# default): the child when this process may run on two CPUs or more, as the log store's writer
WRITER_ENV = "LMGATE_SPEND_WRITER"
WRITERS = ("inline", "process", "auto")
ANSWER_TIMEOUT_S = 120.0  # a batch the child has not answered by then: killed, tried again


def writer_choice(environ: Any = None, cpus: int | None = None) -> str:
    """Where spend batches are written: ``process`` or ``inline`` (this process, the default
    for a program using the library). ``auto`` (``lmgate serve`` sets it) is the child when
    there is a second CPU for it: on one, the two processes would only share it."""
    value = (environ if environ is not None else os.environ).get(WRITER_ENV) or "inline"
    value = value.strip().lower()
    if value == "thread":  # the log store's name for "in this process"
        value = "inline"
    if value not in WRITERS:
        logger.error("%s=%r: not one of %s; spend is written in this process", WRITER_ENV, value, WRITERS)
        return "inline"
    if value == "auto":
        from ..loggers.store import usable_cpus

        return "process" if (cpus if cpus is not None else usable_cpus()) >= 2 else "inline"
    return value


class LedgerProcessError(RuntimeError):
    """A batch the child did not write (it died, hung up, answered nonsense or said why)."""


class LedgerProcess:
    """The parent's end: ``write(paths)`` → the rows new to the ledger, or LedgerProcessError.

    The child is started at the first batch (a proxy that settles nothing runs no child) and
    again after it died. One batch at a time (``SpendWriter`` writes under its flush lock)."""

    def __init__(self, url: str, *, command: list[str] | None = None) -> None:
        self.url = url
        self.command = command or [sys.executable, "-m", "lmgate.proxy.spend_process"]
        self._proc: asyncio.subprocess.Process | None = None
        self.started = 0  # children started (tests, diagnostics)
        self.answer_timeout = ANSWER_TIMEOUT_S

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    async def _start(self) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=None,  # its log lines go where the serving process's go
            close_fds=True,
        )
        self.started += 1
        assert proc.stdin is not None
        settings = orjson.dumps({"url": self.url})
        proc.stdin.write(frame(settings))
        return proc

    async def write(self, paths: list[Path]) -> int:
        proc = self._proc
        if proc is not None and proc.returncode is not None:  # died between batches
            await self._stop(proc, 0)
            proc = self._proc = None
        try:
            if proc is None:
                proc = self._proc = await self._start()
            assert proc.stdin is not None and proc.stdout is not None
            body = orjson.dumps([str(p) for p in paths])
            proc.stdin.write(frame(body))
            await proc.stdin.drain()
            answer = await asyncio.wait_for(_read_answer(proc.stdout), self.answer_timeout)
            outcome = orjson.loads(answer)
            new = outcome.get("new") if isinstance(outcome, dict) else None
            if not isinstance(new, int) or isinstance(new, bool):
                error = outcome.get("error") if isinstance(outcome, dict) else None
                if isinstance(error, str):  # the child is fine; the database said no
                    raise LedgerProcessError(error)
                raise ValueError(f"the spend writer process answered {answer[:100]!r}")
            return new
        except LedgerProcessError:
            raise
        except BaseException as error:
            # died, hung up, answered nonsense, timed out, or this flush was cancelled: nothing is
            # known to be written; the next batch goes through a new child (rows already written
            # are skipped by the ledger)
            if self._proc is not None:
                await self._stop(self._proc, 0)
                self._proc = None
            if isinstance(error, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            raise LedgerProcessError(f"the spend writer process failed: {error!r}") from error

    async def _stop(self, proc: asyncio.subprocess.Process, timeout: float) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):
                proc.stdin.close()
        if timeout > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), timeout)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    async def close(self, timeout_s: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await self._stop(proc, timeout_s)


async def _read_answer(stream: asyncio.StreamReader) -> bytes:
    head = await stream.readexactly(LENGTH.size)
    (size,) = LENGTH.unpack(head)
    return await stream.readexactly(size)


# ---- the child ----


def read_journal(path: Path) -> list[dict[str, Any]]:
    """The rows of one journal file; a line torn by a crash (never settled) is skipped."""
    rows: list[dict[str, Any]] = []
    try:
        data = path.read_bytes()
    except FileNotFoundError:  # written and deleted already (a batch answered, then retried)
        return rows
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            rows.append(row_of(orjson.loads(line)))
        except orjson.JSONDecodeError:
            logger.warning("spend journal %s: a torn line skipped", path.name)
    return rows


class _Store:
    """What ``Ledger`` uses of a ``KeyStore``: its engine (the parent migrated the database)."""

    def __init__(self, url: str) -> None:
        import sqlalchemy as sa
        from sqlalchemy.ext.asyncio import create_async_engine

        from .._secrets import remember_secret
        from ..control.store import async_url

        parsed = sa.make_url(async_url(url))
        remember_secret(parsed.password if isinstance(parsed.password, str) else None)  # masked here too
        self.engine = create_async_engine(parsed)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """The child's loop: read the settings, then write each batch and answer; 0 at the end of stdin."""
    first = read_frame(stdin)
    if first is None:
        return 0
    from ..control.ledger import Ledger

    settings = orjson.loads(first)
    loop = asyncio.new_event_loop()
    store = _Store(settings["url"])
    ledger = Ledger(store)  # type: ignore[arg-type]
    try:
        while True:
            body = read_frame(stdin)
            if body is None:
                return 0
            rows: list[dict[str, Any]] = []
            for path in orjson.loads(body):
                rows += read_journal(Path(path))
            try:
                new = loop.run_until_complete(ledger.write(rows)) if rows else 0
            except Exception as error:  # the database refused: the parent keeps the files
                write_frame(stdout, orjson.dumps({"error": f"{type(error).__name__}: {error}"}))
                continue
            write_frame(stdout, orjson.dumps({"new": new}))
    finally:
        loop.run_until_complete(store.engine.dispose())
        loop.close()


def main() -> int:
    return run(serve, "lmgate spend writer")


if __name__ == "__main__":
    raise SystemExit(main())
