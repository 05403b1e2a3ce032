"""A fake LLM provider: a real HTTP/1.1 server on 127.0.0.1 speaking the OpenAI (chat, embeddings,
Responses, legacy completions), Azure OpenAI and Anthropic Messages wire formats, with scripted
replies, errors, streams and cut connections.

It also holds :class:`BackgroundHTTPServer`, the small threaded-server base shared with the log receiver.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import hashlib
import itertools
import json
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["DEFAULT_TEXT", "BackgroundHTTPServer", "FakeProvider", "RecordedRequest", "Reply"]

DEFAULT_TEXT = "Hello from fake"
AZURE_DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
AZURE_DEFAULT_EMBEDDING_MODEL = "text-embedding-3-small"

# Bound on every wait a handler does on behalf of a test (delay_event).
DELAY_BOUND_S = 10.0
# Slice used to wait on a test's event while still noticing that the server is stopping.
_WAIT_SLICE_S = 0.05


# --------------------------------------------------------------------------------------------------
# Shared threaded server base
# --------------------------------------------------------------------------------------------------


class _ThreadingServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its live connections and handler threads so stop() can cut them."""

    daemon_threads = True
    block_on_close = False  # we join our own threads, with a bound
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], owner: Any) -> None:
        self.owner = owner
        self.closing = False
        self.live_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.handler_threads: set[threading.Thread] = set()
        self.accepted = 0
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self.live_lock:
            if self.closing:
                self.shutdown_request(request)
                return
            self.connections.add(request)
            self.handler_threads.add(thread)
            self.accepted += 1
        # headers and body go out in separate writes: without NODELAY, Nagle holds the body until the
        # client's delayed ACK (~40 ms a request)
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.live_lock:
                self.connections.discard(request)
                self.handler_threads.discard(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client going away mid-response is normal in these tests; anything else is a bug in the fake.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, OSError)):
            return
        super().handle_error(request, client_address)


class BaseHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler with helpers for JSON, chunked SSE and abrupt cuts."""

    protocol_version = "HTTP/1.1"
    server: _ThreadingServer
    timeout = 60  # an idle keep-alive connection is dropped after this

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def dispatch(self) -> None:
        raise NotImplementedError

    def do_POST(self) -> None:
        self.dispatch()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_POST

    # -- request ---------------------------------------------------------------------------------
    def read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def header_dict(self) -> dict[str, str]:
        return {k.lower(): v for k, v in self.headers.items()}

    # -- response --------------------------------------------------------------------------------
    def send_bytes(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def start_chunked(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def end_chunked(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def cut(self) -> None:
        """Drop the connection abruptly: no terminating chunk, no more keep-alive."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class BackgroundHTTPServer:
    """A ThreadingHTTPServer on 127.0.0.1 run in a background thread; start()/stop()/context manager.

    ``start()`` after ``stop()`` binds the same port again when it can (SO_REUSEADDR), else a free one.
    """

    handler_class: type[BaseHandler] = BaseHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._port = port
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._accepted_before = 0
        self.stopping = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Any:
        if self._server is not None:
            return self
        self.stopping.clear()
        try:
            server = _ThreadingServer((self.host, self._port), self.handler_class, self)
        except OSError:
            if not self._port:
                raise
            server = _ThreadingServer((self.host, 0), self.handler_class, self)
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close the listening socket, cut every open connection and join the threads."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()
        with server.live_lock:
            server.closing = True
            connections = list(server.connections)
            threads = list(server.handler_threads)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 5.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self._accepted_before += server.accepted

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since construction (lets a test check keep-alive / pooling)."""
        server = self._server
        return self._accepted_before + (server.accepted if server is not None else 0)

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def wait_event(self, event: threading.Event, timeout: float) -> bool:
        """Wait for a test's event, bounded by ``timeout``, giving up early when the server stops."""
        deadline = time.monotonic() + timeout
        while not self.stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if event.wait(min(_WAIT_SLICE_S, remaining)):
                return True
        return event.is_set()


