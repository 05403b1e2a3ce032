"""``/v1/messages`` in-process: a client that leaves a stream midway (the lmgate stream is
closed, one terminal event, flagged abandoned — translated or passed through), and hooks that
rewrite a passed-through answer."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fakes import DEFAULT_TEXT, FakeProvider, Reply
from proxy_kit import disconnect_mid_stream, fast_and_claude
from test_proxy_app import MASTER, UPSTREAM, make_app

import lmgate
from lmgate.testing import CapturingLogger


@pytest.mark.parametrize("model", ["fast", "claude"])
async def test_client_disconnect_mid_stream_ends_the_call_once(
    tmp_path: Path, fake_provider: FakeProvider, model: str
) -> None:
    upstream_waits = threading.Event()
    fake_provider.enqueue(Reply(text="abcdefghijkl", hold_after_chunks=3, delay_event=upstream_waits))
    app = make_app(tmp_path, fake_provider, models=fast_and_claude(fake_provider, UPSTREAM))
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    body = orjson.dumps(
        {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    )
    sent = await disconnect_mid_stream(app, "/v1/messages", body, [(b"x-api-key", MASTER.encode())])
    upstream_waits.set()
    assert await lmgate.aflush_callbacks(10)
    terminal = capture.of("async_log_success_event", "async_log_failure_event")
    assert len(terminal) == 1
    assert terminal[0].kwargs["stream_status"] == "abandoned"
    assert terminal[0].kwargs["call_type"] == "anthropic_messages"
    assert not any(b"message_stop" in (m.get("body") or b"") for m in sent)
    assert app.state.proxy.metrics.in_flight == 0


class _Rewriter(lmgate.CustomLogger):
    """Post-call hooks that change the answer: a passed-through answer must not hide the change."""

    async def async_post_call_success_hook(self, data: Any, user_api_key_dict: Any, response: Any) -> Any:
        response.choices[0].message.content = "rewritten"
        return response

    async def async_post_call_streaming_hook(self, user_api_key_dict: Any, response: Any) -> Any:
        delta = response.choices[0].delta
        if delta.content:
            delta.content = delta.content.upper()
        return response


async def test_hooks_that_rewrite_the_answer_win_over_pass_through(
    tmp_path: Path, fake_provider: FakeProvider
) -> None:
    models = f"""
    model_list:
      - model_name: claude
        litellm_params: {{model: anthropic/claude-sonnet-4-20250514, api_base: {fake_provider.base_url}, api_key: {UPSTREAM}}}
    """
    app = make_app(tmp_path, fake_provider, models=models)
    lmgate.callbacks.append(_Rewriter())
    ask = {"model": "claude", "max_tokens": 16, "messages": [{"role": "user", "content": "Hi"}]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        plain = await c.post("/v1/messages", headers={"x-api-key": MASTER}, json=ask)
        streamed = await c.post("/v1/messages", headers={"x-api-key": MASTER}, json={**ask, "stream": True})
    assert fake_provider.requests[0].path == "/v1/messages"  # the request itself still passed through
    assert plain.json()["content"] == [{"type": "text", "text": "rewritten"}]
    events = [orjson.loads(b.split("\ndata: ", 1)[1]) for b in streamed.text.split("\n\n") if b]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text == DEFAULT_TEXT.upper()
    assert events[-1] == {"type": "message_stop"}
