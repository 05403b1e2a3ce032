"""The OpenAI-compatible clouds (``groq/…``, ``deepseek/…``, ``openrouter/…``, …): one table, tested row by row."""

from __future__ import annotations

import json

import pytest
from fakes import DEFAULT_TEXT, Reply
from helpers import MESSAGES, MODE_IDS, MODES, call, flush

import lmgate
from lmgate.cost import find_price
from lmgate.providers import PROVIDERS, resolve
from lmgate.providers.compatible import CLOUDS
from lmgate.testing import CapturingLogger

KEY = "sk-cloud-test-0123456789"
ROW_IDS = [c.prefix for c in CLOUDS]


@pytest.fixture
def fake_provider(fake_provider_session):
    fake_provider_session.reset()
    return fake_provider_session


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for cloud in CLOUDS:
        for name in (*cloud.key_env, *cloud.base_env):
            monkeypatch.delenv(name, raising=False)


def test_every_prefix_of_the_issue_is_in_the_table():
    wanted = {"mistral", "groq", "xai", "deepseek", "together_ai", "fireworks_ai", "openrouter", "perplexity",
              "cerebras", "deepinfra", "nvidia_nim", "ollama_chat", "lm_studio", "hosted_vllm"}  # fmt: skip
    assert wanted <= set(ROW_IDS)
    assert all(PROVIDERS[p].name == p for p in wanted)


@pytest.mark.parametrize("cloud", CLOUDS, ids=ROW_IDS)
def test_default_base_url_and_key_variable(cloud, monkeypatch):
    """Without api_base or a base variable, a prefix resolves to its vendor's base URL with the key from its variable."""
    monkeypatch.setenv(cloud.key_env[0], "from-env-" + cloud.prefix)
    provider, name = resolve(f"{cloud.prefix}/some/model-1")
    assert (provider.name, name) == (cloud.prefix, "some/model-1")
    if cloud.api_base is None:  # a self-hosted server has no default: the error names the variable
        with pytest.raises(lmgate.BadRequestError) as info:
            provider.endpoint(name, None, None, None)
        assert cloud.base_env[0] in str(info.value)
        return
    ep = provider.endpoint(name, None, None, None)
    assert (ep.api_base, ep.api_key) == (cloud.api_base.rstrip("/"), "from-env-" + cloud.prefix)
    req = provider.chat_request(ep, MESSAGES, {}, stream=False)
    assert req.url == cloud.api_base.rstrip("/") + "/chat/completions"
    assert req.headers["Authorization"] == "Bearer from-env-" + cloud.prefix


@pytest.mark.parametrize("cloud", CLOUDS, ids=ROW_IDS)
@pytest.mark.parametrize("where", ["env", "call"])
def test_request_reaches_the_base_with_the_key(fake_provider, monkeypatch, cloud, where):
    """The base from the prefix's variable (or api_base=) and the key from its variable reach the server."""
    monkeypatch.setenv(cloud.key_env[0], KEY)
    extra = {}
    if where == "env":
        monkeypatch.setenv(cloud.base_env[0], fake_provider.base_url + "/v1")
    else:
        extra["api_base"] = fake_provider.base_url + "/v1"
    r = lmgate.completion(model=f"{cloud.prefix}/org/model-x", messages=MESSAGES, **extra)
    assert r.choices[0].message.content == DEFAULT_TEXT
    req = fake_provider.requests[-1]
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == f"Bearer {KEY}"
    assert req.json["model"] == "org/model-x"
    assert r._hidden_params["custom_llm_provider"] == cloud.prefix


@pytest.mark.parametrize("cloud", [c for c in CLOUDS if c.requires_key], ids=lambda c: c.prefix)
def test_missing_key_names_the_variable(cloud):
    with pytest.raises(lmgate.AuthenticationError) as info:
        lmgate.completion(model=f"{cloud.prefix}/m", messages=MESSAGES)
    assert cloud.key_env[0] in str(info.value)


@pytest.mark.parametrize("cloud", [c for c in CLOUDS if not c.requires_key], ids=lambda c: c.prefix)
def test_local_servers_need_no_key(fake_provider, cloud):
    lmgate.completion(model=f"{cloud.prefix}/m", messages=MESSAGES, api_base=fake_provider.base_url + "/v1")
    assert "authorization" not in fake_provider.requests[-1].headers


# ---------------------------------------------------------------- reasoning content


def _deepseek_message(usage=None):
    return {
        "id": "ds-1",
        "object": "chat.completion",
        "created": 1,
        "model": "deepseek-reasoner",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "9.11 < 9.8",
                    "reasoning_content": "Compare decimals.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": usage
        or {
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "total_tokens": 150,
            "prompt_cache_hit_tokens": 60,
            "prompt_cache_miss_tokens": 40,
            "completion_tokens_details": {"reasoning_tokens": 30},
        },
    }


