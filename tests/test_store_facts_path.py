"""A plain call heard only by the store keeps no ``CallRecord`` at all: its facts line is made
from the call when it succeeds (``_call.Call._succeed_unrecorded``, ``payload_facts.success_facts``)
and handed to the store (``dispatch.Plan.facts_sinks``, ``StoreLogger.take_facts``). Everything
else falls back to the record: a failure, a stream, a cache, another listener, a library caller
(no ``_metadata_unshared``), message logging off, a sink that wants no line now, a line that
cannot be made. The rows and payloads stored must be the ones the record's path stores for the
same call. Real calls against the fake provider, the real writer child, real SQLite files."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import orjson
import pytest
from fakes import Reply

import lmgate
from lmgate._callbacks.payload_facts import facts_record_of, success_facts
from lmgate._callbacks.record import CallRecord, encoded_answer
from lmgate._retry import RetryPolicy
from lmgate.loggers.store import StoreLogger
from lmgate.store import Filters, Page

pytest.importorskip("sqlalchemy")

KEY = "sk-test-store-facts-path"
FAST = RetryPolicy(sleep=lambda _: None, base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)
IDENTITY = {
    "user_api_key_hash": "9f2c0d",
    "user_api_key_alias": "ci-key",
    "user_api_key_spend": 0.25,
    "user_api_key_team_id": "team-a",
    "user_api_key_auth_metadata": None,
    "team_id": "team-a",
    "requester_ip_address": "127.0.0.1",
    "requester_metadata": {},
    "tags": ["blue", "green"],
}
# what differs between two runs of one call: its times (and a row's figures made of them)
TIMES = {
    "startTime",
    "endTime",
    "completionStartTime",
    "response_time",
    "start_time",
    "end_time",
    "latency_ms",
}
# the bytes of a stored payload: its times' digits
TIMES.add("payload_bytes")


class CountingStore(StoreLogger):
    """The store, counting which way each call's success reached it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ways: list[str] = []
        self.wanted = True

    def facts_wanted(self, event: str) -> bool:
        return self.wanted and super().facts_wanted(event)

    def take_facts(self, data: bytes) -> None:
        self.ways.append("facts")
        super().take_facts(data)

    def take_record(self, record, event) -> bool:
        taken = super().take_record(record, event)
        self.ways.append(f"record:{event}" if taken else f"record-refused:{event}")
        return taken

    def take(self, summary, event) -> None:
        self.ways.append(f"summary:{event}")
        super().take(summary, event)


def reply(n: int) -> Reply:
    """A fixed answer (the fake's own ids count up), so two runs of one call get the same one."""
    return Reply(json=body(n), headers={"x-request-id": f"req-{n}"})


