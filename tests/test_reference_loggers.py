"""The reference's callback names against fakes on 127.0.0.1: datadog (logs intake), s3 (SigV4 PUTs),
langfuse (OTLP/HTTP with Basic auth), prometheus (a no-op); any other name lists what exists (issue 13 point 8)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fakes import LogReceiver
from fakes.s3 import FakeS3

import lmgate
from lmgate import RetryPolicy
from lmgate._callbacks.registry import forget_named_callbacks, resolve_callback
from lmgate.loggers.datadog import DatadogLogger
from lmgate.loggers.s3 import S3Logger

MESSAGES = [{"role": "user", "content": "Hi"}]
FAST = RetryPolicy(base_delay_s=0.0, max_delay_s=0.0, max_retry_after_s=0.0)
DD_ENV = {"DD_API_KEY": "dd-api-key-123", "DD_SITE": "datadoghq.com", "HOSTNAME": "host-1", "DD_ENV": "test"}


def calls(n: int) -> list[str]:
    ids = []
    for i in range(n):
        response = lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response=f"r{i}")
        ids.append(response._hidden_params["litellm_call_id"])
    return ids


@pytest.fixture
def dd_intake() -> Iterator[LogReceiver]:
    with LogReceiver(path="/api/v2/logs") as rx:
        yield rx


def datadog(rx: LogReceiver, tmp_path: Any, **kw: Any) -> DatadogLogger:
    env = {**DD_ENV, "DD_BASE_URL": rx.base_url}
    kw.setdefault("spool_dir", str(tmp_path / "spool"))
    return DatadogLogger(environ=env, retry_policy=FAST, flush_interval=60, **kw)


def test_datadog_sends_log_entries_in_datadogs_shape(
    dd_intake: LogReceiver, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each call is one entry (ddsource, ddtags, hostname, service, status, message = the payload as
    JSON text), POSTed as a JSON array to /api/v2/logs with the DD-API-KEY header, and none of the
    headers meant for webhooks."""
    monkeypatch.setenv("GENERIC_LOGGER_HEADERS", "Authorization=Bearer webhook-token")
    monkeypatch.setattr(lmgate, "generic_logger_headers", {"X-Webhook-Secret": "w-secret"})
    logger = datadog(dd_intake, tmp_path)
    try:
        lmgate.callbacks = [logger]
        ids = calls(3)
        with pytest.raises(lmgate.exceptions.RateLimitError):
            lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="litellm.RateLimitError")
        assert lmgate.flush_callbacks(10)
    finally:
        lmgate.callbacks = []
        logger.close(0)
    (request,) = dd_intake.requests
    assert request.path == "/api/v2/logs"
    assert request.headers["dd-api-key"] == "dd-api-key-123"
    assert "authorization" not in request.headers and "x-webhook-secret" not in request.headers
    assert request.headers["content-type"] == "application/json"
    entries = request.records
    assert [sorted(e) for e in entries] == [
        ["ddsource", "ddtags", "hostname", "message", "service", "status"]
    ] * 4
    assert {(e["ddsource"], e["service"], e["hostname"]) for e in entries} == {
        ("litellm", "litellm-server", "host-1")
    }
    assert entries[0]["ddtags"].startswith("env:test,service:litellm-server,version:unknown,HOSTNAME:host-1")
    payloads = [json.loads(e["message"]) for e in entries]
    assert [p["litellm_call_id"] for p in payloads[:3]] == ids
    assert [e["status"] for e in entries] == ["info", "info", "info", "error"]
    assert payloads[3]["status"] == "failure"


def test_datadog_inherits_retries_and_413_splitting(dd_intake: LogReceiver, tmp_path: Any) -> None:
    """A 500 is retried and a 413 splits the batch, as for every generic API logger: nothing is lost."""
    logger = datadog(dd_intake, tmp_path)
    try:
        lmgate.callbacks = [logger]
        dd_intake.fail_next(1, 500)
        dd_intake.max_body_bytes = 6000  # one entry fits, four do not
        ids = calls(4)
        assert lmgate.flush_callbacks(10)
    finally:
        lmgate.callbacks = []
        logger.close(0)
    statuses = [r.status for r in dd_intake.all_requests]
    assert statuses[0] == 500 and 413 in statuses
    assert sorted(json.loads(e["message"])["litellm_call_id"] for e in dd_intake.records) == sorted(ids)
    assert logger.stats()["delivered"] == 4


def test_datadog_without_its_key_is_a_config_error() -> None:
    """Without DD_API_KEY the logger is not made: the error names the variable."""
    with pytest.raises(lmgate.exceptions.ConfigError, match="DD_API_KEY"):
        DatadogLogger(environ={"DD_SITE": "datadoghq.com"})


