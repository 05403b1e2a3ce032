"""The disk spool: write-ahead before a call returns, acknowledgements, adoption by the next logger."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest
from fakes import LogReceiver
from helpers import wal_lines

import lmgate
from lmgate import RetryPolicy
from lmgate.loggers import GenericAPILogger, Spool

MESSAGES = [{"role": "user", "content": "Hi"}]
FAST = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)


def test_record_is_on_disk_before_the_call_returns(tmp_path, log_receiver: LogReceiver) -> None:
    """With the write-ahead spool, a call's record is in the spool file when the call returns."""
    log_receiver.stop()
    logger = GenericAPILogger(
        endpoint=log_receiver.url, spool_dir=str(tmp_path), spool="write_ahead", retry_policy=FAST
    )
    lmgate.callbacks = [logger]
    try:
        r = lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
        lines = wal_lines(tmp_path)
        assert [orjson.loads(x)["litellm_call_id"] for x in lines] == [r._hidden_params["litellm_call_id"]]
    finally:
        logger.close(0)


def test_delivered_segments_are_deleted(tmp_path, log_receiver: LogReceiver) -> None:
    """Once every record is delivered and the logger closes, the spool directory holds no segment."""
    logger = GenericAPILogger(endpoint=log_receiver.url, spool_dir=str(tmp_path), retry_policy=FAST)
    lmgate.callbacks = [logger]
    for _ in range(3):
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="hi")
    assert lmgate.flush_callbacks(10)
    assert logger.close(1)
    assert [n for n in os.listdir(tmp_path) if n.endswith(".wal")] == []


def spooled_logger(log_receiver: LogReceiver, spool_dir: Any, mode: str) -> GenericAPILogger:
    """A logger to ``log_receiver`` on the spool directory ``spool_dir``, in spool ``mode``."""
    return GenericAPILogger(
        endpoint=log_receiver.url, spool=mode, spool_dir=str(spool_dir), retry_policy=FAST
    )


@pytest.mark.parametrize("mode", ["write_ahead", "exit"])
def test_next_logger_sends_what_the_last_one_left(tmp_path, log_receiver: LogReceiver, mode: str) -> None:
    """Records not delivered when a logger closes are sent by the next logger on the same spool, once."""
    log_receiver.stop()
    first = spooled_logger(log_receiver, tmp_path, mode)
    lmgate.callbacks = [first]
    ids = [
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=f"r{i}")._hidden_params[
            "litellm_call_id"
        ]
        for i in range(5)
    ]
    assert not first.close(0.2)
    assert first.stats()["spooled"] == 5 and first.stats()["pending"] == 5
    # in one process the first logger's last request (refused) may still be under way: it keeps
    # the spool until then, as a process that is still alive does
    assert first.processor.wait_released(10)
    lmgate.callbacks = []
    log_receiver.start()
    second = spooled_logger(log_receiver, tmp_path, mode)
    try:
        assert second.stats()["recovered"] == 5
        assert second.flush(10)
        assert [r["litellm_call_id"] for r in log_receiver.records] == ids
    finally:
        second.close(1)
    third = spooled_logger(log_receiver, tmp_path, mode)
    assert third.stats()["recovered"] == 0
    third.close(0)


@pytest.mark.parametrize("mode", ["write_ahead", "exit"])
def test_a_batch_on_the_wire_at_close_is_delivered_once(
    tmp_path, log_receiver: LogReceiver, mode: str
) -> None:
    """A batch still on the wire when close() gives up is counted as spooled, and its lines stay
    this process's until the request ends: answered after close, it is delivered and acknowledged
    here, and a logger started meanwhile on the same spool does not send it again."""
    log_receiver.hold()  # the receiver takes the request and answers only on release()
    first = spooled_logger(log_receiver, tmp_path, mode)
    for i in range(5):
        first.enqueue({"n": i})
    first.processor.ship_now()
    assert log_receiver.wait_for_requests(1)  # on the wire, held
    assert not first.close(0)
    assert first.stats()["spooled"] == 5 and first.stats()["pending"] == 5
    second = spooled_logger(log_receiver, tmp_path, mode)
    try:
        log_receiver.release()  # the first logger's request is answered 200, after its close()
        assert log_receiver.wait_for_requests(1, ok_only=True)
        assert second.flush(10)
        assert [r["n"] for r in log_receiver.records] == [0, 1, 2, 3, 4]
        assert second.stats()["recovered"] == 0  # the first held the lines it was sending
        assert first.processor.wait_released(10)
        assert first.stats()["delivered"] == 5 and first.stats()["pending"] == 0
    finally:
        second.close(1)
    third = spooled_logger(log_receiver, tmp_path, mode)
    assert third.stats()["recovered"] == 0
    third.close(0)


