"""The server-sent events response of a streamed chat completion.

It pumps the chunks while it listens for the client leaving: when the client goes first, the
lmgate stream is closed (its call ends as ``abandoned``, one terminal event).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson

from .errors import ProxyError, to_proxy_error

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"


def _sse(chunk: Any) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode() if chunk.startswith("data:") else b"data: " + chunk.encode() + b"\n\n"
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


class Framing:
    """How chunks go on the wire: OpenAI's ``data:`` lines ending in ``data: [DONE]``. Another
    API's stream (Anthropic's named events) subclasses it; it sees every chunk, in order."""

    def frame(self, chunk: Any) -> bytes:
        return _sse(chunk)

    def end(self) -> bytes:
        return _DONE

    def error(self, error: ProxyError) -> bytes:
        return b"data: " + error.body() + b"\n\n"


class SSEResponse:
    """A server-sent events response that notices the client leaving.

    The chunks are pumped in the request's task while a listener task waits for
    ``http.disconnect``; when the client goes first, the lmgate stream is closed (its call ends
    as ``abandoned``, one terminal event) and the pump is stopped. ``on_end(status, usage,
    error)`` runs exactly once.
    """

    def __init__(
        self,
        iterator: AsyncIterator[Any],
        source: Any,
        on_end: Callable[[int, Any, BaseException | None], None],
        headers: list[tuple[bytes, bytes]],
        framing: Framing | None = None,
    ) -> None:
        self.framing = framing or Framing()
        self.iterator = iterator
        self.source = source
        self.on_end = on_end
        self.headers = _SSE_HEADERS + headers
        self.usage: Any = None
        self.error: BaseException | None = None  # what broke the stream, if anything did

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        status = 200
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.headers})
            # the chunks are pumped in this task (no second task, no loop turn before the first
            # chunk: issue 18) while a listener waits for the client to leave
            status = await self._pump_until_left(asyncio.ensure_future(_wait_disconnect(receive)), send)
        except OSError:
            status = 499
        finally:
            await self._close_source()
            self.on_end(status, self.usage, self.error)

    async def _pump_until_left(self, listener: asyncio.Future[None], send: Any) -> int:
        """The pump's status; when the client goes first, the lmgate stream is closed (ending its
        call as abandoned) and only then is the pump stopped, as a pump task would be: 499."""
        task = asyncio.current_task()
        assert task is not None
        pumping = True
        left = False
        closing: asyncio.Task[None] | None = None

        async def close_then_stop() -> None:
            await self._close_source()
            if pumping:
                task.cancel()

        def on_listener_done(done: asyncio.Future[None]) -> None:
            nonlocal left, closing
            if done.cancelled():
                return
            done.exception()  # retrieved: a receive that broke means the client is gone too
            if not pumping:
                return
            left = True
            closing = asyncio.ensure_future(close_then_stop())

        listener.add_done_callback(on_listener_done)
        try:
            status = await self._pump(send)
        except asyncio.CancelledError:
            if not left:  # cancelled from outside (the server going down): not ours to keep
                raise
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: the cancel was ours, taken back
            if uncancel is not None:
                uncancel()
            status = 499
        finally:
            pumping = False
            listener.cancel()
        if left:  # the client went while the last chunk went out: it is gone all the same
            if closing is not None:
                await closing
            return 499
        return status

    async def _close_source(self) -> None:
        source, self.source = self.source, None
        if source is not None:
            await source.aclose()

    async def _pump(self, send: Any) -> int:
        iterator = self.iterator
        framing = self.framing
        openai = type(framing) is Framing  # OpenAI's data lines: a chunk's JSON framed right here
        dumps = orjson.dumps
        try:
            async for chunk in iterator:
                if isinstance(chunk, dict):
                    usage = chunk.get("usage")
                    if usage:
                        self.usage = usage
                    if openai:  # what Framing.frame makes of a mapping, without its two calls
                        body = b"data: " + dumps(chunk) + b"\n\n"
                        await send({"type": "http.response.body", "body": body, "more_body": True})
                        continue
                body = framing.frame(chunk)
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": framing.end(), "more_body": False})
            return 200
        except OSError:
            return 499
        except Exception as error:
            self.error = error
            perr = to_proxy_error(error)
            body = framing.error(perr)
            try:
                await send({"type": "http.response.body", "body": body, "more_body": False})
            except OSError:
                return 499
            return perr.status
        finally:
            close = getattr(iterator, "aclose", None)
            if close is not None and iterator is not self.source:
                try:
                    await close()
                except Exception:
                    pass


async def _wait_disconnect(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


__all__ = ["Framing", "SSEResponse"]
