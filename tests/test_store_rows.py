"""A store row's columns taken on the caller's path (``plain_columns``, from the payload dict the
record was encoded from) equal the columns of the record decoded (``columns_of``), which is what
the delivery thread computes for records read back from the spool. Real calls against the fake
provider; real SQLite files."""

from __future__ import annotations

import contextlib
import enum
import gc
import math
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from fakes import Reply

import lmgate
from lmgate.loggers.store import StoreExporter, StoreLogger
from lmgate.store import Filters, Page
from lmgate.store.rows import ROW_COLUMNS, NotPlain, columns_of, plain_columns

pytest.importorskip("sqlalchemy")


def as_columns(values: tuple) -> dict:
    return dict(zip(ROW_COLUMNS[:-3], values, strict=True))


def test_row_columns_are_the_tables():
    from lmgate.store.schema import COLUMNS

    assert ROW_COLUMNS == COLUMNS


def params(fp, **kw):
    return {
        "model": "openai/gpt-4o-mini",
        "api_base": fp.base_url + "/v1",
        "api_key": "sk-test-rows",
        "messages": [{"role": "user", "content": "hello rows"}],
        **kw,
    }


class Summaries:
    """A summary sink: keeps every terminal call's summary."""

    def __init__(self) -> None:
        self.taken: list = []

    def take(self, summary, event: str) -> None:
        self.taken.append(summary)


def test_columns_taken_from_the_payload_equal_the_columns_of_the_record_decoded(fake_provider):
    sink = Summaries()
    lmgate.callbacks = [sink]
    lmgate.completion(**params(fake_provider))
    lmgate.completion(**params(fake_provider, user="bob", metadata={"tags": ["a", "b"], "team_id": "t9"}))
    "".join(c.choices[0].delta.content or "" for c in lmgate.completion(**params(fake_provider, stream=True)))
    fake_provider.enqueue(Reply(status=400))
    with pytest.raises(lmgate.exceptions.BadRequestError):
        lmgate.completion(**params(fake_provider))
    lmgate.callbacks = []
    assert len(sink.taken) == 4
    for summary in sink.taken:
        decoded = columns_of(orjson.loads(summary.payload_json()))
        assert as_columns(plain_columns(summary.payload())) == decoded
    by_status = {s.status: as_columns(plain_columns(s.payload())) for s in sink.taken}
    assert by_status["failure"]["error_class"] == "BadRequestError"


class Tier(enum.IntEnum):
    GOLD = 1


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"user_api_key_alias": datetime(2026, 1, 2, 3, 4, 5)}},  # JSON: an ISO string
        {"metadata": {"user_api_key_team_id": ("a", "b")}},  # JSON: a list
        {"request_tags": ("t1", "t2")},
        {"response_cost": math.nan},  # JSON: null
        {"endTime": math.inf},
        {"completionStartTime": -math.inf},
        {"startTime": math.nan},
        {"prompt_tokens": Tier.GOLD},
        {"stream": 1},
        {"litellm_call_id": ""},
    ],
)
def test_a_value_that_would_not_read_back_the_same_is_left_to_the_delivery_thread(change):
    payload = {
        "litellm_call_id": "c1",
        "startTime": 1.0,
        "endTime": 2.0,
        "status": "success",
        "metadata": {},
        "error_information": {},
        "request_tags": [],
    }
    for key, value in change.items():
        if isinstance(value, dict):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    with pytest.raises(NotPlain):
        plain_columns(payload)


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"model": "", "trace_id": "", "metadata": {"user_api_key_alias": ""}},  # stored as NULL
        {"request_tags": ["a", "b"], "response_cost": 0, "endTime": None, "stream": True},
        {"completionStartTime": 1.5, "stream": True, "startTime": 1e300, "endTime": 1e300},
    ],
)
def test_plain_columns_are_the_decoded_records_columns(change):
    payload = {
        "litellm_call_id": "c1",
        "startTime": 1.0,
        "endTime": 2.0,
        "status": "success",
        "model": "m",
        "metadata": {"user_api_key_hash": "h"},
        "error_information": {},
        "request_tags": [],
    }
    for key, value in change.items():
        payload[key] = {**payload[key], **value} if isinstance(value, dict) else value
    assert as_columns(plain_columns(payload)) == columns_of(orjson.loads(orjson.dumps(payload)))


