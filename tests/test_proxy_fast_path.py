"""The forwarding path's fast paths (issue 18) answer and log exactly as the slow paths they replace.

* ``FastLane`` serves the LLM routes without Starlette's routing layers: every answer (a forwarded
  200, each kind of 4xx, a 405 for another method) is the same as through the Router, and the
  in-flight count returns to 0.
* The access line's record is built without ``Logger.log``: same attributes as the record
  ``Logger.log`` builds, a record factory someone installed is still used, and the text line is
  byte for byte the documented one (shown strings cached or not).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import FakeProvider
from test_proxy_server import ENV, MASTER, write_config

from lmgate.proxy import logs
from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config
from lmgate.proxy.middleware import FastLane

AUTH = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Hi"}]
# what differs from one call (or one app) to the next by design: ids and times
VARYING = {
    "x-litellm-call-id",
    "x-litellm-model-id",
    "date",
    "llm_provider-date",
    "llm_provider-x-request-id",
}
VARYING_BODY = {"id", "created"}


def _fast_lane(app: Any) -> FastLane:
    app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, FastLane):
        layer = layer.app
    return layer


@pytest.fixture
def apps(
    tmp_path: Path, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, Any]]:
    """The proxy app twice: as served (with the fast lane), and with every request left to the Router."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    config = load_config(write_config(tmp_path, fake_provider))
    fast, slow = create_app(config), create_app(config)
    assert _fast_lane(fast).table, "the LLM routes are in the fast lane"
    _fast_lane(slow).table.clear()
    yield fast, slow


async def _ask(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as client:
        return await client.request(method, path, **kwargs)


def _answer(response: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    headers = [(k, "*" if k in VARYING else v) for k, v in response.headers.multi_items()]
    body = response.json()
    if isinstance(body, dict):
        body = {k: "*" if k in VARYING_BODY else v for k, v in body.items()}
    return response.status_code, headers, body


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/chat/completions", {"json": {"model": "fast", "messages": HI}, "headers": AUTH}),
    ("POST", "/chat/completions/", {"json": {"model": "fast", "messages": HI}, "headers": AUTH}),
    ("POST", "/v1/embeddings", {"json": {"model": "embed", "input": "hi"}, "headers": AUTH}),
    ("POST", "/v1/chat/completions", {"json": {"model": "fast", "messages": HI}}),  # no key: 401
    ("POST", "/v1/chat/completions", {"json": {"model": "fast", "messages": HI, "n": 0}, "headers": AUTH}),
    ("POST", "/v1/chat/completions", {"json": {"model": "nope", "messages": HI}, "headers": AUTH}),
    ("POST", "/v1/chat/completions", {"content": b"{not json", "headers": AUTH}),
    ("POST", "/v1/chat/completions", {"content": b"x" * 20_000, "headers": AUTH}),  # over max_request_size_mb
    ("POST", "/v1/messages", {"json": {"model": "fast", "max_tokens": 5, "messages": HI}, "headers": AUTH}),
    ("GET", "/v1/chat/completions", {"headers": AUTH}),  # another method: the Router's 405
]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"), CASES, ids=[f"{m} {p} {i}" for i, (m, p, _) in enumerate(CASES)]
)
async def test_fast_lane_answers_as_the_router_does(
    apps: tuple[Any, Any], method: str, path: str, kwargs: dict[str, Any]
) -> None:
    fast, slow = apps
    via_fast, via_router = await _ask(fast, method, path, **kwargs), await _ask(slow, method, path, **kwargs)
    assert _answer(via_fast) == _answer(via_router)
    assert fast.state.proxy.metrics.in_flight == 0 and slow.state.proxy.metrics.in_flight == 0


async def test_fast_lane_streams_as_the_router_does(apps: tuple[Any, Any]) -> None:
    fast, slow = apps
    kwargs = {"json": {"model": "fast", "messages": HI, "stream": True}, "headers": AUTH}
    via_fast, via_router = (
        await _ask(fast, "POST", "/v1/chat/completions", **kwargs),
        await _ask(slow, "POST", "/v1/chat/completions", **kwargs),
    )
    assert via_fast.status_code == via_router.status_code == 200
    assert via_fast.text.endswith("data: [DONE]\n\n") and via_fast.text.count(
        "data:"
    ) == via_router.text.count("data:")
    assert fast.state.proxy.metrics.in_flight == 0


