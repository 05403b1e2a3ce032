"""A mapped spool (``loggers/spool.py``, ``mapped=True``: the store's write-ahead spool, written by
``SpoolTailProcessor``): the active segment is written through a memory map of a file reserved at
its full size, so its file holds zeros past its lines until it is retired. Every line is read back
by the store's own reader (``store_process.SpoolLines``) and by adoption after a SIGKILL, a
retired segment is cut to its lines, and whatever the map cannot do (a record longer than a
segment, a filesystem that refuses the reservation) is written with ``write()``. Real files and
processes; no sleeps."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest
from test_spool_tail import processor, record

from lmgate.loggers.spool import Spool
from lmgate.loggers.store_process import SpoolLines

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fallocate"), reason="no posix_fallocate here")


def test_a_mapped_segment_holds_its_lines_then_is_cut_to_them_when_full(tmp_path):
    spool = Spool(str(tmp_path), segment_max_bytes=4096, mapped=True)
    lines = [orjson.dumps({"i": i, "pad": "y" * 300}) for i in range(20)]  # ~12 a segment
    refs = [spool.append_one(line) for line in lines]
    first = refs[0][0]
    assert first.map is None and not first.active  # full: retired, its map closed
    # cut to its whole lines: no zeros left in a retired segment's file
    data = Path(first.path).read_bytes()
    assert b"\0" not in data and data.split(b"\n")[:-1] == [
        line for ref, line in zip(refs, lines, strict=True) if ref[0] is first
    ]
    active = refs[-1][0]
    assert active.map is not None and os.path.getsize(active.path) == 4096  # reserved whole
    # the store's reader finds the lines and stops at the zeros (not at the file's end)
    reader = SpoolLines()
    mine = [line for ref, line in zip(refs, lines, strict=True) if ref[0] is active]
    assert reader.read(active.path, 0, len(mine)) == mine
    with pytest.raises(OSError, match="not there"):
        reader.read(active.path, len(mine), 1)
    reader.close()
    spool.close()  # unresolved: left for the next process, cut to its lines
    assert Path(active.path).read_bytes() == b"".join(line + b"\n" for line in mine)


def test_a_record_longer_than_a_segment_is_written_with_write(tmp_path):
    spool = Spool(str(tmp_path), segment_max_bytes=1024, mapped=True)
    small, big, after = b'{"a":1}', orjson.dumps({"big": "z" * 3000}), b'{"b":2}'
    (s1, i1), (s2, i2), (s3, i3) = (spool.append_one(r) for r in (small, big, after))
    assert s2 is not s1 and s2.map is None and (i1, i2) == (0, 0)
    assert Path(s2.path).read_bytes() == big + b"\n"
    assert s3 is not s2 and s3.map is not None and i3 == 0  # the next segment is mapped again
    reader = SpoolLines()
    assert [reader.read(s.path, 0, 1)[0] for s in (s1, s2, s3)] == [small, big, after]
    reader.close()
    spool.close()


def test_a_filesystem_that_refuses_the_reservation_gets_write(tmp_path):
    """A file-size limit below a segment's size: the reservation fails (EFBIG), the segment is
    written with write(), every record reaches the exporter once and nothing counts as failed."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_spool_tail import processor, record
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))  # segments are 16 MiB
        proc, reader = processor(Path({str(tmp_path)!r}), batch_size=1000)
        for i in range(50):
            proc.enqueue(record(i))
        assert proc.spool._active.map is None
        assert proc.flush(30)
        assert reader.got == [record(i) for i in range(50)], reader.got
        stats = proc.stats()
        assert stats["delivered"] == 50 and stats["spool_write_failed"] == 0, stats
        print("OK")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "OK" in done.stdout, done.stdout + done.stderr


def test_lines_of_a_mapped_segment_survive_a_sigkill_and_are_adopted_once(tmp_path, caplog):
    """A process killed with SIGKILL leaves its mapped segment at full size, zeros past its lines:
    the next process adopts exactly the lines written, each once."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_spool_tail import processor, record
        proc, reader = processor(Path({str(tmp_path)!r}), batch_size=1000)
        for i in range(500):
            proc.enqueue(record(i))
        assert proc.spool._active.map is not None and reader.got == []
        print("written", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == -9 and done.stdout == "written\n", done.stdout + done.stderr
    [segment] = [p for p in (tmp_path / "spool").iterdir() if p.suffix == ".wal"]
    assert segment.stat().st_size == 16 * 1024 * 1024 and segment.read_bytes().endswith(b"\0")
    with caplog.at_level("WARNING", logger="lmgate.loggers"):
        nxt, reader = processor(tmp_path)
    assert not [r for r in caplog.records if "torn" in r.getMessage()]  # the zeros are no record
    assert nxt.stats()["recovered"] == 500
    assert nxt.flush(30)
    assert reader.got == [record(i) for i in range(500)]
    assert nxt.close(5)
    assert not [p for p in (tmp_path / "spool").iterdir() if p.suffix == ".wal"]


def test_only_filesystems_that_reserve_blocks_get_a_mapped_spool(tmp_path):
    """A write through a map that needs blocks the disk no longer has ends the process (SIGBUS):
    only filesystems whose fallocate reserves them for good (ext4, XFS, tmpfs) are mapped, not
    copy-on-write ones (btrfs: an overwrite takes new blocks) nor those where glibc imitates it."""
    from lmgate.loggers.spool import MAPPED_FILESYSTEMS, filesystem_of

    mounts = "\n".join(
        [
            "/dev/vda / ext4 rw,relatime 0 0",
            "/dev/vdb /data btrfs rw 0 0",
            "/dev/vdc /data/fast xfs rw 0 0",
            "srv:/x /mnt/my\\040share nfs4 rw 0 0",
            "tmpfs /dev/shm tmpfs rw 0 0",
        ]
    )
    kinds = {
        p: filesystem_of(p, mounts)
        for p in ("/var/spool", "/data/spool", "/data/fast/spool", "/datax", "/mnt/my share/s", "/dev/shm/s")
    }
    assert kinds == {
        "/var/spool": "ext4",
        "/data/spool": "btrfs",
        "/data/fast/spool": "xfs",
        "/datax": "ext4",  # a prefix of the name is not a mount point above it
        "/mnt/my share/s": "nfs4",
        "/dev/shm/s": "tmpfs",
    }
    assert {k for k in kinds.values() if k in MAPPED_FILESYSTEMS} == {"ext4", "xfs", "tmpfs"}
    # this machine's: a temp dir's filesystem decides, as it will for the store's spool
    here = filesystem_of(str(tmp_path))
    assert Spool(str(tmp_path), mapped=True).mapped is (here in MAPPED_FILESYSTEMS)


def test_a_nul_byte_inside_a_record_of_a_write_spool_is_kept(tmp_path):
    """Only the zeros *after* the lines end a segment: a record of a write() spool (a batch
    logger's, which takes bytes it does not parse) holding a NUL byte is adopted and read whole."""
    odd, after = b'{"a":"x\x00y"}', b'{"b":2}'
    spool = Spool(str(tmp_path))
    (segment, first), _ = spool.append_one(odd), spool.append_one(after)
    reader = SpoolLines()
    assert reader.read(segment.path, first, 2) == [odd, after]
    reader.close()
    spool.close()
    found, _ = Spool(str(tmp_path)).adopt(100, 1 << 20)
    assert [line for line, _ in found] == [odd, after]
