"""A batch logger written for the reference (a ``CustomBatchLogger`` subclass, as its docs show)
runs unchanged and gets lmgate's retries, bounds and exit flush; a subclass's own hooks are called;
the decision of when to ship is a pure function of the queue and the clock."""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
import textwrap
from typing import Any

import httpx
from fakes import LogReceiver

import lmgate
from lmgate import RetryPolicy
from lmgate.integrations import takes_summaries
from lmgate.integrations.custom_batch_logger import CustomBatchLogger
from lmgate.loggers import BatchLogger, InMemoryExporter
from lmgate.loggers.processor import ship_wait

MESSAGES = [{"role": "user", "content": "Hi"}]
FAST = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)


class WebhookBatchLogger(CustomBatchLogger):
    """Written as the reference's docs and integrations write one (nothing lmgate-specific)."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.url = url
        self.seen = 0
        self.flush_lock = asyncio.Lock()
        super().__init__(**kwargs, flush_lock=self.flush_lock)
        asyncio.create_task(self.periodic_flush())

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
        self.seen += 1
        self.log_queue.append(kwargs["standard_logging_object"])
        if len(self.log_queue) >= self.batch_size:
            await self.flush_queue()

    async def async_send_batch(self):  # type: ignore[no-untyped-def]
        if not self.log_queue:
            return
        async with httpx.AsyncClient() as client:  # one per batch: nothing is left open at the end
            response = await client.post(self.url, json=list(self.log_queue))
        response.raise_for_status()


def test_a_reference_batch_logger_runs_unchanged_and_its_failed_batches_are_retried(
    log_receiver: LogReceiver, tmp_path
) -> None:
    """Its hooks run for async and sync calls, its async_send_batch() ships every record, and the
    batches the receiver refused with 500 are retried instead of dropped."""
    log_receiver.fail_next(2, 500)  # the reference would drop these batches; lmgate retries them

    async def main() -> WebhookBatchLogger:
        lg = WebhookBatchLogger(
            log_receiver.url, batch_size=5, flush_interval=3600, retry_policy=FAST, spool_dir=str(tmp_path)
        )
        lmgate.callbacks = [lg]
        for i in range(12):
            await lmgate.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response=f"r{i}")
        return lg

    lg = asyncio.run(main())
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="sync")  # a sync call too
    try:
        assert lmgate.flush_callbacks(10)
        assert lg.flush(10)
        assert lg.seen == 13  # the subclass's own hook ran for every call
        contents = sorted(r["response"]["choices"][0]["message"]["content"] for r in log_receiver.records)
        assert contents == sorted([f"r{i}" for i in range(12)] + ["sync"])
        stats = lg.stats()
        assert stats["delivered"] == 13 and stats["dropped_total"] == 0 and stats["retried"] >= 2
        assert len(lg.log_queue) == 0  # outside async_send_batch the queue reads empty
    finally:
        lg.close(5)


def test_a_reference_batch_logger_is_flushed_at_exit(log_receiver: LogReceiver, tmp_path) -> None:
    """The program ends without flushing: lmgate's exit flush sends what the subclass queued."""
    code = textwrap.dedent(
        f"""
        import asyncio, httpx, lmgate
        from lmgate.integrations.custom_batch_logger import CustomBatchLogger

        class Hook(CustomBatchLogger):
            async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
                self.log_queue.append(kwargs["standard_logging_object"])

            async def async_send_batch(self):
                async with httpx.AsyncClient() as client:
                    (await client.post({log_receiver.url!r}, json=list(self.log_queue))).raise_for_status()

        lmgate.callbacks = [Hook(flush_interval=3600, spool_dir={str(tmp_path)!r})]
        for i in range(7):
            lmgate.completion(model="gpt-4o-mini", messages=[{{"role": "user", "content": "x"}}], mock_response="y")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert result.returncode == 0, result.stderr
    assert len(log_receiver.records) == 7


def test_a_batch_logger_subclass_that_overrides_a_hook_is_called() -> None:
    """Its own hook runs (not the inline fast path that skips hooks), and super() still queues."""

    class Tagging(BatchLogger):
        def log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
            kwargs["standard_logging_object"]["metadata"]["tag"] = "mine"
            super().log_success_event(kwargs, response_obj, start_time, end_time)

    exporter = InMemoryExporter()
    lg = Tagging(exporter, name="tagging", spool="off")
    assert not takes_summaries(lg)
    plain = BatchLogger(InMemoryExporter(), name="plain", spool="off")
    assert takes_summaries(plain)
    plain.close()
    try:
        lmgate.callbacks = [lg]
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")
        assert lmgate.flush_callbacks(10) and lg.flush(10)
        assert [r["metadata"]["tag"] for r in exporter.records] == ["mine"]
    finally:
        lg.close(5)


def test_when_to_ship_is_a_pure_function_of_the_queue_and_the_clock() -> None:
    """batch_size, a flush, or the oldest record's age: nothing else decides."""

    def wait(**kw: Any) -> float:
        args = {"queued": 3, "oldest_t": 100.0, "oldest_seq": 7, "flush_upto": 0}
        args.update(batch_size=10, flush_interval=5.0, now=101.0)
        return ship_wait(**{**args, **kw})

    assert wait(queued=0) == math.inf  # nothing waits: sleep until woken
    assert wait() == 4.0  # the oldest has waited 1 s of 5
    assert wait(now=105.0) == 0.0 and wait(now=200.0) == 0.0  # its time has come
    assert wait(queued=10) == 0.0  # a full batch
    assert wait(flush_upto=7) == 0.0 and wait(flush_upto=6) == 4.0  # a flush asked for it (or not)


def test_batch_settings_are_one_frozen_object_checked_once() -> None:
    """Built once through lmgate._conf (durations take units); a bad value names its setting."""
    import dataclasses

    import pytest

    from lmgate.exceptions import ConfigError
    from lmgate.loggers.batch_settings import BatchSettings

    settings = BatchSettings.build(name="x", flush_interval="250ms", exit_timeout="2s", spool="off")
    assert (settings.flush_interval, settings.exit_timeout, settings.spool_dir) == (0.25, 2.0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.batch_size = 1  # type: ignore[misc]
    with pytest.raises(ConfigError, match="spool"):
        BatchSettings.build(name="x", spool="sometimes")
    with pytest.raises(ConfigError, match="max_in_flight"):
        BatchSettings.build(name="x", max_in_flight=65)


class ListResettingLogger(CustomBatchLogger):
    """As the reference's own subclasses write one: ``self.log_queue = []`` after ``super().__init__()``."""

    def __init__(self, **kwargs: Any) -> None:
        self.sent: list[Any] = []
        super().__init__(**kwargs)
        self.log_queue = []

    def log_success_event(self, kwargs, response_obj, start_time, end_time):  # type: ignore[no-untyped-def]
        self.log_queue.append(kwargs["standard_logging_object"]["id"])

    async def async_send_batch(self):  # type: ignore[no-untyped-def]
        self.sent.extend(self.log_queue)


def test_a_subclass_that_assigns_a_list_to_log_queue_still_ships_every_record(tmp_path) -> None:
    """Assigning a list to log_queue keeps lmgate's queue: the records are shipped, the list's items too."""
    lg = ListResettingLogger(batch_size=3, flush_interval=3600, spool_dir=str(tmp_path))
    lg.log_queue = ["early"]  # items of an assigned list are taken, not lost
    lmgate.callbacks = [lg]
    try:
        for i in range(7):
            lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=f"r{i}")
        assert lmgate.flush_callbacks(10) and lg.flush(10)
        assert len(lg.sent) == 8 and "early" in lg.sent
        assert lg.stats()["delivered"] == 8
    finally:
        lg.close(5)


def test_bad_reference_batch_env_variables_are_config_errors_naming_them(monkeypatch) -> None:
    """DEFAULT_BATCH_SIZE / DEFAULT_FLUSH_INTERVAL_SECONDS that are not numbers name the variable."""
    from lmgate.exceptions import ConfigError

    for variable in ("DEFAULT_BATCH_SIZE", "DEFAULT_FLUSH_INTERVAL_SECONDS"):
        monkeypatch.setenv(variable, "lots")
        try:
            CustomBatchLogger()
        except ConfigError as error:
            assert variable in str(error)
        else:
            raise AssertionError(f"{variable}=lots was accepted")
        monkeypatch.delenv(variable)
