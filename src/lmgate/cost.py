"""The exact cost of a call, from the provider's usage and a shipped price table.

Prices come from ``prices.json`` (USD per token: input, output, cached-input reads and, for
Anthropic, cache writes), or from custom prices given per call or per deployment
(``input_cost_per_token``, ``output_cost_per_token``, …), which win. A model without a price
costs ``None`` with the reason stated, never a silent 0.

Reasoning tokens (``completion_tokens_details.reasoning_tokens``, counted inside
``completion_tokens``) cost ``output_cost_per_reasoning_token`` where a vendor prices them apart,
else the output price. A cost the provider reports in the usage (OpenRouter, Perplexity) is
taken as it is. Models priced by prompt length (Gemini 2.5 Pro) carry
``*_above_200k_tokens`` prices, used when the prompt is longer than 200,000 tokens. Keys the
code does not know (``as_of``, ``source``, ``provider``) are ignored. An entry whose price could
not be confirmed carries no prices and ``price_unknown`` (why): its calls cost ``None`` with that
reason.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import orjson

PRICE_KEYS = (
    "input_cost_per_token",
    "output_cost_per_token",
    "cache_read_input_token_cost",
    "cache_creation_input_token_cost",
)
LONG_PROMPT_TOKENS = 200_000  # where tiered prices (``*_above_200k_tokens``) begin
# Bedrock cross-region inference profile ids: ``us.anthropic.claude-…`` is priced as ``anthropic.claude-…``
_CROSS_REGION = re.compile(r"^(?:us|eu|apac|global|us-gov|jp|au|ca)\.(?=[a-z]+\.)")
_DATE_SUFFIX = re.compile(r"[-@](\d{8}|\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True)
class CostResult:
    """A cost, how it splits, and which price it used (or why there is none)."""

    cost: float | None
    breakdown: dict[str, float] | None
    price_key: str | None
    reason: str | None = None


@lru_cache(maxsize=1)
def price_table() -> dict[str, dict[str, Any]]:
    data = orjson.loads((Path(__file__).parent / "prices.json").read_bytes())
    return data["models"]  # type: ignore[no-any-return]


@lru_cache(maxsize=2048)
def find_price(model: str) -> tuple[str, dict[str, Any]] | None:
    """The price entry for a model name, trying provider prefixes and date suffixes away."""
    table = price_table()
    name = model
    for _ in range(4):
        if name in table:
            return name, table[name]
        stripped = _DATE_SUFFIX.sub("", name)
        if stripped != name and stripped in table:
            return stripped, table[stripped]
        if "/" in name:
            name = name.split("/", 1)[1]
            continue
        base = _CROSS_REGION.sub("", name)  # a Bedrock cross-region inference profile: its base model's price
        if base != name:
            name = base
            continue
        break
    return None


def custom_prices(params: dict[str, Any] | None) -> dict[str, float] | None:
    if not params:
        return None
    prices = {k: float(params[k]) for k in PRICE_KEYS if params.get(k) is not None}
    return prices or None


def compute_cost(models: list[str | None], usage: Any, custom: dict[str, float] | None = None) -> CostResult:
    """Cost of ``usage`` at the first known price among ``models`` (or the custom prices)."""
    if usage is None:
        return CostResult(None, None, None, "the response carries no usage")
    # a dict's own get (a C call) where the usage is a dict, as it nearly always is
    get = usage.get if isinstance(usage, dict) else functools.partial(_get, usage)
    reported = reported_cost(usage) if get("cost") is not None else None
    if reported is not None and not custom:
        return CostResult(reported, {"total_cost": reported}, "reported by the provider")
    price: dict[str, Any] | None = None
    key: str | None = None
    rates: tuple[float, float, float, float, float] | None = None  # the table entry's, converted once
    if custom and "input_cost_per_token" in custom and "output_cost_per_token" in custom:
        price, key = custom, "custom"
    else:
        found = _first_price(tuple(models))
        if found is not None:
            key, price, rates = found
            if price.get("input_cost_per_token") is None:
                # listed, but its price could not be confirmed: None with the entry's reason, never 0
                # (custom prices for both input and output were taken above)
                return CostResult(
                    None,
                    None,
                    None,
                    f"no confirmed price for {key!r}: {price.get('price_unknown') or 'not published'}; "
                    "add input_cost_per_token and output_cost_per_token to the call or deployment",
                )
            if custom:
                price, rates = {**price, **custom}, None
    if price is None:
        names = ", ".join(repr(m) for m in models if m)
        return CostResult(
            None,
            None,
            None,
            f"no price for {names}: add input_cost_per_token and output_cost_per_token to the call or deployment",
        )
    try:
        # counts are ints nearly always: int() (a type call) only for anything else (issue 18)
        prompt = get("prompt_tokens") or 0
        if type(prompt) is not int:
            prompt = int(prompt)
        completion = get("completion_tokens") or 0
        if type(completion) is not int:
            completion = int(completion)
        details = get("prompt_tokens_details")
        cached = int(_get(details, "cached_tokens") or 0) if details else 0
        created = int(_get(details, "cache_creation_tokens") or 0) if details else 0
        completion_details = get("completion_tokens_details")
        reasoning = (
            min(completion, int(_get(completion_details, "reasoning_tokens") or 0))
            if completion_details
            else 0
        )
    except (TypeError, ValueError) as error:
        # a server's broken usage must not fail a call whose answer arrived: no cost, and why
        return CostResult(
            None, None, None, f"the response's usage has a token count that is not a number ({error})"
        )
    if prompt > LONG_PROMPT_TOKENS:
        rates = _rates(_long_prompt_prices(price))
    elif rates is None:
        rates = _rates(price)
    in_price, out_price, cache_read_price, cache_creation_price, reasoning_price = rates
    plain_input = prompt - cached - created
    if plain_input < 0:  # max(0, …) without its call
        plain_input = 0
    input_cost = plain_input * in_price
    cache_read_cost = cached * cache_read_price
    cache_creation_cost = created * cache_creation_price
    output_cost = (completion - reasoning) * out_price
    reasoning_cost = reasoning * reasoning_price
    total = input_cost + cache_read_cost + cache_creation_cost + output_cost + reasoning_cost
    breakdown = {
        "input_cost": input_cost,
        "cache_read_cost": cache_read_cost,
        "cache_creation_cost": cache_creation_cost,
        "output_cost": output_cost,
        "reasoning_cost": reasoning_cost,
        "total_cost": total,
    }
    return _cost_result(total, breakdown, key)


def _cost_result(cost: float, breakdown: dict[str, float], price_key: str | None) -> CostResult:
    """``CostResult(cost, breakdown, price_key)``, the same object, without the frozen dataclass's
    four ``object.__setattr__`` calls (every priced call makes one)."""
    result = object.__new__(CostResult)
    fields = result.__dict__
    fields["cost"] = cost
    fields["breakdown"] = breakdown
    fields["price_key"] = price_key
    fields["reason"] = None
    return result


@lru_cache(maxsize=2048)
def _first_price(
    models: tuple[str | None, ...],
) -> tuple[str, dict[str, Any], tuple[float, float, float, float, float]] | None:
    """The price of the first of ``models`` that has one, with its rates: the same few candidates
    every call of a deployment, so looked up once (``find_price`` entries are never changed in place)."""
    unconfirmed = None  # a listed model whose price is not confirmed: its reason, if none is priced
    for model in models:
        if model:
            found = find_price(model)
            if found is not None:
                if found[1].get("input_cost_per_token") is None:
                    unconfirmed = unconfirmed or (found[0], found[1], None)
                    continue
                return found[0], found[1], _rates(found[1])
    return unconfirmed  # type: ignore[return-value]


def _rates(price: dict[str, Any]) -> tuple[float, float, float, float, float]:
    """(input, output, cache read, cache creation, reasoning) USD per token of a price entry."""
    in_price = float(price["input_cost_per_token"])
    out_price = float(price.get("output_cost_per_token", 0.0))
    return (
        in_price,
        out_price,
        float(price.get("cache_read_input_token_cost", in_price)),
        float(price.get("cache_creation_input_token_cost", in_price)),
        float(price.get("output_cost_per_reasoning_token", out_price)),
    )


def reported_cost(usage: Any) -> float | None:
    """The call's cost in USD as the provider reported it in its usage, when it does.

    OpenRouter sends ``usage.cost`` (the credits charged, USD); Perplexity sends ``usage.cost``
    as an object whose ``total_cost`` includes its per-request search fee, which no token price
    can reproduce. Either is the exact figure, so it wins over the table (custom prices win
    over both).
    """
    value = _get(usage, "cost")
    if isinstance(value, dict):
        value = value.get("total_cost")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _long_prompt_prices(price: dict[str, Any]) -> dict[str, Any]:
    """The prices for a prompt past 200k tokens, where the entry has them."""
    out = dict(price)
    for key in (
        "input_cost_per_token",
        "output_cost_per_token",
        "cache_read_input_token_cost",
        "cache_creation_input_token_cost",  # Claude's long-context cache writes (Sonnet 4 and 4.5)
    ):
        tiered = price.get(f"{key}_above_200k_tokens")
        if tiered is not None:
            out[key] = tiered
    return out


def _get(obj: Any, name: str) -> Any:
    if type(obj) is dict or isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def completion_cost(completion_response: Any = None, model: str | None = None, **custom: Any) -> float:
    """The cost in USD of a response returned by ``completion``/``embedding`` (or a dict shaped like one).

    Raises ``ValueError`` naming the model when no price is known.
    """
    hidden = getattr(completion_response, "_hidden_params", None) or {}
    prices = custom_prices(custom) or hidden.get("custom_pricing")
    response_model = completion_response.get("model") if isinstance(completion_response, dict) else None
    candidates = [model, hidden.get("model"), response_model]
    usage = completion_response.get("usage") if isinstance(completion_response, dict) else None
    result = compute_cost(candidates, usage, prices)
    if result.cost is None:
        raise ValueError(result.reason)
    return result.cost
