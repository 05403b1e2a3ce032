"""The store's writes in a child process: the serving process only hands batches over a pipe.

With ``writer: process`` (what ``auto``, the default in ``lmgate serve``, picks when a second CPU
is there) the store logger's delivery thread does not parse records or talk to the database itself: it writes each batch, as the records'
compact JSON lines, to a child Python process (``python -m lmgate.loggers.store_process``), which
parses them, builds the rows and writes them in one transaction, and answers with one outcome
per record. Everything the batch processor guarantees stays in the serving process: the queue,
the write-ahead spool, retries and the accounting. A batch is acknowledged (its spool lines
resolved) only once the child has answered that it is written, so a child that dies, hangs up or
answers nonsense makes the batch retried (a new child is started for it), and rows are inserted
with ON CONFLICT DO NOTHING, so a batch written twice is stored once.

Why (docs/store.md, "Cost"): parsing the record into columns and binding the rows is Python work
that held the interpreter lock the event loop needs; in a child it runs on another core.

The wire, both ways: frames of a 4-byte big-endian length and that many bytes. The parent's first
frame is the store's settings as JSON (on the pipe, not the command line, where a URL's password
would show in ``ps``); then each batch is one frame of records joined by ``\\n`` (a record is one
line), or, with the write-ahead spool, ``@`` and a JSON ``[path, first line, count]`` naming
lines of a spool segment the child reads itself (``spool_tail.py``: the records then never cross
the pipe); either is answered by one frame: ``D`` when every record is delivered, else a JSON
list of ``[kind, reason]`` per record. The child exits when its stdin closes (the parent is gone or
closed it); it ignores SIGINT and SIGTERM, which a terminal or a process-group kill sends to the
whole group, so the parent's own exit flush can still go through it.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

import orjson

from .exporter import DELIVERED, Batch, Outcome
from .writer_child import read_frame, run, write_frame

logger = logging.getLogger("lmgate.loggers")

_ALL_DELIVERED = b"D"
# a frame that names spool lines instead of carrying records: LINES + JSON [path, first, count]
# (a record frame starts with "{" or "[")
LINES = b"@"
# how long close() waits for the child to finish the batch it is writing and exit
CLOSE_TIMEOUT_S = 10.0
# how much the child lowers its CPU priority (``os.nice``) once it is asked for spool lines: when
# every core is busy, the serving process's requests go first and the writer takes what is left.
# Nothing waits on it but records that are on disk already (the write-ahead spool: a lines frame
# says so) and counted as pending (the health page, ``/metrics``) until written; it catches up
# once the load drops (docs/store.md). A child fed records over the pipe (no write-ahead spool:
# they wait in the serving process's bounded queue) keeps its parent's priority
WRITER_NICENESS = 10
# the byte of a spool segment a writer child locks while it reads the segment (SpoolLines)
WRITING_BYTE = 1 << 62


class ProcessStoreExporter:
    """An exporter (``loggers.exporter.Exporter``) whose batches are written by a child process.

    ``settings``: ``open_store``'s arguments (``type``, ``path``, ``url``, ``retention_days``) and
    ``max_record_bytes``, sent to the child. ``store``: the serving process's own handle on the
    same store, for its readers (the dashboard, ``StoreLogger.store``); writes never go through
    it. ``opener``: a server store not reachable yet when the logger was made, tried before each
    batch like ``StoreExporter`` does, so the reading handle appears once the server is up.

    The child is started at the first batch (a proxy that serves nothing runs no child) and again
    after it died. ``command`` is the child's command line (tests may point it elsewhere)."""

    def __init__(
        self,
        settings: dict[str, Any],
        *,
        store: Any = None,
        max_record_bytes: int,
        opener: Callable[[], Any] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.settings = dict(settings, max_record_bytes=max_record_bytes)
        self.store = store
        self.max_record_bytes = max_record_bytes
        self._opener = opener
        self.command = command or [sys.executable, "-m", "lmgate.loggers.store_process"]
        self._lock = threading.Lock()  # one batch on the pipe at a time
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False
        self.close_timeout = CLOSE_TIMEOUT_S

    def __repr__(self) -> str:
        return f"<ProcessStoreExporter {self.store!r}>"

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs (tests, diagnostics)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def _start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            # its log lines go where the serving process's go
            stderr=None,
            close_fds=True,
        )
        assert proc.stdin is not None
        write_frame(proc.stdin, orjson.dumps(self.settings))
        return proc

    def _stop(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def export(self, batch: Batch) -> list[Outcome]:
        return self._ask(b"\n".join(batch.records), len(batch.records))

    def export_lines(self, path: str, first: int, count: int) -> list[Outcome]:
        """Write ``count`` lines of the spool segment at ``path`` from line ``first`` (0-based):
        the child reads them from the file (``spool_tail.py``: the records never cross the pipe)."""
        return self._ask(LINES + orjson.dumps([path, first, count]), count)

    def _ask(self, body: bytes, n: int) -> list[Outcome]:
        if self.store is None and self._opener is not None:
            try:
                self.store = self._opener()
            except Exception as error:  # noqa: BLE001 - still unreachable: the batch waits
                logger.warning("store: cannot open the store yet, will retry: %s", error)
                return [Outcome("retry", type(error).__name__)] * n
        with self._lock:
            if self._closed:
                return [Outcome("retry", "writer_closed")] * n
            try:
                proc = self._proc
                if proc is not None and proc.poll() is not None:  # died between batches
                    self._stop(proc, 0)
                    proc = self._proc = None
                if proc is None:
                    proc = self._proc = self._start()
                assert proc.stdin is not None and proc.stdout is not None
                write_frame(proc.stdin, body)
                answer = read_frame(proc.stdout)
                if answer is None:
                    raise EOFError("the writer process exited without answering")
                return _outcomes(answer, n)
            except (OSError, EOFError, ValueError, TypeError) as error:
                # died, hung up, or answered nonsense: nothing is known to be written; the batch
                # is retried through a new child (rows written already are not stored twice)
                logger.warning("store: the writer process failed, will retry the batch: %s", error)
                if self._proc is not None:
                    self._stop(self._proc, 0)
                    self._proc = None
                return [Outcome("retry", "writer_process")] * n

    def close(self) -> None:
        # a batch still on the pipe (the exit flush gave up on it) gets close_timeout seconds to
        # end; then the child is killed, which ends that export with a retry (its records stay
        # spooled for the next process)
        idle = self._lock.acquire(timeout=self.close_timeout)
        try:
            self._closed = True
            proc, self._proc = self._proc, None
        finally:
            if idle:
                self._lock.release()
        if proc is not None:
            if idle:
                self._stop(proc, self.close_timeout)
            else:  # the export under way then meets the end of the pipe: a retry
                proc.kill()
                self._stop(proc, self.close_timeout)
        if self.store is not None:
            self.store.close()


def _outcomes(answer: bytes, n: int) -> list[Outcome]:
    if answer == _ALL_DELIVERED:
        return [DELIVERED] * n
    outcomes = [Outcome(str(kind), str(reason)) for kind, reason in orjson.loads(answer)]
    if len(outcomes) != n:
        raise ValueError(f"the writer process answered {len(outcomes)} outcomes for {n} records")
    return outcomes


def _encode_outcomes(outcomes: list[Outcome]) -> bytes:
    if all(o.kind == "delivered" for o in outcomes):
        return _ALL_DELIVERED
    return orjson.dumps([[o.kind, o.reason] for o in outcomes])


def serve(stdin: IO[bytes], stdout: IO[bytes], *, lower_priority: bool = False) -> int:
    """The child's loop: read the settings, then write each batch and answer; 0 at the end of stdin.
    ``lower_priority`` (the child's ``main``): ``WRITER_NICENESS`` from the first lines frame on."""
    from ..store import open_store
    from .store_exporter import StoreExporter

    first = read_frame(stdin)
    if first is None:
        return 0
    settings = orjson.loads(first)
    max_record_bytes = settings.pop("max_record_bytes", None)

    def opener() -> Any:
        return open_store(
            settings.get("path"),
            type=settings.get("type") or "sqlite",
            url=settings.get("url"),
            retention_days=settings.get("retention_days"),
        )

    # opened at the first batch (StoreExporter's opener): a server store that is down makes the
    # batch retried, answered as such, instead of killing the child
    exporter = StoreExporter(None, max_record_bytes=max_record_bytes, opener=opener)
    lines = SpoolLines()
    try:
        while True:
            body = read_frame(stdin)
            if body is None:
                return 0
            asked = _lines_asked(body)
            if asked is not None:
                if lower_priority:
                    lower_priority = False
                    _lower_priority()
                count = asked[2]
                try:
                    records = lines.read(*asked)
                except OSError as error:  # EOFError too: lines not there, the serving process retries
                    logger.warning("cannot read the spool lines asked for, will retry: %s", error)
                    write_frame(stdout, _encode_outcomes([Outcome("retry", "spool_read")] * count))
                    continue
            else:
                records = body.split(b"\n") if body else []
            outcomes = exporter.export(Batch(records, ""))
            write_frame(stdout, _encode_outcomes(outcomes))
    finally:
        lines.close()
        exporter.close()


def _lower_priority() -> None:
    try:
        os.nice(WRITER_NICENESS)
    except OSError as error:  # not allowed here: the writer keeps its parent's priority
        logger.info("the store writer keeps its priority: %s", error)


def _lines_asked(body: bytes) -> tuple[str, int, int] | None:
    """A lines frame's ``[path, first, count]``; None for a frame of records, whose first may
    start with "@" too (a damaged spool line adopted from a dead process's segment): the writer
    drops that record with its reason instead of dying on it."""
    if body[:1] != LINES or b"\n" in body:
        return None
    try:
        path, first, count = orjson.loads(body[1:])
    except (ValueError, TypeError):
        return None
    if isinstance(path, str) and type(first) is int and type(count) is int:
        return path, first, count
    return None


class SpoolLines:
    """Reads lines of a spool segment that the serving process wrote (each a whole line, in one
    ``write()``, before it asks for them). Batches come in order, so the file stays open at the
    next line's byte offset; anything else (a retried batch, a new segment) reopens it and counts
    from the start. One file open at a time: a segment the serving process deleted is let go.

    Each batch is read afresh from the file (``os.pread`` from the offset), never from bytes read
    ahead for the batch before: an append that failed part-way is truncated away by the serving
    process (``loggers/spool.py``), and the next record is written in its place.

    Reading a segment, the child holds a POSIX record lock on one byte of it (``WRITING_BYTE``,
    far past its end; the serving process's ownership is a ``flock``, which Linux keeps apart)
    until it moves to another segment or exits. A serving process killed with ``SIGKILL`` can
    leave its child finishing a batch; the process that adopts the segment then asks its own child
    for the same lines, and that child waits here until the orphan is gone, so the two never
    write one record at the same time (a store without a unique key, ClickHouse, checks for the
    call ids it is about to insert: two writers at once could both insert)."""

    _CHUNK = 1 << 16

    def __init__(self) -> None:
        self._fd: int | None = None
        self._path: str | None = None
        self._next = 0  # the next line's number
        self._offset = 0  # and where it starts

    def read(self, path: str, first: int, count: int) -> list[bytes]:
        if self._fd is None or path != self._path or first != self._next:
            self.close()
            # read and write: a POSIX write lock needs a descriptor open for writing (never written)
            fd = os.open(path, os.O_RDWR)
            try:
                # blocks while another writer child (an orphan of a killed process) reads it
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, WRITING_BYTE)
            except OSError:
                os.close(fd)
                raise
            self._fd, self._path, self._next, self._offset = fd, path, 0, 0
            if first and len(self._lines(first)) < first:
                raise OSError(f"{path} has fewer than {first + 1} lines, line {first} was asked for")
        out = self._lines(count)
        if len(out) < count:
            self.close()
            raise OSError(f"{path}: line {first + len(out)} is not there (yet)")
        return out

    def _lines(self, count: int) -> list[bytes]:
        """Up to ``count`` whole lines from the offset (fewer at the file's end), consumed."""
        assert self._fd is not None
        out: list[bytes] = []
        data = bytearray()
        start = 0  # of the next line in data
        ended = False  # the file's lines end in data: its end, or a mapped segment's zeros
        while len(out) < count:
            end = data.find(b"\n", start)
            if end < 0:
                if ended:
                    break
                chunk = os.pread(self._fd, self._CHUNK, self._offset + len(data))
                if not chunk:
                    break
                # a mapped segment's zeros past its lines (``spool.py``): where only zeros follow
                zero = chunk.find(b"\0")
                if zero >= 0 and not chunk[zero:].strip(b"\0"):
                    chunk, ended = chunk[:zero], True
                data += chunk
                continue
            out.append(bytes(data[start:end]))
            start = end + 1
        self._offset += start
        self._next += len(out)
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def main() -> int:
    return run(functools.partial(serve, lower_priority=True), "lmgate store writer")


if __name__ == "__main__":
    raise SystemExit(main())