def body(n: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fixed{n}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": f"answer {n}"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


def deployment(fp, name: str, model: str, id: str) -> dict:
    params = {"model": f"openai/{model}", "api_base": fp.base_url + "/v1", "api_key": KEY}
    return {"model_name": name, "litellm_params": params, "model_info": {"id": id}}


def timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<time>" if k in TIMES else timeless(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def stored(logger: StoreLogger) -> list[tuple[Any, Any]]:
    rows = sorted(logger.store.query(Filters(), Page(limit=1000)), key=lambda r: r["call_id"])
    out = []
    for row in rows:
        payload = logger.store.get(row["call_id"])
        if isinstance(payload.get("payload"), str):
            payload = {**payload, "payload": json.loads(payload["payload"])}
        out.append((timeless(row), timeless(payload)))
    return out


def run_calls(fp, unshared: bool) -> None:
    """The same calls each time: ``unshared`` as the proxy makes them (the path without a record
    may be taken), else as a library caller does (the record's path)."""
    base = {"api_base": fp.base_url + "/v1", "api_key": KEY}
    if unshared:
        base["_metadata_unshared"] = True
    msgs = [{"role": "user", "content": "hello facts"}]
    fp.enqueue(reply(1), reply(2), reply(3))
    lmgate.completion(
        model="openai/gpt-4o-mini", messages=msgs, litellm_call_id="c1", litellm_trace_id="t1", **base
    )
    # a key's, team's and user's call with tags and parameters, its metadata changed once it returned
    metadata = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in IDENTITY.items()}
    lmgate.completion(
        model="openai/gpt-4o-mini",
        messages=msgs,
        user="alice",
        temperature=0.2,
        max_tokens=7,
        metadata=metadata,
        litellm_call_id="c2",
        litellm_trace_id="t2",
        **base,
    )
    metadata["tags"].append("changed-after")
    # async, as the proxy calls
    asyncio.run(
        lmgate.acompletion(
            model="openai/gpt-4o-mini",
            messages=msgs,
            metadata=dict(IDENTITY),
            litellm_call_id="c3",
            litellm_trace_id="t3",
            **base,
        )
    )
    # a Router: a retried deployment, then a fallback to another (the failed attempts' cost)
    router = lmgate.Router(
        model_list=[deployment(fp, "small", "model-small", "s"), deployment(fp, "big", "model-big", "b")],
        fallbacks=[{"small": ["big"]}],
        num_retries=1,
        retry_policy=FAST,
    )
    fp.enqueue(Reply(status=500), Reply(status=500), reply(4))
    extra = {"_metadata_unshared": True} if unshared else {}
    answer = router.completion(
        model="small",
        messages=msgs,
        metadata=dict(IDENTITY),
        litellm_call_id="c4",
        litellm_trace_id="t4",
        **extra,
    )
    assert answer._hidden_params["model_id"] == "b"
    # a failure
    fp.enqueue(Reply(status=400, headers={"x-request-id": "req-5"}))
    with pytest.raises(lmgate.exceptions.BadRequestError):
        lmgate.completion(
            model="openai/gpt-4o-mini",
            messages=msgs,
            metadata=dict(IDENTITY),
            litellm_call_id="c5",
            litellm_trace_id="t5",
            **base,
        )


def test_rows_of_calls_that_keep_no_record_equal_the_records_rows(tmp_path, fake_provider):
    runs = {}
    for name, unshared in (("no-record", True), ("record", False)):
        store = CountingStore(
            path=str(tmp_path / f"{name}.sqlite3"),
            spool_dir=str(tmp_path / f"{name}-spool"),
            writer="process",
        )
        lmgate.callbacks = [store]
        try:
            run_calls(fake_provider, unshared)
            assert store.flush(30)
        finally:
            lmgate.callbacks = []
        runs[name] = (store.ways, stored(store))
    (ways, rows), (record_ways, record_rows) = runs["no-record"], runs["record"]
    # four successes took the line made from the call; the failure took its record's
    assert ways == ["facts"] * 4 + ["record-refused:failure", "summary:failure"]
    assert record_ways == ["record:success"] * 4 + ["record-refused:failure", "summary:failure"]
    assert len(rows) == len(record_rows) == 5
    assert rows == record_rows
    assert "changed-after" not in str(rows)
    (c4,) = [p for r, p in rows if r["call_id"] == "c4"]
    assert c4["payload"]["cost_breakdown"]["failed_attempts_cost"] is not None


