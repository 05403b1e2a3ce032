"""Every call produces a log record: values that cannot be encoded are replaced and flagged, never
the record lost; a record that cannot be built at all is counted as dropped (issue 11, point 7)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes import FakeProvider, LogReceiver
from helpers import flush
from payload_schema import assert_valid_payload
from test_proxy_server import ENV, MASTER, Served, generic_logger_extra, write_config

import lmgate
from lmgate._callbacks.encoding import dumps_any_keys, encode_salvaged, marker
from lmgate._callbacks.record import copy_data
from lmgate.loggers import BatchLogger, InMemoryExporter

FLAG = "lmgate_encoding_errors"
MESSAGES = [{"role": "user", "content": "Hi"}]


def nested(levels: int) -> dict[str, Any]:
    """A dict ``levels`` dicts deep ({"a": {"a": ... {}}})."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


# (metadata, the flagged path, what the reason says); each must leave the record whole and valid
BAD_METADATA = [
    pytest.param({"tags": "prod"}, "request_tags", "got str", id="tags-string"),
    pytest.param({"tags": {"team": "x"}}, "request_tags", "got dict", id="tags-dict"),
    pytest.param({"tags": ["ok", 5]}, "request_tags", "left out: int", id="tags-mixed"),
    pytest.param({"deep": nested(253)}, "metadata.deep", "nested too deeply", id="nested-253"),
    pytest.param({"deep": nested(900)}, "metadata.deep", "nested too deeply", id="nested-900"),
    pytest.param({"big": 2**70}, "metadata.big", "64-bit", id="big-int"),
]


@pytest.fixture
def memory_logger() -> Iterator[tuple[BatchLogger, InMemoryExporter]]:
    exporter = InMemoryExporter()
    lg = BatchLogger(exporter, name="records-test", spool="off", batch_size=1)
    lmgate.callbacks = [lg]
    yield lg, exporter
    lg.close(0)


@pytest.mark.parametrize(("metadata", "path", "reason"), BAD_METADATA)
def test_a_record_with_unencodable_metadata_is_delivered_flagged(
    memory_logger, metadata, path, reason
) -> None:
    """The call's record arrives with the bad part replaced, the rest of the metadata kept, and the part named in the flag."""
    lg, exporter = memory_logger
    lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", metadata={**metadata, "team": "search"}
    )
    flush()
    (record,) = exporter.records
    assert_valid_payload(record)
    assert record["metadata"]["team"] == "search"
    flags = record["metadata"][FLAG]
    assert path in flags and reason in flags[path]
    key = path.split(".")[1] if path.startswith("metadata.") else None
    if key is not None:
        assert record["metadata"][key] == marker(flags[path])
    stats = lg.stats()
    assert (stats["emitted"], stats["delivered"], stats["flagged"], stats["dropped_total"]) == (1, 1, 1, 0)


def test_a_clean_record_has_no_flag_and_a_client_cannot_set_one(memory_logger) -> None:
    """Records without trouble carry no flag; a flag sent in the caller's metadata is not taken as ours."""
    lg, exporter = memory_logger
    lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", metadata={"tags": ["a"], FLAG: {"x": "y"}}
    )
    flush()
    (record,) = exporter.records
    assert FLAG not in record["metadata"] and record["request_tags"] == ["a"]
    assert lg.stats()["flagged"] == 0


def test_unencodable_messages_are_narrowed_to_the_bad_value(memory_logger) -> None:
    """A value in the messages that JSON cannot hold replaces that value only (the call itself is
    refused, by the mock as by a real provider: its body cannot be encoded)."""
    lg, exporter = memory_logger
    messages = [{"role": "user", "content": "Hi", "extra": 2**70}]
    with pytest.raises(lmgate.BadRequestError):
        lmgate.completion(model="gpt-4o-mini", messages=messages, mock_response="ok")
    flush()
    (record,) = exporter.records
    assert record["messages"][0]["content"] == "Hi"
    assert record["messages"][0]["extra"].startswith("<unencodable: ")
    assert list(record["metadata"][FLAG]) == ["messages[0].extra"]


