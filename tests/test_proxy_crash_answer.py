"""A bug inside the proxy (an unexpected exception) answers the same 500 on every path.

The LLM routes are served by a fast lane that skips Starlette's layers (issue 18); the other
routes go through them (``ServerErrorMiddleware`` and the app's ``server_error`` handler). Both
must answer an unexpected exception alike: the same JSON 500 (status line, headers in order,
body), the connection closed after it, and uvicorn's one "Exception in ASGI application" line
with the exception. The exception comes from a key backend that breaks (``create_app``'s
``backend``), served by uvicorn with the proxy's own HTTP protocol on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeProvider
from test_proxy_server import ENV, MASTER, write_config

from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config
from lmgate.proxy.server import protocol_for


class BrokenBackend:
    """A key backend with a bug: every lookup raises."""

    async def authenticate(self, key: str | None, conn: Any) -> Any:
        raise RuntimeError("the key backend broke")


@pytest.fixture
async def served(
    tmp_path: Path, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[int]:
    """The proxy app with the broken backend, served by uvicorn on a free port; yields the port."""
    import uvicorn

    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    config = load_config(write_config(tmp_path, fake_provider))
    app = create_app(config, backend=BrokenBackend())  # type: ignore[arg-type]
    _, protocol = protocol_for("auto", config.limits)
    # bound and listening before the server starts: a connection made before it serves waits in
    # the kernel's backlog, so nothing waits for it to be ready
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            http=protocol,
            loop="none",
            lifespan="on",
            log_config=None,
            access_log=False,
            ws="none",
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield port
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _exchange(port: int, request: bytes) -> bytes:
    """Everything the server sends for ``request`` until it closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 10)  # to EOF: the server closes after a 500
    writer.close()
    return received


def _request(method: str, path: str, body: bytes = b"") -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: proxy\r\nauthorization: Bearer {MASTER}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def _without_date(answer: bytes) -> bytes:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"date: ")]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _expected(path: str) -> bytes:
    body = (
        b'{"error":{"message":"internal error on ' + path.encode() + b'; see the server log",'
        b'"type":"internal_server_error","param":null,"code":"500"}}'
    )
    return (
        b"HTTP/1.1 500 Internal Server Error\r\nserver: uvicorn\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\ncontent-type: application/json\r\n\r\n" + body
    )


CHAT = b'{"model": "fast", "messages": [{"role": "user", "content": "hi"}]}'
PATHS = [
    ("POST", "/v1/chat/completions", CHAT),  # the fast lane
    ("POST", "/chat/completions", CHAT),  # the fast lane, another spelling
    ("POST", "/v1/embeddings", b'{"model": "embed", "input": "hi"}'),  # the fast lane
    ("GET", "/v1/models", b""),  # through Starlette's layers
    ("POST", "/v1/responses", b'{"model": "fast", "input": "hi"}'),  # through Starlette's layers
]


@pytest.mark.parametrize(("method", "path", "body"), PATHS, ids=[f"{m} {p}" for m, p, _ in PATHS])
async def test_a_crash_answers_the_same_500_and_log_line_on_every_path(
    served: int, method: str, path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="uvicorn.error"):
        answer = await _exchange(served, _request(method, path, body))
    assert _without_date(answer) == _expected(path)
    crashes = [r for r in caplog.records if r.name == "uvicorn.error"]
    assert [r.getMessage() for r in crashes] == ["Exception in ASGI application\n"]
    assert crashes[0].exc_info is not None
    error = crashes[0].exc_info[1]
    assert type(error) is RuntimeError and str(error) == "the key backend broke"
