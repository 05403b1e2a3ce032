"""HTTP: pooled keep-alive connections, one client per sync world and per event loop, streams that release their connection."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fakes import Reply
from helpers import MESSAGES

import lmgate

KEY = "sk-test-http-0123456789abcdef"


def kw(fp, **extra):
    return {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "api_base": fp.base_url + "/v1",
        "api_key": KEY,
        **extra,
    }


def anth(fp, **extra):
    return {
        "model": "claude-3-5-haiku-20241022",
        "messages": MESSAGES,
        "api_base": fp.base_url,
        "api_key": KEY,
        **extra,
    }


def test_sync_calls_reuse_one_connection(fake_provider):
    """Plain, streamed (to the end) and embedding calls of every provider share one keep-alive connection."""
    lmgate.completion(**kw(fake_provider))
    list(lmgate.completion(stream=True, **kw(fake_provider)))
    list(lmgate.completion(stream=True, **anth(fake_provider)))
    lmgate.completion(**anth(fake_provider))
    lmgate.completion(model="azure/d", messages=MESSAGES, api_base=fake_provider.base_url, api_key=KEY)
    lmgate.embedding(
        model="text-embedding-3-small", input=["a"], api_base=fake_provider.base_url + "/v1", api_key=KEY
    )
    fake_provider.enqueue(Reply(status=400))
    with pytest.raises(lmgate.BadRequestError):
        lmgate.completion(**kw(fake_provider))
    lmgate.completion(**kw(fake_provider))
    assert len(fake_provider.requests) == 8
    assert fake_provider.connections_accepted == 1


def test_threads_share_the_sync_pool(fake_provider):
    """Sync calls made one after another from different threads reuse the same pooled connection."""
    errors: list[BaseException] = []

    def one() -> None:
        try:
            lmgate.completion(**kw(fake_provider))
        except BaseException as error:  # surfaced below
            errors.append(error)

    for _ in range(3):
        t = threading.Thread(target=one)
        t.start()
        t.join()
    assert errors == []
    assert fake_provider.connections_accepted == 1


def test_one_async_client_per_event_loop(fake_provider):
    """Async calls in one loop share a connection; another loop gets its own client (and connection)."""

    async def several() -> None:
        await lmgate.acompletion(**kw(fake_provider))
        async for _ in await lmgate.acompletion(stream=True, **anth(fake_provider)):
            pass
        await lmgate.aembedding(
            model="text-embedding-3-small", input=["a"], api_base=fake_provider.base_url + "/v1", api_key=KEY
        )
        await lmgate.acompletion(**kw(fake_provider))

    asyncio.run(several())
    assert fake_provider.connections_accepted == 1
    asyncio.run(several())
    assert fake_provider.connections_accepted == 2
    assert len(fake_provider.requests) == 8


@pytest.fixture
def one_connection_client(monkeypatch):
    """lmgate.client_session: a client allowed one connection, so a leaked stream would block the next call."""
    client = httpx.Client(
        limits=httpx.Limits(max_connections=1),
        timeout=httpx.Timeout(5.0, pool=2.0),
        headers={"x-client": "mine"},
    )
    monkeypatch.setattr(lmgate, "client_session", client)
    yield client
    client.close()


@pytest.mark.parametrize("how", ["with-next", "with-break", "close"])
def test_stream_left_early_releases_its_connection(fake_provider, one_connection_client, how):
    """Leaving a stream early (with-block, break, close()) releases the connection: the next call on a one-connection pool works."""
    stream = lmgate.completion(stream=True, **anth(fake_provider))
    if how == "with-next":
        with stream as s:
            next(s)
    elif how == "with-break":
        with stream as s:
            for _ in s:
                break
    else:
        next(stream)
        stream.close()
    r = lmgate.completion(**kw(fake_provider))
    assert r.choices[0].message.content == "Hello from fake"
    assert [req.headers["x-client"] for req in fake_provider.requests] == ["mine", "mine"]


def test_stream_read_to_the_end_goes_back_to_the_pool(fake_provider, one_connection_client):
    """A stream read to its end returns its connection for reuse (one TCP connection for several streams)."""
    for _ in range(3):
        with lmgate.completion(stream=True, **kw(fake_provider)) as s:
            list(s)
    lmgate.completion(**kw(fake_provider))
    assert fake_provider.connections_accepted == 1


def test_async_stream_left_early_releases_its_connection(fake_provider):
    """`async with` around an async stream left early releases the connection for the next call on a one-connection pool."""

    async def run() -> str:
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1), timeout=httpx.Timeout(5.0, pool=2.0)
        )
        lmgate.aclient_session = client
        try:
            async with await lmgate.acompletion(stream=True, **anth(fake_provider)) as s:
                await s.__anext__()
            stream = await lmgate.acompletion(stream=True, **kw(fake_provider))
            async for _ in stream:
                break
            await stream.aclose()
            r = await lmgate.acompletion(**kw(fake_provider))
            return r.choices[0].message.content  # type: ignore[no-any-return]
        finally:
            lmgate.aclient_session = None
            await client.aclose()

    assert asyncio.run(run()) == "Hello from fake"


def test_module_request_timeout_applies(fake_provider, monkeypatch):
    """lmgate.request_timeout bounds a call that names no timeout."""
    monkeypatch.setattr(lmgate, "request_timeout", 0.2)
    release = threading.Event()
    fake_provider.enqueue(Reply(delay_event=release))
    try:
        with pytest.raises(lmgate.Timeout):
            lmgate.completion(**kw(fake_provider))
    finally:
        release.set()