def test_spool_off_counts_what_is_left_at_close(tmp_path, log_receiver: LogReceiver) -> None:
    """Without a spool, records still pending at close are dropped and counted as 'shutdown'."""
    log_receiver.stop()
    logger = GenericAPILogger(endpoint=log_receiver.url, spool="off", retry_policy=FAST)
    logger.enqueue({"a": 1})
    assert not logger.close(0.1)
    s = logger.stats()
    assert s["dropped"] == {"shutdown": 1} and s["emitted"] == 1 and s["pending"] == 0


def test_acknowledged_records_are_not_adopted(tmp_path) -> None:
    """Adoption returns only the lines a dead owner had not acknowledged."""
    owner = Spool(str(tmp_path))
    refs = owner.append([b'{"n":0}', b'{"n":1}', b'{"n":2}', b'{"n":3}'])
    owner.ack([refs[0], refs[2]])
    owner.close()
    found, more = Spool(str(tmp_path)).adopt(100, 10**6)
    assert [data for data, _ in found] == [b'{"n":1}', b'{"n":3}'] and not more


def test_a_live_owners_segment_is_not_adopted(tmp_path) -> None:
    """A segment whose owner still holds it (its flock) is left alone by another spool."""
    owner = Spool(str(tmp_path))
    owner.append([b'{"n":0}'])
    try:
        assert Spool(str(tmp_path)).adopt(100, 10**6) == ([], False)
    finally:
        owner.close()
    found, _ = Spool(str(tmp_path)).adopt(100, 10**6)
    assert [data for data, _ in found] == [b'{"n":0}']


def test_a_torn_last_record_is_ignored(tmp_path) -> None:
    """A record cut mid-write (no trailing newline) is skipped; the complete ones are adopted."""
    owner = Spool(str(tmp_path))
    (ref,) = owner.append([b'{"n":0}'])
    with open(ref[0].path, "ab") as f:
        f.write(b'{"n":1')
    owner.close()
    found, _ = Spool(str(tmp_path)).adopt(100, 10**6)
    assert [data for data, _ in found] == [b'{"n":0}']


def test_adoption_respects_the_queue_bound(tmp_path) -> None:
    """Adoption stops at whole segments once the record limit is reached and says more is left."""
    for i in range(3):
        owner = Spool(str(tmp_path))
        owner.append([b'{"seg":%d}' % i] * 4)
        owner.close()
    found, more = Spool(str(tmp_path)).adopt(5, 10**6)
    assert len(found) == 8 and more


def test_default_spool_writes_nothing_while_delivery_works(tmp_path, log_receiver: LogReceiver) -> None:
    """By default (spool="exit") no payload touches the disk while the endpoint takes them."""
    logger = GenericAPILogger(endpoint=log_receiver.url, spool_dir=str(tmp_path), retry_policy=FAST)
    lmgate.callbacks = [logger]
    try:
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="private answer")
        assert lmgate.flush_callbacks(10)
        assert len(log_receiver.records) == 1
        assert wal_lines(tmp_path) == []
    finally:
        logger.close(5)


def test_append_one_numbers_lines_like_append_and_rolls_segments(tmp_path) -> None:
    """append_one (the write-ahead path) and append share line numbers, acks and segment rolling."""
    owner = Spool(str(tmp_path), segment_max_bytes=40)
    refs = [owner.append_one(b'{"n":%d}' % i) for i in range(3)]
    refs += owner.append([b'{"n":3}', b'{"n":4}'])
    refs += [owner.append_one(b'{"n":%d}' % i) for i in range(5, 9)]
    assert len({ref[0].name for ref in refs}) >= 2  # ~8 bytes a line against a 40-byte segment
    owner.ack([refs[1], refs[6]])
    owner.close()
    found, more = Spool(str(tmp_path)).adopt(100, 10**6)
    assert [orjson.loads(data)["n"] for data, _ in found] == [0, 2, 3, 4, 5, 7, 8] and not more