async def test_a_stream_without_hooks_sends_what_the_typed_chunks_hold(
    apps: tuple[Any, Any], fake_provider: FakeProvider
) -> None:
    """Without stream hooks the proxy passes the usual events on as decoded (plain chunks, issue
    18): its body is event for event the typed chunks' JSON, the usage-only last one included."""
    import orjson
    from test_proxy_server import UPSTREAM

    import lmgate

    fast, _ = apps
    body = {"model": "fast", "messages": HI, "stream": True, "stream_options": {"include_usage": True}}
    sent = await _ask(fast, "POST", "/v1/chat/completions", json=body, headers=AUTH)
    stream = await lmgate.acompletion(
        model="openai/gpt-4o-mini",
        api_base=f"{fake_provider.base_url}/v1",
        api_key=UPSTREAM,
        messages=HI,
        stream=True,
        stream_options={"include_usage": True},
    )
    typed = [b"data: " + orjson.dumps(chunk) + b"\n\n" async for chunk in stream]

    def events(blocks: list[bytes]) -> list[Any]:
        out = []
        for block in blocks:
            data = orjson.loads(block.removeprefix(b"data: "))
            out.append({k: "*" if k in VARYING_BODY else v for k, v in data.items()})
        return out

    wire = [block + b"\n\n" for block in sent.content.split(b"\n\n") if block]
    assert wire[-1] == b"data: [DONE]\n\n"
    assert len(typed) > 2 and typed[-1].count(b'"usage":{') == 1  # the usage chunk is the last one
    assert events(wire[:-1]) == events(typed)
    # byte for byte, once the ids and times are the same
    for got, want in zip(wire[:-1], typed, strict=True):
        g, w = orjson.loads(got[6:]), orjson.loads(want[6:])
        w["id"], w["created"] = g["id"], g["created"]
        assert got == b"data: " + orjson.dumps(w) + b"\n\n"


def test_plain_chunks_only_where_nothing_reads_the_chunks(fake_provider: FakeProvider) -> None:
    """The proxy's ``_plain_chunks`` reaches OpenAI's translator unless a callback reads each chunk."""
    from lmgate._call import Call
    from lmgate.integrations.custom_logger import CustomLogger

    def translator(**params: Any) -> Any:
        call = Call(
            "chat",
            "openai/gpt-4o-mini",
            HI,
            {"api_base": f"{fake_provider.base_url}/v1", "api_key": "sk-x", **params},
            stream=True,
            is_async=True,
        )
        call.prepare()
        return call.translator()

    class Chunks(CustomLogger):
        async def async_log_stream_event(self, kwargs: Any, response_obj: Any, start: Any, end: Any) -> None:
            pass

    assert translator(_plain_chunks=True).plain_chunks is True
    assert translator().plain_chunks is False
    assert translator(_plain_chunks=True, callbacks=[Chunks()]).plain_chunks is False
    assert translator(_plain_chunks=True, callbacks=[CustomLogger()]).plain_chunks is True


# ---------------------------------------------------------------------- the access line's record


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    saved = logs.ACCESS.level
    logs.ACCESS.addHandler(handler)
    logs.ACCESS.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logs.ACCESS.removeHandler(handler)
        logs.ACCESS.setLevel(saved)


SCOPE = {"method": "POST", "path": "/v1/chat/completions"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 6}
# what differs between two records by design: when, and where the logging call was written
WHEN_AND_WHERE = {
    "created",
    "msecs",
    "relativeCreated",
    "pathname",
    "filename",
    "module",
    "lineno",
    "funcName",
}


def test_access_record_has_what_logger_log_gives(captured: _Capture) -> None:
    _compare_records(captured)


async def test_access_record_in_a_task_has_what_logger_log_gives(captured: _Capture) -> None:
    """Inside a request's task too (Python 3.12+ records name the task)."""
    import asyncio

    async def request() -> None:
        _compare_records(captured)

    await asyncio.create_task(request(), name="request-7")


