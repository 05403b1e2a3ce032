"""Response caching (docs/caching.md): the behaviour every store shares, run on local, disk and Redis."""

from __future__ import annotations

import asyncio
import hashlib
import re

import orjson
import pytest
from helpers import MESSAGES, MODE_IDS, MODES, call, flush

import lmgate
from lmgate.caching.key import KEY_VERSION
from lmgate.testing import CapturingLogger

BACKENDS = ["local", "disk", "redis"]


class Clock:
    """A settable clock for TTL tests: no sleeping."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_cache(kind: str, request: pytest.FixtureRequest, tmp_path, **kwargs) -> lmgate.Cache:
    if kind == "redis":
        server = request.getfixturevalue("redis_server")
        server.flushall()
        return lmgate.Cache(type="redis", host=server.host, port=server.port, **kwargs)
    if kind == "disk":
        return lmgate.Cache(type="disk", disk_cache_dir=str(tmp_path / "cache"), **kwargs)
    return lmgate.Cache(**kwargs)


@pytest.fixture(params=BACKENDS)
def cache(request, tmp_path):
    c = make_cache(request.param, request, tmp_path)
    lmgate.cache = c
    yield c
    c.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(params=["local", "disk"])
def clocked_cache(request, tmp_path, clock):
    """A cache whose TTLs run on a settable clock (Redis keeps time itself)."""
    c = make_cache(request.param, request, tmp_path, clock=clock, ttl=10)
    lmgate.cache = c
    yield c
    c.close()


def text(result) -> str:
    if isinstance(result, list):
        return "".join(chunk.choices[0].delta.content or "" for chunk in result)
    return result.choices[0].message.content


def was_hit(result) -> bool:
    if isinstance(result, list):
        return False
    return bool(result._hidden_params.get("cache_hit"))


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_second_identical_call_is_served_from_the_cache(cache, mode, stream):
    """The same call twice: the second returns the first answer, whatever the entry point."""
    first = call(mode, stream, mock_response="first answer")
    second = call(mode, stream, mock_response="a different answer")
    assert text(first) == "first answer"
    assert text(second) == "first answer"
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["stores"], stats["errors"]) == (1, 1, 1, 0)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_plain_answer_serves_a_stream_and_a_stream_serves_a_plain_call(cache, mode):
    """`stream` is not in the key: a plain answer is replayed as chunks, an assembled stream as a response."""
    call(mode, False, mock_response="plain first")
    chunks = call(mode, True, mock_response="ignored")
    assert text(chunks) == "plain first"
    assert len(chunks) > 1 and chunks[-1].usage.total_tokens == 30
    other = [{"role": "user", "content": "stream first"}]
    call(mode, True, messages=other, mock_response="streamed answer")
    plain = call(mode, False, messages=other, mock_response="ignored")
    assert text(plain) == "streamed answer" and was_hit(plain)
    assert plain.usage.total_tokens == 30


@pytest.mark.parametrize(("mode", "stream"), MODES, ids=MODE_IDS)
def test_a_hit_fires_every_callback_like_a_real_call(cache, mode, stream):
    """On a hit every callback gets the chunk and success events of a real call (no pre/post: no API call is
    made, as the spec's cache sample expects), with cache_hit, zero cost, the saved cost and a marked id."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call(mode, stream, mock_response="hello world")
    flush()
    real = capture.hooks()
    capture.clear()
    call(mode, stream, mock_response="ignored")
    flush()
    assert capture.hooks() == [h for h in real if "pre_api_call" not in h and "post_api_call" not in h]
    success = [e for e in capture.events if e.hook.endswith("log_success_event")][-1]
    kwargs = success.kwargs
    assert kwargs["cache_hit"] is True
    assert kwargs["response_cost"] == 0
    payload = kwargs["standard_logging_object"]
    assert payload["cache_hit"] is True and payload["response_cost"] == 0
    assert payload["saved_cache_cost"] > 0
    assert re.fullmatch(r".+_cache_hit\d+", payload["id"])
    assert payload["cache_key"] and payload["hidden_params"]["cache_key"] == payload["cache_key"]
    assert all(e.kwargs["cache_hit"] is True for e in capture.events)


def test_saved_cost_is_what_the_real_call_cost(cache):
    """`saved_cache_cost` on a hit equals `response_cost` of the call that filled the entry."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call("sync", False, mock_response="hello world")
    call("sync", False, mock_response="hello world")
    flush()
    first, second = (e.kwargs["standard_logging_object"] for e in capture.of("log_success_event"))
    assert first["cache_hit"] is False and first["response_cost"] > 0
    assert second["saved_cache_cost"] == pytest.approx(first["response_cost"])
    assert first["cache_key"] == second["cache_key"]


def test_parameters_that_do_not_change_the_answer_stay_out_of_the_key(cache):
    """api_key, metadata, timeouts, retries and user do not change the key: the call is a hit."""
    call("sync", False, mock_response="kept")
    result = call(
        "sync",
        False,
        mock_response="not kept",
        api_key="sk-another-key-1234567890",
        metadata={"team": "search"},
        timeout=30,
        num_retries=2,
        user="someone",
    )
    assert text(result) == "kept" and was_hit(result)


@pytest.mark.parametrize(
    "change",
    [
        {"messages": [{"role": "user", "content": "Hi!"}]},
        {"messages": [{"role": "system", "content": "be brief"}, *MESSAGES]},
        {"model": "gpt-4o"},
        {"temperature": 0.5},
        {"max_tokens": 5},
        {"seed": 7},
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
        {"response_format": {"type": "json_object"}},
        {"api_base": "http://127.0.0.1:9/v1"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_parameters_that_change_the_answer_are_in_the_key(cache, change):
    """Messages, model, sampling parameters, tools, response format and server each change the key."""
    call("sync", False, mock_response="kept")
    result = call("sync", False, mock_response="fresh", **change)
    assert text(result) == "fresh" and not was_hit(result)


def test_the_key_is_the_documented_hash(cache):
    """The cache key is SHA-256 of the canonical JSON document described in docs/caching.md."""
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call("sync", False, mock_response="x", temperature=0.2, messages=[{"content": "Hi", "role": "user"}])
    flush()
    doc = {
        "v": KEY_VERSION,
        "kind": "chat",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "api_base": None,
        "api_version": None,
        "params": {"temperature": 0.2},
        "messages": [{"role": "user", "content": "Hi"}],
    }
    expected = hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()
    assert capture.of("log_success_event")[0].kwargs["standard_logging_object"]["cache_key"] == expected


def test_caching_false_bypasses_the_cache(cache):
    """`caching=False` neither reads nor writes, even with the cache on by default."""
    call("sync", False, mock_response="one", caching=False)
    assert text(call("sync", False, mock_response="two")) == "two"
    assert text(call("sync", False, mock_response="three", caching=False)) == "three"


def test_default_off_mode_caches_only_calls_that_ask(request, tmp_path):
    """With mode="default_off" only `caching=True` or `cache={"use-cache": True}` calls use the cache."""
    lmgate.cache = c = lmgate.Cache(mode="default_off")
    call("sync", False, mock_response="one")
    assert text(call("sync", False, mock_response="two", caching=True)) == "two"
    assert text(call("sync", False, mock_response="three")) == "three"
    assert text(call("sync", False, mock_response="four", caching=True)) == "two"
    assert text(call("sync", False, mock_response="five", cache={"use-cache": True})) == "two"
    assert c.stats()["hits"] == 2


def test_no_cache_skips_the_read_but_refreshes_the_entry(cache):
    """`cache={"no-cache": True}` calls the model and stores the fresh answer for later calls."""
    call("sync", False, mock_response="old")
    assert text(call("sync", False, mock_response="new", cache={"no-cache": True})) == "new"
    assert text(call("sync", False, mock_response="later")) == "new"


def test_no_store_reads_but_never_writes(cache):
    """`cache={"no-store": True}` may be served from the cache but never stores its answer."""
    assert text(call("sync", False, mock_response="a", cache={"no-store": True})) == "a"
    assert text(call("sync", False, mock_response="b")) == "b"
    assert text(call("sync", False, mock_response="c", cache={"no-store": True})) == "b"


def test_default_ttl_expires_entries(clocked_cache, clock):
    """An entry lives for the cache's TTL, then the call goes to the model again."""
    call("sync", False, mock_response="early")
    clock.now += 9
    assert text(call("sync", False, mock_response="x")) == "early"
    clock.now += 2
    assert text(call("sync", False, mock_response="late")) == "late"


def test_per_call_ttl_overrides_the_default(clocked_cache, clock):
    """`cache={"ttl": 60}` keeps that call's answer for 60 s instead of the default 10 s."""
    call("sync", False, mock_response="long", cache={"ttl": 60})
    clock.now += 30
    assert text(call("sync", False, mock_response="x")) == "long"
    clock.now += 31
    assert text(call("sync", False, mock_response="fresh")) == "fresh"


def test_s_maxage_refuses_entries_older_than_asked(clocked_cache, clock):
    """`cache={"s-maxage": 5}` accepts only an entry stored less than 5 s ago."""
    call("sync", False, mock_response="stored")
    clock.now += 6
    assert text(call("sync", False, mock_response="x", cache={"s-maxage": 60})) == "stored"
    assert text(call("sync", False, mock_response="newer", cache={"s-maxage": 5})) == "newer"


def test_namespaces_keep_entries_apart(cache):
    """A per-call namespace reads and writes its own entries."""
    call("sync", False, mock_response="default ns")
    assert text(call("sync", False, mock_response="team ns", cache={"namespace": "team-a"})) == "team ns"
    assert text(call("sync", False, mock_response="x", cache={"namespace": "team-a"})) == "team ns"
    assert text(call("sync", False, mock_response="x")) == "default ns"


def test_clear_empties_the_namespace(cache):
    """`cache.clear()` drops this cache's entries."""
    call("sync", False, mock_response="one")
    cache.clear()
    assert text(call("sync", False, mock_response="two")) == "two"


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"cache": {"no_cache": True}}, "no_cache"),
        ({"cache": {"ttl": -1}}, "ttl"),
        ({"cache": {"no-store": "yes"}}, "no-store"),
        ({"cache": "no-cache"}, "cache"),
        ({"caching": "yes"}, "caching"),
    ],
)
def test_bad_per_call_controls_raise_an_error_naming_the_key(cache, kwargs, named):
    """A wrong `cache={...}` or `caching=` raises BadRequestError naming the offending key."""
    with pytest.raises(lmgate.BadRequestError, match=re.escape(named)):
        call("sync", False, mock_response="x", **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"type": "memcached"}, "type"),
        ({"mode": "sometimes"}, "mode"),
        ({"ttl": 0}, "ttl"),
        ({"type": "disk"}, "disk_cache_dir"),
        ({"type": "redis", "host": "127.0.0.1", "port": "six"}, "port"),
        ({"type": "redis", "url": "http://127.0.0.1"}, "url"),
        ({"namespace": ""}, "namespace"),
        ({"supported_call_types": ["transcription"]}, "supported_call_types"),
        ({"max_items": 0}, "max_items"),
    ],
)
def test_bad_cache_configuration_raises_naming_the_parameter(kwargs, named):
    """`Cache(...)` validates its parameters once, with a message naming the parameter."""
    with pytest.raises(ValueError, match=re.escape(named)):
        lmgate.Cache(**kwargs)