def test_the_line_made_from_a_call_is_the_records_line():
    """``success_facts`` against ``facts_record_of`` of a record finished with the same values:
    the facts a plain success leaves at their defaults are written as the record holds them."""
    metadata = {**IDENTITY, "tags": ["x"]}
    messages = [{"role": "user", "content": "same line"}]
    params = {"temperature": 0.5}
    record = CallRecord(
        call_type="acompletion",
        model="gpt-4o-mini",
        provider="openai",
        messages=messages,
        optional_params=params,
        litellm_params={},
        metadata=metadata,
        stream=False,
        user="bob",
        call_id="id-1",
        trace_id="trace-1",
        start=1700000000.25,
        is_async=True,
        borrow_metadata=True,
    )
    record.model_id, record.model_group, record.api_base = "dep-1", "group", "https://api.example/v1"
    response = body(9)
    record.usage = dict(response["usage"])
    record.cost, record.cost_breakdown, record.cost_reason, record.price_key = (
        0.5,
        {"input_cost": 0.2, "output_cost": 0.3},
        None,
        "openai/gpt-4o-mini",
    )
    record.response_model = response["model"]
    record.hidden_params = {"additional_headers": {"x-ratelimit-remaining-requests": "9"}}
    record.finish_success(response, 1700000001.5)
    expected = facts_record_of(record)
    assert expected is not None
    made = success_facts(
        "id-1",
        "trace-1",
        "acompletion",
        1700000000.25,
        1700000001.5,
        "gpt-4o-mini",
        "openai",
        response["model"],
        "dep-1",
        "group",
        "https://api.example/v1",
        0.5,
        None,
        "openai/gpt-4o-mini",
        "bob",
        response["id"],
        metadata,
        dict(response["usage"]),
        {"input_cost": 0.2, "output_cost": 0.3},
        params,
        {"x-ratelimit-remaining-requests": "9"},
        orjson.dumps(messages),
        orjson.dumps(response),
    )
    assert made == expected
    # and what the line cannot carry is refused as the record's line refuses it
    plain = ["x"] * 16
    assert success_facts(*plain, {"k": "v"}, None, None, {}, {}, b"[]", None) is not None
    assert (
        success_facts(*plain, {"api_key": "sk-live-0123456789abcdefghij"}, None, None, {}, {}, b"[]", None)
        is None
    )
    assert success_facts(*plain, {"tags": "not-a-list"}, None, None, {}, {}, b"[]", None) is None
    assert success_facts(*plain, {}, None, None, {}, {}, b'["a\nb"]', None) is None
    # metadata that encodes as metadata whose line is made, but needs masking: refused all the
    # same, each time (a value under a credential name is masked whatever it is; NaN is written
    # as null): what a check keyed on the metadata's JSON would let through
    for _ in range(2):
        assert success_facts(*plain, {"api_key": None}, None, None, {}, {}, b"[]", None) is not None
        assert success_facts(*plain, {"api_key": float("nan")}, None, None, {}, {}, b"[]", None) is None


class Hook(lmgate.CustomLogger):
    def log_success_event(self, kwargs, response_obj, start_time, end_time) -> None:
        pass