def _deepseek_events():
    base = {"id": "ds-1", "object": "chat.completion.chunk", "created": 1, "model": "deepseek-reasoner"}

    def chunk(delta, finish=None, usage=None):
        obj = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if usage:
            obj["usage"] = usage
        return "data: " + json.dumps(obj) + "\n\n"

    return [
        chunk({"role": "assistant", "content": None, "reasoning_content": ""}),
        chunk({"content": None, "reasoning_content": "Compare "}),
        chunk({"content": None, "reasoning_content": "decimals."}),
        chunk({"content": "9.11 < 9.8", "reasoning_content": None}),
        chunk({"content": ""}, "stop", _deepseek_message()["usage"]),
        "data: [DONE]\n\n",
    ]


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_deepseek_reasoning_content_round_trip_and_exact_cost(fake_provider, mode, stream):
    """reasoning_content comes back on the message (and on deltas), cache hits are cached tokens, the cost is exact;
    sent back in the history, reasoning_content is left out (DeepSeek refuses it)."""
    fake_provider.enqueue(Reply(events=_deepseek_events()) if stream else Reply(json=_deepseek_message()))
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    result = call(
        mode, stream, model="deepseek/deepseek-reasoner", api_base=fake_provider.base_url, api_key=KEY
    )
    if stream:
        assert (
            "".join(c.choices[0].delta.get("reasoning_content") or "" for c in result) == "Compare decimals."
        )
        assert "".join(c.choices[0].delta.content or "" for c in result) == "9.11 < 9.8"
        usage = result[-1].usage
    else:
        assert result.choices[0].message.reasoning_content == "Compare decimals."
        usage = result.usage
    assert usage.prompt_tokens_details["cached_tokens"] == 60
    flush()
    (event,) = capture.of("log_success_event", "async_log_success_event")
    message = event.response_obj.choices[0].message
    assert (message.content, message.reasoning_content) == ("9.11 < 9.8", "Compare decimals.")
    price = find_price("deepseek-reasoner")[1]
    expected = (
        40 * price["input_cost_per_token"]
        + 60 * price["cache_read_input_token_cost"]
        + 50 * price["output_cost_per_token"]
    )
    assert event.kwargs["response_cost"] == pytest.approx(expected, rel=1e-12)
    # the next turn: the assistant message goes back without reasoning_content
    lmgate.completion(
        model="deepseek/deepseek-reasoner",
        messages=[*MESSAGES, dict(message), {"role": "user", "content": "Sure?"}],
        api_base=fake_provider.base_url,
        api_key=KEY,
    )
    sent = fake_provider.requests[-1].json["messages"][1]
    assert sent["content"] == "9.11 < 9.8" and "reasoning_content" not in sent


@pytest.mark.parametrize("stream", [False, True])
def test_openrouter_reasoning_becomes_reasoning_content(fake_provider, stream):
    if stream:
        base = {
            "id": "or-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "deepseek/deepseek-r1",
        }
        events = [
            "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning": "Hmm."}}]}) + "\n\n",
            "data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": "Yes."}, "finish_reason": "stop"}]}) + "\n\n",
            "data: [DONE]\n\n",
        ]  # fmt: skip
        fake_provider.enqueue(Reply(events=events))
        chunks = list(lmgate.completion(model="openrouter/deepseek/deepseek-r1", messages=MESSAGES, stream=True,
                                        api_base=fake_provider.base_url, api_key=KEY))  # fmt: skip
        assert chunks[0].choices[0].delta["reasoning_content"] == "Hmm."
        return
    body = _deepseek_message()
    body["choices"][0]["message"] = {"role": "assistant", "content": "Yes.", "reasoning": "Hmm."}
    fake_provider.enqueue(Reply(json=body))
    r = lmgate.completion(
        model="openrouter/deepseek/deepseek-r1",
        messages=MESSAGES,
        api_base=fake_provider.base_url,
        api_key=KEY,
    )
    assert r.choices[0].message.reasoning_content == "Hmm."


def test_xai_reasoning_tokens_are_folded_into_completion_and_priced(fake_provider):
    """xAI counts reasoning tokens beside completion_tokens (but in total_tokens): folded in, as OpenAI counts them."""
    body = _deepseek_message(
        {
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 35,
            "completion_tokens_details": {"reasoning_tokens": 20},
        }
    )
    fake_provider.enqueue(Reply(json=body))
    r = lmgate.completion(
        model="xai/grok-3-mini", messages=MESSAGES, api_base=fake_provider.base_url, api_key=KEY
    )
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (10, 25, 35)
    price = find_price("grok-3-mini")[1]
    expected = 10 * price["input_cost_per_token"] + 25 * price["output_cost_per_token"]
    assert r._hidden_params["response_cost"] == pytest.approx(expected, rel=1e-12)


def test_reasoning_tokens_priced_at_their_own_rate_where_the_table_has_one():
    """A price entry with output_cost_per_reasoning_token prices reasoning tokens apart from the rest of the output."""
    from lmgate.cost import compute_cost

    usage = {
        "prompt_tokens": 10,
        "completion_tokens": 30,
        "completion_tokens_details": {"reasoning_tokens": 20},
    }
    custom = {
        "input_cost_per_token": 1.0,
        "output_cost_per_token": 2.0,
        "output_cost_per_reasoning_token": 5.0,
    }
    result = compute_cost([None], usage, custom)
    assert result.cost == 10 * 1.0 + 10 * 2.0 + 20 * 5.0
    assert (result.breakdown["output_cost"], result.breakdown["reasoning_cost"]) == (20.0, 100.0)