def _compare_records(captured: _Capture) -> None:
    logs.log_request(SCOPE, 200, "gpt-4o-mini", None, None, 0.0123, USAGE, 4.35e-6)
    fast = captured.records.pop()
    fields = dict(vars(fast)[logs._FIELDS])
    extra = {logs._FIELDS: fields, logs._IN_MESSAGE: logs._REQUEST_IN_MESSAGE}
    logs.ACCESS.log(logging.INFO, "%s %s %d", "POST", "/v1/chat/completions", 200, extra=extra)
    slow = captured.records.pop()
    assert vars(fast).keys() == vars(slow).keys()
    assert {k: v for k, v in vars(fast).items() if k not in WHEN_AND_WHERE} == {
        k: v for k, v in vars(slow).items() if k not in WHEN_AND_WHERE
    }
    assert fast.funcName == "log_request"
    assert fast.getMessage() == slow.getMessage() == "POST /v1/chat/completions 200"
    assert abs(fast.created - slow.created) < 60 and 0 <= fast.msecs < 1000


def test_access_record_uses_an_installed_record_factory(captured: _Capture) -> None:
    default = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = default(*args, **kwargs)
        record.tenant = "blue"
        return record

    logging.setLogRecordFactory(factory)
    try:
        logs.log_request(SCOPE, 200, "gpt-4o-mini", None, None, 0.0123)
    finally:
        logging.setLogRecordFactory(default)
    assert captured.records[-1].tenant == "blue"  # type: ignore[attr-defined]


def test_access_text_line_is_the_documented_one(captured: _Capture) -> None:
    formatter = logs.TextFormatter()
    for _ in range(2):  # the second time the shown strings come from the cache
        logs.log_request(SCOPE, 200, 'a b\n"c', None, None, 0.0123, USAGE, 4.35e-6)
        record = captured.records.pop()
        line = formatter.format(record)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(record.created)))
        assert line.split(" ", 1)[0] == f"{stamp}.{int(record.msecs):03d}Z"
        assert line.split(" ", 1)[1] == (
            'INFO  lmgate.proxy.access: POST /v1/chat/completions 200 model="a b\\n\\"c" '
            "latency_ms=12.3 prompt_tokens=5 completion_tokens=6 cost_usd=4.35e-06"
        )


def test_encoded_json_is_starlettes_response() -> None:
    """The forwarded 200 (``EncodedJSON``) has the head Starlette's ``Response`` would give it."""
    from starlette.responses import Response

    from lmgate.proxy.responses import JSON, EncodedJSON

    body = b'{"id":"chatcmpl-1","choices":[]}'
    headers = {
        "x-litellm-model-id": "m1",
        "x-litellm-response-cost": "4.05e-06",
        "llm_provider-x-request-id": "r",
    }
    fast, slow = EncodedJSON(body, headers), Response(body, status_code=200, headers=headers, media_type=JSON)
    assert (fast.status_code, fast.raw_headers, fast.body, fast.background) == (
        slow.status_code,
        slow.raw_headers,
        slow.body,
        slow.background,
    )


async def test_encoded_json_counts_and_logs_once_the_answer_is_handed_over() -> None:
    """A forwarded 200's bookkeeping (``after``) runs once its answer is sent, not before it, and
    also when sending fails (a client gone): the access line is never lost (issue 18)."""
    from lmgate.proxy.responses import EncodedJSON

    events: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])

    answer = EncodedJSON(b"{}", {}, lambda: events.append("after"))
    await answer({"type": "http"}, None, send)
    assert events == ["http.response.start", "http.response.body", "after"]

    async def gone(message: dict[str, Any]) -> None:
        raise OSError("the client went away")

    events.clear()
    with pytest.raises(OSError):
        await EncodedJSON(b"{}", {}, lambda: events.append("after"))({"type": "http"}, None, gone)
    assert events == ["after"]


