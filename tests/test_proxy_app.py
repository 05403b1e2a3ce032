"""The proxy's routes in process (httpx over ASGI, and raw ASGI for disconnects), against the fake provider."""

from __future__ import annotations

import hashlib
import textwrap
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes import FakeProvider, Reply
from prom import samples, value
from proxy_kit import disconnect_mid_stream

import lmgate
from lmgate.proxy.app import create_app
from lmgate.proxy.config import load_config
from lmgate.proxy.router import build_router
from lmgate.testing import CapturingLogger

MASTER = "sk-master-0123456789abcdef"
UPSTREAM = "sk-upstream-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Hi"}]


def make_app(tmp_path: Path, fake: FakeProvider, extra: str = "", models: str | None = None, master: bool = True) -> Any:
    if models is None:
        models = f"""
        model_list:
          - model_name: fast
            litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
          - model_name: embed
            litellm_params: {{model: openai/text-embedding-3-small, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
        """
    general = f"general_settings: {{master_key: {MASTER}, max_request_size_mb: 0.01}}\n" if master else ""
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(models) + "\n" + general + textwrap.dedent(extra))
    return create_app(load_config(path))


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy")


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("prefix", ["", "/v1"])
async def test_chat_completion_json(tmp_path: Path, fake_provider: FakeProvider, prefix: str) -> None:
    """POST /chat/completions (with and without /v1) answers with the provider's completion."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.post(f"{prefix}/chat/completions", headers=AUTH, json={"model": "fast", "messages": HI})
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "Hello from fake"
    assert body["usage"]["prompt_tokens"] == 7
    assert fake_provider.last_request.json["model"] == "gpt-4o-mini"
    assert fake_provider.last_request.headers["authorization"] == f"Bearer {UPSTREAM}"


async def test_chat_completion_stream_ends_with_done(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """stream=true answers with SSE chunks whose text is the completion, ending in data: [DONE]."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "fast", "messages": HI, "stream": True})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in r.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(ch["choices"][0]["delta"].get("content") or "" for ch in chunks)
    assert text == "Hello from fake"
    assert chunks[-1]["usage"]["completion_tokens"] == 5


async def test_embeddings(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """POST /embeddings answers with the provider's vectors."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.post("/embeddings", headers=AUTH, json={"model": "embed", "input": ["a", "b"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and len(body["data"]) == 2
    assert fake_provider.last_request.path.endswith("/embeddings")


async def test_models_lists_groups(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """GET /models lists each model name once, OpenAI-shaped."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.get("/v1/models", headers=AUTH)
    assert r.status_code == 200
    assert [m["id"] for m in r.json()["data"]] == ["fast", "embed"]
    assert r.json()["data"][0]["object"] == "model"


@pytest.mark.parametrize("path", ["/v1/models", "/v1/models/fast", "/metrics", "/v1/chat/completions", "/embeddings"])
@pytest.mark.parametrize("header", [None, "Bearer wrong-key-0123456789", "Basic abc", f"Bearer {MASTER}x"])
async def test_routes_need_the_master_key(tmp_path: Path, fake_provider: FakeProvider, path: str, header: str | None) -> None:
    """With a master_key, every route but the two health probes answers 401 with an OpenAI error body unless the key is right."""
    app = make_app(tmp_path, fake_provider)
    headers = {"Authorization": header} if header else {}
    async with client(app) as c:
        if path in ("/v1/chat/completions", "/embeddings"):
            r = await c.post(path, headers=headers, json={"model": "fast", "messages": HI, "input": "x"})
        else:
            r = await c.get(path, headers=headers)
    assert r.status_code == 401
    err = error_of(r)
    assert err["type"] == "authentication_error"
    assert MASTER not in r.text
    assert fake_provider.requests == []


async def test_liveliness_needs_no_key(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """GET /health/liveliness answers without a key."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.get("/health/liveliness")
        r2 = await c.get("/v1/health/liveliness")
    assert r.status_code == 200 and r2.status_code == 200
    assert r.json() == "I'm alive!"


async def test_no_master_key_means_open(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """Without a master_key the routes answer any caller."""
    app = make_app(tmp_path, fake_provider, master=False)
    async with client(app) as c:
        r = await c.post("/chat/completions", json={"model": "fast", "messages": HI})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("content", "status", "param", "fragment"),
    [
        (b"{not json", 400, None, "not valid JSON"),
        (b"[1, 2]", 400, None, "must be a JSON object"),
        (b"", 400, None, "empty"),
        (orjson.dumps({"model": "fast"}), 400, "messages", "'messages' is required"),
        (orjson.dumps({"model": "fast", "messages": "hi"}), 400, "messages", "non-empty list"),
        (orjson.dumps({"messages": HI}), 400, "model", "'model' is required"),
        (orjson.dumps({"model": "nope", "messages": HI}), 400, "model", "known models: fast, embed"),
        (orjson.dumps({"model": "fast", "messages": HI, "metadata": [1]}), 400, "metadata", "must be an object"),
        (orjson.dumps({"model": "fast", "messages": [{"role": "user", "content": "x" * 20000}]}), 413, None, "over the limit"),
    ],
)
async def test_bad_input_gets_4xx_and_server_keeps_serving(
    tmp_path: Path, fake_provider: FakeProvider, content: bytes, status: int, param: str | None, fragment: str
) -> None:
    """Malformed JSON, missing fields, an unknown model and an oversized body each get a 4xx error body; the next request works."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers={**AUTH, "content-type": "application/json"}, content=content)
        ok = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "fast", "messages": HI})
    assert r.status_code == status
    err = error_of(r)
    assert fragment in err["message"]
    assert err["param"] == param
    assert ok.status_code == 200