# --------------------------------------------------------------------------------------------------
# Provider data types
# --------------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One request the fake received. ``headers`` keys are lower-case; ``json`` is None if not JSON."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    raw: bytes


@dataclass
class Reply:
    """A scripted reply, consumed FIFO by the next request it matches.

    With ``tool_calls`` the text is left out (OpenAI content null) unless ``text`` is set to something
    other than the default. ``text=None`` means no text at all.
    """

    status: int = 200
    json: Any = None  # full body override (sent as application/json, never streamed)
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = DEFAULT_TEXT
    tool_calls: list[dict[str, Any]] | None = None  # [{"id", "name", "arguments": dict}]
    finish_reason: str | None = None  # OpenAI vocabulary; mapped for Anthropic
    usage: tuple[int, int] = (7, 5)
    error_type: str | None = None
    error_message: str | None = None
    error_code: str | None = None
    cut_after_chunks: int | None = None
    stream_error: dict[str, Any] | None = None
    delay_event: threading.Event | None = None
    chunk_size: int = 3
    # extras
    match: str | None = None  # only consumed by a request whose path contains this substring
    model: str | None = None  # overrides the model named in the response
    hold_after_chunks: int | None = None  # stream: wait for delay_event after this many events, not before
    events: list[str] | None = None  # stream: send these raw SSE blocks instead of the generated ones
    # a model that generates this many output tokens unless the request's max_tokens
    # (max_completion_tokens, max_output_tokens) stops it sooner, as a real one does: replaces
    # usage's completion tokens (finish_reason "length" when cut short)
    generates: int | None = None


# Error vocabularies by status -------------------------------------------------------------------

_OPENAI_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("invalid_request_error", "Invalid request.", None),
    401: ("invalid_request_error", "Incorrect API key provided.", "invalid_api_key"),
    403: ("permission_error", "You are not allowed to perform this request.", None),
    404: (
        "invalid_request_error",
        "The model does not exist or you do not have access to it.",
        "model_not_found",
    ),
    405: ("invalid_request_error", "Method not allowed.", None),
    422: ("invalid_request_error", "Unprocessable request.", None),
    429: ("requests", "Rate limit reached for requests. Please try again later.", "rate_limit_exceeded"),
    500: ("server_error", "The server had an error while processing your request. Sorry about that!", None),
    503: ("server_error", "The engine is currently overloaded, please try again later.", None),
    529: ("server_error", "The engine is currently overloaded, please try again later.", None),
}

_ANTHROPIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    405: ("invalid_request_error", "Method not allowed."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    422: ("invalid_request_error", "Unprocessable request."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit."),
    500: ("api_error", "Internal server error"),
    503: ("api_error", "Service unavailable"),
    529: ("overloaded_error", "Overloaded"),
}

_ANTHROPIC_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
}


def openai_error_body(
    status: int, message: str | None = None, type_: str | None = None, code: str | None = None
) -> dict[str, Any]:
    d_type, d_message, d_code = _OPENAI_ERRORS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", f"HTTP {status}", None)
    )
    return {
        "error": {
            "message": message or d_message,
            "type": type_ or d_type,
            "param": None,
            "code": code if code is not None else d_code,
        }
    }


def anthropic_error_body(status: int, message: str | None = None, type_: str | None = None) -> dict[str, Any]:
    d_type, d_message = _ANTHROPIC_ERRORS.get(
        status, ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status}")
    )
    return {"type": "error", "error": {"type": type_ or d_type, "message": message or d_message}}


