"""Runs a real ``redis-server`` on 127.0.0.1 and a free port, for the cache tests."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import IO, Any
from urllib.parse import quote

__all__ = ["RedisServer", "RedisServerError"]

READY_BOUND_S = 10.0


class RedisServerError(RuntimeError):
    pass


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _find_binary() -> str:
    path = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None
    )
    if path is None:
        raise RedisServerError(
            "redis-server is not installed: run `make test`, which installs it (apt-get install redis-server)"
        )
    return path


def _encode(*args: Any) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(f: IO[bytes]) -> Any:
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisServerError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise RedisServerError(f"unexpected reply {line!r}")


class RedisServer:
    """A throwaway redis-server (no persistence) bound to 127.0.0.1. Context manager."""

    def __init__(self, password: str | None = None, host: str = "127.0.0.1") -> None:
        self.password = password
        self.host = host
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        if self.running:
            return self
        binary = _find_binary()
        reuse_port = bool(self.port)
        last_error: Exception | None = None
        for _ in range(3):
            if not reuse_port:
                self.port = _free_port(self.host)
            try:
                self._spawn(binary)
                return self
            except RedisServerError as exc:
                last_error = exc
                if reuse_port and "in use" not in str(exc):
                    break
        raise RedisServerError(f"could not start redis-server: {last_error}")

    def _spawn(self, binary: str) -> None:
        self._dir = tempfile.mkdtemp(prefix="lmgate-redis-")
        self._log = open(os.path.join(self._dir, "redis.log"), "w+b")  # closed in stop()
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self._dir,
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + READY_BOUND_S
        while True:
            try:
                if self.command("PING", timeout=1.0) == "PONG":
                    return
            except (OSError, RedisServerError):
                pass
            # Bounded readiness poll: wait briefly on the process itself, so an early exit is seen at once.
            try:
                self._proc.wait(timeout=0.02)
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
                log = self._read_log()
                self._cleanup()
                raise RedisServerError(
                    f"redis-server not ready after {READY_BOUND_S}s; log:\n{log}"
                ) from None
            log = self._read_log()
            self._cleanup()
            raise RedisServerError(f"redis-server exited early; log:\n{log}")

    def _read_log(self) -> str:
        if self._log is None:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-4000:]

    def _cleanup(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def stop(self) -> None:
        """Terminate the server and wait for it; the port is kept for restart()."""
        self._cleanup()

    def restart(self) -> RedisServer:
        """Stop, then start again on the same port (all data is gone: no persistence)."""
        self.stop()
        return self.start()

    def command(self, *args: Any, timeout: float = 5.0) -> Any:
        """Send one command on a fresh connection (authenticating if needed) and return the reply."""
        with (
            socket.create_connection((self.host, self.port), timeout=timeout) as sock,
            sock.makefile("rb") as f,
        ):
            if self.password:
                sock.sendall(_encode("AUTH", self.password))
                _read_reply(f)
            sock.sendall(_encode(*args))
            return _read_reply(f)

    def flushall(self) -> None:
        self.command("FLUSHALL")

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
