"""The Redis cache: passwords, URLs, namespaces and TTLs on the server, sharing between processes,
and calls that go on uncached when Redis is down or slow."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import subprocess
import sys
import textwrap

import pytest
from fakes import RedisServer
from helpers import MESSAGES, call, flush

import lmgate
from lmgate.testing import CapturingLogger

PASSWORD_SERVER_SECRET = "s3cret-pw"


class Clock:
    """A settable clock, so the pause after a failure ends without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def text(result) -> str:
    if isinstance(result, list):  # a consumed stream
        return "".join(chunk.choices[0].delta.content or "" for chunk in result)
    return result.choices[0].message.content


@pytest.fixture
def own_redis():
    """A server of this test's own, free to stop and pause."""
    with RedisServer() as server:
        yield server


def test_password_protected_server_with_host_port_password(redis_server_with_password):
    """host, port and password reach a server that requires a password; the second call is a hit."""
    server = redis_server_with_password
    server.flushall()
    lmgate.cache = cache = lmgate.Cache(type="redis", host=server.host, port=server.port, password=server.password)
    call("sync", False, mock_response="secret-safe")
    assert text(call("async", False, mock_response="x")) == "secret-safe"
    assert cache.stats()["hits"] == 1 and cache.stats()["errors"] == 0
    assert server.password not in repr(cache)
    cache.close()


def test_wrong_password_goes_on_uncached_and_never_leaks_it(redis_server_with_password, caplog):
    """A rejected password is a store failure: calls succeed uncached, the error is counted, the password is not logged."""
    server = redis_server_with_password
    wrong = "definitely-wrong-password"
    lmgate.cache = cache = lmgate.Cache(type="redis", host=server.host, port=server.port, password=wrong)
    with caplog.at_level(logging.WARNING, logger="lmgate.cache"):
        assert text(call("sync", False, mock_response="one")) == "one"
        assert text(call("sync", False, mock_response="two")) == "two"
    assert cache.stats()["errors"] >= 1 and cache.stats()["hits"] == 0
    assert len(caplog.records) == 1
    assert wrong not in caplog.text and server.password not in caplog.text
    cache.close()


