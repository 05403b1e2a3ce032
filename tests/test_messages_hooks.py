"""The proxy hooks on ``POST /v1/messages`` (tests/proxy_configs/custom_callbacks.py): they see
the request as the client sent it, with the call type ``anthropic_messages``, and their
answers and errors go back in Anthropic's shapes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fakes import FakeProvider
from proxy_kit import HOOKS_MASTER, hooks_proxy

MASTER = HOOKS_MASTER
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def proxy(fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Any:
    return hooks_proxy(fake_provider, monkeypatch)


async def post(app: Any, action: str = "", stream: bool = False) -> httpx.Response:
    body = {
        "model": "fast",
        "max_tokens": 16,
        "messages": HI,
        "metadata": {"action": action},
        "stream": stream,
    }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        return await c.post("/v1/messages", headers={"x-api-key": MASTER}, json=body)


def events(r: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(block.split("\ndata: ", 1)[1]) for block in r.text.split("\n\n") if block]


async def test_hooks_run_with_the_messages_call_type(proxy: Any) -> None:
    app, handler = proxy
    r = await post(app)
    assert r.status_code == 200, r.text
    assert r.json()["type"] == "message"
    assert r.headers["x-litellm-custom-header"] == "my-value"  # the post-call hook's header
    assert [name for name, _ in handler.calls] == ["pre_call", "moderation", "post_success"]
    assert ("moderation", "anthropic_messages") in handler.calls


async def test_pre_call_answer_is_an_anthropic_message(proxy: Any, fake_provider: FakeProvider) -> None:
    app, _ = proxy
    r = await post(app, "answer")
    assert r.status_code == 200
    assert r.json()["content"] == [{"type": "text", "text": "answered by the pre-call hook"}]
    streamed = await post(app, "answer", stream=True)
    seen = events(streamed)
    assert [e["type"] for e in seen][:2] == ["message_start", "ping"]
    assert seen[-1]["type"] == "message_stop"
    text = "".join(e["delta"].get("text", "") for e in seen if e["type"] == "content_block_delta")
    assert text == "answered by the pre-call hook"
    assert fake_provider.requests == []


async def test_hook_rejection_is_an_anthropic_error(proxy: Any) -> None:
    app, handler = proxy
    r = await post(app, "reject_http")
    assert r.status_code == 403
    assert r.json() == {
        "type": "error",
        "error": {"type": "permission_error", "message": "blocked by policy"},
    }
    assert ("post_failure", "HTTPException") in handler.calls


async def test_stream_hooks_see_every_chunk(proxy: Any) -> None:
    app, handler = proxy
    r = await post(app, stream=True)
    text = "".join(e["delta"].get("text", "") for e in events(r) if e["type"] == "content_block_delta")
    assert text == "HELLO FROM FAKE"  # the per-chunk hook upper-cases each chunk before it is re-framed
    assert ("stream_iterator", None) in handler.calls
