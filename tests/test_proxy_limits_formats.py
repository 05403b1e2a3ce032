"""Keys, budgets and rate limits on every API format of the proxy (issue 17 point 5): the
Anthropic Messages API, the Responses API (passed through to an OpenAI deployment and bridged
to a mock) and legacy completions, streamed or not, through a real ``lmgate serve`` with
virtual keys, called with the official ``anthropic`` and ``openai`` clients. Each refusal
comes before any provider call, in the format's own error shape; spend equals the logged
costs, a stream whose client left included."""

from __future__ import annotations

import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
from fakes import FakeProvider, LogReceiver, RedisServer
from fakes.provider import Reply
from test_proxy_limits import Cluster, admin, generate, in_one_minute, ledger_spend

MASTER = "sk-master-limits-0123456789"
UPSTREAM = "sk-upstream-formats-0123456789"
IN_PRICE, OUT_PRICE = 0.001, 0.002

# (route, model group): the fake's "fast" deployment is OpenAI (messages are translated to
# chat for it; responses and completions pass through), "claude" is Anthropic (messages pass
# through), "mock" answers itself (bridged)
CASES = [
    ("messages", "fast"),
    ("messages", "claude"),  # passed through
    ("responses", "claude"),  # bridged over chat to Anthropic
    ("responses", "fast"),
    ("responses", "mock"),
    ("completions", "fast"),
]
IDS = [f"{route}-{group}" for route, group in CASES]