def test_url_namespace_and_ttl_land_on_the_server(redis_server_with_password):
    """`url=` (password inside), `namespace=` and `ttl=` decide the key's name and expiry in Redis."""
    server = redis_server_with_password
    server.flushall()
    lmgate.cache = cache = lmgate.Cache(type="redis", url=server.url, namespace="team-a", ttl=120)
    capture = CapturingLogger()
    lmgate.callbacks = [capture]
    call("sync", False, mock_response="stored")
    call("sync", False, mock_response="short", messages=[{"role": "user", "content": "brief"}], cache={"ttl": 5})
    flush()
    first, second = (e.kwargs["standard_logging_object"]["cache_key"] for e in capture.of("log_success_event"))
    assert 110_000 < server.command("PTTL", f"team-a:{first}") <= 120_000
    assert 0 < server.command("PTTL", f"team-a:{second}") <= 5_000
    assert sorted(server.command("KEYS", "*")) == sorted([f"team-a:{first}".encode(), f"team-a:{second}".encode()])
    cache.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    import lmgate

    url, answer, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    lmgate.cache = lmgate.Cache(type="redis", url=url)
    messages = [{"role": "user", "content": "shared between processes"}]
    if mode == "async":
        r = asyncio.run(lmgate.acompletion(model="gpt-4o-mini", messages=messages, mock_response=answer))
    else:
        r = lmgate.completion(model="gpt-4o-mini", messages=messages, mock_response=answer)
    print(json.dumps({"content": r.choices[0].message.content, "hit": r._hidden_params["cache_hit"],
                      "stats": lmgate.cache.stats()}))
    """
)


def _child(url: str, answer: str, mode: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, url, answer, mode], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


@pytest.mark.parametrize("second_mode", ["sync", "async"])
def test_two_processes_sharing_redis_share_the_cache(redis_server_with_password, second_mode):
    """An answer stored by one process is a hit in another process using the same Redis."""
    server = redis_server_with_password
    server.flushall()
    writer = _child(server.url, "from the first process", "sync")
    reader = _child(server.url, "from the second process", second_mode)
    assert writer["content"] == "from the first process" and writer["hit"] is False
    assert reader["content"] == "from the first process" and reader["hit"] is True
    assert reader["stats"]["hits"] == 1


def test_redis_going_down_mid_run_never_breaks_a_call(own_redis, caplog):
    """Redis stops: calls go on uncached, one warning, errors and misses counted; when it returns, caching resumes."""
    clock = Clock()
    lmgate.cache = cache = lmgate.Cache(type="redis", host=own_redis.host, port=own_redis.port, clock=clock)
    call("sync", False, mock_response="before")
    assert text(call("sync", False, mock_response="x")) == "before"
    own_redis.stop()
    with caplog.at_level(logging.WARNING, logger="lmgate.cache"):
        assert text(call("sync", False, mock_response="down one")) == "down one"
        assert text(call("async", False, mock_response="down two")) == "down two"
        clock.now += 60  # past the pause: the next calls probe the dead server again
        assert text(call("async", False, mock_response="down three")) == "down three"
        assert text(call("sync", True, mock_response="down four")) == "down four"
    stats = cache.stats()
    assert stats["errors"] >= 2 and stats["bypassed"] >= 1 and stats["healthy"] is False
    assert stats["misses"] == 1 + 4  # the first call, and each of the four calls while down
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    own_redis.start()
    clock.now += 120
    assert text(call("sync", False, mock_response="after")) == "after"
    assert text(call("async", False, mock_response="x")) == "after"
    assert cache.stats()["healthy"] is True
    cache.close()


def test_a_slow_redis_is_cut_off_by_the_timeout(own_redis):
    """A server that does not answer (CLIENT PAUSE) costs one bounded timeout per probe, sync or async, and the call goes on uncached."""
    clock = Clock()
    lmgate.cache = cache = lmgate.Cache(type="redis", host=own_redis.host, port=own_redis.port, timeout=0.2, clock=clock)
    call("sync", False, mock_response="warm")  # connects before the pause
    own_redis.command("CLIENT", "PAUSE", "10000", "ALL")
    slow = [{"role": "user", "content": "slow"}]
    assert text(call("sync", False, mock_response="fresh", messages=slow)) == "fresh"
    assert text(call("sync", False, mock_response="paused", messages=slow)) == "paused"  # skipped, no wait
    clock.now += 60
    assert text(call("async", False, mock_response="async fresh", messages=slow)) == "async fresh"
    stats = cache.stats()
    # bypassed counts operations skipped during a pause: 3 stores and the second lookup
    assert (stats["errors"], stats["bypassed"], stats["hits"]) == (2, 4, 0)
    cache.close()
    own_redis.stop()


def test_async_clients_close_with_their_event_loop(redis_server):
    """Each event loop gets its own client, closed when the loop ends: nothing left open, no ResourceWarning."""
    redis_server.flushall()
    lmgate.cache = cache = lmgate.Cache(type="redis", host=redis_server.host, port=redis_server.port)

    async def twice():
        await lmgate.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="a")
        r = await lmgate.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response="b")
        return r, len(cache._store._aclients)

    for _ in range(3):
        response, clients = asyncio.run(twice())
        assert text(response) == "a" and clients == 1
        assert len(cache._store._aclients) == 0
    gc.collect()  # an unclosed connection would warn here, and warnings are errors
    assert cache.stats()["hits"] == 5
    cache.close()


def test_redis_is_not_imported_until_the_cache_talks_to_the_server():
    """`import lmgate` and building a Redis cache leave `redis` unimported."""
    code = (
        "import sys, lmgate; c = lmgate.Cache(type='redis', host='127.0.0.1', port=1); "
        "print('redis' in sys.modules, 'lmgate.caching' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "True"]
    out = subprocess.run(
        [sys.executable, "-c", "import sys, lmgate; print('lmgate.caching' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split() == ["False"]
