"""The plain POST path (``lmgate._aiohttp_post``, issue 18): a usual provider call skips
``ClientSession._request`` and is sent by aiohttp's own request, connector and response classes.

Held here: the upstream receives the same bytes as through ``ClientSession.request``; errors come
out as the same httpx exceptions with the same text; connections are reused and a cancelled call
leaves the pool usable; and the path is taken exactly where it should be (a plain POST, including
lmgate's own provider calls) and nowhere else. The upstream is a raw socket server on loopback.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import httpx
import pytest
from helpers import MESSAGES

import lmgate
from lmgate import _aiohttp_post
from lmgate._aiohttp_transport import AiohttpTransport

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class Upstream:
    """A raw HTTP/1.1 server: records every request's bytes and answers each as ``answer`` says
    ("ok": 200 with keep-alive, "close": hang up without answering, "garbage": a broken status
    line, "silent": never answer, "hold": answer once ``release`` is set)."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.connections = 0
        self.answer = "ok"
        self.release = asyncio.Event()
        self.arrived = asyncio.Event()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None

    async def __aenter__(self) -> Upstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    def url(self, path: str = "/v1/chat/completions") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                self.arrived.set()
                if self.answer == "close":
                    break
                if self.answer == "silent":
                    await reader.read()  # until the client gives up
                    break
                if self.answer == "garbage":
                    writer.write(b"HTTP/1.1 abc\r\n\r\n")
                elif self.answer == "hold":
                    await self.release.wait()
                    writer.write(OK)
                else:
                    writer.write(OK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with Upstream() as up:
        yield up


@pytest.fixture
def plain_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The URLs ``PlainPost.send`` was called with (it still sends: a counter, not a fake)."""
    seen: list[str] = []
    real = _aiohttp_post.PlainPost.send

    async def counted(self: Any, url: Any, *args: Any) -> Any:
        seen.append(str(url))
        return await real(self, url, *args)

    monkeypatch.setattr(_aiohttp_post.PlainPost, "send", counted)
    return seen


def _transport(plain_posts: bool, connections: int = 10) -> AiohttpTransport:
    return AiohttpTransport(None, httpx.Limits(max_connections=connections), plain_posts=plain_posts)


async def _call(
    transport: AiohttpTransport,
    url: str,
    headers: dict[str, str],
    body: Any = b'{"a": 1}',
    method: str = "POST",
    params: dict[str, str] | None = None,
    timeout: httpx.Timeout | None = None,
) -> bytes:
    response = await transport.send(method, url, headers, body, params, timeout or httpx.Timeout(10.0))
    try:
        assert response.status_code == 200
        return await response.aread()
    finally:
        await response.aclose()


async def _both(upstream: Upstream, plain_sends: list[str], **call: Any) -> tuple[bytes, bytes]:
    """The request's bytes as the upstream received them: through ``ClientSession.request``, then
    through the plain path's transport."""
    sent = []
    for plain in (False, True):
        transport = _transport(plain)
        try:
            before = len(upstream.requests)
            assert await _call(transport, **call) == b"{}"
            assert len(upstream.requests) == before + 1
            sent.append(upstream.requests[-1])
        finally:
            await transport.aclose()
    return sent[0], sent[1]


def test_the_installed_aiohttp_is_one_the_plain_path_follows() -> None:
    """A new aiohttp version turns the path off (every call through ClientSession.request): this
    fails then, so that ClientSession._request is read again before TESTED names the version."""
    assert _aiohttp_post.SUPPORTED, f"aiohttp {aiohttp.__version__}: read ClientSession._request again"


HEADER_SHAPES = {
    "json": {"Authorization": "Bearer sk-one", "Content-Type": "application/json"},
    "no content type": {"Authorization": "Bearer sk-one"},
    "own host and accept": {
        "Host": "api.example.test",
        "Accept": "application/json",
        "content-type": "text/x",
    },
    "own user agent and length": {
        "User-Agent": "me/1",
        "Content-Type": "application/json",
        "Content-Length": "8",
    },
    "none": {},
}


@pytest.mark.parametrize("shape", sorted(HEADER_SHAPES))
async def test_same_request_bytes_as_through_the_session(
    upstream: Upstream, plain_sends: list[str], shape: str
):
    url = upstream.url()
    through_session, plain = await _both(upstream, plain_sends, url=url, headers=HEADER_SHAPES[shape])
    assert plain == through_session
    assert plain_sends == [url]


@pytest.mark.parametrize(
    ("name", "path", "body"),
    [
        ("empty body", "/v1/chat/completions", b""),
        ("query in the URL", "/v1beta/models/g:streamGenerateContent?alt=sse", b"{}"),
        ("escaped path", "/model/us.anthropic.claude%3A0/converse", b"{}"),
        ("https-less root", "/", b"x"),
    ],
)
async def test_same_request_bytes_for_other_urls_and_bodies(
    upstream: Upstream, plain_sends: list[str], name: str, path: str, body: bytes
):
    url = upstream.url(path)
    through_session, plain = await _both(
        upstream, plain_sends, url=url, headers={"Content-Type": "application/json"}, body=body
    )
    assert plain == through_session, name
    assert plain_sends == [url]


@pytest.mark.parametrize(
    ("name", "call"),
    [
        ("GET", {"method": "GET", "body": None}),
        ("query parameters", {"params": {"alt": "sse"}}),
        ("names differing only in case", {"headers": {"X-Tag": "a", "x-tag": "b"}}),
        ("a body that is not bytes", {"body": bytearray(b"{}")}),
        ("headers as pairs", {"headers": [("X-Tag", "a")]}),
        ("user info in the URL", {"url": "user:secret@"}),
    ],
)
async def test_other_calls_go_through_the_session(
    upstream: Upstream, plain_sends: list[str], name: str, call: dict[str, Any]
):
    call = dict(call)
    url = upstream.url()
    if call.get("url") == "user:secret@":
        url = url.replace("http://", "http://user:secret@")
        call.pop("url")
    through_session, plain = await _both(upstream, plain_sends, url=url, **{"headers": {}, **call})
    assert plain == through_session, name
    assert plain_sends == [], name


async def test_a_provider_call_takes_the_plain_path(fake_provider, plain_sends: list[str]):
    """lmgate's own call (OpenAI chat completions) is the usual plain POST."""
    response = await lmgate.acompletion(
        model="gpt-4o-mini", messages=MESSAGES, api_base=fake_provider.base_url + "/v1", api_key="sk-x"
    )
    assert response.choices[0].message.content
    assert plain_sends == [fake_provider.base_url + "/v1/chat/completions"]


async def test_keep_alive_connection_is_reused(upstream: Upstream, plain_sends: list[str]):
    transport = _transport(True)
    try:
        for _ in range(3):
            assert await _call(transport, upstream.url(), {"Content-Type": "application/json"}) == b"{}"
    finally:
        await transport.aclose()
    assert upstream.connections == 1
    assert len(plain_sends) == 3


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _failure(transport: AiohttpTransport, url: str, timeout: httpx.Timeout) -> BaseException:
    try:
        await _call(transport, url, {"Content-Type": "application/json"}, timeout=timeout)
    except Exception as error:  # examined by the caller
        return error
    raise AssertionError("the call did not fail")


@pytest.mark.parametrize("answer", ["refused", "close", "garbage", "silent"])
async def test_failures_are_the_same_exceptions(upstream: Upstream, plain_sends: list[str], answer: str):
    """A refused connection, a hang-up, a broken answer and a read timeout: the same httpx
    exception, text and aiohttp cause through either path."""
    upstream.answer = answer
    url = f"http://127.0.0.1:{_closed_port()}/v1/chat/completions" if answer == "refused" else upstream.url()
    timeout = httpx.Timeout(10.0, read=0.2) if answer == "silent" else httpx.Timeout(10.0)
    errors = []
    for plain in (False, True):
        transport = _transport(plain)
        try:
            errors.append(await _failure(transport, url, timeout))
        finally:
            await transport.aclose()
    through_session, through_plain = errors
    assert type(through_plain) is type(through_session), (through_session, through_plain)
    assert isinstance(through_plain, httpx.TransportError)
    assert str(through_plain) == str(through_session)
    assert type(through_plain.__cause__) is type(through_session.__cause__)
    assert plain_sends == [url]


async def test_waiting_for_a_pooled_connection_times_out_the_same(upstream: Upstream, plain_sends: list[str]):
    """One connection allowed and held by a call: the next call's pool wait runs out as
    ``ClientSession.request``'s does."""
    upstream.answer = "hold"
    errors = []
    try:
        for plain in (False, True):
            transport = _transport(plain, connections=1)
            upstream.arrived.clear()
            held = asyncio.ensure_future(_call(transport, upstream.url(), {}))
            await upstream.arrived.wait()
            errors.append(await _failure(transport, upstream.url(), httpx.Timeout(10.0, pool=0.05)))
            held.cancel()
            with pytest.raises(asyncio.CancelledError):
                await held
            await transport.aclose()
    finally:
        upstream.release.set()
    through_session, through_plain = errors
    assert type(through_plain) is type(through_session) is httpx.ConnectTimeout
    assert str(through_plain) == str(through_session)
    assert len(plain_sends) == 2


async def test_a_cancelled_call_leaves_the_pool_usable(upstream: Upstream, plain_sends: list[str]):
    """Cancelled while waiting for its answer: the call ends with CancelledError at once, its
    connection is closed, and the next call on the same transport works."""
    upstream.answer = "hold"
    transport = _transport(True, connections=1)
    try:
        call = asyncio.ensure_future(_call(transport, upstream.url(), {}))
        await upstream.arrived.wait()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        upstream.answer = "ok"
        assert await _call(transport, upstream.url(), {}) == b"{}"
    finally:
        upstream.release.set()
        await transport.aclose()
    assert upstream.connections == 2  # the cancelled call's connection was not put back
    assert len(plain_sends) == 2
