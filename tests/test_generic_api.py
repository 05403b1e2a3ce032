"""GenericAPILogger against a real receiver on 127.0.0.1: formats, configuration, retries, drops, secrets."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakes import LogReceiver

import lmgate
from lmgate import RetryPolicy
from lmgate.loggers import GenericAPILogger, LoggerConfigError
from lmgate.loggers.generic_api import load_presets

MESSAGES = [{"role": "user", "content": "Hi"}]
# retries in virtual time: no delay at all
FAST = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)


@pytest.fixture
def make(tmp_path: Any) -> Iterator[Callable[..., GenericAPILogger]]:
    """Build loggers with a private spool and zero-delay retries; close them after the test."""
    made: list[GenericAPILogger] = []

    def build(**kw: Any) -> GenericAPILogger:
        kw.setdefault("spool_dir", str(tmp_path / f"spool{len(made)}"))
        kw.setdefault("retry_policy", FAST)
        kw.setdefault("flush_interval", 60)
        logger = GenericAPILogger(**kw)
        made.append(logger)
        return logger

    yield build
    for logger in made:
        logger.close(0)


def calls(n: int, **kw: Any) -> list[str]:
    """n mock calls; their call ids."""
    ids = []
    for i in range(n):
        r = lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=f"r{i}", **kw)
        ids.append(r._hidden_params["litellm_call_id"])
    return ids


def test_json_array_posts_standard_payloads_in_batches(make, log_receiver: LogReceiver) -> None:
    """json_array sends one JSON array per batch of standard logging payloads, with an Idempotency-Key."""
    logger = make(endpoint=log_receiver.url, batch_size=3)
    lmgate.callbacks = [logger]
    ids = calls(7)
    assert lmgate.flush_callbacks(10)
    # up to max_in_flight batches travel at once, so batches may land in any order
    assert sorted(r["litellm_call_id"] for r in log_receiver.records) == sorted(ids)
    assert sorted(len(r.records) for r in log_receiver.requests) == [1, 3, 3]
    req = log_receiver.requests[0]
    assert req.headers["content-type"] == "application/json"
    assert json.loads(req.decoded_body)[0]["status"] == "success"
    keys = [r.headers["idempotency-key"] for r in log_receiver.requests]
    assert len(set(keys)) == 3
    assert logger.stats()["delivered"] == 7


def test_ndjson_sends_one_record_per_line(make, log_receiver: LogReceiver) -> None:
    """ndjson sends application/x-ndjson with one JSON record per line."""
    lmgate.callbacks = [make(endpoint=log_receiver.url, log_format="ndjson")]
    ids = calls(3)
    assert lmgate.flush_callbacks(10)
    (req,) = log_receiver.requests
    assert req.headers["content-type"] == "application/x-ndjson"
    lines = req.decoded_body.decode().splitlines()
    assert [json.loads(line)["litellm_call_id"] for line in lines] == ids


def test_single_sends_one_request_per_record_with_bounded_concurrency(
    make, log_receiver: LogReceiver
) -> None:
    """single sends one request per record, never more than max_concurrency at a time, each with its own key."""
    lmgate.callbacks = [make(endpoint=log_receiver.url, log_format="single", max_concurrency=2, batch_size=6)]
    log_receiver.hold()
    ids = calls(6)
    assert log_receiver.wait_for_requests(2)
    assert len(log_receiver.all_requests) == 2  # the other four wait for a free slot
    log_receiver.release()
    assert lmgate.flush_callbacks(10)
    assert sorted(r["litellm_call_id"] for r in log_receiver.records) == sorted(ids)
    assert all(len(r.records) == 1 for r in log_receiver.requests)
    assert len({r.headers["idempotency-key"] for r in log_receiver.requests}) == 6


def test_event_types_filter_success_and_failure(make, log_receiver: LogReceiver) -> None:
    """event_types=['llm_api_failure'] ships failures only."""
    lmgate.callbacks = [make(endpoint=log_receiver.url, event_types=["llm_api_failure"])]
    calls(2)
    with pytest.raises(lmgate.RateLimitError):
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="lmgate.RateLimitError")
    assert lmgate.flush_callbacks(10)
    assert [r["status"] for r in log_receiver.records] == ["failure"]


def test_unknown_event_type_and_log_format_are_named(make, log_receiver: LogReceiver) -> None:
    """A wrong event type or log format is a clear error naming the setting."""
    with pytest.raises(LoggerConfigError, match="event_types"):
        make(endpoint=log_receiver.url, event_types=["llm_api_sucess"])
    with pytest.raises(LoggerConfigError, match="log_format"):
        make(endpoint=log_receiver.url, log_format="csv")
    with pytest.raises(LoggerConfigError, match="batch_size"):
        make(endpoint=log_receiver.url, batch_size=0)


def test_gzip_compresses_the_body(make, log_receiver: LogReceiver) -> None:
    """gzip=True sends Content-Encoding: gzip and the receiver decodes the same records."""
    lmgate.callbacks = [make(endpoint=log_receiver.url, gzip=True)]
    ids = calls(2)
    assert lmgate.flush_callbacks(10)
    (req,) = log_receiver.requests
    assert req.headers["content-encoding"] == "gzip"
    assert req.body[:2] == b"\x1f\x8b"
    assert [r["litellm_call_id"] for r in log_receiver.records] == ids


def test_async_calls_are_delivered(make, log_receiver: LogReceiver) -> None:
    """Records of acompletion calls are delivered too, and aflush waits for them."""
    logger = make(endpoint=log_receiver.url)
    lmgate.callbacks = [logger]

    async def run() -> None:
        for i in range(3):
            await lmgate.acompletion(model="gpt-4o-mini", messages=MESSAGES, mock_response=f"a{i}")
        assert await logger.aflush(10)

    asyncio.run(run())
    assert len(log_receiver.records) == 3


# ---- configuration paths ----


def test_env_configured_generic_api_name(monkeypatch, tmp_path, log_receiver: LogReceiver) -> None:
    """callbacks=['generic_api'] uses GENERIC_LOGGER_ENDPOINT and GENERIC_LOGGER_HEADERS."""
    monkeypatch.setenv("GENERIC_LOGGER_ENDPOINT", log_receiver.url)
    monkeypatch.setenv("GENERIC_LOGGER_HEADERS", "X-Team=search,Authorization=Bearer tok-123456789")
    monkeypatch.setenv("LMGATE_CACHE_DIR", str(tmp_path))
    lmgate.callbacks = ["generic_api"]
    try:
        ids = calls(2)
        assert lmgate.flush_callbacks(10)
        (req,) = log_receiver.requests
        assert req.headers["x-team"] == "search"
        assert req.headers["authorization"] == "Bearer tok-123456789"
        assert [r["litellm_call_id"] for r in log_receiver.records] == ids
    finally:
        from lmgate._callbacks.registry import resolve_callback

        resolve_callback("generic_api").close(0)


def test_callback_settings_entry(monkeypatch, tmp_path, log_receiver: LogReceiver) -> None:
    """A callback_settings entry with callback_type generic_api is used by name, with its settings."""
    monkeypatch.setenv("HOOK_TOKEN", "tok-abcdef123456")
    lmgate.callback_settings = {
        "my_api": {
            "callback_type": "generic_api",
            "endpoint": log_receiver.url,
            "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"},
            "log_format": "ndjson",
            "batch_size": 2,
            "flush_interval": 60,
            "spool_dir": str(tmp_path),
        }
    }
    lmgate.callbacks = ["my_api"]
    from lmgate._callbacks.registry import resolve_callback

    logger = resolve_callback("my_api")
    try:
        assert resolve_callback("my_api") is logger
        calls(2)
        assert log_receiver.wait_for_records(2)  # batch_size=2 sends without a flush
        (req,) = log_receiver.requests
        assert req.headers["authorization"] == "Bearer tok-abcdef123456"
        assert req.headers["content-type"] == "application/x-ndjson"
    finally:
        logger.close(0)


def test_callback_settings_unknown_key_is_named() -> None:
    """An unknown key in a callback_settings entry is an error naming the entry and the key."""
    lmgate.callback_settings = {
        "hook": {"callback_type": "generic_api", "endpoint": "http://127.0.0.1:9/x", "batchsize": 5}
    }
    lmgate.callbacks = ["hook"]
    with pytest.raises(LoggerConfigError, match=r"'hook'.*batchsize"):
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")


def test_unknown_name_is_not_ours() -> None:
    """A name that is neither generic_api, a settings entry nor a preset is rejected by the registry."""
    lmgate.callbacks = ["no_such_logger"]
    with pytest.raises(ValueError, match="no_such_logger"):
        lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")


def test_presets_shipped() -> None:
    """The preset file ships the documented presets with their defaults."""
    presets = load_presets()
    assert {"sample_callback", "rubrik", "sumologic", "qualifire_eval", "ramp"} <= set(presets)
    assert presets["sumologic"]["log_format"] == "ndjson"
    assert presets["rubrik"]["event_types"] == ["llm_api_success"]


def test_preset_by_name_resolves_its_template_variables(
    monkeypatch, tmp_path, log_receiver: LogReceiver
) -> None:
    """callbacks=['sumologic'] takes the endpoint from SUMOLOGIC_WEBHOOK_URL and sends NDJSON."""
    monkeypatch.setenv("SUMOLOGIC_WEBHOOK_URL", log_receiver.url)
    monkeypatch.setenv("LMGATE_CACHE_DIR", str(tmp_path))
    lmgate.callbacks = ["sumologic"]
    from lmgate._callbacks.registry import resolve_callback

    try:
        calls(1)
        assert lmgate.flush_callbacks(10)
        assert log_receiver.requests[0].headers["content-type"] == "application/x-ndjson"
    finally:
        resolve_callback("sumologic").close(0)


def test_preset_missing_variable_is_named(monkeypatch) -> None:
    """A preset whose environment variable is unset fails with the variable's name, not an empty URL."""
    monkeypatch.delenv("RUBRIK_WEBHOOK_URL", raising=False)
    with pytest.raises(LoggerConfigError, match="RUBRIK_WEBHOOK_URL"):
        GenericAPILogger(callback_name="rubrik", spool="off")


