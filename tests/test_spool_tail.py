"""The spool tail's processor (loggers/spool_tail.py) on its own, with an exporter that reads the
lines it is sent from the spool file as the store's writer child does: every record is a whole line
of the spool file when ``enqueue`` returns, each is exported once and in order, whether it took the
short path (a line appended right after the run waiting last) or the long one (a first line, a
full segment, a batch taken, a write refused), and the counts add up. Real files, a real delivery
thread; no sleeps (``flush``)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import orjson

from lmgate.loggers.batch_settings import BatchSettings
from lmgate.loggers.exporter import DELIVERED
from lmgate.loggers.spool_tail import SpoolTailProcessor


class LinesReader:
    """Exports runs of spool lines by reading them from the file, like ``store_process``'s child."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.lock = threading.Lock()

    def export_lines(self, path: str, first: int, count: int) -> list:
        with open(path, "rb") as f:
            lines = wal_bytes(f.read()).split(b"\n")
        assert len(lines) > first + count - 1 and all(lines[first : first + count])
        with self.lock:
            self.got += lines[first : first + count]
        return [DELIVERED] * count

    def export(self, batch) -> list:
        with self.lock:
            self.got += list(batch.records)
        return [DELIVERED] * len(batch.records)

    def close(self) -> None:
        pass


def processor(tmp_path: Path, mapped: bool = True, **options) -> tuple[SpoolTailProcessor, LinesReader]:
    settings = BatchSettings.build(
        name="tail", spool="write_ahead", spool_dir=str(tmp_path / "spool"), flush_interval=3600, **options
    )
    reader = LinesReader()
    return SpoolTailProcessor(reader, settings, name="tail", mapped=mapped), reader


def wal_bytes(data: bytes) -> bytes:
    """A segment's lines: a mapped segment's file holds zeros past them until it is retired."""
    end = data.find(b"\0")
    return data if end < 0 else data[:end]


def record(i: int) -> bytes:
    return orjson.dumps({"i": i, "pad": "x" * (i * 13 % 90)})


def spool_lines(proc: SpoolTailProcessor) -> list[bytes]:
    out: list[bytes] = []
    for name in sorted(os.listdir(proc.spool.directory)):
        if name.endswith(".wal"):
            out += wal_bytes(Path(proc.spool.directory, name).read_bytes()).split(b"\n")[:-1]
    return out


def test_each_record_is_a_line_of_the_file_when_enqueue_returns_and_is_exported_once(tmp_path):
    proc, reader = processor(tmp_path, batch_size=7)
    proc.spool.segment_max_bytes = 400  # a new segment every few records
    sent: list[bytes] = []
    short = 0
    for i in range(60):
        short += proc._tail is not None  # this one takes the short path
        proc.enqueue(record(i))
        sent.append(record(i))
        # the last whole line of the segment written to, before enqueue returned (the page cache)
        assert wal_bytes(Path(proc.spool._active.path).read_bytes()).split(b"\n")[-2:] == [sent[-1], b""]
        if i in (20, 41):
            assert proc.flush(30)
    assert short > 30  # most lines took the short path: the test covers it
    assert proc.flush(30)
    assert reader.got == sent  # each once, in order, across segments and batches
    stats = proc.stats()
    assert stats["emitted"] == stats["delivered"] == 60 and stats["pending"] == 0, stats
    assert proc.spool.stats()["unresolved"] == 0
    assert proc.close(5)
    assert not [n for n in os.listdir(proc.spool.directory) if n.endswith(".wal")]


def test_a_full_batch_wakes_the_delivery_thread_on_the_short_path(tmp_path):
    """``batch_size`` records ship without waiting for ``flush_interval`` (an hour here)."""
    proc, reader = processor(tmp_path, batch_size=5)
    shipped = threading.Event()
    export_lines = reader.export_lines

    def noted(*args):
        try:
            return export_lines(*args)
        finally:
            shipped.set()

    reader.export_lines = noted  # type: ignore[method-assign]
    for i in range(5):
        proc.enqueue(record(i))
    assert shipped.wait(30)
    assert proc.flush(30) and reader.got == [record(i) for i in range(5)]
    proc.close(5)


def test_lines_left_at_close_are_spooled_for_the_next_process_once(tmp_path):
    proc, reader = processor(tmp_path)
    for i in range(10):
        proc.enqueue(record(i))
    proc.close(0.0)  # within no time: what was not exported stays in the spool
    assert proc.stats()["emitted"] == 10
    nxt, reader2 = processor(tmp_path)
    assert nxt.flush(30)
    assert sorted(reader.got + reader2.got) == sorted(record(i) for i in range(10))  # each once
    assert nxt.close(5)


