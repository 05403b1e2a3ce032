"""Operating a real ``lmgate serve``: ``/metrics`` that ``promtool`` accepts with every kind of
logger configured, and a server log a person (text) or a log shipper (JSON) can read."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fakes import FakeProvider, LogReceiver, Reply
from prom import promtool_check, samples, value
from test_proxy_server import ENV, MASTER, READY_ATTEMPTS, UPSTREAM, Served, write_config

from lmgate.proxy.hooks import hash_key

HEADERS = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Hi"}]
WEBHOOK_TOKEN = "tok-webhook-0123456789"

CUSTOM_CALLBACKS = '''
from lmgate.integrations.custom_logger import CustomLogger
from lmgate.loggers import BatchLogger, InMemoryExporter


class StatsLogger(CustomLogger):
    """A user's logger that reports numbers, including the names that used to clash."""

    callback_name = "stats_logger"

    def stats(self):
        return {"delivered": 3, "dropped": {"http_400": 1, "full": 2}, "dropped_total": 3, "pending": 1,
                "retried": 2, "errors_total": 1, "healthy": True, "note": "not a number",
                # endings Prometheus reserves for histograms and summaries
                "lag_count": 4, "size_sum": 5, "wait_bucket": 6, "tries_count_total": 7}


stats_logger = StatsLogger()
memory_logger = BatchLogger(InMemoryExporter(), name="memory", spool="off", flush_interval=0.05)
'''


def ops_config(tmp: Path, fake: FakeProvider) -> Path:
    (tmp / "custom_callbacks.py").write_text(CUSTOM_CALLBACKS)
    return write_config(
        tmp,
        fake,
        f"""
    litellm_settings:
      callbacks: [team_webhook, otel, custom_callbacks.stats_logger, custom_callbacks.memory_logger]
    callback_settings:
      team_webhook:
        callback_type: generic_api
        endpoint: os.environ/SERVE_RECEIVER_URL
        headers: {{Authorization: "Bearer {WEBHOOK_TOKEN}"}}
        flush_interval: 0.05
        spool_dir: {tmp / "spool"}
    """,
    )


@pytest.fixture
def served(
    tmp_path: Path, fake_provider: FakeProvider, log_receiver: LogReceiver, request: pytest.FixtureRequest
) -> Iterator[Served]:
    """``lmgate serve`` with every kind of logger: generic_api, otel, a custom one with stats(), a BatchLogger.
    Parametrize indirectly with extra command-line arguments."""
    args = tuple(getattr(request, "param", ()))
    server = Served(
        ops_config(tmp_path, fake_provider), tmp_path, {**ENV, "SERVE_RECEIVER_URL": log_receiver.url}, args=args
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def wait_for(served: Served, found: Callable[[str], bool]) -> str:
    """Poll the server's stderr until ``found`` says yes (a bounded number of times); the text."""
    for _ in range(READY_ATTEMPTS):
        text = served.stderr
        if found(text):
            return text
        try:
            served.proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        break
    raise AssertionError(f"the expected log line never came: {served.stderr}")


def some_traffic(served: Served, fake: FakeProvider) -> None:
    """Successes, a stream, embeddings, unknown models, a bad body, an upstream 401 and a 500."""
    fake.enqueue(Reply(status=401, match="chat"), Reply(status=500, match="chat"))
    with httpx.Client(base_url=served.url, headers=HEADERS, timeout=30) as c:
        assert c.post("/v1/chat/completions", json={"model": "fast", "messages": HI}).status_code == 401
        assert c.post("/v1/chat/completions", json={"model": "fast", "messages": HI}).status_code == 500
        assert c.post("/v1/chat/completions", json={"model": "fast", "messages": HI}).status_code == 200
        with c.stream(
            "POST", "/v1/chat/completions", json={"model": "fast", "messages": HI, "stream": True}
        ) as r:
            assert r.status_code == 200
            assert "[DONE]" in r.read().decode()
        assert c.post("/v1/embeddings", json={"model": "embed", "input": ["a", "b"]}).status_code == 200
        for name in ("gpt-5", "claude-9", 'evil"\nmodel'):
            assert c.post("/v1/chat/completions", json={"model": name, "messages": HI}).status_code == 400
        assert c.post("/v1/chat/completions", content=b"{not json").status_code == 400
        assert (
            c.post(
                "/v1/chat/completions",
                headers={"Authorization": "Bearer sk-wrong-0123456789"},
                json={"model": "fast", "messages": HI},
            ).status_code
            == 401
        )


# ---------------------------------------------------------------------- /metrics


def test_metrics_pass_promtool_with_every_logger(
    served: Served, fake_provider: FakeProvider, log_receiver: LogReceiver
) -> None:
    """With generic_api, otel, a custom logger with stats() and a BatchLogger configured, and traffic that
    includes unknown models and errors, `promtool check metrics` accepts the scrape: exit 0, nothing said."""
    some_traffic(served, fake_provider)
    assert log_receiver.wait_for_records(1, timeout=10)
    text = httpx.get(f"{served.url}/metrics", headers=HEADERS, timeout=10).text
    checked = promtool_check(text)
    assert checked.returncode == 0, (checked.stdout, checked.stderr, text)
    assert checked.stdout.strip() == "" and "error" not in checked.stderr.lower(), checked
    parsed = samples(text)
    assert (
        value(parsed, "lmgate_requests_total", route="chat", model="other", status="400") == 4
    )  # 3 unknown, 1 bad body
    assert value(parsed, "lmgate_requests_total", route="chat", model="fast", status="401") == 1
    assert value(parsed, "lmgate_requests_total", route="embeddings", model="embed", status="200") == 1
    models = {dict(labels).get("model") for _, labels in parsed} - {None}
    assert models == {"fast", "embed", "other"}
    loggers = {dict(labels).get("logger") for _, labels in parsed} - {None}
    assert {"team_webhook", "stats_logger", "memory"} <= loggers
    assert value(parsed, "lmgate_logger_dropped_total", logger="stats_logger", reason="full") == 2
    assert value(parsed, "lmgate_logger_errors_total", logger="stats_logger") == 1
    assert value(parsed, "lmgate_logger_retried_total", logger="stats_logger") == 2
    # a key with a histogram's or a summary's ending gets "_value" added
    assert value(parsed, "lmgate_logger_lag_count_value", logger="stats_logger") == 4
    assert value(parsed, "lmgate_logger_size_sum_value", logger="stats_logger") == 5
    assert value(parsed, "lmgate_logger_wait_bucket_value", logger="stats_logger") == 6
    assert value(parsed, "lmgate_logger_tries_count_value_total", logger="stats_logger") == 7
    # a batch logger's counts that only grow are counters, its levels gauges
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    for name in ("emitted", "retried", "recovered", "flagged", "splits", "spool_write_failed", "batches"):
        assert types[f"lmgate_logger_{name}_total"] == "counter", name
    for name in ("queued", "in_flight", "spooled", "queued_bytes"):
        assert types[f"lmgate_logger_{name}"] == "gauge", name
    assert value(parsed, "lmgate_logger_emitted_total", logger="memory") >= 1
    assert MASTER not in text and UPSTREAM not in text and WEBHOOK_TOKEN not in text


# ---------------------------------------------------------------------- the server log

ACCESS_LINE = re.compile(
    r"^\S+Z INFO +lmgate\.proxy\.access: (?P<method>\S+) (?P<path>\S+) (?P<status>\d+)(?P<fields>.*)$"
)


def access_lines(text: str) -> list[tuple[str, str, int, dict[str, str]]]:
    out = []
    for line in text.splitlines():
        m = ACCESS_LINE.match(line)
        if m:
            fields = dict(pair.split("=", 1) for pair in m["fields"].split())
            out.append((m["method"], m["path"], int(m["status"]), fields))
    return out


def test_text_log_has_one_line_per_request_and_an_error_line_per_failed_call(
    served: Served, fake_provider: FakeProvider
) -> None:
    """One access line per request with route, status, model, deployment, caller, latency, tokens and cost;
    an upstream 401 also gets an ERROR line naming the mapped error and the upstream status; no secret anywhere."""
    fake_provider.enqueue(
        Reply(status=401, match="chat", error_message=f"Incorrect API key provided: {UPSTREAM}")
    )
    with httpx.Client(base_url=served.url, headers=HEADERS, timeout=30) as c:
        assert c.post("/v1/chat/completions", json={"model": "fast", "messages": HI}).status_code == 401
        assert c.post("/v1/chat/completions", json={"model": "fast", "messages": HI}).status_code == 200
        with c.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "fast", "messages": HI, "stream": True, "stream_options": {"include_usage": True}},
        ) as r:
            r.read()
    text = wait_for(served, lambda t: len(access_lines(t)) >= 3)
    lines = access_lines(text)
    key = f"sha256:{hash_key(MASTER)[:12]}"  # type: ignore[index]
    failed, ok, streamed = lines[:3]
    assert failed[:3] == ("POST", "/v1/chat/completions", 401)
    assert failed[3]["error"] == "AuthenticationError" and failed[3]["key"] == key
    assert ok[:3] == ("POST", "/v1/chat/completions", 200)
    assert ok[3]["model"] == "fast" and ok[3]["deployment"] == "openai/gpt-4o-mini" and ok[3]["key"] == key
    assert ok[3]["prompt_tokens"] == "7" and ok[3]["completion_tokens"] == "5"
    assert float(ok[3]["latency_ms"]) > 0 and float(ok[3]["cost_usd"]) > 0
    assert streamed[2] == 200 and streamed[3]["completion_tokens"] == "5"
    error_lines = [line for line in text.splitlines() if " lmgate.proxy: call failed" in line]
    assert len(error_lines) == 1, text
    assert " ERROR " in error_lines[0]
    for part in (
        "error=AuthenticationError",
        "status=401",
        "upstream_status=401",
        "model=fast",
        "deployment=openai/gpt-4o-mini",
        "Incorrect API key provided",
    ):
        assert part in error_lines[0], error_lines[0]
    assert UPSTREAM not in text and MASTER not in text


def test_abandoned_stream_logs_499_when_it_ends(served: Served, fake_provider: FakeProvider) -> None:
    """A client that leaves mid-stream gets its line when the stream ends: status 499."""
    import threading

    release = threading.Event()
    fake_provider.enqueue(Reply(match="chat", hold_after_chunks=1, delay_event=release))
    try:
        with (
            httpx.Client(base_url=served.url, headers=HEADERS, timeout=30) as c,
            c.stream(
                "POST", "/v1/chat/completions", json={"model": "fast", "messages": HI, "stream": True}
            ) as r,
        ):
            next(r.iter_raw())  # the first chunk came; now leave
        text = wait_for(served, lambda t: any(line[2] == 499 for line in access_lines(t)))
    finally:
        release.set()
    (line,) = [line for line in access_lines(text) if line[2] == 499]
    assert line[3]["model"] == "fast" and line[3]["deployment"] == "openai/gpt-4o-mini"


def test_a_stream_broken_by_the_provider_gets_an_error_line_naming_its_deployment(
    served: Served, fake_provider: FakeProvider
) -> None:
    """The provider breaks the stream after its first bytes: the failed call's line still names the
    deployment that answered (passed to the log beside the error, not stuck on the exception)."""
    fake_provider.enqueue(Reply(match="chat", stream_error={"message": "upstream fell over"}))
    with (
        httpx.Client(base_url=served.url, headers=HEADERS, timeout=30) as c,
        c.stream("POST", "/v1/chat/completions", json={"model": "fast", "messages": HI, "stream": True}) as r,
    ):
        r.read()
    text = wait_for(served, lambda t: " lmgate.proxy: call failed" in t)
    (line,) = [line for line in text.splitlines() if " lmgate.proxy: call failed" in line]
    assert "model=fast" in line and "deployment=openai/gpt-4o-mini" in line, line
    assert "upstream fell over" in line, line


@pytest.mark.parametrize("served", [("--log-format", "json")], indirect=True)
def test_json_log_format_gives_only_json_lines(served: Served, fake_provider: FakeProvider) -> None:
    """--log-format json: every stderr line (startup, uvicorn, access, errors) is one JSON object."""
    some_traffic(served, fake_provider)
    text = wait_for(served, lambda t: t.count('"lmgate.proxy.access"') >= 10)
    served.stop()
    text = served.stderr
    records = [json.loads(line) for line in text.splitlines()]  # raises on any line that is not JSON
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    assert any("lmgate proxy: loaded" in r["message"] for r in records)
    assert any(r["logger"].startswith("uvicorn") and "running on" in r["message"] for r in records)
    ok = [r for r in records if r["logger"] == "lmgate.proxy.access" and r.get("status") == 200]
    assert ok and ok[0]["method"] == "POST" and ok[0]["path"] == "/v1/chat/completions"
    assert ok[0]["model"] == "fast" and ok[0]["prompt_tokens"] == 7 and isinstance(ok[0]["latency_ms"], float)
    failed = [r for r in records if r["message"] == "call failed"]
    assert {(r["error"], r["status"], r["upstream_status"], r["level"]) for r in failed} == {
        ("AuthenticationError", 401, 401, "ERROR"),
        ("InternalServerError", 500, 500, "ERROR"),
    }
    unknown = [r for r in records if r.get("model") == 'evil"\nmodel']
    assert len(unknown) == 1 and unknown[0]["status"] == 400  # a client's newline stays inside its value
    assert UPSTREAM not in text and MASTER not in text and WEBHOOK_TOKEN not in text


def test_log_format_is_checked(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """An unknown --log-format is refused by the command line, naming the choices."""
    config = write_config(tmp_path, fake_provider)
    out = subprocess.run(
        [sys.executable, "-m", "lmgate", "serve", "--config", str(config), "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "invalid choice: 'xml'" in out.stderr and "'text', 'json'" in out.stderr


def test_text_line_keeps_client_values_on_one_line_and_masks_secrets() -> None:
    """A client's newline or quote stays inside a quoted value; a URL password and a key in an error are masked."""
    import io
    import logging

    from lmgate import exceptions
    from lmgate.proxy import logs

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.TextFormatter())
    logs.ERRORS.addHandler(handler)
    saved = logs.ERRORS.level
    logs.ERRORS.setLevel(logging.INFO)
    try:
        error = exceptions.APIConnectionError(
            "cannot reach https://bob:hunter2-secret@llm.internal/v1 with key sk-live-0123456789abcdef",
            "openai",
            "m",
        )
        logs.log_failed_call(error, 500, str(error), 'evil"\nINFO forged line', None)
        logs.log_request({"method": "POST", "path": "/v1/chat/completions"}, 200, "a b\nc", None, None, 0.001)
    finally:
        logs.ERRORS.removeHandler(handler)
        logs.ERRORS.setLevel(saved)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert " ERROR lmgate.proxy: call failed error=APIConnectionError status=500 " in lines[0]
    assert 'model="evil\\"\\nINFO forged line"' in lines[0]
    assert "hunter2-secret" not in lines[0] and "sk-live-0123456789abcdef" not in lines[0]
    assert "https://bob:****@llm.internal/v1" in lines[0]
    assert 'POST /v1/chat/completions 200 model="a b\\nc" latency_ms=1' in lines[1]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_tracebacks_are_masked_in_both_log_formats(log_format: str) -> None:
    """The proxy's own handler (masking filter and formatter, as `lmgate serve` sets them up) masks a
    secret in a traceback too: the formatter shows the masked text, not the exception formatted again."""
    import io
    import logging

    from lmgate._secrets import MaskingFilter, remember_secret
    from lmgate.proxy import logs

    secret = "trace-secret-Zq8v7Xw3Rt5Yp1Lm"
    remember_secret(secret)
    stream = io.StringIO()
    # the handler as logging_config builds it (dictConfig itself would close every other handler)
    config = logs.logging_config("info", log_format)
    assert config["handlers"]["lmgate"]["filters"] == ["mask"]
    assert config["filters"]["mask"]["()"] == "lmgate._secrets.MaskingFilter"
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(logs.JsonFormatter() if log_format == "json" else logs.TextFormatter())
    log = logging.getLogger("lmgate.test.traceback")
    log.addHandler(handler)
    try:
        try:
            raise RuntimeError(f"upstream said key={secret} and sk-live-0123456789abcdef")
        except RuntimeError:
            log.exception("call failed with %s", secret)
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "RuntimeError" in out and "Traceback" in out
    assert secret not in out and "sk-live-0123456789abcdef" not in out, out
    if log_format == "json":
        (line,) = out.splitlines()
        assert "RuntimeError" in json.loads(line)["exc"]


# ---------------------------------------------------------------------- /health/readiness

ODD_LOGGERS = '''
from lmgate.integrations.custom_logger import CustomLogger


