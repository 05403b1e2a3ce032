"""A throwaway ClickHouse server for the tests: ``clickhouse-server`` in a temp directory, on free
ports on 127.0.0.1, with a generated config (no system files read or written).

Debian's ``clickhouse-server`` package (``make clickhouse-server``, a ``make test`` prerequisite,
installs it; bookworm ships 18.16, an old release) or a current release from ClickHouse's own
packages: both start from the same minimal config. The server is this process's child, started
with ``PR_SET_PDEATHSIG`` so a crashed test run leaves none behind.

    with ClickHouseServer() as ch:
        url = ch.create_database()      # http://127.0.0.1:<port>/<db>
"""

from __future__ import annotations

import ctypes
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import IO

import httpx

READY_BOUND_S = 60.0
CANDIDATES = ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server")


class ClickHouseError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_binary() -> str:
    """The server binary (``clickhouse-server``, or ``clickhouse server`` of a single-binary install)."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    single = shutil.which("clickhouse")
    if single:
        return single
    raise ClickHouseError(
        "ClickHouse is not installed (no clickhouse-server on the PATH): run `make clickhouse-server` "
        "(or `make test`), which installs Debian's clickhouse-server package"
    )


CONFIG = """<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>{dir}/log/server.log</log>
        <errorlog>{dir}/log/server.err.log</errorlog>
        <size>10M</size>
        <count>1</count>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>{http_port}</http_port>
    <tcp_port>{tcp_port}</tcp_port>
    <interserver_http_port>{inter_port}</interserver_http_port>
    <path>{dir}/data/</path>
    <tmp_path>{dir}/tmp/</tmp_path>
    <user_files_path>{dir}/user_files/</user_files_path>
    <format_schema_path>{dir}/format_schemas/</format_schema_path>
    <users_config>{dir}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>268435456</mark_cache_size>
    <uncompressed_cache_size>268435456</uncompressed_cache_size>
    <max_concurrent_queries>50</max_concurrent_queries>
    <mlock_executable>false</mlock_executable>
</yandex>
"""
USERS = """<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
    <users>
        <default>
            <password></password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
        <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
    </interval></default></quotas>
</yandex>
"""


def _die_with_parent() -> None:
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    os.setsid()


class ClickHouseServer:
    """``clickhouse-server`` on free loopback ports in its own temp directory."""

    _names = itertools.count(1)

    def __init__(self) -> None:
        self.binary = find_binary()
        self.dir = tempfile.mkdtemp(prefix="lmgate-clickhouse-")
        self.http_port = _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def __enter__(self) -> ClickHouseServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        config = os.path.join(self.dir, "config.xml")
        with open(config, "w") as f:
            f.write(
                CONFIG.format(
                    dir=self.dir, http_port=self.http_port, tcp_port=_free_port(), inter_port=_free_port()
                )
            )
        with open(os.path.join(self.dir, "users.xml"), "w") as f:
            f.write(USERS)
        args = [self.binary]
        if os.path.basename(self.binary) == "clickhouse":
            args.append("server")
        self._log = open(os.path.join(self.dir, "log", "stdout.log"), "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*args, f"--config-file={config}"],
            cwd=self.dir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + READY_BOUND_S
        while True:
            try:
                if httpx.get(f"{self.url}/ping", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            try:
                self.proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                if time.monotonic() < deadline:
                    continue
                self.stop()
                raise ClickHouseError(
                    f"clickhouse-server did not answer /ping within {READY_BOUND_S}s"
                ) from None
            raise ClickHouseError(f"clickhouse-server exited with {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self) -> str:
        out = []
        for name in ("stdout.log", "server.err.log"):
            try:
                with open(os.path.join(self.dir, "log", name), errors="replace") as f:
                    out.append(f.read()[-2000:])
            except OSError:
                continue
        return "\n".join(out)

    def query(self, sql: str) -> str:
        answer = httpx.post(self.url, content=sql.encode(), timeout=30)
        if answer.status_code != 200:
            raise ClickHouseError(f"{sql[:80]}: {answer.text[:300]}")
        return answer.text

    def version(self) -> str:
        return self.query("SELECT version()").strip()

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL (``http://127.0.0.1:<port>/<db>``)."""
        name = name or f"lmgate_{os.getpid()}_{next(self._names)}"
        self.query(f"CREATE DATABASE IF NOT EXISTS {name}")
        return f"{self.url}/{name}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        shutil.rmtree(self.dir, ignore_errors=True)


__all__ = ["ClickHouseError", "ClickHouseServer", "find_binary"]