def write_config(tmp: Path, fake: FakeProvider, receiver: LogReceiver, redis_url: str | None) -> Path:
    path = tmp / "config.yaml"
    router = f"router_settings: {{redis_url: '{redis_url}'}}\n" if redis_url else ""
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: fast
            litellm_params:
              model: openai/gpt-4o-mini
              api_base: {fake.base_url}/v1
              api_key: {UPSTREAM}
              input_cost_per_token: {IN_PRICE}
              output_cost_per_token: {OUT_PRICE}
          - model_name: claude
            litellm_params:
              model: anthropic/claude-sonnet-4-20250514
              api_base: {fake.base_url}
              api_key: {UPSTREAM}
              input_cost_per_token: {IN_PRICE}
              output_cost_per_token: {OUT_PRICE}
          - model_name: mock
            litellm_params:
              model: openai/gpt-4o-mini
              mock_response: hello from the mock
              input_cost_per_token: {IN_PRICE}
              output_cost_per_token: {OUT_PRICE}
        litellm_settings:
          callbacks: [sink]
        callback_settings:
          sink: {{callback_type: generic_api, endpoint: {receiver.url}, batch_size: 1, spool_dir: {tmp / "spool"}}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        """)
        + router
    )
    return path


@pytest.fixture
def cluster_of(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver, redis_server: RedisServer
) -> Iterator[Callable[..., Cluster]]:
    made: list[Cluster] = []

    def make(redis: bool = False) -> Cluster:
        redis_server.flushall()
        config = write_config(tmp_path, fake_provider, log_receiver, redis_server.url if redis else None)
        cluster = Cluster(tmp_path, config)
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop()


def call(
    url: str, key: str, route: str, group: str, max_out: int = 16, text: str = "Hi", stream: bool = False
) -> Any:
    """One call of ``route`` with its own client; a stream is read to its end. Returns the text."""
    if route == "messages":
        with anthropic.Anthropic(api_key=key, base_url=url, max_retries=0) as client:
            if stream:
                with client.messages.stream(
                    model=group, max_tokens=max_out, messages=[{"role": "user", "content": text}]
                ) as events:
                    return "".join(events.text_stream)
            answer = client.messages.create(
                model=group, max_tokens=max_out, messages=[{"role": "user", "content": text}]
            )
            return answer.content[0].text  # type: ignore[union-attr]
    with openai.OpenAI(api_key=key, base_url=f"{url}/v1", max_retries=0) as oclient:
        if route == "responses":
            if stream:
                events = oclient.responses.create(
                    model=group, input=text, max_output_tokens=max_out, stream=True
                )
                return "".join(e.delta for e in events if e.type == "response.output_text.delta")
            return oclient.responses.create(model=group, input=text, max_output_tokens=max_out).output_text
        if stream:
            chunks = oclient.completions.create(model=group, prompt=text, max_tokens=max_out, stream=True)
            return "".join(c.choices[0].text for c in chunks if c.choices)
        return oclient.completions.create(model=group, prompt=text, max_tokens=max_out).choices[0].text


def refusal(url: str, key: str, route: str, group: str, **kw: Any) -> httpx.Response:
    """The refused call's raw answer (status, headers, body as the client got them)."""
    errors = (anthropic.APIStatusError,) if route == "messages" else (openai.APIStatusError,)
    with pytest.raises(errors) as caught:
        call(url, key, route, group, **kw)
    return caught.value.response  # type: ignore[no-any-return]


def assert_shape(route: str, answer: httpx.Response, status: int, openai_type: str) -> str:
    """The format's own error body; returns its message."""
    assert answer.status_code == status, answer.text
    body = answer.json()
    if route == "messages":  # Anthropic's: {"type": "error", "error": {"type", "message"}}
        assert body["type"] == "error" and set(body["error"]) >= {"type", "message"}, body
        anthropic_type = {400: "invalid_request_error", 401: "authentication_error", 429: "rate_limit_error"}
        assert body["error"]["type"] == anthropic_type[status], body
        return str(body["error"]["message"])
    assert body["error"]["type"] == openai_type, body
    return str(body["error"]["message"])


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize(("route", "group"), CASES, ids=IDS)
def test_a_budget_reserves_each_formats_worst_case_and_refuses_before_any_provider_call(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, route: str, group: str, stream: bool
) -> None:
    (server,) = cluster_of().start(1)
    # 1 USD: a call with 16 output tokens fits; one with 1,000 (2 USD at the output price) or
    # with a 2,000-character input (2 USD at the input price) does not: the reservation read
    # the format's own max-token field and its input
    key = generate(server, max_budget=1.0)["key"]
    assert call(server.url, key, route, group, max_out=16, stream=stream)
    sent = len(fake_provider.requests)
    for kw in ({"max_out": 1000}, {"text": "x" * 2000}):
        message = assert_shape(
            route, refusal(server.url, key, route, group, stream=stream, **kw), 400, "budget_exceeded"
        )
        assert "Budget has been exceeded! Key=" in message and "does not fit" in message
    # an exhausted budget: no room for any call
    assert admin(server, "POST", "/key/update", json={"key": key, "max_budget": 1e-9}).status_code == 200
    message = assert_shape(
        route, refusal(server.url, key, route, group, stream=stream), 400, "budget_exceeded"
    )
    assert "Budget has been exceeded!" in message
    assert len(fake_provider.requests) == sent  # none of the refused calls reached the provider


@pytest.mark.parametrize(("route", "group"), CASES, ids=IDS)
def test_rpm_limit_and_model_access_on_every_format(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, route: str, group: str
) -> None:
    (server,) = cluster_of().start(1)
    other = "mock" if group != "mock" else "fast"
    limited = generate(server, models=[other])["key"]
    message = assert_shape(route, refusal(server.url, limited, route, group), 401, "key_model_access_denied")
    assert other in message  # names the models the key may use
    sent = len(fake_provider.requests)

    def run() -> bool:
        key = generate(server, rpm_limit=2)["key"]
        if not (call(server.url, key, route, group) and call(server.url, key, route, group, stream=True)):
            return False
        answer = refusal(server.url, key, route, group)
        assert 1 <= int(answer.headers["retry-after"]) <= 60
        assert "rpm_limit: 2" in assert_shape(route, answer, 429, "rate_limit_error")
        return True

    in_one_minute(run)
    assert len(fake_provider.requests) <= sent + 6  # refused calls never reach the provider


@pytest.mark.parametrize("redis", [False, True], ids=["memory", "redis"])
@pytest.mark.parametrize(
    ("route", "group"),
    [("messages", "fast"), ("messages", "claude"), ("responses", "fast"), ("completions", "fast")],
    ids=["messages-fast", "messages-claude", "responses-fast", "completions-fast"],
)
def test_parallel_slot_is_held_by_a_stream_and_spend_equals_the_logged_costs(
    cluster_of: Callable[..., Cluster],
    fake_provider: FakeProvider,
    log_receiver: LogReceiver,
    route: str,
    group: str,
    redis: bool,
) -> None:
    cluster = cluster_of(redis=redis)
    (server,) = cluster.start(1)
    made = generate(server, max_parallel_requests=1, max_budget=10.0)
    key, token = made["key"], made["token"]
    assert call(server.url, key, route, group)
    assert call(server.url, key, route, group, stream=True)
    if route == "responses":
        assert call(server.url, key, route, "mock") and call(server.url, key, route, "mock", stream=True)
    gate = threading.Event()
    fake_provider.enqueue(Reply(hold_after_chunks=1, delay_event=gate))
    try:
        leaving = _open_stream(server.url, key, route, group)
        answer = refusal(server.url, key, route, group)  # its slot is held while it streams
        assert "max_parallel_requests: 1" in assert_shape(route, answer, 429, "rate_limit_error")
        assert answer.headers["retry-after"] == "1"
        leaving.close()  # the client goes away mid-stream
        for _ in range(400):  # bounded: the proxy notices, settles, frees the slot
            try:
                call(server.url, key, route, "mock" if route == "responses" else group)
                break
            except (openai.RateLimitError, anthropic.RateLimitError):
                continue
        else:
            raise AssertionError("the parallel slot of a stream whose client left was never given back")
    finally:
        gate.set()
    calls = 6 if route == "responses" else 4
    assert log_receiver.wait_for_records(calls, timeout=20)
    cluster.stop()
    total, rows, spend = ledger_spend(cluster, token)
    mine = [r for r in log_receiver.records if r["metadata"].get("user_api_key_hash") == token]
    costs = [r["response_cost"] or 0.0 for r in mine]
    assert rows == calls and len(mine) == calls
    assert total > 0 and total == pytest.approx(sum(costs)) and spend == pytest.approx(total)
    ids = {
        r[0] for r in cluster.query("SELECT request_id FROM lmgate_spend_ledger WHERE token = :t", t=token)
    }
    assert ids == {r["litellm_call_id"] for r in mine}


class _Open:
    """A raw streaming request left open after its first bytes."""

    def __init__(self, client: httpx.Client, response: httpx.Response) -> None:
        self.client, self.response = client, response
        # kept: a generator dropped after its first item closes the response (the client leaves)
        self.chunks = response.iter_bytes()
        next(self.chunks)  # the first event

    def close(self) -> None:
        self.response.close()
        self.client.close()


def _open_stream(url: str, key: str, route: str, group: str) -> _Open:
    body: dict[str, Any] = {"model": group, "stream": True}
    if route == "messages":
        path, body = (
            "/v1/messages",
            {**body, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]},
        )
    elif route == "responses":
        path, body = "/v1/responses", {**body, "max_output_tokens": 16, "input": "Hi"}
    else:
        path, body = "/v1/completions", {**body, "max_tokens": 16, "prompt": "Hi"}
    client = httpx.Client(timeout=20)
    request = client.build_request(
        "POST", f"{url}{path}", json=body, headers={"Authorization": f"Bearer {key}", "x-api-key": key}
    )
    response = client.send(request, stream=True)
    assert response.status_code == 200, response.read()
    return _Open(client, response)