async def test_the_access_line_follows_the_answer(apps: tuple[Any, Any]) -> None:
    """The request's line and metrics are written after its answer went out, and before the app returns."""
    fast, _ = apps
    order: list[str] = []

    class Lines(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            order.append("line")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        async def noted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                order.append("body")
            await send(message)

        await fast(scope, receive, noted)

    handler = Lines()
    level = logs.ACCESS.level
    logs.ACCESS.setLevel(logging.INFO)
    logs.ACCESS.addHandler(handler)
    try:
        response = await _ask(
            app, "POST", "/v1/chat/completions", json={"model": "fast", "messages": HI}, headers=AUTH
        )
    finally:
        logs.ACCESS.removeHandler(handler)
        logs.ACCESS.setLevel(level)
    assert response.status_code == 200
    assert order == ["body", "line"]
    assert fast.state.proxy.metrics.requests.get(("chat", "fast", 200)) == 1


def test_the_first_bad_parameter_of_the_table_is_named_whatever_the_body_order() -> None:
    """The rules are looked up per body key, yet the error names the parameter the table checks first."""
    from lmgate.proxy.errors import ProxyError
    from lmgate.proxy.validation import CHAT_RULES, check_request

    assert list(CHAT_RULES).index("n") < list(CHAT_RULES).index("temperature")
    for body in ({"temperature": 5, "n": 0}, {"n": 0, "temperature": 5}):
        with pytest.raises(ProxyError) as raised:
            check_request({"model": "m", "messages": HI, **body}, "chat")
        assert raised.value.param == "n"


def test_nesting_bound_is_exact() -> None:
    """A parameter may nest MAX_PARAM_DEPTH containers deep, not one more; metadata is exempt."""
    from lmgate.proxy.errors import ProxyError
    from lmgate.proxy.nesting import MAX_PARAM_DEPTH, check_nesting, depth_over

    def nested(levels: int) -> Any:
        value: Any = "leaf"
        for i in range(levels):
            value = [value] if i % 2 else {"k": value}
        return value

    assert not depth_over(nested(MAX_PARAM_DEPTH), MAX_PARAM_DEPTH)
    assert depth_over(nested(MAX_PARAM_DEPTH + 1), MAX_PARAM_DEPTH)
    assert not depth_over("text", 1) and not depth_over([], 1) and depth_over([[]], 1)
    check_nesting({"tools": nested(MAX_PARAM_DEPTH), "metadata": nested(500)})
    with pytest.raises(ProxyError) as raised:
        check_nesting({"messages": HI, "tools": nested(MAX_PARAM_DEPTH + 1)})
    assert raised.value.param == "tools" and raised.value.code == "nested_too_deeply"


def test_stream_cost_prices_are_the_deployments_every_time() -> None:
    """A stream's cost uses its deployment's price candidates and custom prices, worked out once."""
    from types import SimpleNamespace

    from lmgate.cost import compute_cost
    from lmgate.proxy.routes.llm import _stream_cost

    usage = {"prompt_tokens": 1000, "completion_tokens": 2000}
    custom = SimpleNamespace(
        litellm_params={
            "model": "openai/my-model",
            "input_cost_per_token": 1e-6,
            "output_cost_per_token": 2e-6,
        }
    )
    listed = SimpleNamespace(litellm_params={"model": "openai/gpt-4o-mini"})
    for _ in range(2):
        assert _stream_cost(custom, usage) == pytest.approx(1000 * 1e-6 + 2000 * 2e-6)
        expected = compute_cost(["openai/gpt-4o-mini", "gpt-4o-mini"], usage).cost
        assert expected and _stream_cost(listed, usage) == expected


def test_fast_lane_takes_only_paths_the_router_would_give_its_route() -> None:
    """An earlier route that fully matches a POST to the path keeps it (the Router tries routes in
    order); one that matches another method only does not (the Router still picks the POST route)."""
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from lmgate.proxy.metrics import Metrics
    from lmgate.proxy.middleware import CountedRoute

    async def endpoint(request: Any) -> Any:
        return PlainTextResponse("x")

    metrics = Metrics()
    catch_all = Route("/v1/{name:path}", endpoint, methods=["POST"])
    get_only = Route("/v1/{name:path}", endpoint, methods=["GET"])
    chat = CountedRoute("/v1/chat/completions", endpoint, metrics)
    embeddings = CountedRoute("/v2/embeddings", endpoint, metrics)
    assert set(FastLane(None, [catch_all, chat, embeddings]).table) == {"/v2/embeddings"}
    assert set(FastLane(None, [get_only, chat, embeddings]).table) == {
        "/v1/chat/completions",
        "/v2/embeddings",
    }


# ---------------------------------------------------------------------- the direct access line


@pytest.fixture
def configured_logging() -> Iterator[None]:
    """``setup_logging``'s global changes undone after the test."""
    root = logging.getLogger("lmgate")
    saved = (list(root.handlers), root.level, root.propagate, list(logs.ACCESS.filters), logs.ACCESS.level)
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]
        logs.ACCESS.filters[:] = saved[3]
        logs.ACCESS.setLevel(saved[4])