# ---------------------------------------------------------------- parameters


@pytest.mark.parametrize(
    ("model", "param"),
    [
        ("groq/llama-3.3-70b-versatile", {"n": 2}),
        ("groq/llama-3.3-70b-versatile", {"logprobs": True}),
        ("perplexity/sonar", {"tools": [{"type": "function", "function": {"name": "f"}}]}),
        ("perplexity/sonar", {"n": 2}),
        ("mistral/mistral-small-latest", {"logit_bias": {"1": 1}}),
    ],
)
def test_refused_parameter_names_it_and_the_provider(fake_provider, model, param):
    with pytest.raises(lmgate.UnsupportedParamsError) as info:
        lmgate.completion(
            model=model, messages=MESSAGES, **param, api_base=fake_provider.base_url, api_key=KEY
        )
    name = next(iter(param))
    assert name in str(info.value) and model.split("/")[0] in str(info.value)
    assert fake_provider.requests == []
    lmgate.completion(model=model, messages=MESSAGES, **param, drop_params=True, temperature=0.3,
                      api_base=fake_provider.base_url, api_key=KEY)  # fmt: skip
    body = fake_provider.requests[-1].json
    assert name not in body and body["temperature"] == 0.3


def test_what_a_vendor_takes_passes_through(fake_provider):
    """Parameters outside a row's refusals (vendor extras too) are sent as given; n=1 is fine where n>1 is not."""
    lmgate.completion(model="groq/llama-3.1-8b-instant", messages=MESSAGES, n=1, reasoning_format="parsed",
                      api_base=fake_provider.base_url, api_key=KEY)  # fmt: skip
    body = fake_provider.requests[-1].json
    assert (body["n"], body["reasoning_format"]) == (1, "parsed")


def test_mistral_seed_is_random_seed(fake_provider):
    lmgate.completion(model="mistral/mistral-small-latest", messages=MESSAGES, seed=7,
                      api_base=fake_provider.base_url, api_key=KEY)  # fmt: skip
    body = fake_provider.requests[-1].json
    assert body["random_seed"] == 7 and "seed" not in body


# ---------------------------------------------------------------- costs the provider reports


def test_openrouter_asks_for_usage_accounting_and_its_reported_cost_is_the_cost(fake_provider):
    """OpenRouter is asked for usage accounting; the cost it reports (usage.cost) is the call's cost."""
    body = _deepseek_message(
        {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15, "cost": 0.00123}
    )
    fake_provider.enqueue(Reply(json=body))
    r = lmgate.completion(
        model="openrouter/deepseek/deepseek-chat",
        messages=MESSAGES,
        api_base=fake_provider.base_url,
        api_key=KEY,
    )
    assert fake_provider.requests[-1].json["usage"] == {"include": True}
    assert r._hidden_params["response_cost"] == 0.00123
    lmgate.completion(model="openrouter/x/y", messages=MESSAGES, usage={"include": False},
                      api_base=fake_provider.base_url, api_key=KEY)  # fmt: skip
    assert fake_provider.requests[-1].json["usage"] == {"include": False}


def test_perplexity_reported_total_cost_includes_the_request_fee(fake_provider):
    usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15,
             "cost": {"input_tokens_cost": 0.00001, "output_tokens_cost": 0.000005, "request_cost": 0.005, "total_cost": 0.005015}}  # fmt: skip
    fake_provider.enqueue(Reply(json=_deepseek_message(usage)))
    r = lmgate.completion(
        model="perplexity/sonar", messages=MESSAGES, api_base=fake_provider.base_url, api_key=KEY
    )
    assert r._hidden_params["response_cost"] == 0.005015


def test_without_a_reported_cost_or_a_price_the_cost_is_none_with_its_reason(fake_provider):
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    r = lmgate.completion(
        model="perplexity/sonar", messages=MESSAGES, api_base=fake_provider.base_url, api_key=KEY
    )
    assert r._hidden_params["response_cost"] is None
    flush()
    (event,) = capture.of("log_success_event")
    reason = event.kwargs["standard_logging_object"]["response_cost_failure_debug_info"]["error_str"]
    assert "sonar" in reason and "input_cost_per_token" in reason


def test_a_cached_stream_replays_reasoning_content(fake_provider):
    """A streamed cache hit of a reasoning answer carries its reasoning_content, as the live stream did."""
    from lmgate.caching import Cache

    lmgate.cache = Cache(type="local")
    fake_provider.enqueue(Reply(events=_deepseek_events()))
    kwargs = dict(
        model="deepseek/deepseek-reasoner", messages=MESSAGES, api_base=fake_provider.base_url, api_key=KEY
    )
    live = list(lmgate.completion(stream=True, caching=True, **kwargs))
    replay = list(lmgate.completion(stream=True, caching=True, **kwargs))
    assert len(fake_provider.requests) == 1
    for chunks in (live, replay):
        assert (
            "".join(c.choices[0].delta.get("reasoning_content") or "" for c in chunks) == "Compare decimals."
        )