async def test_oversized_chunked_body_is_refused(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """A body without Content-Length is cut off at the size limit with 413."""
    app = make_app(tmp_path, fake_provider)

    async def body() -> Any:
        for _ in range(50):
            yield b" " * 1000

    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, content=body())
    assert r.status_code == 413
    assert error_of(r)["code"] == "request_too_large"


async def test_unknown_route_is_an_openai_error(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """An unknown path answers 404 with an OpenAI-style error body."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.get("/v1/nothing-here", headers=AUTH)
    assert r.status_code == 404
    error_of(r)


@pytest.mark.parametrize(("upstream", "expected"), [(400, 400), (401, 401), (404, 404), (429, 429), (500, 500), (503, 503)])
async def test_provider_errors_keep_their_status(tmp_path: Path, fake_provider: FakeProvider, upstream: int, expected: int) -> None:
    """An lmgate exception from the call becomes an error response with its status_code."""
    fake_provider.enqueue(Reply(status=upstream))
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "fast", "messages": HI})
    assert r.status_code == expected
    err = error_of(r)
    assert UPSTREAM not in r.text
    assert err["message"]


async def test_client_cannot_set_control_params(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """api_base, api_key and mock_response in a request body are ignored; the deployment's settings win."""
    app = make_app(tmp_path, fake_provider)
    body = {"model": "fast", "messages": HI, "api_base": "http://10.0.0.1:1/v1", "api_key": "sk-evil-000000000000",
            "mock_response": "mocked", "temperature": 0.5}
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json=body)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "Hello from fake"
    sent = fake_provider.last_request
    assert sent.headers["authorization"] == f"Bearer {UPSTREAM}"
    assert sent.json["temperature"] == 0.5
    assert "api_base" not in sent.json and "mock_response" not in sent.json


async def test_metadata_key_hash_and_deployment_reach_callbacks(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """The request's metadata, the caller's key hash and the chosen deployment reach callbacks and the payload; the key does not."""
    app = make_app(tmp_path, fake_provider)
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH,
                         json={"model": "fast", "messages": HI, "metadata": {"team": "search", "user_api_key_hash": "spoof"}})
    assert r.status_code == 200
    assert await lmgate.aflush_callbacks(10)
    [event] = capture.of("async_log_success_event")
    expected_hash = hashlib.sha256(MASTER.encode()).hexdigest()
    metadata = event.kwargs["litellm_params"]["metadata"]
    assert metadata["team"] == "search"
    assert metadata["user_api_key_hash"] == expected_hash
    payload = event.kwargs["standard_logging_object"]
    assert payload["metadata"]["user_api_key_hash"] == expected_hash
    assert payload["metadata"]["team"] == "search"
    model_id = app.state.proxy.config.model_list[0].model_id
    assert payload["model_id"] == model_id and payload["model_group"] == "fast"
    assert r.headers["x-litellm-model-id"] == model_id
    assert MASTER not in orjson.dumps(payload).decode()


