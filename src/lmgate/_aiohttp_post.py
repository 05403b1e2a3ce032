"""A plain POST over aiohttp's own request, connector and response classes (issue 18).

``ClientSession.request`` runs ``ClientSession._request`` for every call: about 580 bytecodes of
plumbing for features lmgate's session never uses (redirects, cookies, auth from the URL or netrc,
proxies, traces, middlewares, a total timeout, retries of idempotent methods, per-call overrides of
every session option). For the usual provider call — a POST with a bytes body to a static
``http(s)`` endpoint, no query parameters — ``PlainPost.send`` does what ``_request`` does for that
call and nothing else: it builds the same ``ClientRequest`` with the same arguments, takes a
connection from the same connector with the same timeout, sets the same response parameters, and
lets aiohttp send the request and read the answer's head (``ClientRequest.send``,
``ClientResponse.start``), raising the same exceptions. Nothing of HTTP is written here.

What ``_request`` does that this leaves out, and why each is a no-op for lmgate's session:
redirects (``allow_redirects=False`` on every call), cookies (a ``DummyCookieJar``), auth (none in
the session; ``plain_target`` refuses a URL with user info), proxies and ``trust_env`` (neither set:
an HTTP proxy in the environment switches lmgate to httpx), traces and middlewares (none), the total
timeout (lmgate's timeouts have ``total=None``: its handle is never armed and the timer is aiohttp's
``TimerNoop``), the retry of a pooled connection that broke (only for idempotent methods, never
POST), closing the bytes body (a no-op for ``BytesPayload``). Anything else — another method, query
parameters, a body that is not bytes, header names that differ only in case (``_request`` merges
those, ``ClientRequest`` alone would send both) — goes through ``ClientSession.request`` as before.

The aiohttp versions this was read against are named in ``TESTED``; any other version takes
``ClientSession.request`` for every call (a test fails on a new version, so that it is read again).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import aiohttp
from aiohttp.helpers import TimerNoop
from yarl import URL

from ._aiohttp_eager import NEEDED, eager_body_task

# the aiohttp minor versions whose ClientSession._request this module follows
TESTED = ((3, 14),)

_VERSION = tuple(int(part) for part in aiohttp.__version__.split(".")[:2] if part.isdigit())
SUPPORTED = _VERSION in TESTED

_NO_TIMER = TimerNoop()  # stateless: what TimeoutHandle.timer() gives for total=None


# what ``header_shape`` says of a call's header names
MERGED = 0  # two names differ only in case: ``_request`` merges them, so the call takes it
TYPED = 1  # distinct names, a Content-Type among them
UNTYPED = 2  # distinct names, no Content-Type


@functools.lru_cache(maxsize=256)
def header_shape(names: tuple[str, ...]) -> int:
    """``MERGED``, ``TYPED`` or ``UNTYPED`` (a deployment sends the same names on every call: once each)."""
    lowered = {name.lower() for name in names}
    if len(lowered) != len(names):
        return MERGED
    return TYPED if "content-type" in lowered else UNTYPED


def plain_target(url: URL, schemes: Any) -> bool:
    """Whether ``_request`` would send to ``url`` as it is: an absolute URL of a scheme the
    connector serves, with a host, without user info (which would become Basic auth)."""
    return bool(url.scheme in schemes and url.raw_host and url.raw_user is None and url.raw_password is None)


class PlainPost:
    """What ``ClientSession._request`` would pass to aiohttp's classes for a plain POST on
    ``session``, read once from the session."""

    __slots__ = (
        "_acquired",
        "_connector",
        "_eager",
        "_loop",
        "_request_class",
        "_response_class",
        "_response_params",
        "_session",
        "_skip_headers",
        "_version",
        "schemes",
    )

    def __init__(
        self, session: aiohttp.ClientSession, loop: asyncio.AbstractEventLoop, *, eager_writes: bool = True
    ) -> None:
        """``eager_writes``: a request alone on the connector writes its body inside
        ``ClientRequest.send`` (``_aiohttp_eager``), where the Python version needs it."""
        connector = session.connector
        assert connector is not None
        self._session = session
        self._connector = connector
        # the connections in use, this call's included (aiohttp's own count of them)
        self._acquired = connector._acquired
        self._eager = eager_writes and NEEDED
        self._loop = loop
        self._request_class = session._request_class
        self._response_class = session._response_class
        self._version = session._version
        skip = session._skip_auto_headers or None
        # what ClientRequest is given as skip_auto_headers, by whether the call has a Content-Type:
        # where the session skips only an automatic Content-Type, a call with one never gets it, so
        # without the skip set ClientRequest builds the same headers and skips a copy of them
        self._skip_headers = (skip, None if skip is None or {*skip} == {"Content-Type"} else skip)
        self.schemes = connector.allowed_protocol_schema_set
        self._response_params: dict[str, Any] = {
            "skip_payload": False,  # POST is not HEAD
            "read_until_eof": True,
            "auto_decompress": session._auto_decompress,
            "read_bufsize": session._read_bufsize,
            "timeout_ceil_threshold": connector._timeout_ceil_threshold,
            "max_line_size": session._max_line_size,
            "max_field_size": session._max_field_size,
            "max_headers": session._max_headers,
        }

    async def send(
        self,
        url: URL,
        headers: dict[str, str],
        typed: bool,
        body: bytes | None,
        timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        """``session.request("POST", url, headers=headers, data=body, allow_redirects=False,
        timeout=timeout)`` for a plain call (see the module's doc); ``typed``: the headers hold a
        Content-Type (``header_shape``)."""
        traces: list[Any] = []
        # the arguments ``_request`` passes, less those equal to ClientRequest's defaults there
        # (no params, cookies, auth, compression, chunking, expect-100, proxy; ssl=True, trust_env=False)
        request = self._request_class(
            "POST",
            url,
            headers=headers,
            skip_auto_headers=self._skip_headers[typed],
            data=body,
            version=self._version,
            loop=self._loop,
            response_class=self._response_class,
            timer=_NO_TIMER,
            session=self._session,
            traces=traces,
        )
        try:
            try:
                connection = await self._connector.connect(request, traces=traces, timeout=timeout)
            except asyncio.TimeoutError as error:
                raise aiohttp.ConnectionTimeoutError(f"Connection timeout to host {request.url}") from error
            protocol = connection.protocol
            assert protocol is not None
            protocol.set_response_params(
                timer=_NO_TIMER, read_timeout=timeout.sock_read, **self._response_params
            )
            try:
                loop = self._loop
                if self._eager and len(self._acquired) == 1 and loop.get_task_factory() is None:
                    # alone on the connector: the body leaves inside send (_aiohttp_eager)
                    loop.set_task_factory(eager_body_task)
                    try:
                        response = await request.send(connection)
                    finally:
                        loop.set_task_factory(None)
                else:
                    response = await request.send(connection)
                try:
                    await response.start(connection)
                except BaseException:
                    response.close()
                    raise
            except BaseException:
                connection.close()
                raise
        except aiohttp.ClientError:
            raise
        except OSError as error:  # as ``_request``: an OS error that is not a timeout, as aiohttp's own
            if error.errno is None and isinstance(error, asyncio.TimeoutError):
                raise
            raise aiohttp.ClientOSError(*error.args) from error
        return response