class Recording(StoreExporter):
    def __init__(self, store) -> None:
        super().__init__(store)
        self.prepared: list = []

    def export(self, batch):
        self.prepared.extend(batch.prepared or [None] * len(batch.records))
        return super().export(batch)


def test_the_logger_hands_the_columns_over_and_the_row_is_the_one_parsing_gives(
    tmp_path: Path, fake_provider
):
    from lmgate.store import open_store

    store = open_store(str(tmp_path / "logs.sqlite3"))
    exporter = Recording(store)
    logger = StoreLogger(store=store, spool="off", flush_interval=60)
    logger.exporter = exporter
    logger.processor.exporter = exporter
    lmgate.callbacks = [logger]
    # a value that reads back differently from JSON: that call's columns are parsed from the record
    odd = datetime(2026, 1, 2, 3, 4, 5)
    lmgate.completion(**params(fake_provider, metadata={"user_api_key_alias": odd}))
    lmgate.completion(**params(fake_provider, metadata={"user_api_key_alias": "plain-alias"}))
    assert logger.flush(10)
    lmgate.callbacks = []
    assert [p is not None for p in exporter.prepared] == [False, True]
    rows = {r["key_alias"]: r for r in store.query(Filters(), Page(limit=10))}
    assert set(rows) == {"2026-01-02T03:04:05", "plain-alias"}
    for row in rows.values():
        stored = store.get(row["call_id"])
        assert stored is not None
        expected = columns_of(stored["payload"])
        expected["tags"] = orjson.loads(expected["tags"])
        got = {k: stored[k] for k in expected}
        assert got == expected
        assert stored["payload_bytes"] > 0 and not stored["truncated"]
    logger.close()


@contextlib.contextmanager
def _collector_keeping_garbage() -> Iterator[None]:
    """The collector off, and what it would free kept in ``gc.garbage`` to look at."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def _calls_in_garbage() -> list[str]:
    """A call's objects among what a collection finds (only those: other threads of the test
    run may make garbage meanwhile)."""
    gc.collect()
    return [type(o).__name__ for o in gc.garbage if type(o).__name__ in ("Call", "CallRecord", "CallSummary")]


def test_a_finished_call_with_a_logger_leaves_no_reference_cycle():
    """The record and summary of a finished call are freed by reference counting: a cycle per
    call (the record holding the call's litellm_params factory, a method of the call that holds
    the record) made the garbage collector run every few calls on the proxy's event loop."""

    sink = Summaries()
    lmgate.callbacks = [sink]
    request = {
        "model": "openai/gpt-4o-mini",
        "mock_response": "hi",
        "messages": [{"role": "user", "content": "x"}],
    }
    lmgate.completion(**request)  # warm: imports, caches
    sink.taken.clear()
    with _collector_keeping_garbage():
        for _ in range(5):
            lmgate.completion(**request)
        assert len(sink.taken) == 5 and all(s.payload_json() for s in sink.taken)
        sink.taken.clear()
        lmgate.callbacks = []
        assert _calls_in_garbage() == []


def test_litellm_params_built_when_read_after_the_call_hold_its_values():
    """The litellm_params factory lets go of the call at the end (``_call._LitellmParamsSource``)
    and builds the dict only when someone reads it: read after the call (a Router's attempt,
    with the deferral list it passes), it holds the call's values, and no cycle is left."""

    sink = Summaries()
    lmgate.callbacks = [sink]
    request = {
        "model": "openai/gpt-4o-mini",
        "mock_response": "hi",
        "messages": [{"role": "user", "content": "x"}],
        "api_key": "sk-late-params-0123456789",
        "metadata": {"m": 1},
        "timeout": 7,
    }
    lmgate.completion(**request, defer_failure_event=[])  # warm: imports, caches
    with _collector_keeping_garbage():
        for _ in range(3):
            lmgate.completion(**request, defer_failure_event=[])
        assert len(sink.taken) == 4
        summary = sink.taken[-1]
        params = summary.litellm_params
        assert params["litellm_call_id"] == summary.call_id
        assert params["litellm_trace_id"] == summary.trace_id
        assert params["api_key"] != request["api_key"] and params["api_key"].startswith("sk-")
        assert params["custom_llm_provider"] == "openai" and params["metadata"] == {"m": 1}
        assert params["stream"] is False and params["acompletion"] is False and params["timeout"] == 7
        assert "defer_failure_event" not in params
        sink.taken.clear()
        del summary, params
        lmgate.callbacks = []
        assert _calls_in_garbage() == []