class _Deployment:
    model_info: dict[str, Any] = {}
    model = "openai/gpt-4o-mini"


class _Caller:
    key_alias = "team a"
    api_key = None


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_direct_access_line_is_the_record_paths_line(configured_logging: None, log_format: str) -> None:
    """Written without a LogRecord, the line is byte for byte what the handler, the masking filter
    and the formatter make of the record (but its time); a filter on the logger brings the record back."""
    import io

    from lmgate._secrets import remember_secret

    secret = "sk-direct-line-secret-0123456789"
    remember_secret(secret)
    logs.setup_logging("info", log_format)
    (handler,) = logging.getLogger("lmgate").handlers
    out = io.StringIO()
    handler.stream = out  # type: ignore[attr-defined]
    calls = [
        (SCOPE, 200, "gpt-4o-mini", _Deployment(), _Caller(), 0.0123, USAGE, 4.35e-6, None),
        (
            {"method": "GET", "path": f"/x y/{secret}"},
            404,
            'a "b"',
            None,
            None,
            0.5,
            None,
            None,
            ValueError(),
        ),
        (SCOPE, 499, "m", None, None, 1.0, {"prompt_tokens": 3}, 0, None),
    ]
    seen: list[list[str]] = []
    for direct in (True, False):
        if not direct:
            logs.ACCESS.addFilter(lambda record: True)
        assert (logs._direct_handler(logging.INFO) is handler) is direct
        for scope, status, model, deployment, user, seconds, usage, cost, error in calls:
            logs.log_request(scope, status, model, deployment, user, seconds, usage, cost, error)
        lines = out.getvalue().splitlines()
        out.seek(0)
        out.truncate()
        if log_format == "json":
            import json

            lines = [json.dumps({k: v for k, v in json.loads(line).items() if k != "time"}) for line in lines]
        else:
            lines = [line.split(" ", 1)[1] for line in lines]
        seen.append(lines)
    assert len(seen[0]) == len(calls)
    assert seen[0] == seen[1]
    # the message is masked as MaskingFilter masks it (the fields are the formatter's, as before)
    assert (
        'GET \\"/x y/sk-****6789\\" 404' in seen[0][1]
        if log_format == "json"
        else seen[0][1].startswith(
            'INFO  lmgate.proxy.access: GET "/x y/sk-****6789" 404 model="a \\"b\\"" latency_ms=500 error=ValueError'
        )
    )


def test_access_line_at_debug_is_not_written_at_info(configured_logging: None) -> None:
    import io

    logs.setup_logging("info", "text")
    (handler,) = logging.getLogger("lmgate").handlers
    out = io.StringIO()
    handler.stream = out  # type: ignore[attr-defined]
    logs.log_request(SCOPE, 200, None, None, None, 0.0, level=logging.DEBUG)
    assert out.getvalue() == ""
    handler.setLevel(logging.WARNING)  # a handler's own level keeps the line out too
    logs.log_request(SCOPE, 200, None, None, None, 0.0)
    assert out.getvalue() == ""


