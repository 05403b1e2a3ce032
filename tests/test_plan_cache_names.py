"""The dispatcher's plan cache is keyed by the ids of the callback lists' items. A callback
*name* (a string) is resolved to its logger, and the plan holds the logger, not the name: a
freed name string whose id a new, different name takes must not get the old name's plan."""

from __future__ import annotations

from typing import Any

import lmgate
from lmgate._callbacks.dispatch import Dispatcher
from lmgate._callbacks.registry import resolve_callback


def _name(text: str) -> str:
    # one new object per call (an intermediate of the same size would take a freed block first)
    return text.encode().decode()  # built at run time: not interned, freed when dropped


def test_a_new_callback_name_at_a_freed_names_id_gets_its_own_plan(tmp_path: Any) -> None:
    lmgate.callback_settings = {
        name: {
            "callback_type": "generic_api",
            "endpoint": f"http://127.0.0.1:9/{name}",
            "flush_interval": 60,
            "spool_dir": str(tmp_path / name),
        }
        for name in ("sink_a", "sink_b")
    }
    sink_a, sink_b = resolve_callback("sink_a"), resolve_callback("sink_b")  # the registry keeps these names
    dispatcher = Dispatcher()
    first = [_name("sink_a")]
    [target] = dispatcher.plan((first, [], [], []), None).targets
    assert target.obj is sink_a
    freed = id(first[0])
    first.clear()  # the name freed (unless the cache holds it)
    kept = []  # every try stays alive, so each gets a new address
    second = None
    for _ in range(1000):  # CPython hands a freed block of this size out again at once
        candidate = _name("sink_b")
        if id(candidate) == freed:
            second = candidate
            break
        kept.append(candidate)
    if second is None:  # the cache kept the first name alive: its id was never reused
        second = _name("sink_b")
    [target] = dispatcher.plan(([second], [], [], []), None).targets
    assert target.obj is sink_b
