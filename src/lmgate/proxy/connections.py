"""The HTTP connections: limits and timeouts uvicorn lacks, and its own errors in the OpenAI shape.

uvicorn's protocols (h11 and httptools) are subclassed with one mixin, ``Guard``, that adds:

- a cap on open connections (``max_connections``): a connection over the cap closes the
  connection that has been idle longest (keep-alive, or still sending its head); when every
  connection is busy with a request, the new one gets a 503 and is closed;
- a header timeout: a connection must send a whole request head within
  ``header_timeout_s`` of connecting or of the next request's first byte (uvicorn waits
  forever); a silent connection is closed, a partial head gets a 408;
- a body timeout: the whole body must arrive within ``body_timeout_s`` of the head;
- a header size limit (``max_header_bytes``, 431), checked on the whole head (httptools has
  none, h11 bounds only an incomplete head);
- the 400/408/431/503 the HTTP layer answers by itself as JSON in the OpenAI error shape
  (uvicorn sends ``text/plain``).

The keep-alive timeout is uvicorn's own (``timeout_keep_alive``). The limits arrive as a
keyword argument: ``functools.partial(GuardedHttpToolsProtocol, limits=...)`` is the ``http``
class given to uvicorn (``server.protocol_for`` picks it). The h11 protocol lives in
``connections_h11`` so that a server on httptools never imports h11.
"""

from __future__ import annotations

import asyncio
import functools
import http
import itertools
import logging
import re
from collections.abc import Sequence
from typing import Any

from .config import ServerLimits
from .errors import ProxyError

logger = logging.getLogger("lmgate.proxy.connections")
LINGER_S = 2.0  # how long an answered-and-refused connection is drained before it is closed
# at most this many connections linger at once (each holds a file): past it, close at once
MAX_LINGERING = 256
_lingering = 0  # this process's lingering connections (one server per process)