def test_overriding_a_preset_keeps_its_other_defaults(
    make, monkeypatch, tmp_path, log_receiver: LogReceiver
) -> None:
    """Settings under a preset's name override its endpoint but keep its event_types (rubrik: success only)."""
    monkeypatch.setenv("RUBRIK_API_KEY", "rk-0123456789")
    lmgate.callback_settings = {
        "rubrik": {"callback_type": "generic_api", "endpoint": log_receiver.url, "spool_dir": str(tmp_path)}
    }
    lmgate.callbacks = ["rubrik"]
    from lmgate._callbacks.registry import resolve_callback

    try:
        calls(1)
        with pytest.raises(lmgate.RateLimitError):
            lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="lmgate.RateLimitError")
        assert lmgate.flush_callbacks(10)
        assert [r["status"] for r in log_receiver.records] == ["success"]
        assert log_receiver.requests[0].headers["authorization"] == "Bearer rk-0123456789"
    finally:
        resolve_callback("rubrik").close(0)


@pytest.mark.parametrize("template", ["Bearer ${TOKEN_X}", "Bearer $TOKEN_X", "Bearer os.environ/TOKEN_X"])
def test_env_references_in_headers_and_endpoint(
    make, monkeypatch, log_receiver: LogReceiver, template: str
) -> None:
    """${VAR}, $VAR and os.environ/VAR resolve anywhere in header values and in the endpoint."""
    monkeypatch.setenv("TOKEN_X", "tk-99887766")
    monkeypatch.setenv("RX_URL", log_receiver.url)
    lmgate.callbacks = [make(endpoint="${RX_URL}", headers={"Authorization": template})]
    calls(1)
    assert lmgate.flush_callbacks(10)
    assert log_receiver.requests[0].headers["authorization"] == "Bearer tk-99887766"


