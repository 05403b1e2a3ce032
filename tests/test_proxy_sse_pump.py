"""``SSEResponse`` pumps the chunks in the request's own task (issue 18: no second task, no loop
turn before the first chunk) and still notices a client that leaves: the lmgate stream is closed
first, then the pump is stopped, ``on_end`` runs once with 499 and the task is left as it was; a
cancellation from outside (the server going down) goes on up."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from lmgate.proxy.sse import SSEResponse


class Source:
    """A stream that gives ``first`` chunks, then waits on ``gate`` for the rest."""

    def __init__(self, first: int, rest: int = 0) -> None:
        self.first, self.rest = first, rest
        self.gate = asyncio.Event()
        self.log: list[str] = []

    def __aiter__(self) -> Source:
        return self

    async def __anext__(self) -> Any:
        if self.first:
            self.first -= 1
            return {"choices": [{"index": 0, "delta": {"content": "x"}}]}
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.log.append("pump stopped")
            raise
        if self.rest:
            self.rest -= 1
            return {"choices": [], "usage": {"total_tokens": 3}}
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.log.append("closed")


def _response(source: Source, ends: list[tuple[int, Any, Any]]) -> SSEResponse:
    return SSEResponse(source, source, lambda status, usage, error: ends.append((status, usage, error)), [])


async def test_a_complete_stream_is_sent_in_the_request_task() -> None:
    source, ends, sent = Source(2, rest=1), [], []
    source.gate.set()
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await _response(source, ends)({}, receive, send)
    bodies = [m["body"] for m in sent[1:]]
    assert bodies[-1] == b"data: [DONE]\n\n" and len(bodies) == 4
    assert ends == [(200, {"total_tokens": 3}, None)]
    assert source.log == ["closed"]


async def test_a_client_that_leaves_closes_the_stream_then_stops_the_pump() -> None:
    source, ends = Source(1), []
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message.get("body", b"").startswith(b"data: "):  # the first chunk went out: leave
            left.set()

    task = asyncio.ensure_future(_response(source, ends)({}, receive, send))
    await asyncio.wait_for(task, 10)
    assert ends == [(499, None, None)]
    assert source.log[:2] == ["closed", "pump stopped"]  # as a pump task: closed first
    if sys.version_info >= (3, 11):
        assert task.cancelling() == 0  # the cancel was the pump's own, taken back


async def test_a_cancel_from_outside_goes_on_up_and_ends_the_stream_once() -> None:
    source, ends = Source(1), []
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        pass

    task = asyncio.ensure_future(_response(source, ends)({}, receive, send))
    for _ in range(100):  # until the pump waits for the second chunk (bounded, no sleeping)
        if source.first == 0:
            break
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(ends) == 1 and "closed" in source.log
