"""``/v1/responses`` in-process: a client that leaves a stream midway (the lmgate stream is
closed, one terminal event, flagged abandoned — passed through or bridged)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from fakes import FakeProvider, Reply
from test_proxy_app import MASTER, UPSTREAM, make_app

import lmgate
from lmgate.testing import CapturingLogger


@pytest.mark.parametrize("model", ["fast", "claude"])  # passed through to OpenAI, bridged to Claude
async def test_client_disconnect_mid_stream_ends_the_responses_call_once(
    tmp_path: Path, fake_provider: FakeProvider, model: str
) -> None:
    upstream_waits = threading.Event()
    fake_provider.enqueue(Reply(text="abcdefghijkl", hold_after_chunks=3, delay_event=upstream_waits))
    models = f"""
    model_list:
      - model_name: fast
        litellm_params: {{model: openai/gpt-4o-mini, api_base: {fake_provider.base_url}/v1, api_key: {UPSTREAM}}}
      - model_name: claude
        litellm_params: {{model: anthropic/claude-sonnet-4-20250514, api_base: {fake_provider.base_url}, api_key: {UPSTREAM}}}
    """
    app = make_app(tmp_path, fake_provider, models=models)
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    body = orjson.dumps({"model": model, "input": "Hi", "stream": True})
    sent: list[dict[str, Any]] = []
    got_event = asyncio.Event()
    disconnect = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            got_event.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/responses",
        "raw_path": b"/v1/responses",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer " + MASTER.encode()), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 5000),
        "server": ("proxy", 80),
    }
    task = asyncio.ensure_future(app(scope, receive, send))
    await asyncio.wait_for(got_event.wait(), 10)
    disconnect.set()  # the upstream is still holding the rest of the stream
    await asyncio.wait_for(task, 10)
    upstream_waits.set()
    assert await lmgate.aflush_callbacks(10)
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert len(terminal) == 1
    assert terminal[0].kwargs["stream_status"] == "abandoned"
    assert terminal[0].kwargs["call_type"] == "aresponses"
    assert not any(b"response.completed" in (m.get("body") or b"") for m in sent)
    assert app.state.proxy.metrics.in_flight == 0