class Boom(CustomLogger):
    def stats(self):
        raise RuntimeError("cannot reach https://u:s3cretPassw0rd@sink.example/?token=tok12345678")


class OddKeys(CustomLogger):
    def stats(self):
        return {"delivered": 1, 3: 1, "dropped": {4: 2}, "seen": {"a", "b"}, "healthy": True}


class BigInt(CustomLogger):
    def stats(self):
        return {"delivered": 10**30}


boom, odd_keys, big_int = Boom(), OddKeys(), BigInt()
'''


def test_readiness_shows_any_logger_stats_or_why_not_masked(tmp_path: Path, fake_provider: FakeProvider) -> None:
    """With the key, readiness is JSON whatever a logger's stats() does: raising (its error shown
    with the URL's secrets masked), non-text keys (made text), an int over 64 bits (that logger unhealthy)."""
    (tmp_path / "odd_loggers.py").write_text(ODD_LOGGERS)
    config = write_config(
        tmp_path,
        fake_provider,
        """
    litellm_settings:
      callbacks: [odd_loggers.boom, odd_loggers.odd_keys, odd_loggers.big_int]
    """,
    )
    server = Served(config, tmp_path, ENV)
    try:
        server.wait_ready()
        r = httpx.get(f"{server.url}/health/readiness", headers=HEADERS, timeout=10)
    finally:
        server.stop()
    assert r.status_code == 200, r.text
    assert "s3cretPassw0rd" not in r.text and "tok12345678" not in r.text
    body = r.json()
    assert body["status"] == "degraded" and body["parts"]["loggers"] == "unhealthy"
    loggers = {entry["name"]: entry for entry in body["loggers"]}
    assert loggers["Boom"]["healthy"] is False
    assert "https://u:****@sink.example/?token=****" in loggers["Boom"]["error"]
    assert loggers["OddKeys"]["healthy"] is True
    assert loggers["OddKeys"]["stats"]["3"] == 1 and loggers["OddKeys"]["stats"]["dropped"] == {"4": 2}
    assert loggers["BigInt"]["healthy"] is False and "64-bit" in loggers["BigInt"]["error"]