def test_everything_but_a_plain_call_heard_only_by_the_store_falls_back_to_the_record(
    tmp_path, fake_provider
):
    fp = fake_provider
    store = CountingStore(
        path=str(tmp_path / "s.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    base = {"api_base": fp.base_url + "/v1", "api_key": KEY, "_metadata_unshared": True}
    msgs = [{"role": "user", "content": "which way"}]

    def ways_of(**kwargs: Any) -> list[str]:
        start = len(store.ways)
        lmgate.completion(model="openai/gpt-4o-mini", messages=msgs, **{**base, **kwargs})
        return store.ways[start:]

    lmgate.callbacks = [store]
    try:
        assert ways_of() == ["facts"]
        first = lmgate.completion(model="openai/gpt-4o-mini", mock_response="mocked", messages=msgs, **base)
        assert store.ways[-1] == "facts"
        # the answer's JSON the line took is the proxy's body for that answer
        assert encoded_answer(first) == orjson.dumps(first)
        # a stream: its record outlives the call
        start = len(store.ways)
        assert list(lmgate.completion(model="openai/gpt-4o-mini", messages=msgs, stream=True, **base))
        assert store.ways[start:] == ["record:success"]
        # a library caller (its metadata may change while the call runs)
        assert ways_of(_metadata_unshared=None) == ["record:success"]
        # message logging off for the call
        assert ways_of(turn_off_message_logging=True) == ["record-refused:success", "summary:success"]
        # metadata the line cannot carry as it is (a secret to mask): the record's path masks it
        assert ways_of(metadata={"api_key": "sk-live-0123456789abcdefghij"}) == [
            "record-refused:success",
            "summary:success",
        ]
        # a key's own metadata, which the masking check reads through (a copy, masked or not)
        assert ways_of(metadata={**IDENTITY, "user_api_key_auth_metadata": {"env": "ci"}}) == [
            "record-refused:success",
            "summary:success",
        ]
        # the store wants no line now: the record's path (whose line it takes)
        store.wanted = False
        assert ways_of() == ["record:success"]
        store.wanted = True
        # a failure
        fp.enqueue(Reply(status=400))
        with pytest.raises(lmgate.exceptions.BadRequestError):
            ways_of()
        assert store.ways[-2:] == ["record-refused:failure", "summary:failure"]
        # a cache: a miss, then a hit
        lmgate.cache = lmgate.Cache()
        assert ways_of(caching=True) == ["record:success"]
        assert ways_of(caching=True) == ["record-refused:success", "summary:success"]
        lmgate.cache = None
        # another listener
        lmgate.callbacks = [store, Hook()]
        assert ways_of() == ["record:success"]
        lmgate.callbacks = [store]
        assert ways_of() == ["facts"]
        assert store.flush(30)
    finally:
        lmgate.callbacks = []
        lmgate.cache = None
    rows = store.store.query(Filters(), Page(limit=100))
    assert len(rows) == len(store.ways) - store.ways.count("record-refused:success") - store.ways.count(
        "record-refused:failure"
    )
    assert len({r["call_id"] for r in rows}) == len(rows)
    assert "sk-live-0123456789abcdefghij" not in str([store.store.get(r["call_id"]) for r in rows])


def test_metadata_whose_line_was_made_is_masked_once_a_secret_in_it_is_remembered(tmp_path, fake_provider):
    """Text in a call's metadata that becomes a secret later (a call's key) is masked in the
    stored metadata of the call that brings it and of every call after, though the calls before
    made their facts lines from the same metadata: nothing the line's masking check knew of that
    metadata may outlive the secrets it was checked against."""
    fp = fake_provider
    # no word the masking check looks for (it would look closer from the start); unseen by any
    # earlier test: remembered here only
    secret = f"later-{uuid.uuid4().hex}"
    store = CountingStore(
        path=str(tmp_path / "s.sqlite3"), spool_dir=str(tmp_path / "spool"), writer="process"
    )
    msgs = [{"role": "user", "content": "remembered later"}]

    def call(call_id: str, key: str = KEY) -> list[str]:
        start = len(store.ways)
        lmgate.completion(
            model="openai/gpt-4o-mini",
            messages=msgs,
            metadata={**IDENTITY, "note": secret},
            api_base=fp.base_url + "/v1",
            api_key=key,
            litellm_call_id=call_id,
            _metadata_unshared=True,
        )
        return store.ways[start:]

    lmgate.callbacks = [store]
    try:
        # nothing to mask yet: the line is made, twice from the same metadata
        assert call("before-1") == ["facts"]
        assert call("before-2") == ["facts"]
        # the call whose key it is remembers it before it succeeds; every call after masks it
        assert call("with-key", key=secret) == ["record-refused:success", "summary:success"]
        assert call("after") == ["record-refused:success", "summary:success"]
        assert store.flush(30)
    finally:
        lmgate.callbacks = []
    notes = {cid: store.store.get(cid)["payload"] for cid in ("before-1", "before-2", "with-key", "after")}
    notes = {
        cid: (json.loads(p) if isinstance(p, str) else p)["metadata"]["note"] for cid, p in notes.items()
    }
    assert notes["before-1"] == notes["before-2"] == secret
    assert secret not in notes["with-key"] and notes["with-key"] == notes["after"]
