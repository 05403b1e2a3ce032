"""The spool never reports a record as spooled that is not on disk: a full disk and short writes are
detected, counted as dropped with their reason, and said once in the log (issue 11, point 10).

A child process writes the spool under a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored, so
write() is cut short and then fails with EFBIG) or on a tiny tmpfs (ENOSPC, when this process
may mount one); the test then adopts the spool in a fresh logger and counts what is on disk."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from lmgate.loggers import BatchLogger, InMemoryExporter, Spool
from lmgate.loggers.spool import SpoolWriteError

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file-size limits")

N = 2000
CHILD = textwrap.dedent(
    """
    import json, logging, resource, signal, sys
    spool_dir, mode, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    if limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from lmgate import RetryPolicy
    from lmgate.loggers import BatchLogger, Outcome

    class Down:  # a receiver that is down: everything stays pending until close
        def export(self, batch):
            return Outcome("retry", "connection_error")
        def close(self):
            pass

    lg = BatchLogger(Down(), name="full", spool=mode, spool_dir=spool_dir, batch_size=100_000,
                     flush_interval=3600, retry_policy=RetryPolicy(base_delay_s=0.01, max_delay_s=0.01))
    for i in range(int(sys.argv[4])):
        lg.enqueue({"i": i, "pad": "x" * 200})
    lg.close(0)
    print(json.dumps(lg.stats()), flush=True)
    """
)


def run_child(spool_dir: Path, mode: str, limit: int, n: int = N) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(spool_dir), mode, str(limit), str(n)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def adopt(spool_dir: Path) -> list[int]:
    """What a fresh process finds on disk and delivers: the records' numbers."""
    exporter = InMemoryExporter()
    lg = BatchLogger(exporter, name="adopter", spool="exit", spool_dir=str(spool_dir), flush_interval=3600)
    try:
        assert lg.flush(20)
    finally:
        lg.close(0)
    return [r["i"] for r in exporter.records]


def assert_whole_lines(spool_dir: Path) -> None:
    for name in os.listdir(spool_dir):
        if name.endswith(".wal"):
            data = (spool_dir / name).read_bytes()
            assert not data or data.endswith(b"\n"), f"{name} ends in a cut line"
            for line in data.splitlines():
                orjson.loads(line)


@pytest.mark.parametrize("mode", ["exit", "write_ahead"])
def test_a_file_size_limit_counts_what_is_not_on_disk(tmp_path: Path, mode: str, caplog) -> None:
    """Under a 64 KiB file limit only what fits is counted as spooled; the rest is dropped as spool_full,
    said in one error line, and the next process finds exactly the spooled records, none cut."""
    spool_dir = tmp_path / "spool"
    stats, stderr = run_child(spool_dir, mode, 64 * 1024)
    assert 0 < stats["spooled"] < N
    assert stats["dropped"] == {"spool_full": N - stats["spooled"]}
    assert stats["emitted"] == stats["delivered"] + stats["dropped_total"] + stats["pending"] == N
    assert stderr.count("cannot write to the spool") == 1, stderr
    assert (
        f"{stats['spooled']} spooled to" in stderr
        and f"{N - stats['spooled']} dropped as 'spool_full'" in stderr
    )
    if mode == "write_ahead":
        assert stats["spool_write_failed"] == N - stats["spooled"]
    assert_whole_lines(spool_dir)
    found = adopt(spool_dir)
    assert found == list(range(stats["spooled"])), "exactly the records counted as spooled, in order"
    assert "torn record" not in caplog.text


def test_without_a_limit_everything_is_spooled(tmp_path: Path) -> None:
    """The same child with room to write: all records spooled, none dropped (the test above can fail)."""
    stats, stderr = run_child(tmp_path / "spool", "exit", 0, n=200)
    assert stats["spooled"] == 200 and stats["dropped_total"] == 0
    assert "cannot write to the spool" not in stderr
    assert adopt(tmp_path / "spool") == list(range(200))


@contextlib.contextmanager
def tiny_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    directory.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_counts_what_is_not_on_disk(tmp_path: Path) -> None:
    """On a 64 KiB tmpfs (ENOSPC), the exit spool counts only what is on disk; the next process finds exactly that."""
    with tiny_tmpfs(tmp_path / "disk", "64k") as disk:
        spool_dir = disk / "spool"
        stats, stderr = run_child(spool_dir, "exit", 0)
        assert 0 < stats["spooled"] < N
        assert stats["dropped"] == {"spool_full": N - stats["spooled"]}
        assert stderr.count("cannot write to the spool") == 1, stderr
        assert_whole_lines(spool_dir)
        assert adopt(spool_dir) == list(range(stats["spooled"]))


def test_append_reports_the_prefix_on_disk(tmp_path: Path) -> None:
    """Spool.append under a file-size limit raises SpoolWriteError with the refs of the whole lines written;
    later appends to the same spool start on a clean line."""
    code = textwrap.dedent(
        """
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from lmgate.loggers.spool import Spool, SpoolWriteError
        spool = Spool(sys.argv[1])
        try:
            spool.append([b'{"i":%d,"pad":"%s"}' % (i, b"x" * 80) for i in range(20)])
        except SpoolWriteError as error:
            print(error.reason, len(error.refs), flush=True)
        try:
            spool.append_one(b'{"i":99,"pad":"%s"}' % (b"y" * 300))  # more than the room left
        except SpoolWriteError as error:
            print(error.reason, len(error.refs), flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    first, second = proc.stdout.split("\n")[:2]
    reason, written = first.split()
    assert reason == "spool_full" and 0 < int(written) < 20
    assert second == "spool_full 0"
    assert_whole_lines(tmp_path)
    found, _ = Spool(str(tmp_path)).adopt(100, 10**6)
    assert [orjson.loads(data)["i"] for data, _ in found] == list(range(int(written)))


def test_spool_write_error_is_an_oserror() -> None:
    """Callers that catch OSError keep working."""
    assert issubclass(SpoolWriteError, OSError)


def test_acks_after_a_failed_append_point_at_the_right_lines(tmp_path: Path) -> None:
    """A record cut short is truncated away, so the next record's line number matches the file:
    acknowledging the others leaves exactly it for the next process."""
    code = textwrap.dedent(
        """
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from lmgate.loggers.spool import Spool, SpoolWriteError
        spool = Spool(sys.argv[1])
        refs = [spool.append_one(b'{"i":%d,"pad":"%s"}' % (i, b"x" * 80)) for i in range(9)]  # 828 bytes
        try:
            spool.append_one(b'{"i":99,"pad":"%s"}' % (b"y" * 300))  # cut short at 1000 bytes
        except SpoolWriteError:
            pass
        last = spool.append_one(b'{"i":50}')  # fits after the cut part is gone
        spool.ack(refs)
        print(last[1], flush=True)
        spool.close()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "9"
    assert_whole_lines(tmp_path)
    found, _ = Spool(str(tmp_path)).adopt(100, 10**6)
    assert [orjson.loads(d) for d, _ in found] == [{"i": 50}]
