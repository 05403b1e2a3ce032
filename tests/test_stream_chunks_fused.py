"""The aiohttp transport reads a stream's chunks in one generator (``AioResponse.aiter_chunks``)
exactly as the attempt loop's two layers (``_asse_chunks`` over ``aiter_sse``) read them
(issue 18): the same chunks, the same error, from a real loopback server sending the body in
pieces split anywhere."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from lmgate import exceptions as exc
from lmgate._aiohttp_transport import AioResponse
from lmgate._attempt import _achunks, _asse_chunks
from lmgate.providers import resolve

EVENTS = "".join(
    f'data: {{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
    f'"choices":[{{"index":0,"delta":{{"content":"h\\u00e9{i}"}},"finish_reason":null}}]}}\n\n'
    for i in range(3)
)
STREAMS = [
    EVENTS + "data: [DONE]\n\n",
    EVENTS + "data: [DONE]\n\ndata: after the end, dropped\n\n",
    EVENTS,  # no [DONE]: the body's end ends it
    EVENTS + 'data: {"error": {"message": "overloaded", "type": "server_error"}}\n\n',
    EVENTS.replace("\n\n", "\r\n\r\n") + "data: [DONE]\r\n\r\n",
]


async def _serve(pieces: list[bytes]) -> tuple[asyncio.AbstractServer, int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        for piece in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _read(pieces: list[bytes], fused: bool) -> tuple[list[Any], str | None]:
    provider, model = resolve("openai/gpt-4o-mini")
    ep = provider.endpoint(model, "http://127.0.0.1/v1", "sk-test-0123456789", None)
    translator = provider.stream_translator(ep)
    server, port = await _serve(pieces)
    chunks: list[Any] = []
    failure = None
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}") as raw,
        ):
            response = AioResponse(raw)
            source = (
                _achunks(response, translator) if fused else _asse_chunks(response.aiter_sse(), translator)
            )
            try:
                async for chunk in source:
                    chunks.append(orjson.loads(orjson.dumps(chunk)))
            except exc.LmgateError as error:
                failure = f"{type(error).__name__}: {error.status_code}"
    finally:
        server.close()
        await server.wait_closed()
    return chunks, failure


@pytest.mark.parametrize("stream", STREAMS)
def test_fused_chunks_are_the_two_layers_chunks_at_any_split(stream: str) -> None:
    body = stream.encode()
    splits = [[body], [body[:1], body[1:]], [bytes([b]) for b in body]]
    splits += [[body[:cut], body[cut:]] for cut in range(7, len(body), 23)]

    async def compare() -> None:
        for pieces in splits:
            fused = await _read(pieces, True)
            layered = await _read(pieces, False)
            assert fused == layered, pieces
            assert fused[0] or fused[1]

    asyncio.run(compare())