def test_a_write_refused_or_cut_short_on_the_short_path_leaves_whole_lines_only(tmp_path):
    """Under a file-size limit the short path's ``write()`` is cut short and then refused: the cut
    line is taken back (``Spool.retry_one``), the record kept in memory and exported from there;
    the file holds whole lines only, and every record is exported once."""
    script = textwrap.dedent(
        f"""
        import os, resource, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_spool_tail import processor, record, spool_lines
        from pathlib import Path
        proc, reader = processor(Path({str(tmp_path)!r}), mapped=False, batch_size=1000)
        for i in range(3):
            proc.enqueue(record(i))
        assert proc._tail is not None
        size = sum(os.path.getsize(os.path.join(proc.spool.directory, n))
                   for n in os.listdir(proc.spool.directory) if n.endswith(".wal"))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 30, size + 30))  # the next line is cut
        for i in range(3, 8):
            proc.enqueue(record(i))
        stats = proc.stats()
        assert stats["spool_write_failed"] == 4, stats  # 3 cut short, 4-6 refused; 7 (short) fits
        data = Path(proc.spool.directory, [n for n in os.listdir(proc.spool.directory)
                                           if n.endswith(".wal")][0]).read_bytes()
        assert data.endswith(b"\\n" + record(7) + b"\\n") and len(data) == size + len(record(7)) + 1
        assert proc.flush(30), proc.stats()
        assert reader.got == [record(i) for i in range(8)], reader.got
        assert proc.stats()["delivered"] == 8
        print("OK")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def test_adopted_records_wait_for_an_orphan_writer_child_of_their_segment(tmp_path):
    """A killed process's writer child may still be writing lines of a segment (it holds the
    segment's POSIX record lock, ``store_process.WRITING_BYTE``) when the next process adopts it:
    the adopted records are not handed to the exporter until that child lets go, so the two never
    write the same records at once (ClickHouse stored them twice: the SIGKILL + restart test)."""
    from lmgate.loggers.store_process import WRITING_BYTE

    spool = tmp_path / "spool"
    spool.mkdir()
    segment = spool / "00000000000000000001-1-0badf00d.wal"
    segment.write_bytes(b"".join(record(i) + b"\n" for i in range(3)))
    orphan = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys\n"
            f"fd = os.open({str(segment)!r}, os.O_RDWR)\n"
            f"fcntl.lockf(fd, fcntl.LOCK_EX, 1, {WRITING_BYTE})\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert orphan.stdout is not None and orphan.stdout.readline() == "locked\n"
        proc, reader = processor(tmp_path)
        assert proc.stats()["recovered"] == 3
        assert not proc.flush(0.5)  # held back while the orphan reads the segment
        assert reader.got == []
    finally:
        assert orphan.stdin is not None
        orphan.stdin.close()
        orphan.wait(30)
        orphan.stdout.close()
    assert proc.flush(30)
    assert reader.got == [record(i) for i in range(3)]
    assert proc.close(5)


def test_a_batch_still_written_after_close_s_wait_keeps_its_lines_from_the_next_process(tmp_path):
    """close() waits 5 s for the delivery thread; a batch the writer is still on after that (a
    stalled machine) is counted as spooled, but its lines stay locked in this process until the
    thread resolves them: a processor started meanwhile does not adopt them, so the records are
    written once (ClickHouse would keep a second insert), and the thread lets the spool go."""
    proc, reader = processor(tmp_path, batch_size=3)
    entered, release = threading.Event(), threading.Event()
    export_lines = reader.export_lines

    def held(*args):
        entered.set()
        assert release.wait(60)
        return export_lines(*args)

    reader.export_lines = held  # type: ignore[method-assign]
    for i in range(3):
        proc.enqueue(record(i))
    assert entered.wait(30)  # the batch is with the writer
    assert proc.close(0) is False  # gives up on it after its 5 s wait
    assert proc.stats()["spooled"] == 3
    nxt, reader2 = processor(tmp_path)
    assert nxt.stats()["recovered"] == 0  # still this process's: not adopted
    release.set()
    proc._thread.join(30)
    assert not proc._thread.is_alive()
    assert reader.got == [record(i) for i in range(3)]
    stats = proc.stats()
    assert stats["delivered"] == 3 and stats["spooled"] == 0, stats
    assert nxt.close(5)
    last, reader3 = processor(tmp_path)
    assert last.stats()["recovered"] == 0 and reader2.got == reader3.got == []  # written once
    assert last.close(5)
