"""aiohttp's body writes start eagerly on the proxy's loop (issue 18): on Python 3.11 aiohttp
writes a request's body from a task that only runs at the loop's next turn; ``eager_body_writes``
runs it inside the call that sends it, as aiohttp itself does on 3.12+, and a body that has to
wait for the socket goes on as a task."""

from __future__ import annotations

import asyncio
import contextvars
import json
import socket
import sys
import threading
from typing import Any

import pytest

import lmgate
from lmgate import _aiohttp_transport
from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config

KEY = "sk-test-eager-0123456789abcdef"
pytestmark = pytest.mark.skipif(
    sys.version_info >= (3, 12), reason="aiohttp starts its writes eagerly itself"
)


def _recording(loop: asyncio.AbstractEventLoop) -> list[Any]:
    """What the loop's factory gave for each of aiohttp's body writes."""
    factory = loop.get_task_factory()
    assert factory is not None
    made: list[Any] = []

    def record(loop: Any, coro: Any, **kwargs: Any) -> Any:
        task = factory(loop, coro, **kwargs)
        if getattr(coro, "cr_code", None) is _aiohttp_transport._WRITE_BYTES:
            made.append(task)
        return task

    loop.set_task_factory(record)
    return made


def _call(fp: Any, content: str) -> Any:
    return lmgate.acompletion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": content}],
        api_base=fp.base_url + "/v1",
        api_key=KEY,
    )


def test_a_small_body_is_written_inside_the_call(fake_provider):
    """The body-writing step is over when create_task returns (a done future, no task to run
    later); the provider gets the body whole and the answer is intact."""

    async def run() -> tuple[str, list[Any]]:
        assert _aiohttp_transport.eager_body_writes(asyncio.get_running_loop())
        made = _recording(asyncio.get_running_loop())
        answer = await _call(fake_provider, "hello")
        return answer.choices[0].message.content, made

    text, made = asyncio.run(run())
    assert text == "Hello from fake"
    assert len(made) == 1 and made[0].done() and not isinstance(made[0], asyncio.Task)
    assert made[0].exception() is None
    assert fake_provider.requests[-1].json["messages"] == [{"role": "user", "content": "hello"}]


@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
def test_a_body_that_waits_for_the_socket_goes_on_as_a_task():
    """A body the socket cannot take at once (the server reads nothing until the write waits)
    stops at its first wait and goes on as a task: every byte arrives, in order."""
    big = "".join(f"{i:07d}," for i in range(2_000_000))  # 16 MB: more than the kernel buffers
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
            length = int(
                next(
                    line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
                ).split(b":")[1]
            )
            while len(body) < length:
                body += conn.recv(65536)
            got.append(body)
            answer = json.dumps(
                {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "gpt-4o-mini",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": "ok"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
            ).encode()
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(answer), answer)
            )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def run() -> tuple[str, list[Any], bool]:
        loop = asyncio.get_running_loop()
        assert _aiohttp_transport.eager_body_writes(loop)
        made = _recording(loop)
        call = asyncio.ensure_future(
            lmgate.acompletion(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": big}],
                api_base=f"http://127.0.0.1:{server.getsockname()[1]}/v1",
                api_key=KEY,
            )
        )
        for _ in range(10_000):  # the call runs up to its body write, which has to wait
            if made:
                break
            await asyncio.sleep(0)
        waiting = bool(made) and not made[0].done()
        let_read.set()
        answer = await call
        return answer.choices[0].message.content, made, waiting

    try:
        text, made, waiting = asyncio.run(run())
    finally:
        let_read.set()
        thread.join(10)
        server.close()
    assert text == "ok"
    assert waiting and len(made) == 1 and isinstance(made[0], asyncio.Task) and made[0].done()
    assert json.loads(got[0])["messages"][0]["content"] == big


def test_a_loop_with_a_task_factory_of_its_own_keeps_it():
    async def run() -> tuple[bool, Any]:
        loop = asyncio.get_running_loop()

        def own(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(own)
        return _aiohttp_transport.eager_body_writes(loop), loop.get_task_factory() is own

    assert asyncio.run(run()) == (False, True)


def test_other_coroutines_get_the_loops_usual_task():
    async def run() -> bool:
        loop = asyncio.get_running_loop()
        _aiohttp_transport.eager_body_writes(loop)
        started: list[bool] = []

        async def job() -> None:
            started.append(True)

        task = asyncio.ensure_future(job())
        pending = not started  # a task starts at the loop's next turn, not inside create_task
        await task
        return pending and isinstance(task, asyncio.Task)

    assert asyncio.run(run())


def test_the_proxy_starts_body_writes_eagerly_on_its_loop(tmp_path):
    """The app's start-up installs it when a deployment is called over HTTP."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "model_list: [{model_name: m, litellm_params: {model: openai/gpt-4o-mini, "
        "api_base: 'http://127.0.0.1:9/v1', api_key: " + KEY + "}}]\n"
    )
    app = create_app(load_config(path, environ={}), apply=False)

    async def run() -> Any:
        async with app.router.lifespan_context(app):
            return asyncio.get_running_loop().get_task_factory()

    assert asyncio.run(run()) is _aiohttp_transport._task_factory


def test_the_first_step_runs_in_a_copy_of_the_callers_context_and_the_rest_in_the_same():
    """As an eager task on 3.12: what the coroutine sets stays its own, in both of its parts."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller's")

    async def run() -> tuple[str, list[str], str]:
        loop = asyncio.get_running_loop()
        gate = loop.create_future()
        seen: list[str] = []

        async def job() -> str:
            var.set("the job's")
            await gate
            seen.append(var.get())
            return "done"

        task = _aiohttp_transport._start_eagerly(loop, job(), {})
        assert isinstance(task, asyncio.Task) and not task.done()
        outside = var.get()
        gate.set_result(None)
        return await task, seen, outside

    assert asyncio.run(run()) == ("done", ["the job's"], "caller's")