def test_hooks_enqueue_salvaged_records_and_count_unencodable_ones(memory_logger) -> None:
    """The hook path salvages a payload dict too; a record that is not an object and cannot be encoded is dropped and counted."""
    lg, exporter = memory_logger
    lg.enqueue({"id": "x", "metadata": {"big": 2**70}})
    lg.enqueue([2**70])
    assert lg.flush(10)
    (record,) = exporter.records
    assert record["metadata"] == {
        "big": marker("Integer exceeds 64-bit range"),
        FLAG: {"metadata.big": "Integer exceeds 64-bit range"},
    }
    stats = lg.stats()
    assert stats["dropped"] == {"unencodable": 1}
    assert stats["emitted"] == stats["delivered"] + stats["dropped_total"] + stats["pending"] == 2
    assert stats["flagged"] == 1


def test_salvage_keeps_every_encodable_sibling() -> None:
    """Only the failing leaves are replaced, at the depth they sit in the record."""
    record = {"a": 1, "metadata": {"ok": [1, 2], "deep": nested(253), "also": {"fine": True, "bad": 2**64}}}
    data, flagged = encode_salvaged(record)
    out = orjson.loads(data)
    assert flagged
    assert out["a"] == 1 and out["metadata"]["ok"] == [1, 2] and out["metadata"]["also"]["fine"] is True
    assert out["metadata"][FLAG] == {
        "metadata.deep": "nested too deeply",
        "metadata.also.bad": "Integer exceeds 64-bit range",
    }
    # one level less deep fits: it is kept whole
    assert orjson.loads(encode_salvaged({"metadata": {"deep": nested(252), "bad": 2**64}})[0])["metadata"][
        "deep"
    ] == nested(252)


@pytest.mark.parametrize("depth", [300, 900])
def test_a_provider_body_too_deep_for_json_is_a_400_with_one_record(
    memory_logger, fake_provider: FakeProvider, depth: int
) -> None:
    """A message nested deeper than JSON encoding allows: a BadRequestError saying so (not a TypeError),
    nothing sent upstream, and the call's one failure record, flagged."""
    lg, exporter = memory_logger
    messages = [{"role": "user", "content": "Hi", "x": nested(depth)}]
    with pytest.raises(lmgate.BadRequestError, match="nested too deeply"):
        lmgate.completion(
            model="openai/gpt-4o-mini",
            api_base=f"{fake_provider.base_url}/v1",
            api_key="sk-x-0123456789",
            messages=messages,
        )
    flush()
    (record,) = exporter.records
    assert record["status"] == "failure" and "nested too deeply" in record["metadata"][FLAG]["messages"]
    assert fake_provider.requests == []


def test_copy_data_copies_any_depth_and_cuts_cycles() -> None:
    """Deeper than the recursion limit is copied (by a loop), container by container; a cycle becomes a marker."""
    deep = nested(5000)
    copy = copy_data(deep)
    original = deep
    while original:
        assert copy is not original and list(copy) == list(original)
        original, copy = original["a"], copy["a"]
    cycle: list[Any] = [1]
    cycle.append(cycle)
    assert "circular reference" in str(copy_data(cycle, 1000))


def test_odd_dict_keys_are_made_text_without_a_flag(memory_logger) -> None:
    """A tuple key (which orjson refuses) becomes its text; nothing is lost, so nothing is flagged."""
    lg, exporter = memory_logger
    lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", metadata={"key": {(1, 2): "v"}}
    )
    flush()
    (record,) = exporter.records
    assert record["metadata"]["key"] == {"(1, 2)": "v"} and FLAG not in record["metadata"]
    assert lg.stats()["flagged"] == 0


def test_int_and_enum_keys_encode_as_with_orjsons_non_str_keys_option(memory_logger) -> None:
    """Records are encoded without OPT_NON_STR_KEYS first (faster) and again with it when a key is
    not text: the bytes are what the option alone gives."""
    import enum

    class Colour(str, enum.Enum):
        RED = "red"

    value = {"a": {1: "one", Colour.RED: [{2.5: None}]}, "b": "text"}
    assert dumps_any_keys(value) == orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    assert dumps_any_keys({"k": [1, "x"]}) == orjson.dumps({"k": [1, "x"]})
    lg, exporter = memory_logger
    lmgate.completion(
        model="gpt-4o-mini", messages=MESSAGES, mock_response="ok", metadata={"n": {7: "seven"}}
    )
    flush()
    (record,) = exporter.records
    assert record["metadata"]["n"] == {"7": "seven"} and FLAG not in record["metadata"]