async def test_readiness_and_metrics(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """Readiness reports each logger's health from stats(); /metrics counts requests, latency, tokens, cost and logger numbers."""

    class StatsLogger(CapturingLogger):
        callback_name = "counting"

        def stats(self) -> dict[str, Any]:
            return {"delivered": 4, "dropped": {"http_400": 1}, "pending": 2, "healthy": False, "retried": 3}

    lmgate.callbacks.append(StatsLogger())
    models = f"""
    model_list:
      - model_name: fast
        litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake_provider.base_url}/v1, api_key: {UPSTREAM},
                          input_cost_per_token: 0.001, output_cost_per_token: 0.002}}
    """
    app = make_app(tmp_path, fake_provider, models=models)
    async with client(app) as c:
        assert (await c.post("/v1/chat/completions", headers=AUTH, json={"model": "fast", "messages": HI})).status_code == 200
        assert (await c.post("/v1/chat/completions", headers=AUTH,
                             json={"model": "fast", "messages": HI, "stream": True})).status_code == 200
        ready = await c.get("/health/readiness", headers=AUTH)
        metrics = await c.get("/metrics", headers=AUTH)
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "degraded"
    assert body["loggers"] == [{"name": "counting", "healthy": False, "stats": {
        "delivered": 4, "dropped": {"http_400": 1}, "pending": 2, "healthy": False, "retried": 3}}]
    text = metrics.text
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = samples(text)
    assert value(parsed, "lmgate_requests_total", route="chat", model="fast", status="200") == 2
    assert value(parsed, "lmgate_request_duration_seconds_count", route="chat", model="fast") == 2
    assert value(parsed, "lmgate_tokens_total", model="fast", type="prompt") == 14
    assert value(parsed, "lmgate_tokens_total", model="fast", type="completion") == 10
    # 2 × (7 × 0.001 + 5 × 0.002)
    assert abs((value(parsed, "lmgate_cost_usd_total", model="fast") or 0) - 0.034) < 1e-9
    assert value(parsed, "lmgate_logger_delivered_total", logger="counting") == 4
    assert value(parsed, "lmgate_logger_dropped_total", logger="counting", reason="http_400") == 1
    assert value(parsed, "lmgate_logger_pending", logger="counting") == 2
    assert value(parsed, "lmgate_logger_retried_total", logger="counting") == 3



async def test_unknown_model_names_add_no_series(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """50 distinct unknown model names count under one model="other" series: clients cannot grow /metrics."""
    app = make_app(tmp_path, fake_provider)
    async with client(app) as c:
        assert (await c.post("/v1/chat/completions", headers=AUTH, json={"model": "nope-0", "messages": HI})).status_code == 400
        before = samples((await c.get("/metrics", headers=AUTH)).text)
        for i in range(1, 51):
            r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": f"nope-{i}\n\"x", "messages": HI})
            assert r.status_code == 400
        after = samples((await c.get("/metrics", headers=AUTH)).text)
    assert set(after) == set(before)
    assert value(after, "lmgate_requests_total", route="chat", model="other", status="400") == 51
    assert not any("nope" in str(key) for key in after)


def group_yaml(fake: FakeProvider, strategy: str = "round-robin", retries: str = "") -> str:
    return f"""
    model_list:
      - model_name: grp
        litellm_params: {{model: openai/model-a, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
      - model_name: grp
        litellm_params: {{model: openai/model-b, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
    router_settings: {{routing_strategy: {strategy}{retries}}}
    """


async def test_group_spreads_calls_round_robin(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """Calls to one model_name alternate between its deployments."""
    app = make_app(tmp_path, fake_provider, models=group_yaml(fake_provider))
    async with client(app) as c:
        for _ in range(4):
            assert (await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})).status_code == 200
    assert [r.json["model"] for r in fake_provider.requests] == ["model-a", "model-b", "model-a", "model-b"]


