"""What the per-call machinery computes once (a deployment's endpoint, a price entry's rates) and
its one-pass shortcuts (rate-limit headers, the cost's result) answer exactly as the long way."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from lmgate._call import Call
from lmgate._secrets import upstream_headers
from lmgate.cost import CostResult, compute_cost, find_price
from lmgate.providers.base import _HOP_BY_HOP, rate_limit_headers

MESSAGES = [{"role": "user", "content": "hi"}]


def _prepared(**params: Any) -> Call:
    call = Call("chat", "openai/gpt-4o-mini", MESSAGES, dict(params), stream=False, is_async=True)
    call.prepare()
    return call


def test_each_key_of_one_endpoint_is_sent_and_masked_as_its_own() -> None:
    base = "http://127.0.0.1:9/v1"
    first = _prepared(api_base=base, api_key="sk-first-0000000001")
    second = _prepared(api_base=base, api_key="sk-second-000000002")
    again = _prepared(api_base=base, api_key="sk-first-0000000001")
    assert first.http_request(0).headers["Authorization"] == "Bearer sk-first-0000000001"
    assert second.http_request(0).headers["Authorization"] == "Bearer sk-second-000000002"
    assert first.secrets == again.secrets == ("sk-first-0000000001",)
    assert second.secrets == ("sk-second-000000002",)
    assert first.endpoint == again.endpoint != second.endpoint


def test_extra_header_secrets_join_the_endpoints_own_per_call() -> None:
    base = "http://127.0.0.1:9/v1"
    plain = _prepared(api_base=base, api_key="sk-plain-0000000001")
    extra = _prepared(
        api_base=base, api_key="sk-plain-0000000001", extra_headers={"X-Api-Key": "other-secret-12345"}
    )
    assert plain.secrets == ("sk-plain-0000000001",)
    assert extra.secrets == ("sk-plain-0000000001", "other-secret-12345")


def test_an_api_base_read_from_the_environment_is_read_on_every_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/one")
    assert _prepared(api_key="sk-env-000000000001").endpoint.api_base == "http://127.0.0.1:9/one"
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/two")
    assert _prepared(api_key="sk-env-000000000001").endpoint.api_base == "http://127.0.0.1:9/two"


def test_a_password_in_api_base_is_a_secret_of_every_call_and_masked() -> None:
    call = _prepared(api_base="http://user:pw-secret-0001@127.0.0.1:9/v1", api_key="sk-pass-0000000001")
    again = _prepared(api_base="http://user:pw-secret-0001@127.0.0.1:9/v1", api_key="sk-pass-0000000001")
    assert "pw-secret-0001" in call.secrets and call.secrets == again.secrets
    assert call.shown_api_base is not None and "pw-secret-0001" not in call.shown_api_base


def _long_way(headers: dict[str, str], secrets: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in upstream_headers(headers, secrets).items():
        lowered = name.lower()
        if lowered in _HOP_BY_HOP:
            continue
        if lowered.startswith(("x-ratelimit-", "anthropic-ratelimit-", "retry-after")):
            out[lowered] = value
        out["llm_provider-" + lowered] = value
    return out


@pytest.mark.parametrize(
    "headers",
    [
        {
            "Content-Type": "application/json",
            "X-RateLimit-Remaining-Requests": "9",
            "Date": "x",
            "x-request-id": "r",
        },
        {
            "retry-after": "2",
            "Set-Cookie": "s=1",
            "Authorization": "Bearer sk-leaked-000000001",
            "server": "s",
        },
        {
            "x-echo": "key sk-leaked-000000001 here",
            "x-url": "https://u:p@host/x",
            "Anthropic-RateLimit-Tokens": "5",
        },
        {},
    ],
)
def test_rate_limit_headers_in_one_pass_match_the_long_way(headers: dict[str, str]) -> None:
    secrets = ("sk-leaked-000000001",)
    assert rate_limit_headers(headers, secrets) == _long_way(headers, secrets)
    assert list(rate_limit_headers(headers, secrets)) == list(_long_way(headers, secrets))
    assert "sk-leaked-000000001" not in str(rate_limit_headers(headers, secrets))


def _usage(**fields: Any) -> dict[str, Any]:
    return {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500, **fields}


def test_cost_from_a_dict_usage_and_an_attribute_usage_agree() -> None:
    models = [None, "openai/gpt-4o-mini", "gpt-4o-mini"]
    from_dict = compute_cost(models, _usage(prompt_tokens_details={"cached_tokens": 200}))
    as_object = SimpleNamespace(**_usage(prompt_tokens_details={"cached_tokens": 200}))
    assert compute_cost(models, as_object) == from_dict
    entry = find_price("gpt-4o-mini")
    assert entry is not None
    price = entry[1]
    expected = (
        800 * price["input_cost_per_token"]
        + 200 * price["cache_read_input_token_cost"]
        + 500 * price["output_cost_per_token"]
    )
    assert from_dict.cost == pytest.approx(expected)
    assert from_dict == CostResult(from_dict.cost, from_dict.breakdown, "gpt-4o-mini")
    assert repr(from_dict) == repr(CostResult(from_dict.cost, from_dict.breakdown, "gpt-4o-mini"))


def test_a_partial_custom_price_is_merged_into_the_cached_entry_every_call() -> None:
    models = ["gpt-4o-mini"]
    usage = _usage(prompt_tokens_details={"cached_tokens": 400})
    plain = compute_cost(models, usage)
    custom = compute_cost(models, usage, {"cache_read_input_token_cost": 1e-6})
    assert custom.breakdown is not None and plain.breakdown is not None
    assert custom.breakdown["cache_read_cost"] == pytest.approx(400 * 1e-6)
    assert compute_cost(models, usage) == plain  # the table entry itself was not changed


def test_a_long_prompt_still_uses_the_tiered_prices() -> None:
    models = ["claude-sonnet-4-5"]
    entry = find_price("claude-sonnet-4-5")
    assert entry is not None
    price = entry[1]
    long = compute_cost(models, _usage(prompt_tokens=300_000, total_tokens=300_500))
    assert long.breakdown is not None
    assert long.breakdown["input_cost"] == pytest.approx(
        300_000 * price["input_cost_per_token_above_200k_tokens"]
    )
    short = compute_cost(models, _usage())
    assert short.breakdown is not None
    assert short.breakdown["input_cost"] == pytest.approx(1000 * price["input_cost_per_token"])