def test_a_passed_through_completion_reserves_every_prompt_and_best_of(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider
) -> None:
    """The pass-through sends what the bridge refuses (several prompts, token ids, best_of):
    the worst case counts them, not just the first prompt of the chat translation."""
    (server,) = cluster_of().start(1)
    key = generate(server, max_budget=1.0)["key"]  # 16 output tokens cost 0.032
    headers = {"Authorization": f"Bearer {key}"}
    base = {"model": "fast", "max_tokens": 16}
    fits = httpx.post(f"{server.url}/v1/completions", json={**base, "prompt": "Hi"}, headers=headers)
    assert fits.status_code == 200, fits.text
    sent = len(fake_provider.requests)
    for body in (
        {"prompt": ["Hi"] * 40},  # 40 prompts × 16 tokens: 1.28
        {"prompt": "Hi", "best_of": 40},  # 40 candidates generated and billed
        {"prompt": "Hi", "n": 2, "best_of": 40},
        {"prompt": [1] * 1500},  # 1,500 input tokens as ids: 1.5
    ):
        answer = httpx.post(f"{server.url}/v1/completions", json={**base, **body}, headers=headers)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["type"] == "budget_exceeded", (body, answer.text)
    assert len(fake_provider.requests) == sent


@pytest.mark.parametrize("route", ["messages", "responses", "completions"])
def test_an_end_users_budget_and_block_apply_on_every_format(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, route: str
) -> None:
    """The end user is the Messages API's ``metadata.user_id`` and the others' ``user``."""
    (server,) = cluster_of().start(1)
    made = admin(server, "POST", "/customer/new", json={"user_id": "cust-f", "max_budget": 1e-9})
    assert made.status_code == 200, made.text
    key = generate(server)["key"]
    path, body = {
        "messages": ("/v1/messages", {"max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}),
        "responses": ("/v1/responses", {"max_output_tokens": 16, "input": "Hi"}),
        "completions": ("/v1/completions", {"max_tokens": 16, "prompt": "Hi"}),
    }[route]

    def post(end_user: str) -> httpx.Response:
        who = {"metadata": {"user_id": end_user}} if route == "messages" else {"user": end_user}
        return httpx.post(
            f"{server.url}{path}",
            json={"model": "fast", **body, **who},
            headers={"Authorization": f"Bearer {key}"},
            timeout=20,
        )

    assert post("someone-else").status_code == 200
    sent = len(fake_provider.requests)
    message = assert_shape(route, post("cust-f"), 400, "budget_exceeded")
    assert "EndUser=cust-f" in message
    assert admin(server, "POST", "/customer/block", json={"user_ids": ["cust-f"]}).status_code == 200
    assert post("cust-f").status_code in (400, 401, 403)
    assert len(fake_provider.requests) == sent