@pytest.mark.parametrize("failure", [Reply(status=500), Reply(status=429), Reply(status=503)])
async def test_failed_deployment_is_retried_on_another(tmp_path: Path, fake_provider: FakeProvider, failure: Reply) -> None:
    """A 5xx or 429 from one deployment moves the request to the other; the client sees success, and the
    request produces exactly one terminal event (the success), not one per attempt."""
    fake_provider.enqueue(failure)
    app = make_app(tmp_path, fake_provider, models=group_yaml(fake_provider))
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
    assert r.status_code == 200
    assert [q.json["model"] for q in fake_provider.requests] == ["model-a", "model-b"]
    assert await lmgate.aflush_callbacks(10)
    ids = [d.model_id for d in app.state.proxy.config.model_list]
    terminal = [(e.hook, e.kwargs["standard_logging_object"]["model_id"]) for e in capture.of(
        "async_log_success_event", "async_log_failure_event")]
    assert terminal == [("async_log_success_event", ids[1])]
    pre = [e.kwargs["litellm_params"]["model_id"] for e in capture.of("log_pre_api_call", "async_log_pre_api_call")]
    assert pre == ids  # both attempts are still visible to pre-call hooks


async def test_stream_failover_before_first_chunk(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """A stream whose first deployment answers 500 is served by the other deployment."""
    fake_provider.enqueue(Reply(status=500))
    app = make_app(tmp_path, fake_provider, models=group_yaml(fake_provider))
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI, "stream": True})
    assert r.status_code == 200
    assert r.text.endswith("data: [DONE]\n\n")
    assert len(fake_provider.requests) == 2


