"""The attempt loop, written once for sync and async calls.

``attempts(call)`` is a generator holding every decision of a call's way to its answer: checks,
cache lookup, the request of each attempt, error mapping, retry and its wait, parsing, the
terminal event, the cache store. It does no I/O: where it needs some it yields an operation
(``SEND`` this request, ``READ`` this body, ``WAIT`` this long, …) and receives the result, or
the exception, back — the shape of httpx's ``Auth.auth_flow``. ``run_sync`` and ``run_async``
are the two drivers that perform those operations, the only place sync and async calls differ.

``mock_response`` answers through the same loop: its transport (``providers.mock.respond``)
returns an httpx-shaped response instead of going to the network, so a mock call emits the
same events, in the same order, as a call to a real provider — and is retried like one. Its
request body is encoded like a real one (a body JSON cannot hold is refused the same way).

Where a mock call differs, and why: the mock transport answers with the response already
decoded (a ``ModelResponse``, or for a stream its chunks: ``CHUNKS``, not ``SSE``), so neither
JSON parsing nor a provider's SSE translator runs for it. Encoding the mock's answer to bytes
only to decode it again would test the mock's own encoder against a translator, not a
provider's wire format, at a per-call cost every mock user (demos, tests, the benches) pays;
the translators are tested against real bytes by the contract suite over the fake HTTP
provider (``tests/test_callback_contract.py``'s ``backend``) and the provider tests.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any, Protocol

from . import _http
from .providers import mock as _mock
from .providers.base import HttpRequest

# operations the loop yields; each driver performs them
SEND = "send"  # (SEND, request, body bytes) -> a response with the body unread
READ = "read"  # (READ, response) -> the body (the response is closed)
SSE = "sse"  # (SSE, response, translator) -> (chunk iterator, close)
BYTES = "bytes"  # (BYTES, response, translator) -> (chunk iterator, close): raw body pieces, binary framing
CHUNKS = "chunks"  # (CHUNKS, list) -> an iterator over it (async for async calls)
WAIT = "wait"  # (WAIT, seconds): between attempts and for mock_delay, by the call's retry policy's sleep
LOOKUP = "lookup"  # (LOOKUP,) -> the cached response or None
STORE = "store"  # (STORE, response)
AUTH = "auth"  # (AUTH, token source, header a 401 refused or None) -> the auth header (vertex)

Flow = Generator[tuple[Any, ...], Any, Any]


class Call(Protocol):
    """What the loop asks of a call (``lmgate._call.Call``): its decisions, none of its I/O."""

    settings: Any
    wire: Any  # the provider requests are built for (its sign/stream_format seams)
    endpoint: Any
    control: dict[str, Any]
    mock: Any
    stream: bool
    kind: str
    record: Any
    cache_hit: bool
    timeout: Any
    policy: Any

    def prepare(self) -> None: ...
    def http_request(self, attempt: int) -> HttpRequest: ...
    def post_call(self, text: str | None, headers: dict[str, str] | None = None) -> None: ...
    def post_call_stream(self, stream: Any, headers: dict[str, str]) -> None: ...
    def parse(self, status: int, headers: dict[str, str], raw: Any) -> Any: ...
    def http_error(self, status: int, headers: dict[str, str], raw: Any) -> BaseException: ...
    def transport_error(self, error: BaseException) -> BaseException: ...
    def retry_delay(self, attempt: int, error: BaseException) -> float | None: ...
    def translator(self) -> Any: ...
    def succeed(self, response: Any) -> Any: ...
    def fail(self, error: BaseException, partial: Any = None) -> BaseException: ...
    def wrap_stream(self, chunks: Any, close: Any = None) -> Any: ...
    def _cost(self, response: Any, usage: Any) -> Any: ...
    def cache_lookup(self) -> Any: ...
    async def acache_lookup(self) -> Any: ...
    def cache_store(self, response: Any) -> None: ...
    async def acache_store(self, response: Any) -> None: ...


def attempts(call: Call) -> Flow:
    """One call from its checks to its result; see the module docstring."""
    try:
        call.prepare()
        caching = call.settings.cache is not None
        hit = (yield (LOOKUP,)) if caching else None
        if hit is not None:  # reaches every callback like a real call (chunks, success), marked cache_hit
            call.cache_hit = True
            if call.record is not None:  # only callbacks read the saved cost: skip pricing when none listen
                call.record.cache_hit = True
                call.record.saved_cache_cost = call._cost(hit, hit.get("usage")).cost or 0.0
            if call.stream and call.kind == "chat":
                return call.wrap_stream(
                    (yield (CHUNKS, _mock.mock_chunks(hit)))
                )  # not stored again: call.cache_hit
            return call.succeed(hit)  # no pre/post events: no API call is made
        mock_delay = call.control.get("mock_delay") if call.mock is not None else None
        if call.mock is not None and call.control.get("mock_timeout") is True and call.timeout is not None:
            mock_delay = getattr(
                call.timeout, "connect", call.timeout
            )  # the reference's mock_timeout waits the timeout, then times out
        if mock_delay:
            yield (WAIT, float(mock_delay))
        attempt = 0
        # vertex: token auth; after a 401 the refused header is handed back (once) to be replaced
        tokens, auth, refused, refreshed = getattr(call, "token_source", None), None, None, False
        while True:
            req = call.http_request(attempt)
            if tokens is not None:  # after the pre-call event: the token never reaches a callback
                auth, refused = (yield (AUTH, tokens, refused)), None
                req.headers.update(auth)
            # encoded outside the try: a body that cannot be encoded is the caller's error, not a
            # connection's; a mock call encodes it too, so it refuses what a real call would
            body = req.body_bytes()
            if call.mock is None:  # seam: a provider signs the final request (Bedrock's SigV4)
                req = call.wire.sign(req, body, call.endpoint)
            err: BaseException
            try:
                response = yield (SEND, req, body)
            except Exception as error:
                err = call.transport_error(error)
            else:
                status = response.status_code
                if status < 400 and call.stream:
                    if isinstance(response, _mock.MockResponse):
                        source, close = (yield (CHUNKS, _mock.mock_chunks(response.content))), None
                    else:
                        framing = SSE if call.wire.stream_format == "sse" else BYTES  # seam: binary streams
                        source, close = yield (framing, response, call.translator())
                    # nothing is read before the caller iterates: the post-call event still comes first
                    stream = call.wrap_stream(source, close)
                    call.post_call_stream(stream, dict(response.headers))
                    return stream
                try:  # a response that is already read (the mock transport's) is not read again
                    raw = response.content if response.is_closed else (yield (READ, response))
                except Exception as error:  # the body broke off: a connection error, retried like one
                    raw, err = None, call.transport_error(error)
                if raw is not None:
                    if status < 400:
                        result = call.succeed(call.parse(status, dict(response.headers), raw))
                        if caching:
                            yield (STORE, result)
                        return result
                    err = call.http_error(status, dict(response.headers), raw)
            if tokens is not None and not refreshed and getattr(err, "status_code", None) == 401:
                refused, refreshed = auth, True  # vertex: an expired or revoked token: new one, same attempt
                continue
            delay = call.retry_delay(attempt, err)
            if delay is None:
                raise err
            yield (WAIT, delay)
            attempt += 1
    except BaseException as error:
        mapped = call.fail(error)
        if mapped is error:
            raise
        raise mapped from error


# ------------------------------------------------------------------ the drivers


def run_sync(call: Call) -> Any:
    """Drive ``attempts(call)``, performing each operation blocking."""
    flow = attempts(call)
    step, value = flow.send, None
    while True:
        try:
            op = step(value)
        except StopIteration as done:
            return done.value
        step = flow.send
        try:
            kind = op[0]
            if kind is SEND:
                value = _mock.respond(call) if call.mock is not None else _send(call, op[1], op[2])
            elif kind is READ:
                value = _read(op[1])
            elif kind is SSE:
                value = _sse_chunks(_event_source(op[1]).iter_sse(), op[2]), op[1].close
            elif kind is BYTES:
                value = _byte_chunks(op[1].iter_bytes(), op[2]), op[1].close
            elif kind is CHUNKS:
                value = iter(op[1])
            elif kind is AUTH:
                value = op[1].auth_header(op[2])
            elif kind is LOOKUP:
                value = call.cache_lookup()
            else:
                value = None
                if kind is WAIT:
                    call.policy.sleep(op[1])
                else:
                    call.cache_store(op[1])
        except BaseException as error:
            step, value = flow.throw, error


async def run_async(call: Call) -> Any:
    """Drive ``attempts(call)``, awaiting each operation."""
    flow = attempts(call)
    step, value = flow.send, None
    while True:
        try:
            op = step(value)
        except StopIteration as done:
            return done.value
        step = flow.send
        try:
            kind = op[0]
            if kind is SEND:
                value = _mock.respond(call) if call.mock is not None else await _asend(call, op[1], op[2])
            elif kind is READ:
                value = await _aread(op[1])
            elif kind is SSE:
                value = _achunks(op[1], op[2]), op[1].aclose
            elif kind is BYTES:
                value = _abyte_chunks(op[1].aiter_bytes(), op[2]), op[1].aclose
            elif kind is CHUNKS:
                value = _aiter(op[1])
            elif kind is AUTH:  # a token fetch blocks: off the event loop unless the cached one is good
                value = (None if op[2] else op[1].cached_header()) or await _to_thread(
                    op[1].auth_header, op[2]
                )
            elif kind is LOOKUP:
                value = await call.acache_lookup()
            else:
                value = None
                if kind is WAIT:
                    await call.policy.async_sleep(op[1])
                else:
                    await call.acache_store(op[1])
        except BaseException as error:
            step, value = flow.throw, error


# ------------------------------------------------------------------ what the drivers do


def _send(call: Call, req: HttpRequest, body: bytes) -> Any:
    client = _http.sync_client(call.settings)
    request = client.build_request(
        # a parsed URL and no empty params: httpx would parse the URL string twice per request
        req.method,
        _http.url(req.url),
        headers=req.headers,
        content=body,
        params=req.params or None,
        timeout=_http.timeout(call.timeout),
    )
    return client.send(request, stream=True)


async def _asend(call: Call, req: HttpRequest, body: bytes) -> Any:
    wire = _http.async_wire(call.settings)  # aiohttp directly, unless the caller brought an httpx client
    if wire is not None:
        return await wire.send(
            req.method, req.url, req.headers, body, req.params, _http.timeout(call.timeout)
        )
    client = _http.async_client(call.settings)
    request = client.build_request(
        req.method,
        _http.url(req.url),
        headers=req.headers,
        content=body,
        params=req.params or None,
        timeout=_http.timeout(call.timeout),
    )
    return await client.send(request, stream=True)


def _read(response: Any) -> Any:
    try:
        return response.read()
    finally:
        response.close()


async def _aread(response: Any) -> Any:
    try:
        return await response.aread()
    finally:
        await response.aclose()


def _event_source(response: Any) -> Any:
    if hasattr(response, "aiter_sse"):  # the aiohttp transport's response decodes its own events
        return response
    from httpx_sse import EventSource

    return EventSource(response)


def _sse_chunks(events: Iterator[Any], translator: Any) -> Iterator[Any]:
    for sse in events:
        yield from translator.feed(sse.event, sse.data)
        if translator.done:
            for _ in events:  # read to the end so the connection goes back to the pool
                pass
            return


def _achunks(response: Any, translator: Any) -> Any:
    """A stream's chunks: in one generator where the response reads them itself (the aiohttp
    transport), else through its events."""
    fused = getattr(response, "aiter_chunks", None)
    if fused is not None:
        return fused(translator)
    return _asse_chunks(_event_source(response).aiter_sse(), translator)


async def _asse_chunks(events: Any, translator: Any) -> Any:
    async for sse in events:
        for chunk in translator.feed(sse.event, sse.data):
            yield chunk
        if translator.done:
            async for _ in events:  # read to the end so the connection goes back to the pool
                pass
            return


def _byte_chunks(pieces: Iterator[bytes], translator: Any) -> Iterator[Any]:
    for piece in pieces:
        yield from translator.feed_bytes(piece)
        if translator.done:
            for _ in pieces:  # read to the end so the connection goes back to the pool
                pass
            return


async def _abyte_chunks(pieces: Any, translator: Any) -> Any:
    async for piece in pieces:
        for chunk in translator.feed_bytes(piece):
            yield chunk
        if translator.done:
            async for _ in pieces:  # read to the end so the connection goes back to the pool
                pass
            return


async def _to_thread(fn: Any, *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, *args)


async def _aiter(items: list[Any]) -> Any:
    for item in items:
        yield item
