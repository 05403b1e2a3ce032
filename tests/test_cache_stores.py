"""Store-specific behaviour: the local store's bound, the disk store across instances and processes,
and the Redis store inside a running event loop."""

from __future__ import annotations

import subprocess
import sys

from helpers import call

import lmgate


def text(result) -> str:
    return result.choices[0].message.content


def ask(n: int, answer: str) -> str:
    return text(call("sync", False, mock_response=answer, messages=[{"role": "user", "content": f"q{n}"}]))


def test_local_store_drops_the_least_recently_used_entry_past_max_items():
    """With max_items=2, a third entry evicts the entry read least recently."""
    lmgate.cache = lmgate.Cache(max_items=2)
    ask(1, "a1")
    ask(2, "a2")
    assert ask(1, "x") == "a1"  # q1 is now the most recently used
    ask(3, "a3")
    assert ask(1, "x") == "a1"
    assert ask(2, "fresh") == "fresh"


def test_disk_entries_outlive_the_cache_object(tmp_path):
    """A new Cache on the same directory (a restart) serves what the old one stored."""
    directory = str(tmp_path / "c")
    first = lmgate.Cache(type="disk", disk_cache_dir=directory)
    lmgate.cache = first
    ask(1, "persisted")
    first.close()
    lmgate.cache = second = lmgate.Cache(type="disk", disk_cache_dir=directory)
    assert ask(1, "x") == "persisted"
    second.close()


def test_disk_cache_is_shared_with_another_process(tmp_path):
    """Another process using the same directory gets a hit on what this process stored."""
    directory = str(tmp_path / "c")
    lmgate.cache = cache = lmgate.Cache(type="disk", disk_cache_dir=directory)
    ask(7, "from the parent")
    code = (
        "import sys, lmgate; lmgate.cache = lmgate.Cache(type='disk', disk_cache_dir=sys.argv[1]); "
        "r = lmgate.completion(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'q7'}], mock_response='child'); "
        "print(r.choices[0].message.content, r._hidden_params['cache_hit'])"
    )
    out = subprocess.run([sys.executable, "-c", code, directory], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["from", "the", "parent", "True"]
    cache.close()


def test_disk_cache_refuses_a_directory_it_cannot_create(tmp_path):
    """A disk_cache_dir that cannot be created fails at Cache() with the parameter named."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    try:
        lmgate.Cache(type="disk", disk_cache_dir=str(blocker / "sub"))
    except ValueError as error:
        assert "disk_cache_dir" in str(error)
    else:
        raise AssertionError("Cache() accepted a directory it cannot create")


async def test_redis_cache_inside_a_running_event_loop(redis_server):
    """Inside an async test's loop the Redis cache stores and hits, streamed and not."""
    redis_server.flushall()
    lmgate.cache = cache = lmgate.Cache(type="redis", url=redis_server.url)
    messages = [{"role": "user", "content": "in a loop"}]
    first = await lmgate.acompletion(model="gpt-4o-mini", messages=messages, mock_response="looped")
    stream = await lmgate.acompletion(model="gpt-4o-mini", messages=messages, stream=True, mock_response="x")
    chunks = [c async for c in stream]
    assert text(first) == "looped"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "looped"
    assert cache.stats()["hits"] == 1
    await cache.aclose()


def test_a_cache_setting_that_is_not_a_cache_is_refused():
    """`lmgate.cache = "redis"` fails the call with a message naming lmgate.cache."""
    lmgate.cache = "redis"
    try:
        call("sync", False, mock_response="x")
    except TypeError as error:
        assert "lmgate.cache" in str(error)
    else:
        raise AssertionError("a non-Cache lmgate.cache was accepted")