def test_datadog_endpoint_follows_dd_site() -> None:
    """Without DD_BASE_URL the intake is https://http-intake.logs.{DD_SITE}/api/v2/logs."""
    logger = DatadogLogger(environ={"DD_API_KEY": "k", "DD_SITE": "us5.datadoghq.com"}, spool="off")
    try:
        assert logger.endpoint == "https://http-intake.logs.us5.datadoghq.com/api/v2/logs"
        assert logger.batch_size == 1000
    finally:
        logger.close(0)


def test_s3_puts_one_signed_ndjson_object_per_batch(tmp_path: Any) -> None:
    """Each batch is one object s3://bucket/{s3_path}/{day}/{key}.ndjson, signed with SigV4 (checked by the
    fake with botocore); a retried batch overwrites its own object."""
    with FakeS3("AKIDTEST", "secret/key+1", region="eu-west-1") as s3:
        s3.fail_next(1, 503)
        logger = S3Logger(
            s3_bucket_name="logs",
            s3_region_name="eu-west-1",
            s3_path="lmgate/prod",
            s3_endpoint_url=s3.base_url,
            s3_aws_access_key_id="AKIDTEST",
            s3_aws_secret_access_key="secret/key+1",
            spool_dir=str(tmp_path / "spool"),
            retry_policy=FAST,
            flush_interval=60,
            batch_size=2,
        )
        try:
            lmgate.callbacks = [logger]
            ids = calls(3)
            assert lmgate.flush_callbacks(10)
        finally:
            lmgate.callbacks = []
            logger.close(0)
        assert s3.refused == []
        stored = s3.objects()
        assert len(stored) == 2
        for path in stored:
            assert path.startswith("/logs/lmgate/prod/20") and path.endswith(".ndjson")
        assert sorted(r["litellm_call_id"] for records in stored.values() for r in records) == sorted(ids)
        retried = s3.all_requests[0]
        assert retried.status == 503 and retried.path in stored  # the retry went to the same key
        assert all(r.headers["content-type"] == "application/x-ndjson" for r in s3.requests)


def test_s3_with_a_wrong_secret_is_refused_and_counted(tmp_path: Any) -> None:
    """The fake really checks signatures: a wrong secret gets 403, and the records are dropped, counted."""
    with FakeS3("AKIDTEST", "the-right-secret") as s3:
        logger = S3Logger(
            s3_bucket_name="logs",
            s3_endpoint_url=s3.base_url,
            s3_aws_access_key_id="AKIDTEST",
            s3_aws_secret_access_key="a-wrong-secret",
            spool="off",
            retry_policy=FAST,
            flush_interval=60,
        )
        try:
            lmgate.callbacks = [logger]
            calls(1)
            assert lmgate.flush_callbacks(10)
        finally:
            lmgate.callbacks = []
            logger.close(0)
        assert s3.refused == ["SignatureDoesNotMatch"]
        assert logger.stats()["dropped"] == {"http_403": 1}


def test_s3_settings_typo_names_the_nearest() -> None:
    """An unknown s3_* setting is an error naming the nearest of the reference's names."""
    with pytest.raises(lmgate.exceptions.ConfigError, match="did you mean 's3_bucket_name'"):
        S3Logger(s3_bucket="logs", spool="off")