def test_direct_access_line_masks_a_secret_remembered_after_its_route_was_logged(
    configured_logging: None,
) -> None:
    import io

    from lmgate._secrets import remember_secret

    secret = "opaque-credential-zz-0123456789abcd"  # no key-shaped pattern: masked once remembered
    scope = {"method": "POST", "path": f"/v1/{secret}"}
    logs.setup_logging("info", "text")
    (handler,) = logging.getLogger("lmgate").handlers
    out = io.StringIO()
    handler.stream = out  # type: ignore[attr-defined]
    logs.log_request(scope, 404, None, None, None, 0.0)
    assert secret in out.getvalue()  # not a secret yet: shown as the client sent it
    remember_secret(secret)
    out.seek(0)
    out.truncate()
    logs.log_request(scope, 404, None, None, None, 0.0)
    assert secret not in out.getvalue() and "opa****abcd" in out.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_direct_access_line_the_stream_refuses_is_reported_as_logging_reports_it(
    configured_logging: None, log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stream that fails (a closed pipe, a full disk) never fails the request: the line is
    reported by the handler's ``handleError``, with the request's method, path and status, as
    ``StreamHandler.emit`` would report the record's."""

    class Refusing:
        def write(self, text: str) -> None:
            raise OSError("no space left on device")

        def flush(self) -> None:
            pass

    logs.setup_logging("info", log_format)
    (handler,) = logging.getLogger("lmgate").handlers
    handler.stream = Refusing()  # type: ignore[attr-defined]
    assert logs._direct_handler(logging.INFO) is handler
    logs.log_request({"method": "POST", "path": "/v1/chat/completions"}, 503, "m", None, None, 0.01)
    err = capsys.readouterr().err
    assert "--- Logging error ---" in err and "no space left on device" in err
    assert "('POST', '/v1/chat/completions', 503)" in err


# ---------------------------------------------------------------------- the lane in front of Starlette


async def test_a_failure_after_the_answer_started_sends_no_second_answer(apps: tuple[Any, Any]) -> None:
    """The client goes away while the body is sent: nothing more is sent (no 500 after a 200's
    head), and the error goes on to the server, in the lane as through ServerErrorMiddleware."""
    body = b'{"model": "fast", "messages": [{"role": "user", "content": "Hi"}]}'
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", AUTH["Authorization"].encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    seen: list[list[tuple[str, Any]]] = []
    for app in apps:
        seen.append(await _client_gone_during_body(app, dict(scope), body))
        assert app.state.proxy.metrics.in_flight == 0
    assert seen[0] == seen[1] == [("http.response.start", 200), ("http.response.body", None)]


async def _client_gone_during_body(app: Any, scope: dict[str, Any], body: bytes) -> list[tuple[str, Any]]:
    sent: list[tuple[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append((message["type"], message.get("status")))
        if message["type"] == "http.response.body":
            raise OSError("the client went away")

    with pytest.raises(OSError, match="the client went away"):
        await app(scope, receive, send)
    return sent


async def test_an_added_middleware_sees_the_fast_lanes_requests(apps: tuple[Any, Any]) -> None:
    """The lane goes in front of Starlette's layers only while they are the proxy's own: a
    middleware added to the app sees every request again."""
    fast, _ = apps
    paths: list[str] = []

    class Noting:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            paths.append(scope.get("path", ""))
            await self.app(scope, receive, send)

    fast.middleware_stack = None  # built by the fixture: Starlette adds middleware only before
    fast.add_middleware(Noting)
    answer = await _ask(
        fast, "POST", "/v1/chat/completions", json={"model": "fast", "messages": HI}, headers=AUTH
    )
    assert answer.status_code == 200
    assert paths == ["/v1/chat/completions"]


def test_the_app_takes_the_fast_lanes_routes_in_front_of_its_own_layers(apps: tuple[Any, Any]) -> None:
    """As served (the proxy's own layers, its async 500 handler, no debug), the app itself takes
    the fast lane's routes; with ``debug`` (the traceback page) it leaves them to the stack."""
    fast, _ = apps
    lane = _fast_lane(fast)  # builds the stack
    assert fast._lane is lane
    fast.debug = True  # Starlette rebuilds the stack at once
    fast.middleware_stack = fast.build_middleware_stack()
    assert fast._lane is None


def test_direct_access_lines_latency_is_the_record_paths_figure() -> None:
    """The direct line's ``latency_ms`` (one ``.1f`` format) is the formatter's figure of the record
    path's ``round(ms, 1)`` for every value, halves, ties, tiny, and past six digits."""
    import random

    rng = random.Random(18)
    values = [0.0, 4.9999e-5, 5e-5, 5.0001e-5, 0.00015, 0.00025, 0.0123, 0.5, 1.0, 99.99994999, 99.99995]
    values += [99.999949, 100.0, 123.4567, 1e6, 1e-9, -0.00004, -0.0123, -123.45678]
    values += [rng.random() * 10.0 ** rng.randint(-6, 3) for _ in range(20000)]
    values += [n / 20000 for n in range(20000)]  # every half of a tenth of a millisecond up to 1 s
    for seconds in values:
        assert logs._latency_text(seconds) == f"{round(seconds * 1000, 1):.6g}", seconds


@pytest.mark.parametrize("shape", ["stderr-like", "text-buffered", "over-buffered", "line-buffered"])
def test_direct_access_line_is_in_the_file_when_log_request_returns(
    configured_logging: None, tmp_path: Path, shape: str
) -> None:
    """The flush ``StreamHandler`` adds is left out only where the write already put the line in the
    file (a write-through text layer straight over the file, as Python's stderr): whatever the
    stream's layers, the line is in the file when ``log_request`` returns, also after the stream
    is reconfigured."""
    import io

    logs.setup_logging("info", "text")
    (handler,) = logging.getLogger("lmgate").handlers
    path = tmp_path / "log"
    raw = io.FileIO(path, "w")
    if shape == "stderr-like":
        stream = io.TextIOWrapper(raw, write_through=True)  # as Python makes sys.stderr
    elif shape == "text-buffered":
        stream = io.TextIOWrapper(raw)  # the text layer keeps what it is given until flushed
    elif shape == "over-buffered":
        stream = io.TextIOWrapper(io.BufferedWriter(raw), write_through=True)
    else:
        stream = io.TextIOWrapper(io.BufferedWriter(raw), line_buffering=True)
    handler.stream = stream  # type: ignore[attr-defined]
    try:
        for n in range(3):
            logs.log_request(SCOPE, 200, f"model-{n}", None, None, 0.001)
            assert path.read_text().count("\n") == n + 1 and f"model={'model-' + str(n)}" in path.read_text()
        stream.reconfigure(write_through=False, line_buffering=False)
        logs.log_request(SCOPE, 200, "after", None, None, 0.001)
        assert "model=after" in path.read_text()
    finally:
        stream.close()


def test_metrics_count_each_route_model_status_tokens_and_cost() -> None:
    """``observe``'s numbers, kept per route and model label (one lookup a request), are the ones
    the exposition shows: requests by route, model and status; a histogram by route and model;
    tokens and cost by model over every route, summed in the order they came; an unconfigured model
    under ``other``; bad usage values and costs (strings, floats, negatives, NaN, inf) left out."""
    from types import SimpleNamespace

    from lmgate.proxy.metrics import OTHER_MODEL, Metrics

    metrics = Metrics(["a", "b"])
    metrics.observe("chat", "a", 200, 0.002, {"prompt_tokens": 3, "completion_tokens": 4}, 0.1)
    metrics.observe("chat", "a", 200, 0.02, SimpleNamespace(prompt_tokens=True, completion_tokens=2), 0.2)
    metrics.observe("chat", "a", 429, 0.5)
    metrics.observe("embeddings", "a", 200, 7.0, {"prompt_tokens": 5}, 3)
    metrics.observe("chat", "typo", 404, 0.0001, {"prompt_tokens": "9", "completion_tokens": 2.5}, -1.0)
    metrics.observe("chat", "b", 200, 100.0, {"prompt_tokens": -1, "completion_tokens": 0}, float("nan"))
    metrics.observe("chat", "b", 200, 0.001, None, float("inf"))
    assert metrics.requests == {
        ("chat", "a", 200): 2,
        ("chat", "a", 429): 1,
        ("embeddings", "a", 200): 1,
        ("chat", OTHER_MODEL, 404): 1,
        ("chat", "b", 200): 2,
    }
    assert metrics.tokens == {("a", "prompt"): 9, ("a", "completion"): 6}
    assert metrics.cost == {"a": 0.1 + 0.2 + 3}  # in the order observed, whatever the route
    assert type(metrics.tokens[("a", "prompt")]) is int and type(metrics.cost["a"]) is float
    hist = metrics.latency[("chat", "a")]
    assert (hist.count, hist.total) == (3, 0.002 + 0.02 + 0.5)
    assert [i for i, n in enumerate(hist.counts) for _ in range(n)] == [1, 4, 8]
    assert metrics.latency[("chat", "b")].counts[-1] == 1  # past the last bucket: +Inf only
    text = metrics.render([], {})
    assert 'lmgate_requests_total{model="other",route="chat",status="404"} 1.0' in text
    assert 'lmgate_tokens_total{model="a",type="completion"} 6.0' in text
    assert 'lmgate_request_duration_seconds_count{model="a",route="chat"} 3.0' in text


def test_direct_text_line_shows_every_usage_and_cost_shape_as_the_record_path(
    configured_logging: None,
) -> None:
    """Tokens and cost of every shape (ints, one of them, a bool, a string, an object usage block,
    an int or bool cost, a float subclass) read the same on the direct line as on the record path."""
    import io
    from types import SimpleNamespace

    class Money(float):
        pass

    logs.setup_logging("info", "text")
    (handler,) = logging.getLogger("lmgate").handlers
    out = io.StringIO()
    handler.stream = out  # type: ignore[attr-defined]
    shapes = [
        ({"prompt_tokens": 3, "completion_tokens": 4}, 1.5e-05),
        ({"prompt_tokens": 3}, 2),
        ({"completion_tokens": 4, "prompt_tokens": None}, True),
        ({"prompt_tokens": True, "completion_tokens": "many words"}, Money(0.25)),
        (SimpleNamespace(prompt_tokens=7, completion_tokens=8), 123456789.0),
        (SimpleNamespace(prompt_tokens=7.5), None),
        ({}, "0.1"),
    ]
    seen: list[list[str]] = []
    for direct in (True, False):
        if not direct:
            logs.ACCESS.addFilter(lambda record: True)
        for usage, cost in shapes:
            logs.log_request(SCOPE, 200, "m", None, None, 0.25, usage, cost)
        seen.append([line.split(" ", 1)[1] for line in out.getvalue().splitlines()])
        out.seek(0)
        out.truncate()
    assert len(seen[0]) == len(shapes) and seen[0] == seen[1]
    assert seen[0][0].endswith("latency_ms=250 prompt_tokens=3 completion_tokens=4 cost_usd=1.5e-05")


def test_a_handler_added_while_serving_gets_the_next_access_line(configured_logging: None) -> None:
    """The direct line's decision is made again for every line: a handler added at run time (on
    the access logger's parent, or the level of the one handler raised) is honoured from the next
    line on, and the line goes back to the direct way once it is removed."""
    import io

    logs.setup_logging("info", "text")
    (handler,) = logging.getLogger("lmgate").handlers
    out, extra = io.StringIO(), io.StringIO()
    handler.stream = out  # type: ignore[attr-defined]
    logs.log_request(SCOPE, 200, "first", None, None, 0.001)
    added = logging.StreamHandler(extra)
    parent = logging.getLogger("lmgate.proxy")
    parent.addHandler(added)
    try:
        assert logs._direct_handler(logging.INFO) is None
        logs.log_request(SCOPE, 200, "second", None, None, 0.001)
    finally:
        parent.removeHandler(added)
    assert "model=first" in out.getvalue() and "model=second" in out.getvalue()
    assert "model=first" not in extra.getvalue() and extra.getvalue().startswith(
        "POST /v1/chat/completions 200"
    )
    assert logs._direct_handler(logging.INFO) is handler
    handler.setLevel(logging.ERROR)
    logs.log_request(SCOPE, 200, "third", None, None, 0.001)
    assert "model=third" not in out.getvalue()
