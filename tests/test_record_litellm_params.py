"""A call record's ``litellm_params`` is built on first read, which may come from the caller's
thread and a callback thread at once (seen in the bench: a success function failed with
``TypeError: 'dict' object is not callable`` and its log line was lost)."""

from __future__ import annotations

import os
import threading

from lmgate._callbacks.record import CallRecord

READERS = 8


def _one_round() -> tuple[list[dict], list[object], list[BaseException]]:
    """``READERS`` threads read a fresh record's ``litellm_params`` at once."""
    built: list[dict] = []

    def factory() -> dict:
        for _ in range(20):  # hand the interpreter to the other readers mid-build
            os.sched_yield()
        params = {"metadata": {}, "n": len(built)}
        built.append(params)
        return params

    record = CallRecord(
        call_type="completion",
        model="gpt-4o-mini",
        provider="openai",
        messages=[{"role": "user", "content": "hi"}],
        optional_params={},
        litellm_params=factory,
        metadata={},
        stream=False,
        user=None,
        call_id="c",
        trace_id="t",
        start=0.0,
        is_async=False,
    )
    start = threading.Barrier(READERS)
    got: list[object] = []
    errors: list[BaseException] = []

    def read() -> None:
        start.wait()
        try:
            got.append(record.litellm_params)
        except BaseException as error:  # noqa: BLE001 - the test reports it
            errors.append(error)

    threads = [threading.Thread(target=read) for _ in range(READERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return built, got, errors


def test_concurrent_first_reads_never_fail_and_all_get_the_one_dict_kept() -> None:
    for _ in range(50):  # each round a fresh record: the first reads race again
        built, got, errors = _one_round()
        assert not errors, errors
        assert len(got) == READERS and all(g is got[0] for g in got)  # one dict, whoever built
        assert any(got[0] is b for b in built)
