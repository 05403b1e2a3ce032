"""A forwarded 200 is written whole (``connections.write_whole``, issue 18): the same bytes and the
same connection state as uvicorn's ``send`` gives its two messages, on uvicorn with the proxy's own
HTTP protocol on 127.0.0.1; wherever ``send`` would do more (a closing connection, a header it reads
or refuses) the two messages go as before."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lmgate.proxy import connections
from lmgate.proxy.config import ServerLimits
from lmgate.proxy.responses import EncodedJSON
from lmgate.proxy.server import protocol_for

BODY = b'{"id":"chatcmpl-1","object":"chat.completion","choices":[]}'
HEADER_SETS: dict[str, dict[str, str]] = {
    "usual": {"x-litellm-model-id": "m1", "x-litellm-call-id": "c-1", "x-litellm-response-cost": "4.35e-06"},
    "none": {},
    "rate limits": {"x-litellm-model-id": "m1", "llm_provider-x-ratelimit-remaining-requests": "99"},
    "a second content-type": {"content-type": "text/plain"},
    "a content-length of its own": {"content-length": "3"},
    "connection": {"connection": "close"},
    "upper case": {"X-Upper": "1"},
    "a bad name": {"bad name": "1"},
    "a bad value": {"x-bad": "a\x01b"},
}
NAMES = list(HEADER_SETS)
seen: dict[str, Any] = {}


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    while (await receive()).get("more_body"):
        pass
    name, _, way = scope["path"].strip("/").partition("/")
    headers = HEADER_SETS[NAMES[int(name)]]
    body = BODY * 2000 if scope["query_string"] == b"big" else BODY
    answer = EncodedJSON(body, dict(headers))
    # as under ``lmgate serve`` (access_log=False: no handler on uvicorn's access logger), unless
    # asked: then uvicorn's send writes a line of its own, and the answer goes through it
    send.__self__.access_log = scope["query_string"] == b"log"
    if way == "whole":
        cycle = send.__self__
        seen.setdefault("cycle", type(cycle) is connections.httptools_cycle())
        lines = answer._lines
        whole = lines is not None and connections.write_whole(cycle, *lines, answer.body)
        seen.setdefault("whole", whole)  # the first request's (the second one closes the connection)
        if not whole:
            await answer(scope, receive, send)
        seen.setdefault(
            "state", (cycle.response_started, cycle.response_complete, cycle.expected_content_length)
        )
    else:

        async def messages(message: Any) -> None:  # a send without uvicorn's cycle behind it
            await send(message)

        await answer(scope, receive, messages)
        cycle = send.__self__
        seen.setdefault(
            "state", (cycle.response_started, cycle.response_complete, cycle.expected_content_length)
        )


@pytest.fixture
async def port() -> AsyncIterator[int]:
    import uvicorn

    _, protocol = protocol_for("auto", ServerLimits())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(
        uvicorn.Config(
            app, http=protocol, loop="none", lifespan="on", log_config=None, access_log=False, ws="none"
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield int(sock.getsockname()[1])
    finally:
        server.should_exit = True
        await task
        sock.close()


async def _answers(port: int, path: str, close: bool = False) -> list[bytes]:
    """Two requests on one connection (the second only if the first kept it open): what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n"
    request = (head + ("connection: close\r\n" if close else "") + "\r\n{}").encode()
    writer.write(
        request + (b"" if close else request.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nconnection: close\r\n"))
    )
    await writer.drain()
    received = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return [_without_date(part) for part in received.split(b"HTTP/1.1 ")[1:]]


def _without_date(answer: bytes) -> bytes:
    return b"\r\n".join(line for line in answer.split(b"\r\n") if not line.startswith(b"date: "))


def _skip_without_httptools() -> None:
    if connections.httptools_cycle() is None:
        pytest.skip("httptools is not installed")


@pytest.mark.parametrize("name", list(HEADER_SETS))
async def test_written_whole_or_as_two_messages_the_bytes_are_the_same(port: int, name: str) -> None:
    _skip_without_httptools()
    path = NAMES.index(name)
    seen.clear()
    whole = await _answers(port, f"/{path}/whole")
    state_whole, fused = seen.get("state"), seen["whole"]
    assert seen["cycle"]
    seen.clear()
    messages = await _answers(port, f"/{path}/messages")
    assert whole == messages
    assert state_whole == seen.get("state")
    if name.startswith("a bad"):  # send refuses the header after starting the answer: nothing is written
        assert whole == [] and state_whole is None
        return
    # written whole exactly where send would only write: lower-case names it does not read, valid ones
    assert fused is (name in ("usual", "none", "rate limits", "a second content-type"))
    if name == "usual":
        assert whole[0].startswith(b"200 OK\r\nserver: uvicorn\r\nx-litellm-model-id: m1\r\n")
        assert len(whole) == 2  # the connection stayed open for the next request


async def test_a_client_that_closes_and_a_large_body_get_the_same_bytes(port: int) -> None:
    _skip_without_httptools()
    seen.clear()
    closing = await _answers(port, "/0/whole", close=True)
    assert seen["whole"] is False  # a connection that closes after the answer: send's own path
    assert closing == await _answers(port, "/0/messages", close=True)
    assert b"connection: close" in closing[0]
    seen.clear()
    big = await _answers(port, "/0/whole?big")
    assert seen["whole"] is True
    assert big == await _answers(port, "/0/messages?big")
    assert big[0].endswith(BODY * 2000)


async def test_with_uvicorns_access_log_on_the_answer_goes_through_send(port: int) -> None:
    _skip_without_httptools()
    seen.clear()
    logged = await _answers(port, "/0/whole?log")
    assert seen["whole"] is False
    assert logged == await _answers(port, "/0/messages?log")


def test_the_checks_are_uvicorns() -> None:
    _skip_without_httptools()
    from uvicorn.protocols.http import httptools_impl

    assert connections._HEADER_NAME.pattern == httptools_impl.HEADER_RE.pattern
    assert connections._HEADER_VALUE.pattern == httptools_impl.HEADER_VALUE_RE.pattern
    assert httptools_impl.STATUS_LINE[200] == connections._STATUS_200
    # the value check without the pattern refuses exactly the bytes the pattern finds
    for byte in range(256):
        value = b"ok" + bytes([byte]) + b"ok"
        assert connections._value_refused(value) is bool(httptools_impl.HEADER_VALUE_RE.search(value)), byte


@pytest.mark.parametrize("headers", [{"x-a": "b\u20ac"}, {"X-\u20ac": "b"}], ids=["value", "name"])
def test_a_header_latin_1_cannot_carry_fails_where_starlettes_response_does(headers: dict[str, str]) -> None:
    """At construction, inside the route's handling (its error path answers it), not later when
    the answer is sent."""
    from starlette.responses import Response

    with pytest.raises(UnicodeEncodeError):
        Response(BODY, headers=headers, media_type="application/json")
    with pytest.raises(UnicodeEncodeError):
        EncodedJSON(BODY, headers)
