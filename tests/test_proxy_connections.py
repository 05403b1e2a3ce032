"""Slow, idle, malformed and departing clients against a real ``lmgate serve``, over raw sockets, on h11 and httptools."""

from __future__ import annotations

import resource
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from test_proxy_server import Served

from lmgate.proxy.config import ConfigError, load_config

PROTOCOLS = ["h11", "httptools"]
HEADER_TIMEOUT_S = 1.0
WAIT_S = 20.0  # a bound on every blocking read: the server answers long before
MOCK_MODELS = """
    model_list:
      - model_name: chat
        litellm_params: {model: gpt-4o-mini, mock_response: hello}
"""


def start(tmp: Path, general: str, args: list[str], **kwargs: Any) -> Served:
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(MOCK_MODELS) + "general_settings:\n" + textwrap.indent(textwrap.dedent(general), "  ")
    )
    served = Served(path, tmp, args=args, **kwargs)
    try:
        served.wait_ready()
    except BaseException:
        served.stop()
        raise
    return served


@pytest.fixture(scope="module", params=PROTOCOLS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with a 1 s header and body timeout."""
    general = f"""
        request_header_timeout_s: {HEADER_TIMEOUT_S}
        request_body_timeout_s: {HEADER_TIMEOUT_S}
        max_request_header_kb: 8
        keep_alive_timeout_s: {HEADER_TIMEOUT_S}
    """
    served = start(tmp_path_factory.mktemp(request.param), general, ["--http", request.param])
    yield served
    served.stop()


def connect(server: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (bounded by the socket timeout)."""
    out = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return out
        out += data


def exchange(server: Served, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(server) as sock:
        sock.sendall(raw)
        return parse(read_until_closed(sock))


def parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def openai_error(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    assert headers["content-type"] == "application/json"
    error = orjson.loads(body)
    assert set(error) == {"error"} and set(error["error"]) == {"message", "type", "param", "code"}, error
    return error["error"]  # type: ignore[no-any-return]


MALFORMED = {
    "bad content-length": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two content-lengths": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "bad chunk size": b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "bad request line": b"GET\r\n\r\n",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_http_is_a_json_400(server: Served, raw: bytes) -> None:
    """A request the HTTP parser refuses gets a 400 in the OpenAI error shape, and the connection closes."""
    status, headers, body = exchange(server, raw)
    assert status == 400
    assert openai_error(headers, body)["type"] == "invalid_request_error"
    assert headers["connection"] == "close"


@pytest.mark.parametrize("pieces", [1, 8], ids=["one-send", "in-pieces"])
def test_oversized_headers_are_a_json_431(server: Served, pieces: int) -> None:
    """Headers over max_request_header_kb get a 431 in the OpenAI shape, sent whole or bit by bit."""
    raw = b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    with connect(server) as sock:
        step = len(raw) // pieces + 1
        for i in range(0, len(raw), step):
            try:
                sock.sendall(raw[i : i + step])
            except OSError:  # the server may answer and close before the rest arrives
                break
        status, headers, body = parse(read_until_closed(sock))
    assert status == 431
    assert "general_settings.max_request_header_kb" in openai_error(headers, body)["message"]


def test_slow_headers_are_cut_after_the_header_timeout(server: Served) -> None:
    """A client that sends half a head and stalls gets a 408 after request_header_timeout_s and is closed."""
    with connect(server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        status, headers, body = parse(read_until_closed(sock))
        elapsed = time.monotonic() - started
    assert status == 408
    assert "request_header_timeout_s" in openai_error(headers, body)["message"]
    assert HEADER_TIMEOUT_S * 0.9 <= elapsed < WAIT_S


def test_next_request_with_slow_headers_is_cut_after_the_header_timeout(server: Served) -> None:
    """On a kept-alive connection the header timeout runs from the next request's first byte: the
    timer is armed after the data that left the head incomplete (not made and cancelled for every
    request that arrives whole), with the same deadline."""
    with connect(server) as sock:
        sock.sendall(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while b"\r\n\r\n" not in first:  # the whole answer: its head, then its Content-Length
            first += sock.recv(65536)
        status, headers, body = parse(first)
        while len(body) < int(headers["content-length"]):
            body += sock.recv(65536)
        assert status == 200
        started = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\n")
        status, headers, body = parse(read_until_closed(sock))
        elapsed = time.monotonic() - started
    assert status == 408
    assert "request_header_timeout_s" in openai_error(headers, body)["message"]
    assert HEADER_TIMEOUT_S * 0.9 <= elapsed < WAIT_S


def test_silent_connection_is_closed_after_the_header_timeout(server: Served) -> None:
    """A connection that never sends a byte is closed without an answer."""
    with connect(server) as sock:
        assert read_until_closed(sock) == b""


def test_slow_body_is_cut_after_the_body_timeout(server: Served) -> None:
    """A body that does not arrive in request_body_timeout_s gets a 408 and the connection closes."""
    status, headers, body = exchange(
        server, b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model"'
    )
    assert status == 408
    assert "request_body_timeout_s" in openai_error(headers, body)["message"]


def test_client_leaving_mid_body_is_a_quiet_499(server: Served) -> None:
    """A client that disconnects while sending its body is counted as 499, with no error or traceback logged."""
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 100 ")  # the app is reading the body now
        sock.sendall(b'{"model": "chat", "mess')
    for _ in range(500):  # bounded: the server counts it as soon as it sees the connection close
        metrics = httpx.get(f"{server.url}/metrics", timeout=WAIT_S).text
        if 'status="499"' in metrics:
            break
    else:
        raise AssertionError(f"no 499 counted:\n{metrics}")
    assert 'status="500"' not in metrics
    assert "Traceback" not in server.stderr and "ERROR" not in server.stderr


@pytest.mark.parametrize("path", ["/v1/chat/completions/", "/chat/completions/"])
def test_trailing_slash_is_served_without_a_redirect(server: Served, path: str) -> None:
    """Both spellings answer directly: no redirect whose Location would come from the Host header."""
    r = httpx.post(
        f"{server.url}{path}",
        headers={"Host": "evil.example"},
        timeout=WAIT_S,
        json={"model": "chat", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert r.status_code == 200, r.text
    assert "location" not in r.headers
    assert r.json()["choices"][0]["message"]["content"] == "hello"
    assert httpx.get(f"{server.url}/v1/models/", timeout=WAIT_S).status_code == 200


def test_keep_alive_still_works(server: Served) -> None:
    """Several requests on one connection: the guard's timers do not cut a well-behaved client."""
    with httpx.Client(base_url=server.url, timeout=WAIT_S) as client:
        for _ in range(5):
            assert client.get("/health/liveliness").status_code == 200


def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(server: Served) -> None:
    """After an answer, a connection that sends no new request is closed after keep_alive_timeout_s."""
    with connect(server) as sock:
        started = time.monotonic()  # before the request: the server's timer starts after its answer
        sock.sendall(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _, _ = read_one_response(sock)
        assert status == 200
        assert read_until_closed(sock) == b""
    assert HEADER_TIMEOUT_S * 0.9 <= time.monotonic() - started < WAIT_S


# ---------------------------------------------------------------------- the connection cap

CAP = 50
FD_LIMIT = 128  # below the idle connections the test opens: without the cap the server runs out of files


def low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


@pytest.fixture(scope="module", params=PROTOCOLS)
def capped(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with 128 open files at most and a cap of 50 connections; timeouts long enough not to matter."""
    general = f"""
        max_connections: {CAP}
        request_header_timeout_s: 60
        request_body_timeout_s: 60
    """
    served = start(
        tmp_path_factory.mktemp(f"capped-{request.param}"),
        general,
        ["--http", request.param],
        preexec_fn=low_fd_limit,
    )
    yield served
    served.stop()


def test_idle_connections_beyond_the_cap_do_not_block_a_request(capped: Served) -> None:
    """300 idle connections (more than the server's open files) do not keep a normal request from being served:
    the connections idle longest are closed to make room."""
    idle = [connect(capped) for _ in range(300)]
    try:
        r = httpx.post(
            f"{capped.url}/v1/chat/completions",
            timeout=WAIT_S,
            json={"model": "chat", "messages": [{"role": "user", "content": "Hi"}]},
        )
        assert r.status_code == 200, r.text
        assert read_until_closed(idle[0]) == b""  # the oldest idle connection was closed by the server
    finally:
        for sock in idle:
            sock.close()
    assert "Traceback" not in capped.stderr


def test_all_busy_connections_turn_a_new_one_away_with_a_json_503(capped: Served) -> None:
    """When every connection under the cap is busy with a request, a new connection gets a 503 in the OpenAI shape;
    once they finish, requests are served again."""
    busy: list[socket.socket] = []
    refused = None
    try:
        for _ in range(CAP + 5):
            sock = connect(capped)
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
                b"Expect: 100-continue\r\n\r\n"
            )
            first = sock.recv(65536)
            if first.startswith(b"HTTP/1.1 100 "):  # the request is in progress: this connection is busy
                busy.append(sock)
                continue
            refused = parse(first + read_until_closed(sock))
            sock.close()
            break
        assert refused is not None, "no connection was turned away"
        status, headers, body = refused
        assert status == 503
        assert "general_settings.max_connections" in openai_error(headers, body)["message"]
        assert len(busy) == CAP
    finally:
        for sock in busy:
            sock.close()
    r = httpx.get(f"{capped.url}/health/liveliness", timeout=WAIT_S)
    assert r.status_code == 200


# ---------------------------------------------------------------------- startup


def test_trace_log_level_starts_and_logs_connections(tmp_path: Path) -> None:
    """`--log-level trace` starts (it used to fail on logging.setLevel('TRACE')) and logs connections."""
    served = start(tmp_path, "request_header_timeout_s: 5\n", ["--log-level", "trace"])
    try:
        assert httpx.get(f"{served.url}/health/liveliness", timeout=WAIT_S).status_code == 200
    finally:
        assert served.stop() == 0
    assert "TRACE" in served.stderr and "HTTP connection made" in served.stderr


def test_serve_picks_uvloop_and_httptools_and_raises_the_open_file_limit(tmp_path: Path) -> None:
    """Without --http/--loop the server runs on httptools and uvloop (the proxy extra installs them), and it
    raises its soft open-file limit (here started at 256) to the hard limit."""
    pytest.importorskip("uvloop")
    pytest.importorskip("httptools")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    limit = hard if hard != resource.RLIM_INFINITY else 1 << 20

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, limit))

    served = start(tmp_path, "max_connections: 10\n", [], preexec_fn=low_soft_limit)
    served.stop()
    line = next(line for line in served.stderr.splitlines() if "listening on" in line)
    assert line.endswith(f"| httptools, uvloop, open files {limit}"), line


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("max_connections", 0),
        ("max_connections", "many"),
        ("request_header_timeout_s", -1),
        ("request_body_timeout_s", "slow"),
        ("keep_alive_timeout_s", 0),
        ("max_request_header_kb", 0.5),
    ],
)
def test_bad_limit_is_a_config_error_naming_the_key(tmp_path: Path, setting: str, value: Any) -> None:
    """A limit that is not a number in range fails at load, naming general_settings.<key>."""
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(MOCK_MODELS) + f"general_settings:\n  {setting}: {value!r}\n")
    with pytest.raises(ConfigError, match=f"general_settings.{setting}"):
        load_config(path)


def test_limits_have_defaults(tmp_path: Path) -> None:
    """Without settings the documented defaults apply."""
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(MOCK_MODELS))
    limits = load_config(path).limits
    assert (
        limits.max_connections,
        limits.header_timeout_s,
        limits.body_timeout_s,
        limits.keep_alive_timeout_s,
        limits.max_header_bytes,
    ) == (1000, 10.0, 60.0, 5.0, 32 * 1024)


def read_one_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One whole response (by its content-length), without waiting for the connection to close."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    status, headers, body = parse(data)
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return status, headers, body


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_graceful_shutdown_while_a_refused_connection_drains(tmp_path: Path, protocol: str) -> None:
    """SIGTERM while an answered 431 connection is still being drained exits 0 without a traceback."""
    served = start(tmp_path, "max_request_header_kb: 8\n", ["--http", protocol])
    try:
        with connect(served) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            status, _, _ = read_one_response(sock)
            assert status == 431
            code = served.stop()  # the connection is open, its answer sent: the server is draining it
    finally:
        served.stop()
    assert code == 0, served.stderr
    assert "Traceback" not in served.stderr


def test_websocket_upgrade_is_answered_as_plain_http(server: Served) -> None:
    # no route speaks WebSocket, so uvicorn runs with ws="none": the Upgrade header is ignored and
    # the request is served as HTTP (with ws="auto" uvicorn would hand it to the websockets package)
    raw = (
        b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(raw)
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            assert data, "closed before answering"
            head += data
    status, headers, _ = parse(head)
    assert status == 200, head
    assert "sec-websocket-accept" not in headers


def test_a_server_on_httptools_imports_neither_h11_nor_websockets_nor_the_other_commands() -> None:
    # what a worker process loads stays in its idle RSS (docs/benchmarks.md, proxy / idle RSS)
    probe = textwrap.dedent(
        """
        import contextlib
        import io
        import sys
        from lmgate import cli
        from lmgate.proxy.config import ServerLimits
        from lmgate.proxy.server import protocol_for
        import lmgate.proxy.server

        parser_modules = ("lmgate.logs_cli", "lmgate.keys_cli", "lmgate.ui.app")
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                cli.main(["serve", "--help"])
            except SystemExit:
                pass
        name, _ = protocol_for("auto", ServerLimits())
        print(name, sorted(m for m in ("h11", "websockets", *parser_modules) if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split()[0] == "httptools"
    assert out.stdout.strip().endswith("[]"), out.stdout


# ---- an answer's head and body in one write (issue 18) ----
_TCP_INFO_DATA_SEGS_IN = 152  # struct tcp_info's tcpi_data_segs_in (Linux 4.6+): data segments received


def data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < _TCP_INFO_DATA_SEGS_IN + 4:
        pytest.skip("this kernel's tcp_info has no tcpi_data_segs_in")
    return int.from_bytes(info[_TCP_INFO_DATA_SEGS_IN : _TCP_INFO_DATA_SEGS_IN + 4], sys.byteorder)


def test_an_answer_of_known_length_reaches_the_client_in_one_segment(tmp_path: Path) -> None:
    """On httptools (the default), an answer the app sends whole (head, then a body of known
    length) leaves in one write: the client receives one TCP segment per answer, not two.
    (``--http h11`` writes as uvicorn does.)"""
    server = start(tmp_path, "max_request_header_kb: 8\n", ["--http", "httptools"])
    try:
        _one_segment_per_answer(server)
    finally:
        server.stop()


def _one_segment_per_answer(server: Served) -> None:
    chat = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    requests = [
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(chat), chat),
        b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    with connect(server) as sock:
        for raw in requests:
            before = data_segments_in(sock)
            sock.sendall(raw)
            status, headers, body = read_one_response(sock)
            assert status in (200, 404) and len(body) == int(headers["content-length"]) > 0
            assert data_segments_in(sock) - before == 1, raw


def test_a_head_request_is_answered_at_once(server: Served) -> None:
    """A HEAD answer has a length but no body write: its head is not held back waiting for one."""
    with connect(server) as sock:
        for _ in range(2):  # and the connection still serves the next request
            sock.sendall(b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, "closed before the head"
                data += chunk
            status, headers, body = parse(data)
            assert status in (200, 405) and body == b""


class RecordingTransport:
    """What a transport was asked to write, in order, and whether it was closed."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, lines: Any) -> None:
        self.calls.append(("writelines", b"".join(lines)))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def is_closing(self) -> bool:
        return False


def test_a_held_head_keeps_every_byte_in_order() -> None:
    from lmgate.proxy.connections import HeadWithBody

    sized = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    continue_ = b"HTTP/1.1 100 Continue\r\n\r\n"

    t = RecordingTransport()  # a sized answer: head and body in one call
    held = HeadWithBody(t)  # type: ignore[arg-type]
    held.write(continue_)
    held.write(sized)
    assert t.calls == [("write", continue_)]
    held.write(b"ok")
    assert t.calls == [("write", continue_), ("write", sized + b"ok")]  # one buffer: joined

    t = RecordingTransport()  # a large body is not copied to be joined: one writelines
    held = HeadWithBody(t)  # type: ignore[arg-type]
    big = b"x" * (1 << 20)
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(big))
    held.write(big)
    assert [kind for kind, _ in t.calls] == ["writelines"] and t.calls[0][1].endswith(big)

    t = RecordingTransport()  # a stream's head goes out at once, its events after it
    held = HeadWithBody(t)  # type: ignore[arg-type]
    held.write(chunked)
    held.write(b"2\r\nok\r\n")
    assert t.calls == [("write", chunked), ("write", b"2\r\nok\r\n")]

    t = RecordingTransport()  # closed before a body: the head still goes out first
    held = HeadWithBody(t)  # type: ignore[arg-type]
    held.write(sized)
    held.close()
    assert t.calls == [("write", sized), ("close", b"")]
    held.write(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n")  # only a cycle's first write is its head
    assert t.calls[-1] == ("write", b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n")


# ---- pipelined requests (review, session 6) ----
def _read_answers(sock: socket.socket, methods: list[str]) -> list[tuple[int, dict[str, str], bytes]]:
    """The answers to ``methods`` pipelined on ``sock``, in order (by content-length; a HEAD's has no body)."""
    data, out = b"", []
    for method in methods:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed before the answer to {method} #{len(out) + 1}: {out}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        status, headers, _ = parse(head + b"\r\n\r\n")
        if status == 100:  # an Expect: 100-continue's interim answer; its answer follows
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, f"closed after the 100 Continue of {method} #{len(out) + 1}"
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            status, headers, _ = parse(head + b"\r\n\r\n")
        size = 0 if method == "HEAD" else int(headers["content-length"])
        while len(data) < size:
            chunk = sock.recv(65536)
            assert chunk, f"closed in the body of the answer to {method} #{len(out) + 1}"
            data += chunk
        out.append((status, headers, data[:size]))
        data = data[size:]
    return out


def test_pipelined_requests_in_one_segment_are_each_answered_in_order(server: Served) -> None:
    """Several requests sent in one write (HEAD, a sized body, a large one, 100-continue, a 404)
    get their answers in order, each whole: a held head never joins another request's body."""
    chat = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
    big = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "x" * 100_000}]})

    def post(body: bytes, extra: bytes = b"") -> bytes:
        return (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + extra
            + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    sent = [
        (b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", "GET"),
        (b"HEAD /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD"),
        (post(chat), "POST"),
        (post(big), "POST"),
        (b"GET /no/such/route HTTP/1.1\r\nHost: x\r\n\r\n", "GET"),
        (post(chat, b"Expect: 100-continue\r\n"), "POST"),
    ]
    with connect(server) as sock:
        sock.sendall(b"".join(raw for raw, _ in sent))
        answers = _read_answers(sock, [m for _, m in sent])
    statuses = [status for status, _, _ in answers]
    assert statuses[0] == 200 and statuses[2:5] == [200, 200, 404], statuses
    assert orjson.loads(answers[2][2])["choices"][0]["message"]["content"] == "hello"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pipelined_request_in_progress_is_not_taken_for_idle(
    tmp_path: Path, fake_provider: Any, protocol: str
) -> None:
    """Two requests pipelined on one connection: once the first is answered, the second is still
    in progress, so the connection is busy: at the connection cap a new connection is turned away
    (503), not served by closing this one and losing the second answer (httptools did)."""
    import threading

    from fakes import Reply

    release = threading.Event()
    fake_provider.enqueue(Reply(delay_event=release))
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake_provider.base_url}/v1, api_key: sk-x}}
        general_settings:
          max_connections: 1
          request_header_timeout_s: 60
          request_body_timeout_s: 60
        """)
    )
    served = Served(path, tmp_path, args=["--http", protocol])
    try:
        served.wait_ready()
        chat = orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
        with connect(served) as busy:
            busy.sendall(
                b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n\r\n"
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(chat), chat)
            )
            try:
                assert fake_provider.wait_for_requests(1, timeout=WAIT_S)  # the second is in progress
                with connect(served) as other:
                    other.sendall(b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    turned_away, _, _ = parse(read_until_closed(other))
            finally:
                release.set()
            answers = _read_answers(busy, ["GET", "POST"])
        assert [status for status, _, _ in answers] == [200, 200]
        assert turned_away == 503
    finally:
        release.set()
        served.stop()
