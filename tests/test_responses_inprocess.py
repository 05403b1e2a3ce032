"""``/v1/responses`` in-process: a client that leaves a stream midway (the lmgate stream is
closed, one terminal event, flagged abandoned — passed through or bridged)."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest
from fakes import FakeProvider, Reply
from proxy_kit import disconnect_mid_stream, fast_and_claude
from test_proxy_app import MASTER, UPSTREAM, make_app

import lmgate
from lmgate.testing import CapturingLogger


@pytest.mark.parametrize("model", ["fast", "claude"])  # passed through to OpenAI, bridged to Claude
async def test_client_disconnect_mid_stream_ends_the_responses_call_once(
    tmp_path: Path, fake_provider: FakeProvider, model: str
) -> None:
    upstream_waits = threading.Event()
    fake_provider.enqueue(Reply(text="abcdefghijkl", hold_after_chunks=3, delay_event=upstream_waits))
    app = make_app(tmp_path, fake_provider, models=fast_and_claude(fake_provider, UPSTREAM))
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    body = orjson.dumps({"model": model, "input": "Hi", "stream": True})
    sent = await disconnect_mid_stream(
        app, "/v1/responses", body, [(b"authorization", b"Bearer " + MASTER.encode())]
    )
    upstream_waits.set()
    assert await lmgate.aflush_callbacks(10)
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert len(terminal) == 1
    assert terminal[0].kwargs["stream_status"] == "abandoned"
    assert terminal[0].kwargs["call_type"] == "aresponses"
    assert not any(b"response.completed" in (m.get("body") or b"") for m in sent)
    assert app.state.proxy.metrics.in_flight == 0
