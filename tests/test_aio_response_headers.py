"""``AioResponse.headers`` reads an upstream's headers as ``dict(httpx.Headers)`` would: lower-case
names, a repeated header's values joined with ", " in order (a raw socket server sends them)."""

from __future__ import annotations

import asyncio

import httpx

from lmgate._aiohttp_transport import AiohttpTransport

HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: application/json\r\n"
    b"X-RateLimit-Remaining: 9\r\n"
    b"Via: a\r\n"
    b"via: b\r\n"
    b"Content-Length: 2\r\n"
    b"\r\n{}"
)


async def _headers(head: bytes) -> dict[str, str]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(head)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = AiohttpTransport(None, httpx.Limits(max_connections=10))
    try:
        response = await transport.send(
            "POST", f"http://127.0.0.1:{port}/v1/chat/completions", {}, b"{}", None, httpx.Timeout(10.0)
        )
        assert await response.aread() == b"{}"
        await response.aclose()
        return response.headers
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()


def test_repeated_headers_are_joined_in_order_and_names_lowered() -> None:
    headers = asyncio.run(_headers(HEAD))
    assert headers == {
        "content-type": "application/json",
        "x-ratelimit-remaining": "9",
        "via": "a, b",
        "content-length": "2",
    }
    assert list(headers) == ["content-type", "x-ratelimit-remaining", "via", "content-length"]


def test_headers_without_repeats() -> None:
    headers = asyncio.run(_headers(HEAD.replace(b"via: b\r\n", b"")))
    assert headers["via"] == "a" and headers["x-ratelimit-remaining"] == "9"