def test_missing_env_reference_is_an_error_naming_it(make, monkeypatch) -> None:
    """An unset variable in a header is a LoggerConfigError naming the variable and the header."""
    monkeypatch.delenv("NOT_SET_TOKEN", raising=False)
    with pytest.raises(LoggerConfigError, match=r"Authorization.*NOT_SET_TOKEN"):
        make(endpoint="http://127.0.0.1:9/x", headers={"Authorization": "Bearer ${NOT_SET_TOKEN}"})


def test_missing_endpoint_is_an_error(monkeypatch) -> None:
    """No endpoint anywhere is an error that says where to set one."""
    monkeypatch.delenv("GENERIC_LOGGER_ENDPOINT", raising=False)
    with pytest.raises(LoggerConfigError, match="GENERIC_LOGGER_ENDPOINT"):
        GenericAPILogger(spool="off")


# ---- delivery ----


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_retryable_statuses_are_retried_with_the_same_key(
    make, log_receiver: LogReceiver, status: int
) -> None:
    """408, 429 and 5xx are retried until delivered, with the same Idempotency-Key each time."""
    logger = make(endpoint=log_receiver.url)
    lmgate.callbacks = [logger]
    log_receiver.fail_next(2, status)
    ids = calls(3)
    assert lmgate.flush_callbacks(10)
    assert [r["litellm_call_id"] for r in log_receiver.records] == ids
    attempts = log_receiver.all_requests
    assert [r.status for r in attempts] == [status, status, 200]
    assert len({r.headers["idempotency-key"] for r in attempts}) == 1
    s = logger.stats()
    assert (s["delivered"], s["retried"], s["dropped_total"], s["pending"]) == (3, 6, 0, 0)


