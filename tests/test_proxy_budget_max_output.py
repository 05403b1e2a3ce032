"""A request that names no ``max_tokens`` cannot overrun a budget, through real ``lmgate serve``
processes (two sharing one Redis, on SQLite then on PostgreSQL): it reserves the most its model
generates in one answer (``model_info.max_output_tokens`` or the price table's), or, when that
is unknown, ``DEFAULT_MAX_TOKENS`` — and is then sent with that ``max_tokens`` so the provider
cannot generate more than was reserved (docs/keys.md "The reservation rule").

The fake upstream is a model that generates 20,000 tokens when nothing stops it (``Reply.generates``):
before this rule, such requests reserved 4,096 tokens each and settled five times as much."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from fakes import FakeProvider, LogReceiver, RedisServer
from fakes.provider import Reply
from test_proxy_limits import MASTER, UPSTREAM, Cluster, generate, ledger_spend
from test_proxy_server import Served

from lmgate.proxy.budgets import DEFAULT_MAX_TOKENS

IN_PRICE, OUT_PRICE = 1e-6, 1e-5  # USD per token: 4,096 output tokens cost 0.04096
GENERATES = 20_000  # what the fake model writes when no max_tokens stops it (0.2 of output)
KNOWN_MAX = 6_000  # the "known" group's model_info.max_output_tokens
HI = [{"role": "user", "content": "Hi"}]


def _config(
    tmp: Path, fake: FakeProvider, receiver: LogReceiver, redis_url: str, database: str | None
) -> Path:
    prices = f"input_cost_per_token: {IN_PRICE}, output_cost_per_token: {OUT_PRICE}"
    params = f"api_base: {fake.base_url}/v1, api_key: {UPSTREAM}, {prices}"
    path = tmp / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        model_list:
          - model_name: open  # a model the price table does not know: its maximum is unknown
            litellm_params: {{model: openai/house-model, {params}}}
          - model_name: known
            litellm_params: {{model: openai/house-model-2, {params}}}
            model_info: {{max_output_tokens: {KNOWN_MAX}}}
        litellm_settings:
          callbacks: [sink]
        callback_settings:
          sink: {{callback_type: generic_api, endpoint: {receiver.url}, batch_size: 1, spool_dir: {tmp / "spool"}}}
        router_settings: {{redis_url: '{redis_url}'}}
        general_settings:
          master_key: {MASTER}
          virtual_keys: true
        """)
        + (f"  database_url: {database}\n" if database else "")
    )
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def cluster(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    fake_provider: FakeProvider,
    log_receiver: LogReceiver,
    redis_server: RedisServer,
) -> Iterator[Cluster]:
    database = str(request.getfixturevalue("fresh_postgres_url")) if request.param == "postgresql" else None
    redis_server.flushall()
    made = Cluster(
        tmp_path, _config(tmp_path, fake_provider, log_receiver, redis_server.url, database), None, database
    )
    yield made
    made.stop()


def _ask(server: Served, key: str, group: str, **extra: Any) -> str:
    """ "ok", "refused" (budget_exceeded), or the unexpected error."""
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        try:
            client.chat.completions.create(model=group, messages=HI, **extra)  # type: ignore[call-overload]
        except openai.BadRequestError as error:
            assert error.body["type"] == "budget_exceeded", error.body  # type: ignore[index]
            return "refused"
    return "ok"


def _fire(cluster: Cluster, group: str, budget: float, requests: int = 24) -> tuple[list[str], float, float]:
    """``requests`` chat requests without max_tokens at once, alternating over two instances,
    against a fresh key with ``budget``: (outcomes, the ledger's total, the key's spend)."""
    a, b = cluster.start(2)
    made = generate(a, max_budget=budget)
    key, token = made["key"], made["token"]
    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(lambda i: _ask(a if i % 2 else b, key, group), range(requests)))
    cluster.stop()
    total, rows, spend = ledger_spend(cluster, token)
    assert rows == outcomes.count("ok")
    return outcomes, total, spend


def test_requests_without_max_tokens_on_a_model_of_unknown_maximum_never_overrun_a_budget(
    cluster: Cluster, fake_provider: FakeProvider
) -> None:
    """Each reserves DEFAULT_MAX_TOKENS and is sent with that max_tokens: the model stops there."""
    fake_provider.enqueue(*[Reply(generates=GENERATES) for _ in range(24)])
    budget = 0.3  # room for 7 worst cases of 4,096 tokens; 24 asked at once
    outcomes, total, spend = _fire(cluster, "open", budget)
    assert "ok" in outcomes and "refused" in outcomes
    assert total <= budget and spend == pytest.approx(total)
    sent = [r.json for r in fake_provider.requests]
    assert len(sent) == outcomes.count("ok") and all(s["max_tokens"] == DEFAULT_MAX_TOKENS for s in sent)