def fake_embedding(text: str, dimensions: int = 4) -> list[float]:
    """Deterministic unit-length vector derived from a hash of ``text``."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for i in range(0, len(digest), 4):
            (n,) = struct.unpack("<I", digest[i : i + 4])
            values.append(n / 0xFFFFFFFF * 2.0 - 1.0)
        counter += 1
    values = values[:dimensions]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [round(v / norm, 6) for v in values]


def _generated(reply: Reply, body: dict[str, Any]) -> Reply:
    """``reply`` with the output tokens a model generating ``reply.generates`` reports for ``body``."""
    asked = body.get("max_completion_tokens") or body.get("max_tokens") or body.get("max_output_tokens")
    most = reply.generates or 0
    if isinstance(asked, int) and asked < most:
        return dataclasses.replace(reply, usage=(reply.usage[0], asked), finish_reason="length")
    return dataclasses.replace(reply, usage=(reply.usage[0], most))


def _pieces(text: str, size: int) -> list[str]:
    if not text:
        return []
    if size <= 0:
        return [text]
    return [text[i : i + size] for i in range(0, len(text), size)]


def _sse_data(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _sse_event(name: str, obj: Any) -> bytes:
    return f"event: {name}\n".encode() + _sse_data(obj)


# --------------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------------


class _ProviderHandler(BaseHandler):
    def dispatch(self) -> None:
        body = self.read_body()
        url = urlsplit(self.path)
        try:
            parsed: Any = json.loads(body) if body else None
            json_ok = True
        except ValueError:
            parsed, json_ok = None, False
        rec = RecordedRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers=self.header_dict(),
            json=parsed,
            raw=body,
        )
        owner: FakeProvider = self.server.owner
        owner._record(rec)
        owner._handle(self, rec, json_ok)


class FakeProvider(BackgroundHTTPServer):
    """Fake OpenAI / Azure OpenAI / Anthropic server. All public methods are thread-safe.

    Attributes a test may set: ``expect_key`` (None = accept any key), ``validate`` (reject requests the
    real API would reject: missing model/messages/max_tokens/anthropic-version/api-version),
    ``azure_model`` and ``azure_embedding_model`` (model reported by Azure responses),
    ``echo_credentials`` (a careless upstream: every answer sends the credentials it received back,
    in headers, sensitive ones like ``set-cookie`` and ``authorization`` as well as ``x-echo-credential``,
    and every generated error message quotes them).
    """

    handler_class = _ProviderHandler

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host, port)
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._queue: collections.deque[Reply] = collections.deque()
        self._ids = itertools.count(1)
        self.expect_key: str | None = None
        self.validate = True
        self.azure_model = AZURE_DEFAULT_MODEL
        self.azure_embedding_model = AZURE_DEFAULT_EMBEDDING_MODEL
        self.echo_credentials = False
        self._local = threading.local()  # each request is handled on its own thread

    # -- public API ------------------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest | None:
        with self._cond:
            return self._requests[-1] if self._requests else None

    @property
    def pending_replies(self) -> int:
        with self._cond:
            return len(self._queue)

    def enqueue(self, *replies: Reply) -> None:
        with self._cond:
            self._queue.extend(replies)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self._requests) >= n, timeout)

    def reset(self) -> None:
        """Forget recorded requests and queued replies; back to default settings."""
        with self._cond:
            self._requests.clear()
            self._queue.clear()
            self.expect_key = None
            self.validate = True
            self.azure_model = AZURE_DEFAULT_MODEL
            self.azure_embedding_model = AZURE_DEFAULT_EMBEDDING_MODEL
            self.echo_credentials = False

    @staticmethod
    def credentials(rec: RecordedRequest) -> list[str]:
        """The credentials a request carried: key headers (and a Basic header decoded), secret query values."""
        found: list[str] = []
        for name in ("authorization", "x-api-key", "api-key"):
            value = rec.headers.get(name)
            if not value:
                continue
            found.append(value)
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token:
                found.append(token)
            elif scheme.lower() == "basic" and token:
                found.append(base64.b64decode(token).decode(errors="replace"))  # "user:password"
        for name, value in rec.query.items():
            if value and any(word in name.lower() for word in ("key", "token", "sig", "code", "secret")):
                found.append(value)
        return found

    # -- internals -------------------------------------------------------------------------------
    def _record(self, rec: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()

    def _next_reply(self, path: str) -> Reply:
        with self._cond:
            for i, reply in enumerate(self._queue):
                if reply.match is None or reply.match in path:
                    del self._queue[i]
                    return reply
        return Reply()

    @staticmethod
    def _route(path: str) -> tuple[str, str | None, str | None]:
        """(api, endpoint, azure deployment) for a path; endpoint None = unknown."""
        p = path.rstrip("/")
        if p in ("/v1/chat/completions", "/chat/completions"):
            return "openai", "chat", None
        if p in ("/v1/embeddings", "/embeddings"):
            return "openai", "embeddings", None
        if p in ("/v1/responses", "/responses"):
            return "openai", "responses", None
        if p in ("/v1/completions", "/completions"):
            return "openai", "completions", None
        if p == "/v1/messages":
            return "anthropic", "messages", None
        if p == "/v1/messages/count_tokens":
            return "anthropic", "count_tokens", None
        parts = p.split("/")
        # ['', 'openai', 'deployments', '{dep}', 'chat', 'completions'] / [..., '{dep}', 'embeddings']
        if len(parts) >= 5 and parts[1] == "openai" and parts[2] == "deployments" and parts[3]:
            rest = "/".join(parts[4:])
            if rest == "chat/completions":
                return "azure", "chat", parts[3]
            if rest == "embeddings":
                return "azure", "embeddings", parts[3]
            return "azure", None, parts[3]
        return "openai", None, None

    def _error(
        self,
        h: BaseHandler,
        api: str,
        status: int,
        message: str | None = None,
        type_: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        echo = getattr(self._local, "echo", None)
        if echo:
            default = (anthropic_error_body if api == "anthropic" else openai_error_body)(status)["error"][
                "message"
            ]
            message = f"{message or default} (credentials received: {', '.join(echo)})"
        if api == "anthropic":
            body = anthropic_error_body(status, message, type_)
        else:
            body = openai_error_body(status, message, type_, code)
        h.send_json(status, body, {**self._base_headers(api), **(headers or {})})

    def _base_headers(self, api: str, tokens: int = 0) -> dict[str, str]:
        headers = self._api_headers(api, tokens)
        echo = getattr(self._local, "echo", None)
        if echo:
            joined = " ".join(echo)
            headers.update(
                {
                    "x-echo-credential": joined,
                    "authorization": echo[0],
                    "x-api-key": joined,
                    "api-key": joined,
                    "proxy-authorization": joined,
                    "set-cookie": f"session={echo[-1]}; Path=/",
                    "cookie": f"k={echo[-1]}",
                }
            )
        return headers

    def _api_headers(self, api: str, tokens: int = 0) -> dict[str, str]:
        rid = hashlib.sha1(f"{time.time_ns()}:{id(self)}".encode()).hexdigest()[:24]
        if api == "anthropic":
            reset = (datetime.now(timezone.utc) + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
            return {
                "request-id": f"req_fake{rid}",
                "anthropic-ratelimit-requests-limit": "4000",
                "anthropic-ratelimit-requests-remaining": "3999",
                "anthropic-ratelimit-requests-reset": reset,
                "anthropic-ratelimit-tokens-limit": "400000",
                "anthropic-ratelimit-tokens-remaining": str(400000 - tokens),
                "anthropic-ratelimit-tokens-reset": reset,
            }
        headers = {
            "x-request-id": f"req_fake{rid}",
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": "9999",
            "x-ratelimit-limit-tokens": "2000000",
            "x-ratelimit-remaining-tokens": str(2000000 - tokens),
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        }
        if api == "azure":
            headers["apim-request-id"] = rid
        else:
            headers["openai-version"] = "2020-10-01"
            headers["openai-processing-ms"] = "1"
        return headers

    def _auth_ok(self, api: str, headers: dict[str, str]) -> bool:
        key = self.expect_key
        if key is None:
            return True
        if api == "anthropic":
            return headers.get("x-api-key") == key
        if api == "azure":
            return headers.get("api-key") == key
        return headers.get("authorization") == f"Bearer {key}"

    def _invalid(self, api: str, endpoint: str, rec: RecordedRequest) -> str | None:
        body = rec.json
        if not isinstance(body, dict):
            return "The request body must be a JSON object."
        if api == "azure" and not rec.query.get("api-version"):
            return "Missing required query parameter: api-version"
        if api == "anthropic":
            if not rec.headers.get("anthropic-version"):
                return "anthropic-version: header is required"
            for name in ("model", "messages", "max_tokens"):
                if name not in body and not (name == "max_tokens" and endpoint == "count_tokens"):
                    return f"{name}: Field required"
            return None
        if api == "openai" and "model" not in body:
            return "you must provide a model parameter"
        if endpoint == "chat" and not isinstance(body.get("messages"), list):
            return "Missing required parameter: 'messages'."
        if endpoint == "embeddings" and "input" not in body:
            return "Missing required parameter: 'input'."
        if endpoint == "responses" and "input" not in body and "previous_response_id" not in body:
            return "Missing required parameter: 'input'."
        if endpoint == "completions" and "prompt" not in body:
            return "Missing required parameter: 'prompt'."
        return None

    def _handle(self, h: BaseHandler, rec: RecordedRequest, json_ok: bool) -> None:
        self._local.echo = self.credentials(rec) if self.echo_credentials else []
        api, endpoint, deployment = self._route(rec.path)
        if endpoint is None:
            self._error(h, "openai", 404, f"Invalid URL ({rec.method} {rec.path})", code=None)
            return
        if rec.method != "POST":
            self._error(h, api, 405, f"Invalid method for URL ({rec.method} {rec.path})")
            return
        if not self._auth_ok(api, rec.headers):
            self._error(h, api, 401)
            return
        if not json_ok:
            self._error(h, api, 400, "We could not parse the JSON body of your request.")
            return
        if self.validate:
            problem = self._invalid(api, endpoint, rec)
            if problem is not None:
                self._error(h, api, 404 if "api-version" in problem else 400, problem)
                return

        reply = self._next_reply(rec.path)
        if reply.delay_event is not None and reply.hold_after_chunks is None:
            self.wait_event(reply.delay_event, DELAY_BOUND_S)
            if self.stopping.is_set():
                h.cut()  # stopped while held: the client gets no answer
                return

        if reply.status >= 400:
            if reply.json is not None:
                h.send_json(reply.status, reply.json, {**self._base_headers(api), **reply.headers})
            else:
                self._error(
                    h,
                    api,
                    reply.status,
                    reply.error_message,
                    reply.error_type,
                    reply.error_code,
                    reply.headers,
                )
            return

        body: dict[str, Any] = rec.json or {}
        if reply.generates is not None:
            reply = _generated(reply, body)
        n = next(self._ids)
        model = reply.model or self._model(api, endpoint, body)
        headers = {**self._base_headers(api, sum(reply.usage)), **reply.headers}

        if reply.json is not None:
            self._send_maybe_cut(h, reply, reply.status, reply.json, headers)
            return
        if endpoint == "embeddings":
            self._send_maybe_cut(h, reply, reply.status, self._embeddings(body, model, reply), headers)
            return
        if endpoint == "count_tokens":  # the reply's input tokens
            h.send_json(reply.status, {"input_tokens": reply.usage[0]}, headers)
            return
        stream = bool(body.get("stream"))
        if endpoint == "responses":
            response = self._openai_response(body, reply, model, n)
            if stream:
                self._stream(h, reply, self._openai_response_events(response, reply), headers)
            else:
                self._send_maybe_cut(h, reply, reply.status, response, headers)
            return
        if endpoint == "completions":
            if stream:
                self._stream(h, reply, self._openai_text_events(body, reply, model, n), headers)
            else:
                self._send_maybe_cut(h, reply, reply.status, self._openai_text(reply, model, n), headers)
            return
        if api == "anthropic":
            if stream:
                events = self._anthropic_events(body, reply, model, n)
                self._stream(h, reply, events, headers)
            else:
                self._send_maybe_cut(
                    h, reply, reply.status, self._anthropic_message(body, reply, model, n), headers
                )
            return
        if stream:
            self._stream(h, reply, self._openai_events(body, reply, model, n), headers)
        else:
            self._send_maybe_cut(
                h, reply, reply.status, self._openai_completion(body, reply, model, n), headers
            )

    def _model(self, api: str, endpoint: str, body: dict[str, Any]) -> str:
        if api == "azure":
            return self.azure_embedding_model if endpoint == "embeddings" else self.azure_model
        return str(body.get("model", "gpt-4o-mini"))

    # -- sending -----------------------------------------------------------------------------------
    def _send_maybe_cut(
        self, h: BaseHandler, reply: Reply, status: int, obj: Any, headers: dict[str, str]
    ) -> None:
        if reply.cut_after_chunks is None:
            h.send_json(status, obj, headers)
            return
        # Announce the full length, send only half of the body, then drop the connection.
        data = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data[: len(data) // 2])
        h.cut()

    def _stream(self, h: BaseHandler, reply: Reply, events: list[bytes], headers: dict[str, str]) -> None:
        if reply.events is not None:
            events = [e.encode() if isinstance(e, str) else e for e in reply.events]
        h.start_chunked(
            reply.status,
            "text/event-stream; charset=utf-8",
            {"Cache-Control": "no-cache", **headers},
        )
        try:
            for i, event in enumerate(events):
                if reply.cut_after_chunks is not None and i >= reply.cut_after_chunks:
                    h.cut()
                    return
                if reply.hold_after_chunks is not None and i == reply.hold_after_chunks and reply.delay_event:
                    self.wait_event(reply.delay_event, DELAY_BOUND_S)
                    if self.stopping.is_set():
                        h.cut()
                        return
                h.write_chunk(event)
            if reply.cut_after_chunks is not None:
                h.cut()
                return
            h.end_chunked()
        except OSError:
            h.close_connection = True  # the client went away mid-stream

    # -- bodies ------------------------------------------------------------------------------------
    @staticmethod
    def _text(reply: Reply) -> str | None:
        if reply.tool_calls and reply.text == DEFAULT_TEXT:
            return None
        return reply.text

    @staticmethod
    def _tool_id(tc: dict[str, Any], prefix: str, i: int, n: int) -> str:
        return str(tc.get("id") or f"{prefix}fake{n}_{i}")

    def _openai_usage(self, reply: Reply) -> dict[str, Any]:
        p, c = reply.usage
        return {
            "prompt_tokens": p,
            "completion_tokens": c,
            "total_tokens": p + c,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def _openai_completion(self, body: dict[str, Any], reply: Reply, model: str, n: int) -> dict[str, Any]:
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        message: dict[str, Any] = {"role": "assistant", "content": self._text(reply), "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": self._tool_id(tc, "call_", i, n),
                    "type": "function",
                    "function": {"name": tc["name"], "arguments": json.dumps(tc.get("arguments", {}))},
                }
                for i, tc in enumerate(reply.tool_calls)
            ]
        choices = [
            {"index": i, "message": dict(message), "logprobs": None, "finish_reason": finish}
            for i in range(max(1, int(body.get("n") or 1)))
        ]
        return {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": choices,
            "usage": self._openai_usage(reply),
        }

    def _openai_events(self, body: dict[str, Any], reply: Reply, model: str, n: int) -> list[bytes]:
        base = {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        text = self._text(reply) or ""

        def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                **base,
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
                ],
            }
            if include_usage:
                obj["usage"] = None  # as the real API does on every chunk but the last
            return _sse_data(obj)

        n_choices = max(1, int(body.get("n") or 1))
        events: list[bytes] = []
        for ci in range(n_choices):
            events.append(chunk(ci, {"role": "assistant", "content": "", "refusal": None}))
            events.extend(chunk(ci, {"content": piece}) for piece in _pieces(text, reply.chunk_size))
            for ti, tc in enumerate(reply.tool_calls or []):
                first = {
                    "index": ti,
                    "id": self._tool_id(tc, "call_", ti, n),
                    "type": "function",
                    "function": {"name": tc["name"], "arguments": ""},
                }
                events.append(chunk(ci, {"tool_calls": [first]}))
                args = json.dumps(tc.get("arguments", {}))
                events.extend(
                    chunk(ci, {"tool_calls": [{"index": ti, "function": {"arguments": frag}}]})
                    for frag in _pieces(args, reply.chunk_size)
                )
        if reply.stream_error is not None:
            err = {
                "message": "The server had an error while processing your request.",
                "type": "server_error",
                "param": None,
                "code": None,
                **reply.stream_error,
            }
            events.append(_sse_data({"error": err}))
            return events
        events.extend(chunk(ci, {}, finish) for ci in range(n_choices))
        if include_usage:
            events.append(_sse_data({**base, "choices": [], "usage": self._openai_usage(reply)}))
        events.append(b"data: [DONE]\n\n")
        return events

    # -- the Responses API (POST /v1/responses), as OpenAI answers it --
    def _openai_response(self, body: dict[str, Any], reply: Reply, model: str, n: int) -> dict[str, Any]:
        output: list[dict[str, Any]] = []
        text = self._text(reply)
        if text is not None:
            output.append(
                {
                    "id": f"msg_fake{n}",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
                }
            )
        for i, tc in enumerate(reply.tool_calls or []):
            output.append(
                {
                    "id": f"fc_fake{n}_{i}",
                    "type": "function_call",
                    "status": "completed",
                    "call_id": self._tool_id(tc, "call_", i, n),
                    "name": tc["name"],
                    "arguments": json.dumps(tc.get("arguments", {})),
                }
            )
        p, c = reply.usage
        incomplete = reply.finish_reason == "length"
        return {
            "id": f"resp_fake{n}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "incomplete" if incomplete else "completed",
            "background": False,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "model": model,
            "output": output,
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": body.get("store", True),
            "temperature": body.get("temperature", 1.0),
            "text": body.get("text") or {"format": {"type": "text"}},
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools") or [],
            "top_p": body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": {
                "input_tokens": p,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": c,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": p + c,
            },
            "user": body.get("user"),
            "metadata": body.get("metadata") or {},
        }

    def _openai_response_events(self, response: dict[str, Any], reply: Reply) -> list[bytes]:
        seq = itertools.count()
        events: list[bytes] = []

        def emit(kind: str, **fields: Any) -> None:
            events.append(_sse_event(kind, {"type": kind, "sequence_number": next(seq), **fields}))

        start = dict(response, status="in_progress", output=[], usage=None, incomplete_details=None)
        emit("response.created", response=start)
        emit("response.in_progress", response=start)
        for index, item in enumerate(response["output"]):
            if item["type"] == "message":
                text = item["content"][0]["text"]
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item=dict(item, status="in_progress", content=[]),
                )
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                emit(
                    "response.content_part.added",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                )
                for piece in _pieces(text, reply.chunk_size):
                    emit(
                        "response.output_text.delta",
                        item_id=item["id"],
                        output_index=index,
                        content_index=0,
                        delta=piece,
                        logprobs=[],
                    )
                emit(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                )
                emit(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=item["content"][0],
                )
            else:
                emit(
                    "response.output_item.added",
                    output_index=index,
                    item=dict(item, status="in_progress", arguments=""),
                )
                for piece in _pieces(item["arguments"], reply.chunk_size):
                    emit(
                        "response.function_call_arguments.delta",
                        item_id=item["id"],
                        output_index=index,
                        delta=piece,
                    )
                emit(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            emit("response.output_item.done", output_index=index, item=item)
        if reply.stream_error is not None:
            error = {
                "code": "server_error",
                "message": "The server had an error while processing your request.",
                "param": None,
                **reply.stream_error,
            }
            emit("error", **error)
            return events
        emit(
            "response.incomplete" if response["status"] == "incomplete" else "response.completed",
            response=response,
        )
        return events

    # -- legacy completions (POST /v1/completions) --
    def _openai_text(self, reply: Reply, model: str, n: int) -> dict[str, Any]:
        p, c = reply.usage
        return {
            "id": f"cmpl-fake{n}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "text": self._text(reply) or "",
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason or "stop",
                }
            ],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        }

    def _openai_text_events(self, body: dict[str, Any], reply: Reply, model: str, n: int) -> list[bytes]:
        base = {
            "id": f"cmpl-fake{n}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        events = [
            _sse_data(
                {**base, "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": None}]}
            )
            for piece in _pieces(self._text(reply) or "", reply.chunk_size)
        ]
        events.append(
            _sse_data(
                {
                    **base,
                    "choices": [
                        {
                            "text": "",
                            "index": 0,
                            "logprobs": None,
                            "finish_reason": reply.finish_reason or "stop",
                        }
                    ],
                }
            )
        )
        if (body.get("stream_options") or {}).get("include_usage"):
            p, c = reply.usage
            events.append(
                _sse_data(
                    {
                        **base,
                        "choices": [],
                        "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
                    }
                )
            )
        events.append(b"data: [DONE]\n\n")
        return events

    def _embeddings(self, body: dict[str, Any], model: str, reply: Reply) -> dict[str, Any]:
        raw = body.get("input", "")
        if isinstance(raw, str) or (isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw)):
            inputs = [raw]
        elif isinstance(raw, list):
            inputs = list(raw)
        else:
            inputs = [raw]
        dims = int(body.get("dimensions") or 4)
        data = []
        for i, item in enumerate(inputs):
            vec = fake_embedding(item if isinstance(item, str) else json.dumps(item), dims)
            emb: Any = vec
            if body.get("encoding_format") == "base64":
                emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
            data.append({"object": "embedding", "index": i, "embedding": emb})
        p = reply.usage[0]
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": p, "total_tokens": p},
        }

    def _anthropic_stop(self, body: dict[str, Any], reply: Reply) -> tuple[str, str | None]:
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        stop_reason = _ANTHROPIC_STOP.get(finish, finish)
        stop_sequence = None
        if stop_reason == "stop_sequence":
            seqs = body.get("stop_sequences") or ["\n\nHuman:"]
            stop_sequence = seqs[0]
        return stop_reason, stop_sequence

    def _anthropic_blocks(self, reply: Reply, n: int) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        text = self._text(reply)
        if text is not None:
            blocks.append({"type": "text", "text": text})
        for i, tc in enumerate(reply.tool_calls or []):
            blocks.append(
                {
                    "type": "tool_use",
                    "id": self._tool_id(tc, "toolu_", i, n),
                    "name": tc["name"],
                    "input": tc.get("arguments", {}),
                }
            )
        return blocks

    def _anthropic_usage(self, input_tokens: int, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def _anthropic_message(self, body: dict[str, Any], reply: Reply, model: str, n: int) -> dict[str, Any]:
        stop_reason, stop_sequence = self._anthropic_stop(body, reply)
        return {
            "id": f"msg_fake{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": self._anthropic_blocks(reply, n),
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": self._anthropic_usage(*reply.usage),
        }

    def _anthropic_events(self, body: dict[str, Any], reply: Reply, model: str, n: int) -> list[bytes]:
        stop_reason, stop_sequence = self._anthropic_stop(body, reply)
        start = {
            "id": f"msg_fake{n}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self._anthropic_usage(reply.usage[0], 1),
        }
        events = [_sse_event("message_start", {"type": "message_start", "message": start})]
        for index, block in enumerate(self._anthropic_blocks(reply, n)):
            if block["type"] == "text":
                opening: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in _pieces(block["text"], reply.chunk_size)]
            else:
                opening = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                args = json.dumps(block["input"])
                deltas = [{"type": "input_json_delta", "partial_json": ""}] + [
                    {"type": "input_json_delta", "partial_json": p} for p in _pieces(args, reply.chunk_size)
                ]
            events.append(
                _sse_event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": opening},
                )
            )
            if index == 0:
                events.append(_sse_event("ping", {"type": "ping"}))
            events.extend(
                _sse_event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                for d in deltas
            )
            events.append(_sse_event("content_block_stop", {"type": "content_block_stop", "index": index}))
        if len(events) == 1:
            events.append(_sse_event("ping", {"type": "ping"}))
        if reply.stream_error is not None:
            err = {"type": "overloaded_error", "message": "Overloaded", **reply.stream_error}
            events.append(_sse_event("error", {"type": "error", "error": err}))
            return events
        events.append(
            _sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": {"output_tokens": reply.usage[1]},
                },
            )
        )
        events.append(_sse_event("message_stop", {"type": "message_stop"}))
        return events
