"""The async wire (issue 18): lmgate's own async calls go over aiohttp, keep-alive, timeouts,
cancellation and clean shutdown included; a caller's own httpx client or an environment proxy
keeps httpx's path."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import textwrap
import threading

import pytest
from fakes import Reply
from helpers import MESSAGES

import lmgate
from lmgate import _http

KEY = "sk-test-wire-0123456789abcdef"


def kw(fp, **extra):
    return {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": fp.base_url + "/v1",
        "api_key": KEY,
        **extra,
    }


def test_plain_and_streamed_calls_share_one_connection(fake_provider):
    """Plain calls and streams read to their end reuse one keep-alive connection; the answers are intact."""

    async def run() -> list[str]:
        out = [(await lmgate.acompletion(**kw(fake_provider))).choices[0].message.content]
        for _ in range(2):
            text = ""
            async for chunk in await lmgate.acompletion(stream=True, **kw(fake_provider)):
                text += chunk.choices[0].delta.content or ""
            out.append(text)
        out.append((await lmgate.acompletion(**kw(fake_provider))).choices[0].message.content)
        return out

    assert asyncio.run(run()) == ["Hello from fake"] * 4
    assert fake_provider.connections_accepted == 1
    assert [r.headers["content-type"] for r in fake_provider.requests] == ["application/json"] * 4


def test_stream_that_stalls_times_out(fake_provider):
    """A stream whose server goes quiet after two events ends in lmgate.Timeout (the read timeout applies per read)."""
    release = threading.Event()
    fake_provider.enqueue(Reply(delay_event=release, hold_after_chunks=2))

    async def run() -> str:
        text = ""
        async for chunk in await lmgate.acompletion(stream=True, timeout=0.3, **kw(fake_provider)):
            text += chunk.choices[0].delta.content or ""
        return text

    try:
        with pytest.raises(lmgate.Timeout):
            asyncio.run(run())
    finally:
        release.set()


def test_cancelled_call_leaves_the_pool_usable(fake_provider):
    """Cancelling a call in flight raises CancelledError at once; the next call in the loop works."""
    release = threading.Event()
    fake_provider.enqueue(Reply(delay_event=release))

    async def run() -> str:
        task = asyncio.ensure_future(lmgate.acompletion(**kw(fake_provider)))
        # the fake's own condition, waited on in a thread so this loop keeps sending the request
        held = await asyncio.to_thread(fake_provider.wait_for_requests, 1, 5.0)
        assert held and fake_provider.requests, "the request never reached the server"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        r = await lmgate.acompletion(**kw(fake_provider))
        return r.choices[0].message.content  # type: ignore[no-any-return]

    try:
        assert asyncio.run(run()) == "Hello from fake"
    finally:
        release.set()


def test_loop_end_closes_the_wire_quietly(fake_provider, tmp_path):
    """Two asyncio.run() in a row, warnings as errors: each loop's aiohttp session closes with its loop, no
    "Unclosed client session" or "Unclosed connector" at exit."""
    script = tmp_path / "two_loops.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, gc
            import lmgate
            from lmgate import _http

            async def one():
                r = await lmgate.acompletion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}],
                                             api_base={fake_provider.base_url + "/v1"!r}, api_key="sk-x")
                assert r.choices[0].message.content == "Hello from fake"
                return _http.async_wire()

            first = asyncio.run(one())
            assert first._session is None, "the session outlived its loop"
            second = asyncio.run(one())
            assert second is not first
            gc.collect()
            print("ok")
            """
        )
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (env.get("PYTHONPATH"), os.path.dirname(lmgate.__path__[0])) if p
    )
    out = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert "Unclosed" not in out.stderr, out.stderr


def test_environment_proxy_keeps_httpx_path(fake_provider, monkeypatch):
    """An HTTP(S) proxy in the environment: async calls go through httpx (which honours it); a URL the proxy
    does not cover (here plain http with only HTTPS_PROXY set) reaches httpx's default transport, lmgate's
    aiohttp transport: answers, streams and a refused connection (an APIConnectionError, not a Timeout) as
    on the direct path."""
    monkeypatch.setattr(_http, "_env_proxy", None)  # the environment is read once per process
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]

    async def run() -> tuple[object, str, str, BaseException]:
        wire = _http.async_wire()
        plain = (await lmgate.acompletion(**kw(fake_provider))).choices[0].message.content
        text = ""
        async for chunk in await lmgate.acompletion(stream=True, **kw(fake_provider)):
            text += chunk.choices[0].delta.content or ""
        try:
            await lmgate.acompletion(**{**kw(fake_provider), "api_base": f"http://127.0.0.1:{closed}/v1"})
        except Exception as error:  # examined below
            return wire, plain, text, error
        raise AssertionError("a refused connection did not fail")

    wire, plain, text, error = asyncio.run(run())
    assert wire is None
    assert plain == text == "Hello from fake"
    assert type(error) is lmgate.APIConnectionError, repr(error)
    monkeypatch.setattr(_http, "_env_proxy", None)
