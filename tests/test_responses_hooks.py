"""The proxy hooks on ``POST /v1/responses`` and ``/v1/completions``
(tests/proxy_configs/custom_callbacks.py): they see the request as the client sent it, with the
call types ``aresponses`` / ``atext_completion``, and their answers and errors go back in the
API's shapes. The "fast" deployment is OpenAI's API on the fake: requests are passed through."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fakes import FakeProvider
from proxy_kit import HOOKS_MASTER, hooks_proxy

MASTER = HOOKS_MASTER


@pytest.fixture
def proxy(fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Any:
    return hooks_proxy(fake_provider, monkeypatch)


async def post(
    app: Any, action: str = "", stream: bool = False, path: str = "/v1/responses"
) -> httpx.Response:
    body: dict[str, Any] = {"model": "fast", "metadata": {"action": action}, "stream": stream}
    if path == "/v1/responses":
        body["input"] = "Hi"
    else:
        body = {"model": "fast", "prompt": "Hi", "stream": stream, "metadata": {"action": action}}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        return await c.post(path, headers={"Authorization": f"Bearer {MASTER}"}, json=body)


def events(r: httpx.Response) -> list[dict[str, Any]]:
    return [json.loads(block.split("\ndata: ", 1)[1]) for block in r.text.split("\n\n") if block]


async def test_hooks_run_with_the_responses_call_type(proxy: Any, fake_provider: FakeProvider) -> None:
    app, handler = proxy
    r = await post(app)
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "response"
    assert r.headers["x-litellm-custom-header"] == "my-value"  # the post-call hook's header
    assert [name for name, _ in handler.calls] == ["pre_call", "moderation", "post_success"]
    assert ("moderation", "aresponses") in handler.calls
    # the proxy's stamped metadata stays the proxy's: OpenAI gets the client's own
    assert fake_provider.requests[-1].json["metadata"] == {"action": ""}


async def test_hooks_run_with_the_text_completion_call_type(proxy: Any) -> None:
    app, handler = proxy
    r = await post(app, path="/v1/completions")
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "text_completion"
    assert ("moderation", "atext_completion") in handler.calls


async def test_pre_call_answer_is_a_response(proxy: Any, fake_provider: FakeProvider) -> None:
    app, _ = proxy
    r = await post(app, "answer")
    assert r.status_code == 200
    assert r.json()["output"][0]["content"][0]["text"] == "answered by the pre-call hook"
    streamed = events(await post(app, "answer", stream=True))
    assert streamed[0]["type"] == "response.created" and streamed[-1]["type"] == "response.completed"
    text = "".join(e["delta"] for e in streamed if e["type"] == "response.output_text.delta")
    assert text == "answered by the pre-call hook"
    assert fake_provider.requests == []


async def test_hook_rejection_is_an_openai_error(proxy: Any) -> None:
    app, handler = proxy
    r = await post(app, "reject_http")
    assert r.status_code == 403
    assert r.json()["error"]["message"] == "blocked by policy"
    assert ("post_failure", "HTTPException") in handler.calls


async def test_stream_hooks_see_every_chunk(proxy: Any) -> None:
    """A hook that rewrites chunks: the pass-through's events are rebuilt from the rewritten chunks."""
    app, handler = proxy
    r = await post(app, stream=True)
    seen = events(r)
    text = "".join(e["delta"] for e in seen if e["type"] == "response.output_text.delta")
    assert text == "HELLO FROM FAKE"
    assert seen[-1]["type"] == "response.completed"
    assert seen[-1]["response"]["output"][0]["content"][0]["text"] == "HELLO FROM FAKE"
    assert ("stream_iterator", None) in handler.calls