def test_retry_after_is_honoured(make, log_receiver: LogReceiver) -> None:
    """A 429 with Retry-After: 7 waits 7 seconds (on the injected sleep) before the retry."""
    waits: list[float] = []
    logger = make(endpoint=log_receiver.url, retry_policy=RetryPolicy(sleep=waits.append))
    lmgate.callbacks = [logger]
    log_receiver.fail_next(1, 429, {"Retry-After": "7"})
    calls(1)
    assert lmgate.flush_callbacks(10)
    assert waits == [7.0]
    assert len(log_receiver.records) == 1


@pytest.mark.parametrize("status", [401, 404, 422])
def test_other_4xx_is_dropped_and_counted_never_retried(make, log_receiver: LogReceiver, status: int) -> None:
    """A non-retryable 4xx drops the batch, counted by reason, after exactly one request (400 and 413
    split the batch instead: tests/test_receiver_refusals.py)."""
    logger = make(endpoint=log_receiver.url)
    lmgate.callbacks = [logger]
    log_receiver.fail_next(1, status)
    calls(2)
    assert lmgate.flush_callbacks(10)
    assert len(log_receiver.all_requests) == 1
    s = logger.stats()
    assert s["dropped"] == {f"http_{status}": 2}
    assert (s["emitted"], s["delivered"], s["pending"]) == (2, 0, 0)


def test_max_retries_gives_up_and_counts(make, log_receiver: LogReceiver) -> None:
    """With max_retries set, a batch still failing after that many retries is dropped as retries_exhausted."""
    logger = make(endpoint=log_receiver.url, max_retries=2)
    lmgate.callbacks = [logger]
    log_receiver.set_status(500)
    calls(1)
    assert lmgate.flush_callbacks(10)
    assert len(log_receiver.all_requests) == 3
    assert logger.stats()["dropped"] == {"retries_exhausted": 1}


def test_receiver_failing_for_a_while_gets_everything(make, log_receiver: LogReceiver) -> None:
    """A receiver answering 500 to many attempts gets every record once it answers 200 again."""
    logger = make(endpoint=log_receiver.url, batch_size=5)
    lmgate.callbacks = [logger]
    log_receiver.fail_next(25, 500)
    ids = calls(12)
    assert lmgate.flush_callbacks(10)
    assert sorted(r["litellm_call_id"] for r in log_receiver.records) == sorted(ids)
    assert logger.stats()["pending"] == 0


def test_receiver_down_then_back_gets_everything(make, log_receiver: LogReceiver) -> None:
    """Records made while the receiver is down wait and are delivered once it is back on the same port."""
    logger = make(endpoint=log_receiver.url, timeout=2)
    lmgate.callbacks = [logger]
    log_receiver.stop()
    ids = calls(4)
    assert not logger.flush(0.3)  # nothing can be delivered yet
    s = logger.stats()
    assert s["pending"] == 4 and s["retried"] >= 4 and s["delivered"] == 0
    log_receiver.start()
    assert lmgate.flush_callbacks(10)
    assert [r["litellm_call_id"] for r in log_receiver.records] == ids


def test_timeout_is_retried_and_duplicates_share_the_key(make, log_receiver: LogReceiver) -> None:
    """A receiver slower than `timeout` is retried; a receiver deduping by Idempotency-Key keeps one copy."""
    log_receiver.dedupe_by_idempotency_key = True
    logger = make(endpoint=log_receiver.url, timeout=0.2)
    lmgate.callbacks = [logger]
    log_receiver.hold()
    ids = calls(2)
    assert not logger.flush(0)  # starts the delivery, does not wait
    assert log_receiver.wait_for_requests(2)  # the first attempt timed out, a retry is held too
    log_receiver.release()
    assert lmgate.flush_callbacks(10)
    assert [r["litellm_call_id"] for r in log_receiver.records] == ids
    assert logger.stats()["retried"] >= 2


