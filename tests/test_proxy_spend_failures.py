"""What a failure that a provider billed is charged, through real ``lmgate serve`` processes:
a stream the upstream broke mid-way is charged what its log record says it cost, so a key's
spend stays the sum of its calls' logged ``response_cost`` (docs/keys.md "Spend is exact")."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import orjson
import pytest
from fakes import FakeProvider, LogReceiver
from fakes.provider import Reply
from test_proxy_limits import HI, IN_PRICE, OUT_PRICE, Cluster, chat, cluster_of, generate, ledger_spend

__all__ = ["cluster_of"]  # the fixture, shared with test_proxy_limits


def _chunk(delta: dict[str, Any], usage: dict[str, int] | None = None) -> str:
    obj: dict[str, Any] = {
        "id": "chatcmpl-broken",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}],
    }
    if usage is not None:
        obj["usage"] = usage
    return f"data: {json.dumps(obj)}\n\n"


ERROR_EVENT = 'data: {"error": {"message": "The server had an error.", "type": "server_error"}}\n\n'


def _records_of(receiver: LogReceiver, token: str) -> list[dict[str, Any]]:
    return [r for r in receiver.records if r["metadata"].get("user_api_key_hash") == token]


def _broken_stream(server: Any, key: str) -> None:
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        stream = client.chat.completions.create(model="fast", messages=HI, max_tokens=50, stream=True)
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass


def test_a_stream_the_upstream_broke_after_reporting_usage_is_charged_what_its_log_says(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """Some providers report usage before the end (a usage on a chunk, Anthropic's
    message_start); when the stream then breaks, those tokens were billed: the log record's
    ``response_cost`` and the ledger both carry them."""
    cluster = cluster_of()
    (server,) = cluster.start(1)
    made = generate(server, max_budget=10.0)
    key, token = made["key"], made["token"]
    usage = {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}
    fake_provider.enqueue(
        Reply(
            events=[
                _chunk({"role": "assistant", "content": "Hel"}),
                _chunk({"content": "lo"}, usage),
                ERROR_EVENT,
            ]
        )
    )
    _broken_stream(server, key)
    assert log_receiver.wait_for_records(1, timeout=20)
    cluster.stop()
    [record] = _records_of(log_receiver, token)
    assert record["status"] == "failure"
    assert record["response_cost"] == pytest.approx(9 * IN_PRICE + 4 * OUT_PRICE)
    total, rows, spend = ledger_spend(cluster, token)
    assert rows == 1 and total == pytest.approx(record["response_cost"]) and spend == pytest.approx(total)


def test_a_stream_the_upstream_broke_before_reporting_usage_is_charged_an_estimate_its_log_says(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """OpenAI reports usage only at the end: a stream broken after "Hello world" was billed for
    its prompt and those tokens all the same. Its usage is estimated (4 bytes a token), in the
    log record (``cost_breakdown.estimated_cost``) and in the ledger alike."""
    cluster = cluster_of()
    (server,) = cluster.start(1)
    made = generate(server, max_budget=10.0)
    key, token = made["key"], made["token"]
    fake_provider.enqueue(
        Reply(
            events=[
                _chunk({"role": "assistant", "content": "Hello"}),
                _chunk({"content": " world"}),
                ERROR_EVENT,
            ]
        )
    )
    _broken_stream(server, key)
    assert log_receiver.wait_for_records(1, timeout=20)
    cluster.stop()
    [record] = _records_of(log_receiver, token)
    prompt = math.ceil(len(orjson.dumps(HI)) / 4) + 3 * len(HI)  # the messages' bytes / 4, 3 a message
    completion = math.ceil(len(b"Hello world") / 4)
    expected = prompt * IN_PRICE + completion * OUT_PRICE
    assert record["status"] == "failure" and record["response_cost"] == pytest.approx(expected)
    assert record["cost_breakdown"]["estimated_cost"] == pytest.approx(expected)
    assert (record["prompt_tokens"], record["completion_tokens"]) == (prompt, completion)
    total, rows, spend = ledger_spend(cluster, token)
    assert rows == 1 and total == pytest.approx(expected) and spend == pytest.approx(total)


def test_a_stream_whose_client_left_is_charged_the_estimate_its_log_says(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    cluster = cluster_of()
    (server,) = cluster.start(1)
    made = generate(server, max_budget=10.0)
    key, token = made["key"], made["token"]
    gate = threading.Event()
    fake_provider.enqueue(
        Reply(text="Hello world, and more", chunk_size=5, hold_after_chunks=3, delay_event=gate)
    )
    try:
        with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
            leaving = client.chat.completions.create(model="fast", messages=HI, max_tokens=50, stream=True)
            seen = [next(iter(leaving)) for _ in range(3)]  # the role chunk, "Hello", " worl"
            assert "".join(c.choices[0].delta.content or "" for c in seen) == "Hello worl"
            leaving.response.close()
            assert log_receiver.wait_for_records(1, timeout=20)  # the proxy saw it leave: one record
    finally:
        gate.set()
    cluster.stop()
    [record] = _records_of(log_receiver, token)
    assert (
        record["response_cost"] > 0 and record["cost_breakdown"]["estimated_cost"] == record["response_cost"]
    )
    total, rows, spend = ledger_spend(cluster, token)
    assert rows == 1 and total == pytest.approx(record["response_cost"]) and spend == pytest.approx(total)


def test_billed_broken_streams_at_a_nearly_spent_budget_on_two_instances_never_overrun_it(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """What a broken stream is charged (its estimate) never passes what it reserved, so the
    reservation rule holds for billed failures too: 24 streams at once, each broken by the
    provider after "Hello world", against a budget with room for a few."""
    cluster = cluster_of()
    a, b = cluster.start(2)
    budget = 0.4
    made = generate(a, max_budget=budget)
    key, token = made["key"], made["token"]
    for i in range(15):  # 15 × 0.017 spent: room for a few more worst cases, not for 24
        assert chat(a if i % 2 else b, key).choices[0].message.content
    broken = [_chunk({"role": "assistant", "content": "Hello"}), _chunk({"content": " world"}), ERROR_EVENT]
    fake_provider.enqueue(*[Reply(events=broken) for _ in range(24)])

    def stream(i: int) -> str:
        server = a if i % 2 else b
        with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
            try:
                chunks = client.chat.completions.create(model="fast", messages=HI, max_tokens=5, stream=True)
                for _ in chunks:
                    pass
            except openai.BadRequestError as error:
                assert error.body["type"] == "budget_exceeded"  # type: ignore[index]
                return "refused"
            except openai.APIError:
                return "broken"
        return "complete"

    with ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(stream, range(24)))
    assert "complete" not in outcomes and outcomes.count("broken") >= 1 and "refused" in outcomes
    assert log_receiver.wait_for_records(15 + outcomes.count("broken"), timeout=30)
    cluster.stop()
    total, rows, spend = ledger_spend(cluster, token)
    logged = sum(r["response_cost"] or 0.0 for r in _records_of(log_receiver, token))
    assert rows == 15 + outcomes.count("broken") and total <= budget
    assert total == pytest.approx(logged) and spend == pytest.approx(total)
    failures = [r for r in _records_of(log_receiver, token) if r["status"] == "failure"]
    assert len(failures) == outcomes.count("broken") and all(r["response_cost"] > 0 for r in failures)


def test_a_broken_stream_without_max_tokens_is_never_charged_more_than_the_model_can_generate(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """A request without max_tokens to a model of known maximum (gpt-4o-mini: 16,384 output
    tokens) reserves that maximum and is sent as it is. A stream it broke after 16,384 tokens of
    long tokens (whitespace runs of code, long words: more than 4 bytes a token) must not be
    estimated at more than the model can generate: that would charge more than was reserved,
    past the budget, for tokens no provider billed."""
    cluster = cluster_of()
    (server,) = cluster.start(1)
    worst = len(orjson.dumps([HI, None, None])) * IN_PRICE + 16_384 * OUT_PRICE
    made = generate(server, max_budget=worst * 1.01)  # room for exactly one such request
    key, token = made["key"], made["token"]
    code = " " * 16  # one token in OpenAI's tokenizers: 16 bytes
    events = [_chunk({"role": "assistant", "content": ""})]
    events += [_chunk({"content": code * 256}) for _ in range(20)]  # 20 × 4,096 bytes
    fake_provider.enqueue(Reply(events=[*events, ERROR_EVENT]))
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        stream = client.chat.completions.create(model="fast", messages=HI, stream=True)
        with pytest.raises(openai.APIError):
            for _ in stream:
                pass
    assert log_receiver.wait_for_records(1, timeout=20)
    cluster.stop()
    [record] = _records_of(log_receiver, token)
    assert record["completion_tokens"] <= 16_384
    total, rows, spend = ledger_spend(cluster, token)
    assert rows == 1 and total == pytest.approx(record["response_cost"])
    assert total <= worst * 1.01  # never past the budget


def test_a_stream_whose_client_turned_usage_off_is_still_charged(
    cluster_of: Callable[..., Cluster], fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """A client may send ``stream_options: {"include_usage": false}``: the provider then reports
    no usage, yet billed the call. A virtual key's spend must not be 0 for it (else a budget is
    spent for free, without end)."""
    cluster = cluster_of()
    (server,) = cluster.start(1)
    made = generate(server, max_budget=10.0)
    key, token = made["key"], made["token"]
    with openai.OpenAI(api_key=key, base_url=f"{server.url}/v1", max_retries=0) as client:
        stream = client.chat.completions.create(
            model="fast", messages=HI, max_tokens=50, stream=True, stream_options={"include_usage": False}
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    assert log_receiver.wait_for_records(1, timeout=20)
    cluster.stop()
    [record] = _records_of(log_receiver, token)
    assert record["response_cost"] and record["response_cost"] > 0
    total, rows, spend = ledger_spend(cluster, token)
    assert rows == 1 and total == pytest.approx(record["response_cost"]) and spend == pytest.approx(total)
