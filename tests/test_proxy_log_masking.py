"""Every field of every proxy log line is masked, not only its message (issue 18, step 0).

A client can send a key as a model name or in a path; the access line's ``path`` and ``model``
(and every other field) go through the same masking as the message, in the direct line and the
record path, text and JSON."""

from __future__ import annotations

import io
import json
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes import FakeProvider
from test_proxy_server import ENV, MASTER, READY_ATTEMPTS, Served, write_config

from lmgate._secrets import remember_secret
from lmgate.proxy import logs

OPAQUE = "opaque-upstream-credential-4242xyz"  # no key shape: masked because it is remembered
KEY_SHAPED = "sk-live-abcdefghijklmnop1234"  # never configured: masked by its shape
HEADERS = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_served_access_lines_mask_secrets_in_path_and_model(
    tmp_path: Path, fake_provider: FakeProvider, log_format: str
) -> None:
    """`lmgate serve` with the configured upstream key and a key-shaped string sent as a model
    name and inside a path: neither reaches stderr, in either log format."""
    served = Served(
        write_config(tmp_path, fake_provider),
        tmp_path,
        {**ENV, "SERVE_UPSTREAM_KEY": OPAQUE},
        args=("--log-format", log_format),
    )
    try:
        served.wait_ready()
        with httpx.Client(base_url=served.url, headers=HEADERS, timeout=30) as c:
            for secret in (OPAQUE, KEY_SHAPED):
                answer = c.post("/v1/chat/completions", json={"model": secret, "messages": HI})
                assert answer.status_code == 400
                assert c.post(f"/v1/nowhere/{secret}/x", json={}).status_code == 404
        text = ""
        for _ in range(READY_ATTEMPTS):
            text = served.stderr
            if text.count("lmgate.proxy.access") >= 4:
                break
            try:
                served.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
        assert text.count("lmgate.proxy.access") >= 4, text
    finally:
        served.stop()
    text = served.stderr
    assert OPAQUE not in text and KEY_SHAPED not in text, text
    assert "opa****2xyz" in text and "sk-live****" in text, text  # the lines are there, masked
    if log_format == "json":
        access = [r for r in map(json.loads, text.splitlines()) if r["logger"] == "lmgate.proxy.access"]
        assert {r["status"] for r in access} >= {400, 404}
        assert any(r.get("model") == "opa****2xyz" for r in access)
        assert any(r.get("path") == "/v1/nowhere/sk-live****/x" for r in access)


@pytest.fixture
def configured_logging() -> Iterator[None]:
    root = logging.getLogger("lmgate")
    saved = (list(root.handlers), root.level, root.propagate, list(logs.ACCESS.filters))
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        root.propagate = saved[2]
        logs.ACCESS.filters[:] = saved[3]


class _Deployment:
    model_info = {"id": f"dep-{KEY_SHAPED}"}
    model = "openai/gpt-4o-mini"


class _Caller:
    key_alias = f"alias {OPAQUE}"
    api_key = None


class _Error(Exception):
    pass


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_every_field_is_masked_in_the_direct_line_and_the_record_path(
    configured_logging: None, log_format: str
) -> None:
    """Path, model, deployment and caller holding a remembered secret or a key-shaped string are
    masked in the line written directly and in the one made from a record (a filter on the
    logger forces that path), and in a failed call's line."""
    remember_secret(OPAQUE)
    logs.setup_logging("info", log_format)
    (handler,) = logging.getLogger("lmgate").handlers
    out = io.StringIO()
    handler.stream = out  # type: ignore[attr-defined]
    scope = {"method": "POST", "path": f"/v1/{OPAQUE}/{KEY_SHAPED}"}
    for direct in (True, False):
        if not direct:
            logs.ACCESS.addFilter(lambda record: True)
        assert (logs._direct_handler(logging.INFO) is handler) is direct
        logs.log_request(scope, 404, OPAQUE, _Deployment(), _Caller(), 0.01, error=ValueError())
        logs.log_request(scope, 200, KEY_SHAPED, None, _Caller(), 0.01)
    logs.log_failed_call(ValueError("boom"), 400, "bad", KEY_SHAPED, _Caller(), _Deployment())
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines
    for line in lines:
        assert OPAQUE not in line and KEY_SHAPED not in line, line
        if log_format == "json":
            json.loads(line)
    assert "opa****2xyz" in lines[0] and "sk-live****" in lines[0]