async def test_non_retryable_error_is_not_retried(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """A 400 from a deployment goes straight to the client: retrying elsewhere would not help."""
    fake_provider.enqueue(Reply(status=400))
    app = make_app(tmp_path, fake_provider, models=group_yaml(fake_provider))
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
    assert r.status_code == 400
    assert len(fake_provider.requests) == 1


async def test_failover_that_fails_everywhere_logs_one_failure(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """When every deployment fails, the request still ends in exactly one failure event (the last error)."""
    fake_provider.enqueue(Reply(status=500), Reply(status=503))
    app = make_app(tmp_path, fake_provider, models=group_yaml(fake_provider))
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
    assert r.status_code == 503
    assert await lmgate.aflush_callbacks(10)
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert [e.hook for e in terminal] == ["async_log_failure_event"]
    assert terminal[0].kwargs["standard_logging_object"]["error_information"]["error_code"] == "503"


async def test_non_retryable_error_on_a_group_logs_its_failure(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """A 400 held back as a possible retry is still logged once when it goes to the client."""
    fake_provider.enqueue(Reply(status=400))
    app = make_app(tmp_path, fake_provider, models=group_yaml(fake_provider))
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
    assert r.status_code == 400
    assert await lmgate.aflush_callbacks(10)
    assert [e.hook for e in capture.of("async_log_success_event", "async_log_failure_event")] == [
        "async_log_failure_event"
    ]


async def test_every_deployment_failing_returns_the_last_error(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """When every deployment fails, the client gets the last error's status after one try each."""
    fake_provider.enqueue(Reply(status=500), Reply(status=503))
    app = make_app(tmp_path, fake_provider, models=group_yaml(fake_provider))
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
    assert r.status_code == 503
    assert len(fake_provider.requests) == 2


def test_least_busy_picks_the_idlest(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """least-busy picks the deployment with the fewest requests in flight; releasing makes it eligible again."""
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(group_yaml(fake_provider, "least-busy")))
    router = build_router(load_config(path))
    a, b = router.groups["grp"]

    def held() -> Any:
        return router.route_sync("chat", "grp", {"messages": HI}, hold=True)

    first = held()
    assert first.deployment is a
    second = held()
    assert second.deployment is b  # a is busy
    third = held()
    assert third.deployment is a  # a tie: the first
    first.release()
    first.release()  # releasing twice counts once
    assert router.in_flight.counts == {a.model_id: 1, b.model_id: 1}
    third.release()
    assert held().deployment is a  # b still holds one


async def test_client_disconnect_mid_stream_ends_the_call_once(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """A client that goes away mid-stream gets the lmgate stream closed: exactly one terminal event, flagged abandoned."""
    upstream_waits = threading.Event()
    fake_provider.enqueue(Reply(text="abcdefghijkl", hold_after_chunks=2, delay_event=upstream_waits))
    app = make_app(tmp_path, fake_provider)
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    body = orjson.dumps({"model": "fast", "messages": HI, "stream": True})
    sent = await disconnect_mid_stream(app, "/v1/chat/completions", body, [(b"authorization", f"Bearer {MASTER}".encode())])
    upstream_waits.set()
    assert await lmgate.aflush_callbacks(10)
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert len(terminal) == 1
    assert terminal[0].hook == "async_log_success_event"
    assert terminal[0].kwargs["stream_status"] == "abandoned"
    assert not any(m.get("body") == b"data: [DONE]\n\n" for m in sent)
    assert app.state.proxy.metrics.in_flight == 0


async def test_mid_stream_provider_error_becomes_an_error_event(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """A stream the provider breaks midway ends with an SSE error event and one failure event."""
    fake_provider.enqueue(Reply(text="abcdefghijkl", cut_after_chunks=2))
    app = make_app(tmp_path, fake_provider)
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "fast", "messages": HI, "stream": True})
    events = [e for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert "error" in orjson.loads(events[-1][len("data: "):])
    assert await lmgate.aflush_callbacks(10)
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert [e.hook for e in terminal] == ["async_log_failure_event"]


async def test_router_retries_beyond_the_group_with_backoff(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """router_settings.num_retries adds attempts after every deployment failed once, waiting the policy's backoff (Retry-After here)."""
    from lmgate._retry import RetryPolicy

    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(group_yaml(fake_provider, retries=", num_retries: 2")))
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    router = build_router(load_config(path))
    router.retry_policy = RetryPolicy(async_sleep=fake_sleep)
    busy = Reply(status=429, headers={"retry-after": "1.5"})
    fake_provider.enqueue(busy, Reply(status=429, headers={"retry-after": "1.5"}))
    routed = await router.route_async("chat", "grp", {"messages": HI}, hold=True)
    routed.release()
    assert routed.result.choices[0].message.content
    assert [r.json["model"] for r in fake_provider.requests] == ["model-a", "model-b", "model-a"]
    assert slept == [1.5]
    assert router.in_flight.counts == {d.model_id: 0 for d in router.groups["grp"]}


def fallback_yaml(fake: FakeProvider, settings: str) -> str:
    return f"""
    model_list:
      - model_name: grp
        litellm_params: {{model: openai/model-a, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
      - model_name: grp
        litellm_params: {{model: openai/model-b, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
      - model_name: backup
        litellm_params: {{model: openai/model-c, api_base: {fake.base_url}/v1, api_key: {UPSTREAM}}}
        model_info: {{id: backup-1}}
    router_settings: {{routing_strategy: round-robin, {settings}}}
    """


async def test_router_fallbacks_answer_from_another_group(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """router_settings.fallbacks: when every deployment of a group fails, another group answers; one terminal event."""
    fake_provider.enqueue(Reply(status=500), Reply(status=503))
    app = make_app(tmp_path, fake_provider, models=fallback_yaml(fake_provider, "fallbacks: [{grp: [backup]}]"))
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    async with client(app) as c:
        r = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
    assert r.status_code == 200
    assert r.headers["x-litellm-model-id"] == "backup-1"
    assert [q.json["model"] for q in fake_provider.requests] == ["model-a", "model-b", "model-c"]
    assert await lmgate.aflush_callbacks(10)
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert [(e.hook, e.kwargs["standard_logging_object"]["model_group"]) for e in terminal] == [
        ("async_log_success_event", "backup")
    ]


async def test_router_cooldown_answers_429_with_retry_after(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """router_settings.allowed_fails/cooldown_time: a group whose deployments all sit out answers 429 without calling one."""
    fake_provider.enqueue(Reply(status=500), Reply(status=500))
    app = make_app(tmp_path, fake_provider, models=fallback_yaml(fake_provider, "allowed_fails: 0, cooldown_time: 60"))
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    async with client(app) as c:
        first = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
        second = await c.post("/v1/chat/completions", headers=AUTH, json={"model": "grp", "messages": HI})
    assert (first.status_code, second.status_code) == (500, 429)
    assert 55 <= int(second.headers["retry-after"]) <= 60
    assert "cooling down" in second.json()["error"]["message"]
    assert len(fake_provider.requests) == 2
    assert await lmgate.aflush_callbacks(10)
    assert [e.hook for e in capture.of("async_log_success_event", "async_log_failure_event")] == [
        "async_log_failure_event"
    ] * 2
