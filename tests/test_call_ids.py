"""Call and trace ids: UUIDs (version 4, RFC 4122 variant) unique per call, also across a fork."""

from __future__ import annotations

import os
import uuid

import lmgate
from lmgate._call import new_call_id


def _is_uuid4(text: str) -> bool:
    value = uuid.UUID(text)
    return str(value) == text and value.version == 4 and value.variant == uuid.RFC_4122


def test_ids_are_uuid4_strings_and_never_repeat() -> None:
    ids = [new_call_id() for _ in range(10_000)]
    assert all(_is_uuid4(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_child_makes_ids_its_parent_does_not() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its ids, one a line, then exit without running the test's teardown
        try:
            os.write(write, "\n".join(new_call_id() for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        theirs = pipe.read().decode().split("\n")
    os.waitpid(pid, 0)
    ours = [new_call_id() for _ in range(100)]
    assert len(theirs) == 100 and all(_is_uuid4(i) for i in theirs)
    assert not set(theirs) & set(ours)
    assert theirs[0][:24] != ours[0][:24]  # a prefix of its own, not only a counter further on


def test_a_call_names_its_id_and_trace_id_as_uuid4() -> None:
    seen: list = []

    class Sink:
        def take(self, summary, event) -> None:
            seen.append(summary)

    lmgate.callbacks = [Sink()]
    try:
        response = lmgate.completion(
            model="openai/gpt-4o-mini", mock_response="hi", messages=[{"role": "user", "content": "x"}]
        )
    finally:
        lmgate.callbacks = []
    (summary,) = seen
    assert _is_uuid4(summary.call_id) and _is_uuid4(summary.trace_id)
    assert summary.call_id != summary.trace_id
    assert response._hidden_params["litellm_call_id"] == summary.call_id


def test_the_last_group_is_the_counter_as_twelve_hex_digits_at_any_value(monkeypatch) -> None:
    """The counter's bytes in hex are the digits ``f"{n:012x}"`` gives, zero-padded, across the
    counter's whole range (the start is random)."""
    import itertools

    import lmgate._call as call_module

    for start in (0, 255, 2**32 - 2, 2**47 - 3, 2**48 - 3):
        monkeypatch.setattr(call_module, "_id_counter", itertools.count(start))
        ids = [new_call_id() for _ in range(3)]
        assert [i.rsplit("-", 1)[1] for i in ids] == [f"{n:012x}" for n in range(start, start + 3)]
        assert all(_is_uuid4(i) for i in ids)