def test_slow_receiver_never_blocks_calls_and_memory_is_bounded(make, log_receiver: LogReceiver) -> None:
    """With the receiver hanging, calls return, the queue stays within its bound, and overflow drops the oldest."""
    logger = make(endpoint=log_receiver.url, batch_size=1, max_queue_records=5, timeout=20, max_in_flight=3)
    lmgate.callbacks = [logger]
    log_receiver.hold()
    first = calls(3)
    assert log_receiver.wait_for_requests(3)  # all three workers are stuck in a POST
    ids = calls(20)
    s = logger.stats()
    assert (
        s["queued"] == 5 and s["in_flight"] == 3 and s["in_flight_batches"] == 3
    )  # never more than max_in_flight
    assert s["dropped"] == {"queue_full": 15}
    log_receiver.release()
    assert lmgate.flush_callbacks(10)
    assert sorted(r["litellm_call_id"] for r in log_receiver.records) == sorted(first + ids[-5:])
    s = logger.stats()
    assert s["emitted"] == s["delivered"] + s["dropped_total"] + s["pending"] == 23


def test_stats_identity_holds_under_concurrency(make, log_receiver: LogReceiver) -> None:
    """emitted = delivered + dropped + pending in every snapshot while 8 threads produce and deliveries fail and retry."""
    logger = make(endpoint=log_receiver.url, batch_size=7, flush_interval=0.001, max_queue_records=50)
    log_receiver.fail_next(10, 503)
    stop = threading.Event()
    bad: list[dict[str, Any]] = []

    def sample() -> None:
        while not stop.is_set():
            s = logger.stats()
            if s["emitted"] != s["delivered"] + s["dropped_total"] + s["pending"]:
                bad.append(s)

    def produce(n: int) -> None:
        for i in range(200):
            logger.enqueue({"producer": n, "i": i})

    sampler = threading.Thread(target=sample)
    sampler.start()
    producers = [threading.Thread(target=produce, args=(n,)) for n in range(8)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    assert logger.flush(10)
    stop.set()
    sampler.join()
    assert bad == []
    s = logger.stats()
    assert s["emitted"] == 1600 and s["pending"] == 0
    assert s["delivered"] == len(log_receiver.records)
    assert s["delivered"] + s["dropped"].get("queue_full", 0) == 1600


def test_secrets_never_in_our_log_lines(make, caplog, log_receiver: LogReceiver) -> None:
    """Header values and the endpoint's path never appear in lmgate's log lines or reprs."""
    secret = "sk-secret-value-0123456789"
    endpoint = log_receiver.url.replace("/logs", "/collector/ZmFrZS10b2tlbi1pbi1wYXRo")
    logger = make(endpoint=endpoint, headers={"X-Api-Key": secret})
    lmgate.callbacks = [logger]
    caplog.set_level(logging.DEBUG, logger="lmgate")
    log_receiver.fail_next(1, 503)
    log_receiver.stop()
    calls(1)
    logger.flush(0.2)
    log_receiver.start()
    assert lmgate.flush_callbacks(10)
    assert log_receiver.requests[0].headers["x-api-key"] == secret  # it was sent
    text = caplog.text + repr(logger) + repr(logger.exporter)
    assert "delivery failing" in caplog.text
    assert secret not in text and "ZmFrZS10b2tlbi1pbi1wYXRo" not in text


def test_a_derived_settings_resolves_callback_names_with_its_own_settings(log_receiver, tmp_path) -> None:
    """A Router's callback_settings and generic_logger_headers name its loggers; the module's do not see them."""
    from lmgate._callbacks.registry import resolve_callback
    from lmgate.settings import DEFAULT

    router = DEFAULT.derive(
        callbacks=["router_log"],
        callback_settings={
            "router_log": {
                "callback_type": "generic_api",
                "endpoint": log_receiver.url,
                "batch_size": 1,
                "spool_dir": str(tmp_path),
            }
        },
        generic_logger_headers={"X-Tenant": "router-a"},
    )
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x", _settings=router)
    assert log_receiver.wait_for_records(1)
    assert log_receiver.requests[0].headers["x-tenant"] == "router-a"
    with pytest.raises(ValueError, match="router_log"):  # the module's settings do not name it
        resolve_callback("router_log")


def test_reset_settings_forgets_loggers_built_from_names(tmp_path) -> None:
    """After reset_settings() a name resolves again, with the settings of that moment."""
    from lmgate._callbacks.registry import resolve_callback

    def configure(path: str) -> None:
        lmgate.callback_settings = {
            "mylog": {
                "callback_type": "generic_api",
                "endpoint": f"http://127.0.0.1:9/{path}",
                "spool": "off",
            }
        }

    configure("one")
    first = resolve_callback("mylog")
    lmgate.reset_settings()
    configure("two")
    second = resolve_callback("mylog")
    assert first is not second and second.endpoint.endswith("/two")
