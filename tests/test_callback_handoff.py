"""How events reach the hooks: batched hand-off to the callback loop, each hook in a task of its
own, each callback's kwargs its own (issue 12)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import subprocess
import sys
import textwrap
import threading

import orjson
import pytest
from helpers import MESSAGES, call, flush

import lmgate
from lmgate import CustomLogger

CALLS = 300


def _concurrent(n: int, concurrency: int = 50, **kwargs) -> list:
    async def main():
        todo = iter(range(n))
        out: list = []

        async def worker():
            for i in todo:
                out.append(
                    await lmgate.acompletion(
                        model="gpt-4o-mini", messages=MESSAGES, mock_response=f"r{i}", **kwargs
                    )
                )

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return out

    return asyncio.run(main())


def test_many_concurrent_calls_each_reach_every_hook_once():
    """Hundreds of calls handed over in batches: each call's success reaches each hook exactly once,
    whether the hook returns at once or awaits."""
    quick: list[str] = []
    waiting: list[str] = []

    class Quick(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            quick.append(kwargs["litellm_call_id"])

    class Waiting(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            waiting.append(kwargs["litellm_call_id"])

    lmgate.callbacks = [Quick(), Waiting()]
    errors_before = lmgate.callback_stats()["errors_total"]
    responses = _concurrent(CALLS)
    flush()
    ids = sorted(r._hidden_params["litellm_call_id"] for r in responses)
    assert len(set(ids)) == CALLS
    assert sorted(quick) == ids and sorted(waiting) == ids
    stats = lmgate.callback_stats()
    assert stats["pending"] == 0 and stats["errors_total"] == errors_before


def test_one_calls_events_reach_a_waiting_hook_in_order():
    """A hook that awaits on some events still sees one call's events in order: every chunk in
    sequence, then success (later events wait for the one still running)."""
    seen: dict[str, list[str]] = {}

    class Ordered(CustomLogger):
        async def async_log_stream_event(self, kwargs, response_obj, start_time, end_time):
            events = seen.setdefault(kwargs["litellm_call_id"], [])
            if len(events) % 2 == 0:
                await asyncio.sleep(0)
            events.append(response_obj.choices[0].delta.content or "")

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen.setdefault(kwargs["litellm_call_id"], []).append("<success>")

    lmgate.callbacks = [Ordered()]

    async def main():
        async def one(i):
            stream = await lmgate.acompletion(
                model="gpt-4o-mini", messages=MESSAGES, mock_response=f"a b c d e {i}", stream=True
            )
            return "".join([c.choices[0].delta.content or "" async for c in stream])

        return await asyncio.gather(*(one(i) for i in range(20)))

    texts = asyncio.run(main())
    flush()
    assert len(seen) == 20
    by_text = {"".join(events[:-1]): events for events in seen.values()}
    for text in texts:
        assert by_text[text][-1] == "<success>"


def test_a_blocking_async_hook_does_not_stall_the_callers_loop():
    """An async hook that blocks (never awaits) holds lmgate's callback loop, not the caller's:
    every call returns while it blocks; once released, every event is delivered."""
    release = threading.Event()
    entered = threading.Event()
    delivered: list[str] = []

    class Blocking(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            entered.set()
            release.wait(10)
            delivered.append(kwargs["litellm_call_id"])

    lmgate.callbacks = [Blocking()]
    try:
        responses = _concurrent(50, concurrency=10)
        assert len(responses) == 50  # every call returned…
        assert entered.wait(5)
        assert not release.is_set() and lmgate.callback_stats()["pending"] >= 49  # …while the hook blocks
    finally:
        release.set()
    flush()
    assert len(delivered) == 50


def test_an_async_hook_runs_inside_a_task():
    """Each async hook runs inside an asyncio task of its own, even one that never waits:
    ``asyncio.timeout`` and aiohttp's request timeouts need ``asyncio.current_task()``."""
    tasks: list[object] = []

    class NeedsATask(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            tasks.append(asyncio.current_task())

    lmgate.callbacks = [NeedsATask()]
    _concurrent(20, concurrency=5)
    flush()
    assert len(tasks) == 20 and None not in tasks and len({id(t) for t in tasks}) == 20


def test_each_hook_runs_in_its_callers_context():
    """Batched or not, an async hook sees the context variables of the call it belongs to."""
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    seen: dict[str, str] = {}

    class Reader(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            seen[response_obj.choices[0].message.content] = request_id.get()

    lmgate.callbacks = [Reader()]

    async def main():
        async def one(i):
            request_id.set(f"req-{i}")
            await lmgate.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response=f"r{i}")

        await asyncio.gather(*(one(i) for i in range(100)))

    asyncio.run(main())
    flush()
    assert seen == {f"r{i}": f"req-{i}" for i in range(100)}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("stream", [False, True])
def test_callbacks_of_one_call_get_equal_kwargs_of_their_own(mode, stream):
    """Several callbacks of one event share the call's encoded payload and request, yet each
    callback's kwargs is its own: equal contents, every key for orjson and json, and a change by
    one is seen by no other."""
    got: list[dict] = []
    keys: list[set[str]] = []

    class Vandal(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            got.append(orjson.loads(orjson.dumps(kwargs, default=str)))
            kwargs["litellm_params"]["metadata"]["vandal"] = True
            kwargs["messages"].append({"role": "user", "content": "vandalised"})
            kwargs["agentic_loop_params"]["model"] = "vandalised"
            kwargs["standard_callback_dynamic_params"]["x"] = 1
            kwargs["model"] = "vandalised"

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            self.log_success_event(kwargs, response_obj, start_time, end_time)

    class Reader(CustomLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):
            got.append(orjson.loads(orjson.dumps(kwargs, default=str)))
            keys.append(set(json.loads(json.dumps(kwargs, default=str))))

        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            self.log_success_event(kwargs, response_obj, start_time, end_time)

    def function(kwargs, completion_response, start_time, end_time):
        got.append(orjson.loads(orjson.dumps(kwargs, default=str)))

    lmgate.callbacks = [Vandal(), Reader()]
    lmgate.success_callback = [function]
    call(mode, stream, mock_response="ok", metadata={"team": "a"})
    flush()
    assert len(got) == 3
    first = got[0]
    assert keys == [set(first)]
    assert "standard_logging_object" in first and "litellm_params" in first and "messages" in first
    assert first["model"] == "gpt-4o-mini" and "vandal" not in first["litellm_params"]["metadata"]
    for other in got[1:]:
        assert other == first


def test_pending_batched_deliveries_run_before_exit(tmp_path):
    """A program that makes many concurrent async calls and never flushes: every hook still runs
    (the batch waiting for the callback loop is counted by the exit flush)."""
    out = tmp_path / "seen.txt"
    script = textwrap.dedent(
        f"""
        import asyncio, lmgate
        from lmgate import CustomLogger

        class Writer(CustomLogger):
            async def async_log_success_event(self, kwargs, r, s, e):
                await asyncio.sleep(0)
                open({str(out)!r}, "a").write(kwargs["litellm_call_id"] + "\\n")

        lmgate.callbacks = [Writer()]

        async def main():
            await asyncio.gather(*(
                lmgate.acompletion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}], mock_response="y")
                for _ in range(200)
            ))
        asyncio.run(main())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == 200 and len(set(lines)) == 200


def test_callers_make_the_shared_parts_when_the_callback_loop_is_behind():
    """While the callback loop (which builds async hooks' arguments) is held up, callers make
    their calls' shared parts (summary, encoded payload and request) themselves — counted in
    callback_stats()["prepared_by_caller"] — and never wait; every hook then gets its own call's
    payload, once."""
    release = threading.Event()
    seen: dict[str, str] = {}

    class Held(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            release.wait(10)  # blocks the callback loop
            slo = kwargs["standard_logging_object"]
            seen[slo["response"]["choices"][0]["message"]["content"]] = slo["litellm_call_id"]

    lmgate.callbacks = [Held()]
    before = lmgate.callback_stats()["prepared_by_caller"]
    try:
        ids = [r._hidden_params["litellm_call_id"] for r in _concurrent(100, concurrency=1)]
        assert not release.is_set()  # every call returned while the hook was held
        prepared = lmgate.callback_stats()["prepared_by_caller"] - before
        assert 100 - 64 - 2 <= prepared <= 100
    finally:
        release.set()
    flush()
    assert seen == {f"r{i}": ids[i] for i in range(100)}


def test_a_payload_that_cannot_be_built_never_fails_the_call_while_the_loop_is_behind():
    """A response whose usage the payload cannot read (a broken server's ``prompt_tokens``)
    makes the payload's build fail: counted as the hook's error, never raised into the call —
    also when the callback loop is behind and the caller makes its call's shared parts itself."""
    release = threading.Event()

    class Held(CustomLogger):
        async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
            release.wait(10)  # blocks the callback loop
            kwargs["standard_logging_object"]

    odd = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "odd"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": "many", "completion_tokens": 1, "total_tokens": 2},
    }
    lmgate.callbacks = [Held()]
    errors = lmgate.callback_stats()["errors_total"]
    try:
        _concurrent(80, concurrency=1)  # the loop falls behind: callers prepare their parts

        async def odd_call():
            # a model without a price: its cost is not computed from the usage, the payload reads it
            return await lmgate.acompletion(model="openai/rv-unpriced", messages=MESSAGES, mock_response=odd)

        answer = asyncio.run(odd_call())
        assert answer.choices[0].message.content == "odd"
    finally:
        release.set()
    flush()
    assert lmgate.callback_stats()["errors_total"] == errors + 1  # the hook's, for the odd call