def test_requests_without_max_tokens_reserve_their_models_known_maximum(
    cluster: Cluster, fake_provider: FakeProvider
) -> None:
    """model_info.max_output_tokens is reserved and the request is sent as it was asked."""
    fake_provider.enqueue(*[Reply(generates=KNOWN_MAX) for _ in range(24)])  # a model writing its most
    budget = 0.3  # room for 4 worst cases of 6,000 tokens (0.06 each)
    outcomes, total, spend = _fire(cluster, "known", budget)
    assert "ok" in outcomes and "refused" in outcomes
    assert total <= budget and spend == pytest.approx(total)
    assert all("max_tokens" not in r.json for r in fake_provider.requests)


def test_the_refusal_names_the_worst_case_of_the_models_maximum(
    cluster: Cluster, fake_provider: FakeProvider
) -> None:
    """Below one worst case of 6,000 output tokens: refused, saying what it may cost and the
    fix; the same request with a max_tokens that fits is served."""
    (server,) = cluster.start(1)
    key = generate(server, max_budget=0.05)["key"]
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="known", messages=HI)
        message = caught.value.body["message"]  # type: ignore[index]
        worst = len(b'[[{"role":"user","content":"Hi"}],null,null]') * IN_PRICE + KNOWN_MAX * OUT_PRICE
        assert f"may cost up to {worst:.6f}".rstrip("0") in message and "max_tokens" in message
        assert client.chat.completions.create(model="known", messages=HI, max_tokens=100).choices
    assert len(fake_provider.requests) == 1


@pytest.mark.parametrize("api", ["responses", "completions"])
def test_the_other_formats_without_a_maximum_are_sent_with_the_reserved_one(
    cluster: Cluster, fake_provider: FakeProvider, api: str
) -> None:
    """The Responses API's max_output_tokens and a legacy completion's max_tokens, on the body
    passed through to the (OpenAI) deployment."""
    (server,) = cluster.start(1)
    key = generate(server, max_budget=10.0)["key"]
    fake_provider.enqueue(Reply(generates=GENERATES))
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        if api == "responses":
            client.responses.create(model="open", input="Hi")
        else:
            client.completions.create(model="open", prompt="Hi")
    (sent,) = [r.json for r in fake_provider.requests]
    assert sent["max_output_tokens" if api == "responses" else "max_tokens"] == DEFAULT_MAX_TOKENS


def _claude_cluster(
    tmp_path: Path,
    fake_provider: FakeProvider,
    log_receiver: LogReceiver,
    redis_server: RedisServer,
    own: str,
) -> Cluster:
    """One instance whose config adds a priced Anthropic deployment ``claude`` (``own``: its
    own ``litellm_params`` beyond the model, base, key and prices)."""
    redis_server.flushall()
    config = _config(tmp_path, fake_provider, log_receiver, redis_server.url, None)
    prices = f"input_cost_per_token: {IN_PRICE}, output_cost_per_token: {OUT_PRICE}"
    text = config.read_text().replace(
        "model_list:\n",
        "model_list:\n  - model_name: claude\n    litellm_params: {model: anthropic/house-claude, "
        f"api_base: {fake_provider.base_url}, api_key: {UPSTREAM}, {own}{prices}}}\n",
    )
    config.write_text(text)
    return Cluster(tmp_path, config, None, None)


def test_a_request_naming_both_maxima_reserves_what_its_anthropic_deployment_is_sent(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver, redis_server: RedisServer
) -> None:
    """A chat request may name both ``max_completion_tokens`` and ``max_tokens``. The Anthropic
    deployment is sent ``max_tokens`` (its provider reads that one first), so that is what the
    reservation must count: reserving ``max_completion_tokens`` = 1 let a request whose worst
    case is 20,000 output tokens pass a budget it then overran."""
    cluster = _claude_cluster(tmp_path, fake_provider, log_receiver, redis_server, "")
    try:
        (server,) = cluster.start(1)
        budget = 0.05  # one worst case of 20,000 output tokens costs 0.2
        made = generate(server, max_budget=budget)
        fake_provider.enqueue(Reply(generates=GENERATES))
        outcome = _ask(server, made["key"], "claude", max_completion_tokens=1, max_tokens=GENERATES)
    finally:
        cluster.stop()
    total, rows, spend = ledger_spend(cluster, made["token"])
    assert outcome == "refused" or total <= budget, (outcome, total)


def test_a_deployments_own_max_tokens_is_what_a_request_naming_another_maximum_reserves(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver, redis_server: RedisServer
) -> None:
    """A deployment may set its own output length (``litellm_params.max_tokens``, a common
    default). A request naming ``max_completion_tokens`` does not replace it (another name):
    the Anthropic deployment is sent the deployment's ``max_tokens``, so the reservation must
    count that, not the request's 1 token."""
    cluster = _claude_cluster(
        tmp_path, fake_provider, log_receiver, redis_server, f"max_tokens: {GENERATES}, "
    )
    try:
        (server,) = cluster.start(1)
        budget = 0.05  # one worst case of 20,000 output tokens costs 0.2
        made = generate(server, max_budget=budget)
        fake_provider.enqueue(Reply(generates=GENERATES))
        outcome = _ask(server, made["key"], "claude", max_completion_tokens=1)
    finally:
        cluster.stop()
    total, rows, spend = ledger_spend(cluster, made["token"])
    assert outcome == "refused" or total <= budget, (outcome, total)
