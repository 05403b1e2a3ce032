"""A disk spool: records that are not delivered yet survive the process.

Layout of a spool directory (one per logger)::

    <ns>-<pid>-<rand>.wal   one record per line (compact JSON, so a line never holds a newline)
    <ns>-<pid>-<rand>.ack   "first last" lines: ranges of .wal line numbers that are resolved
                            (delivered, or dropped for a reason that retrying cannot fix)

A segment is owned by the process that holds an exclusive ``flock`` on its .wal file; the lock
dies with the process, whatever the way it dies. A process starting the same logger *adopts*
every segment it can lock (its owner is gone), sends the lines not acknowledged, and acks
them in turn. A segment whose every line is resolved is deleted.

Durability: ``append`` is one ``write()`` to a file opened with ``O_APPEND``. Once it returns
the bytes belong to the kernel, so a SIGKILL of this process loses nothing; a power cut can
lose the last few seconds unless ``fsync=True`` (one ``fsync`` per append: durable across a
crash of the machine, at the price of a disk flush on the caller's path).

A *mapped* spool (``mapped=True``: the store's, whose serving process writes a line per call)
writes its active segment through a shared memory map instead: the file gets its full size at
once (``posix_fallocate``: its blocks are reserved, so no write through the map can meet a full
disk), and a line is copied into the map, no system call. The pages are the file's page cache,
as a ``write()``'s are: a SIGKILL loses nothing either. Measured on the proxy: a ``write()`` of
a 1.5 kB line cost its event loop 2 µs alone and 9–10 µs on average under load (a fresh page of
page cache every third line, allocated on the caller's path), the copy 0.5 µs; the map's pages
are made ahead, ``POPULATE_CHUNK`` at a time. The file's tail past the last line is zeros until
the segment is retired (then cut to its lines); a reader stops where only zeros follow, so a
segment left by a killed process reads as its lines. Only filesystems whose ``fallocate``
reserves the blocks for good are mapped (``MAPPED_FILESYSTEMS``: ext4, XFS, tmpfs): on a
copy-on-write one, or where glibc imitates ``fallocate``, a full disk would end the process with
SIGBUS instead of failing a ``write()`` the spool counts. Elsewhere, and when the reservation or
a page of the map is refused, the segment is written with ``write()`` as above.

A record is reported as spooled only when its whole line is written (and synced, when asked).
``write()`` may write less than asked (a disk that fills up, a file-size limit): the rest is
written in further calls; when one fails (ENOSPC, EFBIG, EDQUOT, EIO, a write of 0 bytes) the
bytes after the last whole line are truncated away, and ``append`` raises ``SpoolWriteError``
carrying the refs of the records that are on disk (a prefix) and a reason for the others
(``spool_full``, ``spool_short_write``, ``spool_error``). A failed ``fsync`` leaves no record of
that append counted as on disk. If even the truncation fails, the segment is retired: the cut
line at its end has no newline and is never read back as a record.
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any

try:  # POSIX; elsewhere the spool works without cross-process ownership
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger("lmgate.loggers")

DEFAULT_SEGMENT_MAX_BYTES = 16 * 1024 * 1024
# a mapped segment's pages are made (faulted in, writable) this many bytes at a time, ahead of the
# line that needs them: one system call per ~85 lines of 1.5 kB, a pause of ~0.1 ms
POPULATE_CHUNK = 128 * 1024
# madvise(MADV_POPULATE_WRITE), Linux 5.14 (Python names it from 3.12 on); older kernels refuse
# it (EINVAL) and the pages are made by writing the zeros they hold
_POPULATE_WRITE = getattr(mmap, "MADV_POPULATE_WRITE", 23)
_ZEROS = bytes(POPULATE_CHUNK)
# where a mapped segment is written: filesystems whose fallocate reserves the blocks for good, so a
# write through the map cannot need space it does not have. Not copy-on-write ones (btrfs, ZFS:
# an overwrite takes new blocks), not where glibc imitates fallocate (NFS, FUSE): there a full disk
# would end the process with SIGBUS instead of failing a write() that the spool counts
MAPPED_FILESYSTEMS = frozenset({"ext4", "xfs", "tmpfs"})

Ref = tuple["Segment", int]

# errors that mean "no room": a full disk, a quota, a file-size limit
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def filesystem_of(path: str, mounts: str | None = None) -> str | None:
    """The type of the filesystem ``path`` is on (the longest mount point above it in
    ``/proc/self/mounts``, or ``mounts``: that file's text); None when it cannot be told."""
    if mounts is None:
        try:
            with open("/proc/self/mounts", encoding="utf-8", errors="replace") as f:
                mounts = f.read()
        except OSError:
            return None
    real = os.path.realpath(path)
    best, kind = -1, None
    for row in mounts.splitlines():
        parts = row.split()
        if len(parts) < 3:
            continue
        # spaces and the like are written as octal escapes (\040)
        point = parts[1].encode("latin-1", "replace").decode("unicode_escape", "replace")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > best:
            best, kind = len(point), parts[2]
    return kind


class SpoolWriteError(OSError):
    """Raised by ``append`` when not every record could be written: ``refs`` are the records that
    are on disk (a prefix, each a whole line), ``reason`` the drop reason for the rest."""

    def __init__(self, message: str, reason: str, refs: list[Ref]) -> None:
        super().__init__(message)
        self.reason = reason
        self.refs = refs


class _ShortWrite(OSError):
    """write() wrote nothing and said no error."""


def _failure_reason(error: BaseException) -> str:
    if isinstance(error, _ShortWrite):
        return "spool_short_write"
    if isinstance(error, OSError) and error.errno in _FULL_ERRNOS:
        return "spool_full"
    return "spool_error"


def _write_fully(fd: int, data: bytes) -> int:
    """Write all of ``data``, in as many ``write()`` calls as it takes; the bytes written when one
    fails are in the raised error's ``written`` attribute."""
    done = os.write(fd, data)  # almost always all of it
    if done == len(data):
        return done
    view = memoryview(data)
    try:
        while done < len(data):
            n = os.write(fd, view[done:])
            if n <= 0:
                raise _ShortWrite(errno.EIO, f"write() wrote 0 of {len(data) - done} bytes")
            done += n
    except OSError as error:
        error.written = done  # type: ignore[attr-defined]
        raise
    return done


class Segment:
    """One .wal file and its .ack file; see the module docstring."""

    __slots__ = ("path", "ack_path", "fd", "count", "unresolved", "active", "size", "_ack_fd", "map", "ready")

    def __init__(self, path: str, fd: int, count: int, unresolved: int, active: bool) -> None:
        self.path = path
        self.ack_path = path[:-4] + ".ack"
        self.fd = fd
        self.count = count  # lines written
        self.unresolved = unresolved
        self.active = active  # still being appended to
        self.size = 0  # bytes of whole lines written by this process (the active segment's end)
        self._ack_fd: int | None = None
        # a mapped segment's map (the whole file) and how far its pages are made; None: written
        # with write() (``Spool._unmap`` turns the one into the other)
        self.map: mmap.mmap | None = None
        self.ready = 0

    @property
    def name(self) -> str:
        return os.path.basename(self.path)[:-4]

    def write_acks(self, ranges: list[tuple[int, int]]) -> None:
        if self._ack_fd is None:
            self._ack_fd = os.open(self.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        # a cut row cannot ack a wrong line: rows are read as two numbers or ignored; the records
        # it leaves unacknowledged are sent again (at-least-once), never lost
        _write_fully(self._ack_fd, "".join(f"{a} {b}\n" for a, b in ranges).encode())

    def ack_released(self, ranges: list[tuple[int, int]]) -> None:
        """Acknowledge lines of a segment this process no longer holds (closed while their
        delivery was still under way). The .ack file is appended to by path, so whoever adopts
        the segment next skips them; nothing is deleted without the lock."""
        if not os.path.exists(self.path):
            return  # resolved and removed by the process that adopted it
        fd = os.open(self.ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, "".join(f"{a} {b}\n" for a, b in ranges).encode())
        finally:
            os.close(fd)

    def close(self) -> None:
        if self.map is not None:  # a map left open would keep the file's pages (and a reference)
            self.map.close()
            self.map = None
        if self._ack_fd is not None:
            os.close(self._ack_fd)
            self._ack_fd = None
        os.close(self.fd)  # releases the flock

    def remove(self) -> None:
        for path in (self.path, self.ack_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.close()


def _ranges(indices: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for i in sorted(indices):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def _try_lock(fd: int) -> bool:
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


class Spool:
    """Append, acknowledge and adopt records in one directory. Thread-safe."""

    def __init__(
        self,
        directory: str,
        fsync: bool = False,
        segment_max_bytes: int = DEFAULT_SEGMENT_MAX_BYTES,
        lock: threading.RLock | None = None,
        mapped: bool = False,
    ) -> None:
        """``lock``: the lock guarding the spool's state, when its owner shares one (the spool
        tail's processor: it appends a line to the active segment under its own lock, without a
        second lock or call: ``spool_tail.py``, ``SpoolTailProcessor.enqueue``); it must be
        reentrant. By default the spool has a lock of its own. ``mapped``: write the active
        segment through a memory map (the module docstring); not with ``fsync``."""
        # absolute: a segment's path is handed to the store's writer child, which may start
        # after the program changed its working directory
        self.directory = os.path.abspath(directory)
        self.fsync = fsync
        self.segment_max_bytes = segment_max_bytes
        self.mapped = (
            mapped
            and not fsync
            and hasattr(os, "posix_fallocate")
            and filesystem_of(self.directory) in MAPPED_FILESYSTEMS
        )
        self._lock: Any = lock if lock is not None else threading.Lock()
        self._active: Segment | None = None
        self._segments: dict[str, Segment] = {}  # every segment this process holds, by name
        self._released: dict[str, Segment] = {}  # segments let go at close with lines unresolved
        self._closed = False
        self._last_error: OSError | None = None  # why the last write failed

    # ---- writing ----
    def _new_segment(self) -> Segment:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        stem = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}"
        tmp = os.path.join(self.directory, stem + ".tmp")
        # a mapped segment is written at offsets (through its map): no O_APPEND, which it gets
        # back when it is written with write() after all (``_unmap``)
        flags = os.O_RDWR if self.mapped else os.O_WRONLY | os.O_APPEND
        fd = os.open(tmp, flags | os.O_CREAT | os.O_EXCL, 0o600)
        _try_lock(fd)
        # locked before it gets its visible name, so no other process can adopt it half-made
        path = os.path.join(self.directory, stem + ".wal")
        os.rename(tmp, path)
        if self.fsync:
            self._fsync_dir()
        segment = Segment(path, fd, 0, 0, active=True)
        self._segments[segment.name] = segment
        if self.mapped:
            self._map(segment)
        return segment

    def _map(self, segment: Segment) -> None:
        """Give a new, empty segment its full size, its blocks reserved, and a map of it; left a
        ``write()`` segment when the filesystem cannot (no room, no ``fallocate``, a file-size
        limit)."""
        try:
            os.posix_fallocate(segment.fd, 0, self.segment_max_bytes)
            segment.map = mmap.mmap(segment.fd, self.segment_max_bytes)
        except (OSError, ValueError) as error:
            logger.debug("lmgate spool: writing %s with write(): %s", segment.path, error)
            self._unmap(segment, writing=True)

    def _unmap(self, segment: Segment, writing: bool = False) -> None:
        """Make ``segment`` a ``write()`` segment again (under self._lock): its map closed, the
        file cut to its whole lines, ``O_APPEND`` on. A file that cannot be cut keeps its zeros,
        which readers stop at; one that is to be ``writing`` on is then retired instead (a line
        written after the zeros would never be read) and the OSError raised, which the caller
        meets as a failed write."""
        if segment.map is not None:
            segment.map.close()
            segment.map = None
        segment.ready = 0
        try:
            fcntl.fcntl(segment.fd, fcntl.F_SETFL, fcntl.fcntl(segment.fd, fcntl.F_GETFL) | os.O_APPEND)
            os.ftruncate(segment.fd, segment.size)
        except OSError as error:
            logger.debug("lmgate spool: cannot cut %s to its lines: %s", segment.path, error)
            if writing:
                if self._active is segment:
                    self._active = None
                self._retire(segment)
                raise

    def map_line(self, segment: Segment, record: bytes) -> bool:
        """Copy ``record`` and its newline to the end of mapped ``segment`` (under self._lock),
        making the map's pages ahead when the line needs them; False, nothing written, when the
        line does not fit in the segment."""
        m = segment.map
        assert m is not None
        start = segment.size
        end = start + len(record) + 1
        if end > segment.ready:
            if end > len(m):
                return False
            try:
                self._populate(segment, end)
            except OSError as error:  # its pages cannot be made: the rest of it with write()
                logger.warning("lmgate spool: writing %s with write() from here: %s", segment.path, error)
                try:
                    self._unmap(segment, writing=True)
                except OSError:
                    pass  # retired: the next line goes to a new segment
                return False
        m[start : end - 1] = record
        m[end - 1] = 10
        segment.size = end
        return True

    @staticmethod
    def _populate(segment: Segment, end: int) -> None:
        """Make the map's pages up to at least ``end``, writable, ``POPULATE_CHUNK`` at a time: a
        first write to a page of the map costs a page fault each, a populate one call for them all."""
        m = segment.map
        assert m is not None
        start = segment.ready
        page = mmap.PAGESIZE
        stop = min(len(m), (end + POPULATE_CHUNK + page - 1) // page * page)  # start stays page-aligned
        try:
            m.madvise(_POPULATE_WRITE, start, stop - start)
        except OSError as error:
            if error.errno != errno.EINVAL:  # a page the filesystem cannot give: not written
                raise
            # an older kernel, which does not know the advice: the zeros the pages hold, written
            for at in range(start, stop, POPULATE_CHUNK):
                m[at : min(stop, at + POPULATE_CHUNK)] = _ZEROS[: min(stop, at + POPULATE_CHUNK) - at]
        segment.ready = stop

    def _fsync_dir(self) -> None:
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _writable_segment(self) -> Segment:
        """The segment to append to (under self._lock): a new one when the active one is full."""
        if self._closed:
            raise RuntimeError("the spool is closed")
        segment = self._active
        if segment is None or segment.size >= self.segment_max_bytes:
            if segment is not None:
                self._retire(segment)
            segment = self._active = self._new_segment()
        return segment

    def appendable(self, segment: Segment) -> bool:
        """Whether the next line may go to the end of ``segment`` with one plain ``write()`` (or,
        mapped, one copy into its map) and nothing else (under the lock): it is the active segment,
        not full, and no ``fsync`` is asked. The spool tail's processor writes such lines itself
        (``SpoolTailProcessor.enqueue``, which then adds to the segment's ``size``, ``count`` and
        ``unresolved`` as ``append_one`` does, and sends anything unusual to ``retry_one``, or a
        line the map has no room for to ``append_one``)."""
        return (
            segment is self._active
            and not self._closed
            and not self.fsync
            and segment.size < self.segment_max_bytes
        )

    def append(self, records: list[bytes], sync: bool | None = None) -> list[Ref]:
        """Write ``records`` (each without a newline) in one ``write()``; their refs, in order.
        Raises ``SpoolWriteError`` (with the refs of those on disk) when not all could be written."""
        if not records:
            return []
        data = b"\n".join(records) + b"\n"
        with self._lock:
            segment = self._open_segment()
            first, count = self._write(segment, data, self.fsync if sync is None else sync)
            refs = [(segment, first + i) for i in range(count)]
            if count < len(records):
                raise self._failed(refs, len(records))
            return refs

    def append_one(self, record: bytes) -> Ref:
        """``append([record])[0]`` without the list work: the write-ahead spool calls this once
        per call, on the caller's path."""
        with self._lock:
            segment = self._active
            # the usual case read here, not through two calls (``_writable_segment``'s checks)
            if self._closed or segment is None or segment.size >= self.segment_max_bytes:
                segment = self._open_segment()
            if segment.map is not None:
                if self.map_line(segment, record):
                    return self._counted(segment)
                # the line does not fit (or the map failed and the segment was cut: its write()
                # goes on here, from a fresh segment all the same)
                segment = self._roll()
                if segment.map is not None:
                    if self.map_line(segment, record):
                        return self._counted(segment)
                    if segment.map is not None:  # a record longer than a segment: write()
                        self._unmap(segment, writing=True)
            data = record + b"\n"
            try:
                written = os.write(segment.fd, data)
                if written != len(data):
                    raise BlockingIOError  # cut short: the careful path below
                if self.fsync:
                    os.fsync(segment.fd)
            except OSError:
                return self.retry_one(segment, data)
            segment.size += written
            return self._counted(segment)

    def _roll(self) -> Segment:
        """Retire the active segment (full) and open the next (under self._lock)."""
        segment = self._active
        if segment is not None:
            self._active = None
            self._retire(segment)
        return self._open_segment()

    @staticmethod
    def _counted(segment: Segment) -> Ref:
        """The ref of the line just written to the end of ``segment`` (copied into its map or
        written), counted."""
        index = segment.count
        segment.count = index + 1
        segment.unresolved += 1
        return (segment, index)

    def retry_one(self, segment: Segment, line: bytes) -> Ref:
        """Write ``line`` (one record and its newline) at the end of ``segment``, the active
        segment, after a plain ``write()`` of it failed or was cut short (under the lock): the file
        is cut back to its last whole line and the line written again, in as many calls as it
        takes. Raises ``SpoolWriteError`` when it is not on disk."""
        first, count = self._write(segment, line, self.fsync, retry_from=segment.size)
        if not count:
            raise self._failed([], 1) from None
        return (segment, first)

    def _open_segment(self) -> Segment:
        try:
            return self._writable_segment()
        except OSError as error:
            self._last_error = error
            raise SpoolWriteError(
                f"cannot open a spool segment: {error}", _failure_reason(error), []
            ) from error

    def _write(
        self, segment: Segment, data: bytes, sync: bool, retry_from: int | None = None
    ) -> tuple[int, int]:
        """Append ``data`` (whole lines) to the active segment, under self._lock; the index of
        its first line and how many of its lines are on disk. After a failure what follows the
        last whole line written is truncated away, or, when that fails too, the segment is
        retired (its cut last line has no newline, so it is never read as a record). With
        ``retry_from`` the file is first cut back to that size (``append_one``'s first try)."""
        if segment.map is not None:  # rare (records kept in memory, written at close): write()
            try:
                self._unmap(segment, writing=True)
            except OSError as error:  # retired: none of these lines is on disk
                self._last_error = error
                return segment.count, 0
        start = segment.size if retry_from is None else retry_from
        done = 0
        keep = len(data)
        torn = False
        try:
            if retry_from is not None:
                os.ftruncate(segment.fd, retry_from)
            done = _write_fully(segment.fd, data)
            if sync:
                os.fsync(segment.fd)
        except OSError as error:
            self._last_error = error
            # after a failed fsync nothing of this append is known to be on disk
            keep = 0 if done else data.rfind(b"\n", 0, getattr(error, "written", 0)) + 1
            try:
                os.ftruncate(segment.fd, start + keep)
            except OSError:
                torn = True
        segment.size = start + keep
        first = segment.count
        count = data.count(b"\n", 0, keep)
        segment.count += count
        segment.unresolved += count
        if torn:  # never append after a cut line
            self._active = None
            self._retire(segment)
        return first, count

    def _failed(self, refs: list[Ref], asked: int) -> SpoolWriteError:
        error = self._last_error
        reason = _failure_reason(error) if error is not None else "spool_error"
        return SpoolWriteError(
            f"{asked - len(refs)} of {asked} record(s) not written to {self.directory}: {error}", reason, refs
        )

    def _retire(self, segment: Segment) -> None:
        segment.active = False
        if segment.map is not None:  # cut to its lines: a retired segment is a plain file
            self._unmap(segment)
        if segment.unresolved == 0:
            self._drop(segment)

    def _drop(self, segment: Segment) -> None:
        self._segments.pop(segment.name, None)
        segment.remove()

    # ---- acknowledging ----
    def ack(self, refs: Iterable[Ref | None]) -> None:
        """Mark records resolved; a segment with nothing left and not being written is deleted."""
        by_segment: dict[Segment, list[int]] = {}
        for ref in refs:
            if ref is not None:
                by_segment.setdefault(ref[0], []).append(ref[1])
        if not by_segment:
            return
        with self._lock:
            for segment, indices in by_segment.items():
                if segment.name not in self._segments:
                    if self._released.get(segment.name) is segment:  # delivered after close()
                        segment.unresolved -= len(indices)
                        segment.ack_released(_ranges(indices))
                    continue  # otherwise already deleted
                segment.unresolved -= len(indices)
                if segment.unresolved <= 0 and not segment.active:
                    self._drop(segment)
                else:
                    segment.write_acks(_ranges(indices))

    def ack_range(self, segment: Segment, first: int, last: int) -> None:
        """``ack`` of lines ``first`` to ``last`` of one segment (a batch of consecutive lines:
        ``spool_tail.py``), without a ref per line."""
        with self._lock:
            if segment.name not in self._segments:
                if self._released.get(segment.name) is segment:  # delivered after close()
                    segment.unresolved -= last - first + 1
                    segment.ack_released([(first, last)])
                return
            segment.unresolved -= last - first + 1
            if segment.unresolved <= 0 and not segment.active:
                self._drop(segment)
            else:
                segment.write_acks([(first, last)])

    # ---- adopting what dead processes left ----
    def adopt(self, max_records: int, max_bytes: int) -> tuple[list[tuple[bytes, Ref]], bool]:
        """Records of segments no live process owns, oldest first; and whether some were left
        on disk because the limits were reached."""
        out: list[tuple[bytes, Ref]] = []
        size = 0
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return out, False
        with self._lock:
            if self._closed:
                return out, False
            for name in names:
                if not name.endswith(".wal") or name[:-4] in self._segments:
                    continue
                if len(out) >= max_records or size >= max_bytes:
                    return out, True
                path = os.path.join(self.directory, name)
                try:
                    fd = os.open(path, os.O_RDWR | os.O_APPEND)
                except FileNotFoundError:
                    continue  # deleted by its owner meanwhile
                if not _try_lock(fd):
                    os.close(fd)
                    continue
                if not os.path.exists(path):  # its owner deleted it between our open and our lock
                    os.close(fd)
                    continue
                records = self._read_unacked(path, fd)
                segment = Segment(path, fd, count=records[1], unresolved=len(records[0]), active=False)
                if not records[0]:
                    segment.remove()
                    continue
                self._segments[segment.name] = segment
                for index, line in records[0]:
                    out.append((line, (segment, index)))
                    size += len(line)
        return out, False

    @staticmethod
    def _read_unacked(path: str, fd: int) -> tuple[list[tuple[int, bytes]], int]:
        with open(fd, "rb", closefd=False) as f:
            data = f.read()
        data = data.rstrip(b"\0")  # a mapped segment's zeros, left by a process that was killed
        lines = data.split(b"\n")
        complete = lines[:-1]  # the part after the last newline is a torn write (or empty)
        if lines[-1]:
            logger.warning("lmgate spool: ignoring a torn record at the end of %s", os.path.basename(path))
        acked: set[int] = set()
        try:
            with open(path[:-4] + ".ack", "rb") as f:
                for row in f.read().split(b"\n"):
                    parts = row.split()
                    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
                        acked.update(range(int(parts[0]), int(parts[1]) + 1))
        except FileNotFoundError:
            pass
        return [(i, line) for i, line in enumerate(complete) if i not in acked and line], len(complete)

    # ---- the end ----
    def sync(self) -> None:
        with self._lock:
            if self._active is not None:
                os.fsync(self._active.fd)

    def close(self) -> None:
        """Release every segment: resolved ones are deleted, the rest wait for the next process."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for segment in list(self._segments.values()):
                segment.active = False
                if segment.map is not None and segment.unresolved > 0:  # left as its lines
                    self._unmap(segment)
                if segment.unresolved <= 0:
                    segment.remove()
                else:
                    try:
                        os.fsync(segment.fd)
                    except OSError:
                        pass
                    segment.close()
                    self._released[segment.name] = segment
            self._segments.clear()
            self._active = None

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "directory": self.directory,
                "segments": len(self._segments),
                "unresolved": sum(s.unresolved for s in self._segments.values()),
            }
