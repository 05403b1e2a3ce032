"""A throwaway PostgreSQL server for the tests: ``initdb`` + ``postgres`` in a temp directory,
on a free port on 127.0.0.1, as an unprivileged user.

Debian's ``postgresql`` package (``make test`` installs it) puts its binaries under
``/usr/lib/postgresql/<version>/bin``; the newest version found is used, then ``initdb`` on
the PATH. PostgreSQL refuses to run as root, and the suite often runs as root: then every
server-side binary runs through ``setpriv`` as the ``postgres`` user the package creates (or
``nobody``), which owns the temp directory. The server is this process's own child (no
``pg_ctl`` daemon), so stopping it is a signal and a wait, and a crashed test run leaves no
server behind: ``setpriv --pdeathsig`` asks the kernel to stop it when its parent dies.

    with PostgresServer() as pg:
        url = pg.create_database()      # postgresql+asyncpg://postgres@127.0.0.1:<port>/<db>
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO

READY_BOUND_S = 30.0
SUPERUSER = "postgres"  # the database role initdb creates (not the OS user)


class PostgresError(RuntimeError):
    pass


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _version_key(path: str) -> tuple[int, ...]:
    name = path.rstrip("/").split("/")[-2]  # /usr/lib/postgresql/<ver>/bin
    return tuple(int(p) for p in name.split(".") if p.isdigit())


def find_bin_dir() -> str:
    """The directory holding ``initdb``, ``postgres`` and ``psql``: Debian's newest, else the PATH's."""
    candidates = sorted(
        (d for d in glob.glob("/usr/lib/postgresql/*/bin/") if os.path.exists(os.path.join(d, "initdb"))),
        key=_version_key,
    )
    if candidates:
        return candidates[-1].rstrip("/")
    initdb = shutil.which("initdb")
    if initdb is not None:
        return os.path.dirname(os.path.realpath(initdb))
    raise PostgresError(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on the PATH): "
        "run `make postgresql` (or `make test`), which installs Debian's postgresql package"
    )


def _os_user() -> str | None:
    """The unprivileged OS user to run the server as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise PostgresError(
        "running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL as"
    )


class PostgresServer:
    """One PostgreSQL cluster for the test run. Context manager; ``create_database()`` hands out
    fresh, empty databases so tests don't see each other's rows."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.bin_dir = ""
        self._user: str | None = None
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._names = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle

    def _as_user(self, argv: list[str], *, die_with_us: bool = False) -> list[str]:
        """``argv`` run as the unprivileged user when we are root; with ``die_with_us`` the kernel
        sends it SIGINT (a fast shutdown) if this process dies first."""
        prefix = ["setpriv"]
        if self._user is not None:
            prefix += [f"--reuid={self._user}", f"--regid={self._user}", "--init-groups"]
        if die_with_us:
            prefix += ["--pdeathsig", "INT"]
        return argv if prefix == ["setpriv"] else [*prefix, "--", *argv]

    def start(self) -> PostgresServer:
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.bin_dir = find_bin_dir()
        self._user = _os_user()
        self._dir = tempfile.mkdtemp(prefix="lmgate-pg-", dir="/tmp" if os.path.isdir("/tmp") else None)
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)
        data = os.path.join(self._dir, "data")
        init = subprocess.run(
            self._as_user(
                [
                    os.path.join(self.bin_dir, "initdb"),
                    "-D",
                    data,
                    f"--username={SUPERUSER}",
                    "--auth=trust",
                    "--no-locale",
                    "--encoding=UTF8",
                    "--no-sync",
                ]
            ),
            cwd=self._dir,
            capture_output=True,
            timeout=120,
        )
        if init.returncode != 0:
            out = (init.stdout + init.stderr).decode(errors="replace")[-4000:]
            self._cleanup()
            raise PostgresError(f"initdb failed ({init.returncode}):\n{out}")
        last_error: Exception | None = None
        for _ in range(3):  # a free port can be taken between the probe and the bind
            self.port = _free_port(self.host)
            try:
                self._spawn(data)
                return self
            except PostgresError as exc:
                last_error = exc
                if "in use" not in str(exc):
                    break
        self._cleanup()
        raise PostgresError(f"could not start PostgreSQL: {last_error}")

    def _spawn(self, data: str) -> None:
        assert self._dir is not None
        self._log = open(os.path.join(self._dir, "postgres.log"), "w+b")  # closed in _cleanup()
        argv = [
            os.path.join(self.bin_dir, "postgres"),
            "-D",
            data,
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            f"unix_socket_directories={self._dir}",
            # a test database: nothing needs to survive a power cut
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
            "-c",
            "shared_buffers=32MB",
        ]
        self._proc = subprocess.Popen(
            self._as_user(argv, die_with_us=True),
            cwd=self._dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + READY_BOUND_S
        while True:
            ready = subprocess.run(
                [os.path.join(self.bin_dir, "pg_isready"), "-h", self.host, "-p", str(self.port), "-t", "1"],
                capture_output=True,
            )
            if ready.returncode == 0:
                return
            # Bounded readiness poll: wait on the process itself, so an early exit is seen at once.
            try:
                self._proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
                log = self._read_log()
                self._stop_process()
                raise PostgresError(f"PostgreSQL not ready after {READY_BOUND_S}s; log:\n{log}") from None
            log = self._read_log()
            self._stop_process()
            in_use = "in use" if "Address already in use" in log else "exited"
            raise PostgresError(f"PostgreSQL {in_use} early; log:\n{log}")

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: roll back sessions, exit
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cleanup(self) -> None:
        self._stop_process()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def stop(self) -> None:
        """Stop the server and delete its directory."""
        self._cleanup()

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ databases

    def url(self, database: str, driver: str = "asyncpg") -> str:
        """An SQLAlchemy URL of ``database`` (``driver="asyncpg"``; ``""`` for a plain ``postgresql://``)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement with ``psql`` (a client: no need to change user); its unaligned output."""
        done = subprocess.run(
            [
                os.path.join(self.bin_dir, "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise PostgresError(f"psql {sql!r} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its async SQLAlchemy URL."""
        name = name or f"lmgate_test_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


__all__ = ["PostgresError", "PostgresServer", "find_bin_dir"]