# ---- through a real `lmgate serve` ----
@pytest.mark.parametrize(
    ("metadata", "path"),
    [
        pytest.param({"tags": "prod"}, "request_tags", id="tags-string"),
        pytest.param({"tags": {"team": "x"}}, "request_tags", id="tags-dict"),
        pytest.param({"deep": nested(253)}, "metadata.deep", id="nested-253"),
    ],
)
def test_proxy_delivers_every_record_flagged(
    tmp_path: Path,
    fake_provider: FakeProvider,
    log_receiver: LogReceiver,
    metadata: dict[str, Any],
    path: str,
) -> None:
    """Through `lmgate serve` with a generic_api logger: a request with bad metadata gets its 200 and its record, flagged, next to a clean one."""
    config = write_config(tmp_path, fake_provider, generic_logger_extra(log_receiver, tmp_path, 3600))
    served = Served(
        config,
        tmp_path,
        {**ENV, "SERVE_RECEIVER_URL": log_receiver.url, "SERVE_WEBHOOK_TOKEN": "tok-0123456789"},
    )
    try:
        served.wait_ready()
        with httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30
        ) as client:
            for md in (metadata, {"team": "clean"}):
                body = {"model": "fast", "messages": MESSAGES, "metadata": md}
                r = client.post(
                    "/v1/chat/completions",
                    content=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                )
                assert r.status_code == 200, r.text
            metrics = client.get("/metrics").text
    finally:
        code = served.stop()  # shutdown flushes the logger
    assert code == 0, served.stderr
    assert log_receiver.wait_for_records(2, timeout=10)
    bad, clean = log_receiver.records
    assert_valid_payload(bad)
    assert path in bad["metadata"][FLAG]
    assert FLAG not in clean["metadata"] and clean["metadata"]["team"] == "clean"
    assert 'lmgate_logger_flagged_total{logger="team_webhook"} 1' in metrics
    assert "could not be encoded" not in served.stderr  # delivered, not dropped


def test_proxy_serves_deep_metadata_with_one_flagged_record_and_refuses_deep_parameters(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """Metadata nested 253 to 900 levels: a 200 and exactly one record each, the deep part replaced and
    flagged; a message field or parameter nested as deep: a clean 400, never a 500 or a traceback."""
    config = write_config(tmp_path, fake_provider, generic_logger_extra(log_receiver, tmp_path, 3600))
    served = Served(
        config,
        tmp_path,
        {**ENV, "SERVE_RECEIVER_URL": log_receiver.url, "SERVE_WEBHOOK_TOKEN": "tok-0123456789"},
    )
    depths = (253, 300, 500, 900)
    try:
        served.wait_ready()
        with httpx.Client(
            base_url=served.url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30
        ) as client:

            def post(body: dict[str, Any]) -> httpx.Response:
                # json.dumps, not httpx's encoder: the stdlib one copes with any depth here
                return client.post(
                    "/v1/chat/completions",
                    content=json.dumps(body),
                    headers={"Content-Type": "application/json"},
                )

            for depth in depths:
                r = post(
                    {
                        "model": "fast",
                        "messages": MESSAGES,
                        "metadata": {"depth": depth, "deep": nested(depth)},
                    }
                )
                assert r.status_code == 200, (depth, r.text)
            for depth in depths:
                deep_message = [{"role": "user", "content": "Hi", "x": nested(depth)}]
                for body in (
                    {"model": "fast", "messages": deep_message},
                    {"model": "fast", "messages": MESSAGES, "user": nested(depth)},
                    {"model": "fast", "messages": MESSAGES, "tools": [nested(depth)]},
                ):
                    r = post(body)
                    assert r.status_code == 400, (depth, r.text)
                    assert "nested too deeply" in r.json()["error"]["message"]
            # moderately nested parameters still pass
            shallow = [{"role": "user", "content": "Hi", "x": nested(20)}]
            assert post({"model": "fast", "messages": shallow, "metadata": {"depth": 20}}).status_code == 200
    finally:
        code = served.stop()
    assert code == 0, served.stderr
    assert log_receiver.wait_for_records(len(depths) + 1, timeout=10)
    records = log_receiver.records
    assert sorted(r["metadata"]["depth"] for r in records) == sorted(
        (*depths, 20)
    )  # one record per served request
    for record in records:
        assert_valid_payload(record)
        if record["metadata"]["depth"] != 20:
            assert record["metadata"]["deep"] == marker("nested too deeply")
            assert record["metadata"][FLAG] == {
                "metadata.deep": "nested too deeply",
                "metadata.requester_metadata.deep": "nested too deeply",  # the client's copy (identity)
            }
    assert "Traceback" not in served.stderr and "RecursionError" not in served.stderr