def error_bytes(status: int, message: str, default_headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """A whole HTTP/1.1 response carrying ``message`` as an OpenAI-shaped error; the connection closes after it."""
    body = ProxyError(status, message).body()
    phrase = http.HTTPStatus(status).phrase.encode()
    head = [b"HTTP/1.1 %d %s\r\n" % (status, phrase)]
    for name, value in default_headers:
        head.append(name + b": " + value + b"\r\n")
    head.append(
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return b"".join(head) + body


class _RefusalLog:
    """Says "connections refused" at most once per ``every_s``, with the count since (a flood
    of refusals must not become a flood of log lines)."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self.last = -every_s
        self.count = 0

    def note(self, now: float, cap: int) -> None:
        self.count += 1
        if now - self.last >= self.every_s:
            logger.warning(
                "refused %d connection(s): all %d connections are busy (general_settings.max_connections)",
                self.count,
                cap,
            )
            self.last = now
            self.count = 0


_refusals = _RefusalLog()


class _Refused(Exception):
    """Raised inside the HTTP parser to stop parsing a request the guard refused."""


class Guard:
    """The limits and timeouts of one connection, mixed into a uvicorn HTTP protocol (see the module)."""

    # provided by the uvicorn protocol this is mixed into
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    server_state: Any
    cycle: Any

    def _guard_init(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.awaiting_head = True  # no request in progress: idle, or still sending a head
        self.idle_since = 0.0
        self._head_bytes = 0
        self._body_done = True
        self._response_done = True
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # a timer still to arm when the data that started it leaves its part incomplete (see
        # ``_arm_pending``): when the head's first byte came, and when the body is due
        self._head_since: float | None = None
        self._body_due: float | None = None
        self._refusal: tuple[int, str] | None = None
        self._linger_timer: asyncio.TimerHandle | None = None
        self.draining = False  # answered with an error: what still arrives is dropped

    # ---- connection life ----
    def _guard_connected(self) -> bool:
        """Enforce the connection cap; False when this connection was refused."""
        self.idle_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self._evict_idle():
            _refusals.note(self.loop.time(), self.limits.max_connections)
            self._respond_and_close(
                503,
                f"the server is at its limit of {self.limits.max_connections} "
                "connections, all busy; retry later (general_settings.max_connections)",
            )
            return False
        self._arm_head_timer()
        return True

    def _evict_idle(self) -> bool:
        idle = [c for c in self.connections if c is not self and getattr(c, "awaiting_head", False)]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        logger.debug("connection cap reached: closing the connection idle longest")
        oldest.transport.close()
        self.connections.discard(oldest)
        return True

    def _guard_lost(self) -> None:
        global _lingering
        self._cancel_timers()
        if self._linger_timer is not None:
            _lingering -= 1
            self._linger_timer.cancel()
            self._linger_timer = None

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None
        self._head_since = self._body_due = None

    def _respond_and_close(self, status: int, message: str) -> None:
        """Answer with an error and end the connection.

        The client may still be sending (the rest of a head or body): closing at once with
        unread data would make the kernel send a reset, and a reset can discard the answer
        before the client reads it. So the write side is closed first and what still
        arrives is read and dropped for ``LINGER_S`` (as nginx's lingering close does).
        """
        global _lingering
        self._cancel_timers()
        self._flush_held()
        transport = self.transport
        if self.draining or transport.is_closing():  # answered already
            return
        transport.write(error_bytes(status, message, self.server_state.default_headers))
        self.draining = True
        if transport.can_write_eof() and _lingering < MAX_LINGERING:
            transport.write_eof()
            _lingering += 1
            self._linger_timer = self.loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()

    def _flush_held(self) -> None:
        """A head the cycle's transport holds goes out before the connection writes or closes."""
        held = getattr(self.cycle, "transport", None)
        if type(held) is HeadWithBody:
            held.flush()

    # ---- the head ----
    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.awaiting_head or self.transport.is_closing():
            return
        if self._head_bytes == 0:  # a connection that never spoke (or is idle again): just close it
            self.transport.close()
            return
        self._respond_and_close(
            408,
            f"request headers not received within {self.limits.header_timeout_s:g} s "
            "(general_settings.request_header_timeout_s)",
        )

    def _guard_data(self, size: int) -> None:
        if self.awaiting_head:
            self._head_bytes += size
            if self._head_timer is None and self._head_since is None:
                self._head_since = self.loop.time()  # armed after the data, if still needed

    def _guard_after_data(self) -> None:
        if (
            self.awaiting_head
            and self._head_bytes > self.limits.max_header_bytes
            and not self.transport.is_closing()
        ):
            self._refuse_oversized_head()
        self._arm_pending()

    def _arm_pending(self) -> None:
        """Arm the head and body timers the data just parsed left due, with the deadlines they
        had from its first byte and its head. The usual request arrives whole in one piece of
        data: its head and body are complete before this runs, and no timer is made only to be
        cancelled (issue 18: four timer operations a request)."""
        since, due = self._head_since, self._body_due
        if since is None and due is None:
            return
        self._head_since = self._body_due = None
        if self.draining or self.transport.is_closing():
            return
        if since is not None and self.awaiting_head and self._head_timer is None:
            self._head_timer = self.loop.call_at(since + self.limits.header_timeout_s, self._head_timed_out)
        if due is not None and not self._body_done and self._body_timer is None:
            self._body_timer = self.loop.call_at(due, self._body_timed_out)

    def _refuse_oversized_head(self) -> None:
        self._respond_and_close(
            431,
            f"request headers are over the limit of {self.limits.max_header_bytes} bytes "
            "(general_settings.max_request_header_kb)",
        )

    def _head_complete(self, size: int) -> None:
        """A whole head was parsed (``size`` bytes); raises ``_Refused`` when it is too large."""
        if size > self.limits.max_header_bytes:
            self._refusal = (
                431,
                f"request headers are over the limit of {self.limits.max_header_bytes} bytes "
                "(general_settings.max_request_header_kb)",
            )
            raise _Refused
        self.awaiting_head = False
        self._body_done = self._response_done = False
        self._head_bytes = 0
        self._head_since = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._body_due = self.loop.time() + self.limits.body_timeout_s  # armed by _arm_pending if needed

    # ---- the body ----
    def _body_complete(self) -> None:
        self._body_done = True
        self._body_due = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        if self._response_done:
            self._idle()

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if (
            cycle is not None and cycle.response_started
        ):  # answered already (the app did not wait for the body)
            self._flush_held()
            self.transport.close()
            return
        self._respond_and_close(
            408,
            f"request body not received within {self.limits.body_timeout_s:g} s "
            "(general_settings.request_body_timeout_s)",
        )

    def _guard_response_complete(self) -> None:
        # a body the app did not read is still drained (within the body timeout) before the
        # connection counts as idle again
        self._response_done = True
        if self._body_done:
            self._idle()

    def _idle(self) -> None:
        self.awaiting_head = True
        self._head_bytes = 0
        self.idle_since = self.loop.time()

    # ---- errors of the HTTP layer ----
    def _send_error(self, message: str) -> None:
        status, text = self._refusal or (400, message)
        self._refusal = None
        self._respond_and_close(status, text)


_JOIN_MAX = 64 * 1024  # a body up to this size is joined to its held head, not written beside it


class HeadWithBody:
    """One request cycle's transport, as uvicorn's cycle sees it: the head of an answer of known
    length (``content-length``) is held until the body's first write, and both leave in one
    system call (joined, or ``writelines`` for a large body).

    uvicorn writes the head as soon as the app sends ``http.response.start`` and the body on
    ``http.response.body``: two writes, two TCP segments and two wake-ups of the client for an
    answer the app sends whole (a forwarded JSON answer, an error). One write saves a system call
    and a wake-up on each side (issue 18). The bytes and their order are unchanged: a held head
    is written with the next write, before the connection closes, and before the connection's
    own answers (``Guard``). A head without a length (a stream: chunked) is written at once, so
    a stream's client sees its head before the first event; so is a HEAD request's, which no
    body write follows.
    """

    __slots__ = ("transport", "_head", "_first")
    _CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"  # what uvicorn writes before a read of the body

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self._head: bytes | None = None
        self._first = True  # the cycle's first write is its head (or a 100 Continue)

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= _JOIN_MAX:  # one buffer: uvloop's fastest write (several take a write context)
                self.transport.write(head + data)
            else:  # a large body is not copied
                self.transport.writelines((head, data))
            return
        if self._first and data != self._CONTINUE:
            self._first = False
            if b"\r\ncontent-length: " in data:  # uvicorn writes header names in lower case
                self._head = data
                return
        self.transport.write(data)

    def flush(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)


def write_whole(cycle: Any, head: bytes, names: bytes, values: bytes, body: bytes | memoryview) -> bool:
    """Write a 200 of known length to ``cycle`` (uvicorn's httptools request cycle) in one go, as
    its ``send`` does for ``http.response.start`` and then the whole ``http.response.body``: the
    same bytes, the same checks of header names and values, the same state afterwards (issue 18:
    two ASGI messages, a Python loop over the headers and two regex searches per header were a
    sixth of the time from the upstream's answer to the client's).

    ``head``: the answer's own header lines (``name: value\r\n``, lower-case names) after uvicorn's
    default ones, ending with its content-length and content-type; ``names`` and ``values``: its
    names and values joined. Returns False, having done nothing, where ``send`` would do more than
    that (flow control, a closing connection, an access log, a default header it treats apart, a
    header it would refuse): the caller then sends the two messages."""
    if (
        cycle.response_started
        or cycle.disconnected
        or cycle.flow.write_paused
        or cycle.access_log
        or not cycle.keep_alive
        or cycle.chunked_encoding is not None
        or cycle.scope["method"] == "HEAD"
    ):
        return False
    defaults = _default_lines(cycle.default_headers)
    if (
        defaults is None
        or _names_refused(names)
        or len(values.translate(None, _VALUE_REFUSED)) != len(values)  # ``_value_refused``, inlined
    ):
        return False
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    whole = b"".join((_STATUS_200, defaults, head, b"\r\n"))
    transport = cycle.transport
    if type(transport) is HeadWithBody:  # nothing held: this is the cycle's first write
        transport._first = False
        transport = transport.transport
    if len(body) <= _JOIN_MAX:
        transport.write(whole + body)
    else:
        transport.writelines((whole, body))
    cycle.response_complete = True
    cycle.message_event.set()
    cycle.on_response()
    return True


@functools.cache
def httptools_cycle() -> Any:
    """uvicorn's httptools request cycle class (None without httptools), looked up once: an ASGI
    ``send`` bound to one of these is uvicorn's own (``write_whole`` may write for it)."""
    try:
        from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
    except ImportError:
        return None
    return RequestResponseCycle


_STATUS_200 = b"HTTP/1.1 200 OK\r\n"
# uvicorn's own checks (httptools_impl.HEADER_RE, HEADER_VALUE_RE): a match anywhere in the
# joined names (values) is a match in one of them
_HEADER_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_HEADER_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# the bytes _HEADER_VALUE matches (tests hold the two equal): deleted by ``bytes.translate`` in one
# C pass, where the pattern's search costs ~40 instructions a byte (a call id's header is 36)
_VALUE_REFUSED = bytes(range(0x00, 0x09)) + bytes(range(0x0A, 0x20)) + b"\x7f"
# header names uvicorn's send reads (not only writes): an answer or default naming one is sent by it
SPECIAL_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
# joined header names and whether uvicorn refuses one of them: the same few sets on every answer
# (a forwarded answer's own names), so searched once each (issue 18: the search is per byte)
_NAMES_REFUSED: dict[bytes, bool] = {}
_NAMES_REFUSED_MAX = 256  # names a hook chose among them: past this many, the rest are searched each time


def _value_refused(values: bytes) -> bool:
    """Whether uvicorn's header-value pattern matches anywhere in ``values`` (a refused value)."""
    return len(values.translate(None, _VALUE_REFUSED)) != len(values)


def _names_refused(names: bytes) -> bool:
    """Whether uvicorn's header-name pattern matches anywhere in ``names`` (a refused name)."""
    refused = _NAMES_REFUSED.get(names)
    if refused is None:
        refused = _HEADER_NAME.search(names) is not None
        if len(_NAMES_REFUSED) < _NAMES_REFUSED_MAX:
            _NAMES_REFUSED[names] = refused
    return refused


_last_defaults: list[Any] = [None, None]  # uvicorn's default headers (a new list each second) and their lines


def _default_lines(defaults: list[tuple[bytes, bytes]]) -> bytes | None:
    """uvicorn's default headers (date, server) as header lines, or None when ``send`` would treat
    one apart (refuse it, or read it: a special name) or change it (a name not in lower case)."""
    last = _last_defaults
    if defaults is last[0]:
        return last[1]  # type: ignore[no-any-return]
    lines: bytes | None = b"".join(name + b": " + value + b"\r\n" for name, value in defaults)
    for name, value in defaults:
        if (
            _HEADER_NAME.search(name)
            or _value_refused(value)
            or name != name.lower()
            or name.decode("latin-1") in SPECIAL_HEADERS
        ):
            lines = None
            break
    last[0], last[1] = defaults, lines
    return lines


def _head_size(target: bytes, headers: Any) -> int:
    # the lengths summed in C (once a request): the names and values, plus ": " and CRLF each
    return len(target) + sum(map(len, itertools.chain.from_iterable(headers))) + 4 * len(headers)


def _httptools_protocol() -> type[Any] | None:
    try:
        import httptools
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class GuardedHttpToolsProtocol(Guard, HttpToolsProtocol):
        """uvicorn's httptools protocol with the guard's limits, timeouts and JSON errors."""

        def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._guard_init(limits)

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._guard_connected()

        def connection_lost(self, exc: Exception | None) -> None:
            self._guard_lost()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            # uvicorn's data_received, keeping the parser's reason for a 400
            if self.draining:
                return
            self._unset_keepalive_if_required()
            self._guard_data(len(data))
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserUpgrade:
                if self._should_upgrade():
                    self.handle_websocket_upgrade()
                else:
                    self._unsupported_upgrade_warning()
            except httptools.HttpParserError as error:
                logger.debug("malformed HTTP request: %s", error)
                self._send_error(f"malformed HTTP request: {error}")
                return
            self._guard_after_data()

        def on_headers_complete(self) -> None:
            self._head_complete(_head_size(self.url, self.headers))
            super().on_headers_complete()
            cycle = self.cycle
            # head and body in one write; a HEAD answer has no body write to carry its head
            if cycle is not None and cycle.transport is self.transport and self.scope["method"] != "HEAD":
                cycle.transport = HeadWithBody(self.transport)

        def on_message_complete(self) -> None:
            self._body_complete()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            # with pipelined requests queued, this answer is an earlier request's: the guard's
            # state is the last parsed request's, still to be answered (not idle, not evictable)
            if not self.pipeline:
                self._guard_response_complete()
            super().on_response_complete()

        def send_400_response(self, msg: str) -> None:
            self._send_error(msg)

        def shutdown(self) -> None:
            if self.draining:  # answered already
                self.transport.close()
                return
            super().shutdown()

    GuardedHttpToolsProtocol.__module__ = __name__
    GuardedHttpToolsProtocol.__qualname__ = "GuardedHttpToolsProtocol"  # picklable for --workers
    return GuardedHttpToolsProtocol


GuardedHttpToolsProtocol: Any = _httptools_protocol()


__all__ = ["Guard", "GuardedHttpToolsProtocol", "error_bytes", "httptools_cycle", "write_whole"]
