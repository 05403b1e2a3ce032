"""lmgate's async wire: aiohttp, directly (``AiohttpTransport.send``) and as an httpx transport.

httpx's own async pool (httpcore on anyio) costs ~1.2 ms of CPU per request on this kind of
machine, the httpx client over this transport ~0.35 ms, aiohttp alone ~0.1 ms (issue 18;
``bench/transports.py`` measures them). So lmgate's own provider calls go to aiohttp directly and
read the answer through ``AioResponse``, which has the few httpx.Response names they use
(``status_code``, ``headers``, ``aread``, ``aiter_text`` for httpx-sse, ``aclose``); errors are
raised as the httpx exceptions they would have been, so error mapping and retries are unchanged.
``lmgate._http.async_client()`` is an httpx.AsyncClient over the same pool, for code that wants
httpx's API; a caller's own ``aclient_session`` is used as it is.

Why not the ``httpx-aiohttp`` package: it reports every aiohttp connection error (a refused or
reset connection) as ``httpx.ConnectTimeout``, which lmgate would turn into a 408 timeout, and it
hands aiohttp the ``httpx.Headers`` object, whose per-key decoding is the bulk of its overhead.

One aiohttp session per transport, opened on first use inside the running loop and closed when
that loop shuts its async generators down (``asyncio.run``, uvicorn, pytest-asyncio all do), so
no "Unclosed client session" warning is left behind and pooled sockets go with their loop.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp
import httpx
from yarl import URL

from ._aiohttp_post import MERGED, SUPPORTED, TYPED, PlainPost, header_shape, plain_target
from ._sse_events import SSEEvents

# most specific first: ServerTimeoutError is also a ClientConnectionError, ClientConnectorError a ClientOSError
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (asyncio.TimeoutError, httpx.PoolTimeout),  # aiohttp's `connect` budget: waiting for a pooled connection
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.NetworkError),
    (aiohttp.ClientError, httpx.TransportError),
)


def _mapped(error: BaseException) -> BaseException:
    for source, target in _ERRORS:
        if isinstance(error, source):
            mapped = target(f"{type(error).__name__}: {error}" if str(error) else type(error).__name__)
            mapped.__cause__ = error
            return mapped
    return error


class _Body(httpx.AsyncByteStream):
    """The response body as aiohttp receives it; closing hands the connection back to the pool
    when the body was read to the end, and closes it otherwise."""

    __slots__ = ("_response",)

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error

    async def aclose(self) -> None:
        self._response.release()


class AioResponse:
    """An aiohttp response under the httpx.Response names lmgate's async path reads."""

    __slots__ = ("_response", "headers", "status_code")
    is_closed = False  # the body is still to be read (aread): the attempt loop asks before reading

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status
        raw = response.raw_headers
        # lower-case names, repeated headers joined: as dict(httpx.Headers)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in raw}
        if len(headers) != len(raw):  # a name repeated: its values joined, in order
            headers = {}
            for raw_key, raw_value in raw:
                key, value = raw_key.decode("latin-1").lower(), raw_value.decode("latin-1")
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        self.headers = headers

    async def aread(self) -> bytes:
        try:
            return await self._response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The raw body as it arrives (binary framings: Bedrock's AWS event stream)."""
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error

    async def aiter_text(self) -> AsyncIterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            async for chunk in self._response.content.iter_any():
                text = decoder.decode(chunk)
                if text:
                    yield text
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail

    def _check_event_stream(self) -> None:
        content_type = self.headers.get("content-type", "").partition(";")[0]
        if "text/event-stream" not in content_type:
            from httpx_sse import SSEError

            raise SSEError(
                f"Expected response header Content-Type to contain 'text/event-stream', got {content_type!r}"
            )

    async def aiter_sse(self) -> AsyncIterator[Any]:
        """The body's server-sent events, as ``httpx_sse.EventSource(response).aiter_sse()`` gives
        them (the same content-type check and error), decoded by ``SSEEvents`` straight from
        aiohttp's chunks."""
        self._check_event_stream()
        events = SSEEvents()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        try:
            async for chunk in self._response.content.iter_any():
                text = decoder.decode(chunk)
                if text:
                    for event in events.feed(text):
                        yield event
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error
        tail = decoder.decode(b"", final=True)
        if tail:
            for event in events.feed(tail):
                yield event
        for event in events.end():
            yield event

    async def aiter_chunks(self, translator: Any) -> AsyncIterator[Any]:
        """The stream's chunks, exactly as the attempt loop's ``_asse_chunks(self.aiter_sse(),
        translator)`` gives them, in one generator instead of two: each chunk the proxy forwards
        crossed both (issue 18). After the translator's end (``data: [DONE]``) the rest of the body
        is read and dropped, so the connection goes back to the pool."""
        self._check_event_stream()
        events = SSEEvents()
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        feed = translator.feed
        content = self._response.content
        try:
            async for piece in content.iter_any():
                text = decoder.decode(piece)
                if not text:
                    continue
                whole = events.whole_data(text)  # the usual piece: its data, no event objects
                if whole is not None:
                    for data in whole:
                        for chunk in feed("message", data):
                            yield chunk
                        if translator.done:
                            async for _ in content.iter_any():
                                pass
                            return
                    continue
                for sse in events.feed(text):
                    for chunk in feed(sse.event, sse.data):
                        yield chunk
                    if translator.done:
                        async for _ in content.iter_any():
                            pass
                        return
            tail = decoder.decode(b"", final=True)
            for sse in (*events.feed(tail), *events.end()) if tail else events.end():
                for chunk in feed(sse.event, sse.data):
                    yield chunk
                if translator.done:
                    return
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error

    async def aclose(self) -> None:
        response = self._response
        if response.connection is None and response.closed:
            # read to its end (``aread``): aiohttp closed the response and gave the connection back
            # to the pool at the body's end; ``release`` would only mark a stream nobody reads
            # again (issue 18: one step fewer per answer)
            return
        response.release()  # the connection goes back to the pool if the body was read to its end


@functools.lru_cache(maxsize=256)
def _url(text: str) -> URL:
    # a deployment's endpoint is the same on every call: parse it once; ``encoded``: sent byte for
    # byte as the provider built it (yarl would decode an escaped ``%3A`` in a Bedrock model id,
    # and the SigV4 signature covers the path as escaped)
    return URL(text, encoded=True)


@functools.lru_cache(maxsize=256)
def _plain_url(text: str, schemes: frozenset[str]) -> URL | None:
    """The endpoint's URL when a POST to it may take ``PlainPost`` (see _aiohttp_post), else None."""
    url = _url(text)
    return url if plain_target(url, schemes) else None


class AiohttpTransport(httpx.AsyncBaseTransport):
    def __init__(self, ssl_context: Any, limits: httpx.Limits, *, plain_posts: bool = True) -> None:
        """``plain_posts``: a plain POST takes ``PlainPost`` (where aiohttp is a version it
        follows); False sends every call through ``ClientSession.request``."""
        self._ssl = ssl_context
        self._limits = limits
        self._plain_posts = plain_posts and SUPPORTED
        self._session: aiohttp.ClientSession | None = None
        # the session's narrow POST path, where aiohttp is a version it follows
        self._plain: PlainPost | None = None
        self._closer: Any = None
        self._timeouts: dict[tuple[Any, Any, Any], aiohttp.ClientTimeout] = {}
        # the last httpx.Timeout seen and its aiohttp twin: calls without their own timeout share one object
        self._last_timeout: tuple[httpx.Timeout | None, aiohttp.ClientTimeout | None] = (None, None)

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=self._limits.keepalive_expiry or 0,
            ssl=self._ssl,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            # provider calls carry no cookies from one call to the next (httpx's client keeps its own)
            cookie_jar=aiohttp.DummyCookieJar(),
            # bodies are bytes: without this aiohttp would label a body without Content-Type octet-stream
            skip_auto_headers=("Content-Type",),
            timeout=aiohttp.ClientTimeout(total=None),
        )
        self._plain = PlainPost(self._session, asyncio.get_running_loop()) if self._plain_posts else None
        # a started async generator is closed by loop.shutdown_asyncgens(): the loop's end closes the session
        closer = self._closer = self._close_with_loop()
        try:
            closer.asend(None).send(None)
        except StopIteration:  # it stopped at its `yield`, as meant
            pass
        return self._session

    async def _close_with_loop(self) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            self._closer = None  # aclose() must not wait for this generator from inside it
            await self.aclose()

    def _timeout(self, timeouts: dict[str, Any]) -> aiohttp.ClientTimeout:
        key = (timeouts.get("connect"), timeouts.get("read"), timeouts.get("pool"))
        timeout = self._timeouts.get(key)
        if timeout is None:
            if len(self._timeouts) > 64:  # callers with ever-changing timeouts: do not grow without bound
                self._timeouts.clear()
            timeout = aiohttp.ClientTimeout(total=None, connect=key[2], sock_connect=key[0], sock_read=key[1])
            self._timeouts[key] = timeout
        return timeout

    def _httpx_timeout(self, timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        last, converted = self._last_timeout
        if timeout is last and converted is not None:
            return converted
        converted = self._timeout({"connect": timeout.connect, "read": timeout.read, "pool": timeout.pool})
        self._last_timeout = (timeout, converted)
        return converted

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        params: dict[str, str] | None,
        timeout: httpx.Timeout,
    ) -> AioResponse:
        """One request, straight over aiohttp; the response body is read by the caller."""
        session = self._session
        if session is None or session.closed:
            session = self._open()
        plain = self._plain
        try:
            if (
                plain is not None
                and method == "POST"
                and not params
                and (body is None or type(body) is bytes)
                and type(headers) is dict
                and (target := _plain_url(url, plain.schemes)) is not None
                and (shape := header_shape(tuple(headers))) != MERGED
            ):
                # the usual provider call: aiohttp's own classes without ClientSession._request
                response = await plain.send(
                    target, headers, shape == TYPED, body or None, self._httpx_timeout(timeout)
                )
                return AioResponse(response)
            response = await session.request(
                method,
                _url(url),
                headers=headers,
                data=body or None,
                params=params or None,
                allow_redirects=False,
                timeout=self._httpx_timeout(timeout),
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error
        return AioResponse(response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None or session.closed:
            session = self._open()
        data: Any
        try:
            data = request.content
        except httpx.RequestNotRead:
            data = request.stream  # an async byte iterator; aiohttp frames it (chunked)
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        if data is request.stream:
            headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        extensions = request.extensions
        try:
            response = await session.request(
                request.method,
                URL(str(request.url), encoded=True),  # httpx has encoded it already
                headers=headers,
                data=data or None,
                allow_redirects=False,
                auto_decompress=False,  # httpx decodes content-encoding itself
                timeout=self._timeout(extensions.get("timeout") or {}),
                server_hostname=extensions.get("sni_hostname"),
            )
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            raise _mapped(error) from error
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        self._plain = None
        closer, self._closer = self._closer, None
        if session is not None and not session.closed:
            await session.close()
        if closer is not None:
            await closer.aclose()