def test_a_hit_is_a_fresh_object(cache):
    """Changing a response you got never changes what the next caller gets."""
    call("sync", False, mock_response="pristine")
    hit = call("sync", False, mock_response="x")
    hit.choices[0].message.content = "scribbled"
    assert text(call("sync", False, mock_response="x")) == "pristine"


def test_tool_calls_come_back_typed(cache):
    """A cached answer with tool calls reads the same by attribute after a hit."""
    tool = {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": 1}'}}
    call("sync", False, mock_response="", mock_tool_calls=[tool])
    hit = call("sync", False, mock_response="x")
    assert was_hit(hit)
    assert hit.choices[0].message.tool_calls[0].function.name == "lookup"
    assert hit.choices[0].finish_reason == "tool_calls"
    chunks = call("sync", True, mock_response="x")
    streamed = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert streamed[0][0].function.arguments == '{"q": 1}'


def test_failures_are_never_cached(cache):
    """A failed call stores nothing: the next call reaches the model."""
    with pytest.raises(lmgate.RateLimitError):
        call("sync", False, mock_response="litellm.RateLimitError")
    assert text(call("sync", False, mock_response="ok")) == "ok"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_abandoned_stream_is_not_cached(cache, mode):
    """A stream left before its end stores nothing (the answer is incomplete)."""

    if mode == "sync":
        stream = lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, stream=True, mock_response="hello world")
        next(iter(stream))
        stream.close()
    else:

        async def run():
            stream = await lmgate.acompletion(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, mock_response="hello world"
            )
            await stream.__anext__()
            await stream.aclose()

        asyncio.run(run())
    assert text(call(mode, False, mock_response="complete")) == "complete"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_embeddings_are_cached_per_input(cache, mode):
    """An embedding call is a hit when every input is cached, whatever the batch it came from."""

    def embed(inputs):
        if mode == "sync":
            return lmgate.embedding(model="text-embedding-3-small", input=inputs, mock_response="x")

        async def run():
            return await lmgate.aembedding(model="text-embedding-3-small", input=inputs, mock_response="x")

        return asyncio.run(run())

    first = embed(["alpha", "beta"])
    swapped = embed(["beta", "alpha"])
    assert swapped._hidden_params["cache_hit"] is True
    assert swapped.data[0].embedding == first.data[1].embedding
    assert swapped.data[1].embedding == first.data[0].embedding
    assert [d.index for d in swapped.data] == [0, 1]
    assert swapped.usage.prompt_tokens == first.usage.prompt_tokens
    partial = embed(["alpha", "gamma"])
    assert partial._hidden_params["cache_hit"] is False
    single = embed("gamma")
    assert single._hidden_params["cache_hit"] is True


def test_real_provider_answers_are_cached(cache, fake_provider):
    """A real HTTP answer is stored; the repeat makes no request, streamed or not."""
    kwargs = {"model": "openai/gpt-4o-mini", "api_base": fake_provider.base_url + "/v1", "api_key": "sk-test-1234567890abcdef"}
    first = lmgate.completion(messages=MESSAGES, **kwargs)
    again = lmgate.completion(messages=MESSAGES, **kwargs)
    chunks = list(lmgate.completion(messages=MESSAGES, stream=True, **kwargs))
    assert len(fake_provider.requests) == 1
    assert text(again) == text(first) == text(chunks)
    other = [{"role": "user", "content": "stream me"}]
    streamed = list(lmgate.completion(messages=other, stream=True, **kwargs))
    plain = lmgate.completion(messages=other, **kwargs)
    assert len(fake_provider.requests) == 2
    assert text(plain) == text(streamed) and was_hit(plain)
