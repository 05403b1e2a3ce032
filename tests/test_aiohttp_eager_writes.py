"""A request alone on its wire writes its body inside ``ClientRequest.send`` (issue 18,
``lmgate._aiohttp_eager``): on Python 3.11 aiohttp writes a body from a task that runs a turn of
the loop later, on 3.12+ it starts that task eagerly itself. The plain POST path installs the
eager factory for the span of one ``send`` when no other request is in flight, and only then."""

from __future__ import annotations

import asyncio
import contextvars
import json
import socket
import sys
import threading
from typing import Any

import httpx
import pytest
from test_aiohttp_plain_post import Upstream, _call, _transport

from lmgate import _aiohttp_eager, _aiohttp_post

pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="aiohttp starts its writes eagerly itself"
)


@pytest.fixture
async def upstream() -> Any:
    async with Upstream() as up:
        yield up


@pytest.fixture
def eager_writes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What the eager factory gave for each of aiohttp's body writes (it still runs them)."""
    made: list[Any] = []
    real = _aiohttp_eager.eager_body_task

    def recorded(loop: Any, coro: Any, **kwargs: Any) -> Any:
        task = real(loop, coro, **kwargs)
        if getattr(coro, "cr_code", None) is _aiohttp_eager._WRITE_BYTES:
            made.append(task)
        return task

    monkeypatch.setattr(_aiohttp_post, "eager_body_task", recorded)
    return made


async def test_a_lone_request_writes_its_body_inside_send(upstream: Upstream, eager_writes: list[Any]):
    """The body-writing step is over when create_task returns (a done future, no task to run
    later); the upstream gets the request whole; the loop has no task factory afterwards."""
    transport = _transport(True)
    try:
        for _ in range(2):
            assert await _call(transport, upstream.url(), {"Content-Type": "application/json"}) == b"{}"
    finally:
        await transport.aclose()
    assert len(eager_writes) == 2
    assert all(made.done() and not isinstance(made, asyncio.Task) for made in eager_writes)
    assert all(made.exception() is None for made in eager_writes)
    assert upstream.requests[-1].endswith(b'\r\n\r\n{"a": 1}')
    assert asyncio.get_running_loop().get_task_factory() is None


async def test_a_request_with_another_in_flight_keeps_aiohttps_task(
    upstream: Upstream, eager_writes: list[Any]
):
    """Under concurrency the body is written as aiohttp does on 3.11 (the eager factory is never
    installed), and both answers arrive."""
    upstream.answer = "hold"
    transport = _transport(True)
    try:
        first = asyncio.ensure_future(_call(transport, upstream.url(), {}))
        await upstream.arrived.wait()
        assert len(eager_writes) == 1  # the first call was alone
        upstream.arrived.clear()
        second = asyncio.ensure_future(_call(transport, upstream.url(), {}))
        await upstream.arrived.wait()
        upstream.release.set()
        assert await first == await second == b"{}"
    finally:
        upstream.release.set()
        await transport.aclose()
    assert len(eager_writes) == 1
    assert len(upstream.requests) == 2


async def test_a_loop_with_a_task_factory_of_its_own_keeps_it(upstream: Upstream, eager_writes: list[Any]):
    loop = asyncio.get_running_loop()
    seen: list[Any] = []

    def own(loop: Any, coro: Any, **kwargs: Any) -> Any:
        seen.append(coro)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(own)
    transport = _transport(True)
    try:
        assert await _call(transport, upstream.url(), {}) == b"{}"
        assert loop.get_task_factory() is own
    finally:
        loop.set_task_factory(None)
        await transport.aclose()
    assert eager_writes == []
    assert any(getattr(coro, "cr_code", None) is _aiohttp_eager._WRITE_BYTES for coro in seen)


async def test_other_coroutines_get_the_loops_usual_task() -> None:
    started: list[bool] = []

    async def job() -> None:
        started.append(True)

    task = _aiohttp_eager.eager_body_task(asyncio.get_running_loop(), job())
    assert isinstance(task, asyncio.Task)
    assert not started  # a task starts at the loop's next turn, not inside create_task
    await task
    assert started


async def test_the_first_step_runs_in_a_copy_of_the_callers_context_and_the_rest_in_the_same() -> None:
    """As an eager task on 3.12: what the coroutine sets stays its own, in both of its parts."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller's")
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    seen: list[str] = []

    async def job() -> str:
        var.set("the job's")
        await gate
        seen.append(var.get())
        return "done"

    task = _aiohttp_eager.start_eagerly(loop, job(), {})
    assert isinstance(task, asyncio.Task) and not task.done()
    assert var.get() == "caller's"
    gate.set_result(None)
    assert await task == "done"
    assert seen == ["the job's"]


async def test_a_continuation_cancelled_before_its_first_step_cancels_the_coroutine() -> None:
    """aiohttp cancels its writer when the answer comes first or the call is cancelled: the
    coroutine sees that cancellation (write_bytes closes the connection on it), even before the
    task took its first step."""
    loop = asyncio.get_running_loop()
    gate = loop.create_future()
    ended: list[str] = []

    async def job() -> None:
        try:
            await gate
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    task = _aiohttp_eager.start_eagerly(loop, job(), {})
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == ["cancelled"]
    assert not gate.done()


@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_a_body_that_waits_for_the_socket_goes_on_as_a_task(eager_writes: list[Any]):
    """A body the socket cannot take at once (the server reads nothing until the write waits)
    stops at its first wait and goes on as a task: every byte arrives, in order."""
    big = json.dumps({"content": ",".join(map(str, range(10_000_000, 12_000_000)))}).encode()  # 16 MB
    let_read = threading.Event()
    got: list[bytes] = []
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # a small window
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            let_read.wait(30)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            while len(body) < length:
                body += conn.recv(65536)
            got.append(body)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = _transport(True)
    try:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/v1/chat/completions"
        call = asyncio.ensure_future(_call(transport, url, {}, body=big, timeout=httpx.Timeout(60.0)))
        for _ in range(10_000):  # the call runs up to its body write, which has to wait
            if eager_writes:
                break
            await asyncio.sleep(0)
        waiting = bool(eager_writes) and not eager_writes[0].done()
        let_read.set()
        assert await call == b"{}"
    finally:
        let_read.set()
        await transport.aclose()
        await asyncio.to_thread(thread.join, 10)
        server.close()
    assert waiting, "the body never waited for the socket"
    assert len(eager_writes) == 1 and isinstance(eager_writes[0], asyncio.Task) and eager_writes[0].done()
    whole = len(got) == 1 and got[0] == big  # compared apart: a failure's report would print 16 MB
    assert whole, "the body did not arrive whole"