class _OTLPHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        server: Any = self.server
        with server.lock:
            server.received.append((self.path, self.headers.get("Authorization"), request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _OTLPHandler)
    server.received = []
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_langfuse_sends_spans_over_otlp_with_basic_auth(
    otlp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ "langfuse" exports each call's span to {LANGFUSE_HOST}/api/public/otel/v1/traces as OTLP
    protobuf, with Basic auth made of the public and secret keys."""
    host, port = otlp_server.server_address
    monkeypatch.setenv("LANGFUSE_HOST", f"http://{host}:{port}")
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-1")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-2")
    forget_named_callbacks()
    lmgate.callbacks = ["langfuse"]
    try:
        ids = calls(2)
        assert lmgate.flush_callbacks(10)
    finally:
        lmgate.callbacks = []
        forget_named_callbacks()
    expected_auth = "Basic " + base64.b64encode(b"pk-lf-1:sk-lf-2").decode()
    assert {(path, auth) for path, auth, _ in otlp_server.received} == {
        ("/api/public/otel/v1/traces", expected_auth)
    }
    spans = [
        span
        for _, _, request in otlp_server.received
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    assert [s.name for s in spans] == ["chat gpt-4o-mini"] * 2
    attributes = [{a.key: a.value for a in s.attributes} for s in spans]
    assert [a["lmgate.call_id"].string_value for a in attributes] == ids
    assert "Hi" in attributes[0]["gen_ai.input.messages"].string_value  # Langfuse shows prompts


def test_langfuse_without_keys_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without LANGFUSE_PUBLIC_KEY / LANGFUSE_SECRET_KEY the name fails, naming them."""
    monkeypatch.delenv("LANGFUSE_PUBLIC_KEY", raising=False)
    monkeypatch.delenv("LANGFUSE_SECRET_KEY", raising=False)
    forget_named_callbacks()
    with pytest.raises(lmgate.exceptions.ConfigError, match="LANGFUSE_PUBLIC_KEY"):
        resolve_callback("langfuse_otel")


def test_prometheus_is_accepted_as_a_no_op(caplog: pytest.LogCaptureFixture) -> None:
    """ "prometheus" resolves to a logger that does nothing, and says that /metrics serves the metrics."""
    forget_named_callbacks()
    with caplog.at_level("INFO", logger="lmgate.loggers"):
        logger = resolve_callback("prometheus")
    assert "no-op" in repr(logger)
    assert any("/metrics" in r.getMessage() for r in caplog.records)
    forget_named_callbacks()


def test_an_unknown_callback_name_lists_the_built_in_ones() -> None:
    """Any other name fails with the built-in names and the generic_api presets."""
    with pytest.raises(ValueError) as info:
        resolve_callback("sentry")
    message = str(info.value)
    for name in ("otel", "langfuse", "datadog", "s3", "prometheus", "generic_api", "sumologic"):
        assert name in message


def test_langfuse_leaves_prompts_out_when_message_logging_is_off(
    otlp_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With turn_off_message_logging the spans Langfuse gets hold no prompt and no answer."""
    host, port = otlp_server.server_address
    monkeypatch.setenv("LANGFUSE_HOST", f"http://{host}:{port}")
    monkeypatch.setenv("LANGFUSE_PUBLIC_KEY", "pk-lf-1")
    monkeypatch.setenv("LANGFUSE_SECRET_KEY", "sk-lf-2")
    monkeypatch.setattr(lmgate, "turn_off_message_logging", True)
    forget_named_callbacks()
    lmgate.callbacks = ["langfuse_otel"]
    try:
        lmgate.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "secret prompt"}],
            mock_response="secret answer",
        )
        assert lmgate.flush_callbacks(10)
    finally:
        lmgate.callbacks = []
        forget_named_callbacks()
    (received,) = otlp_server.received
    wire = received[2].SerializeToString()
    assert b"secret prompt" not in wire and b"secret answer" not in wire
    assert b"chat gpt-4o-mini" in wire


def test_proxy_yaml_with_the_reference_callback_names(
    tmp_path: Any, dd_intake: LogReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy config naming datadog, s3 (with litellm_settings.s3_callback_params) and prometheus
    loads, and calls reach Datadog's intake and the bucket."""
    from lmgate.proxy.config import load_config
    from lmgate.proxy.loading import apply_config

    for name, value in {**DD_ENV, "DD_BASE_URL": dd_intake.base_url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("S3_TEST_SECRET", "s3-secret")
    with FakeS3("AKIDPROXY", "s3-secret") as s3:
        path = tmp_path / "config.yaml"
        path.write_text(
            "model_list:\n"
            "  - {model_name: m, litellm_params: {model: gpt-4o-mini, mock_response: hi}}\n"
            "litellm_settings:\n"
            "  callbacks: [datadog, s3, prometheus]\n"
            "  s3_callback_params:\n"
            "    s3_bucket_name: proxy-logs\n"
            f"    s3_endpoint_url: {s3.base_url}\n"
            "    s3_aws_access_key_id: AKIDPROXY\n"
            "    s3_aws_secret_access_key: os.environ/S3_TEST_SECRET\n"
            "    s3_path: calls\n",
            encoding="utf-8",
        )
        applied = apply_config(load_config(path))
        assert applied.callback_names == ("datadog", "s3", "prometheus")
        ids = calls(2)
        assert lmgate.flush_callbacks(10)
        assert s3.refused == []
        assert sorted(r["litellm_call_id"] for rs in s3.objects().values() for r in rs) == sorted(ids)
        assert all(p.startswith("/proxy-logs/calls/") for p in s3.objects())
    assert sorted(json.loads(e["message"])["litellm_call_id"] for e in dd_intake.records) == sorted(ids)


def test_s3_without_credentials_fails_when_made(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """No keys in the settings and none in botocore's chain: a config error at start, naming the settings."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(lmgate.exceptions.ConfigError, match="s3_aws_access_key_id"):
        S3Logger(s3_bucket_name="logs", spool="off")
