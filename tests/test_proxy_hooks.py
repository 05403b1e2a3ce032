"""Every proxy hook, through tests/proxy_configs/custom_callbacks.py loaded from tests/proxy_configs/hooks.yaml."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import orjson
import pytest
from fakes import FakeProvider, Reply
from proxy_kit import HOOKS_MASTER, hooks_proxy

import lmgate
from lmgate.proxy.hooks import HookSet

MASTER = HOOKS_MASTER
AUTH = {"Authorization": f"Bearer {MASTER}"}
HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def proxy(fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> Any:
    return hooks_proxy(fake_provider, monkeypatch)


async def post(app: Any, action: str = "", stream: bool = False, **extra: Any) -> httpx.Response:
    body = {"model": "fast", "messages": HI, "metadata": {"action": action}, "stream": stream, **extra}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        return await c.post("/v1/chat/completions", headers=AUTH, json=body)


def names(handler: Any) -> list[str]:
    return [name for name, _ in handler.calls]


async def test_plain_call_runs_hooks_in_lifecycle_order(proxy: Any) -> None:
    """A plain call runs pre-call, moderation and post-call success, in that order; the hooks see the key's hash only."""
    app, handler = proxy
    r = await post(app)
    assert r.status_code == 200
    assert names(handler) == ["pre_call", "moderation", "post_success"]
    assert handler.calls[0][1] == hashlib.sha256(MASTER.encode()).hexdigest()


async def test_post_success_hook_headers_become_response_headers(proxy: Any) -> None:
    """_hidden_params["additional_headers"] set by async_post_call_success_hook become HTTP response headers."""
    app, _ = proxy
    r = await post(app)
    assert r.headers["x-litellm-custom-header"] == "my-value"


async def test_post_success_hook_replaces_the_response(proxy: Any) -> None:
    """What async_post_call_success_hook returns is what the client gets."""
    app, _ = proxy
    r = await post(app, "replace")
    assert r.json()["choices"][0]["message"]["content"] == "replaced by the post-call hook"


async def test_pre_call_hook_rewrites_the_request(proxy: Any, fake_provider: FakeProvider) -> None:
    """A dict returned by async_pre_call_hook is the request that is sent."""
    app, _ = proxy
    assert (await post(app, "rewrite")).status_code == 200
    sent = fake_provider.last_request.json
    assert sent["messages"][0] == {"role": "system", "content": "be brief"}
    assert sent["temperature"] == 0.25


async def test_pre_call_string_becomes_the_answer(proxy: Any, fake_provider: FakeProvider) -> None:
    """A string from async_pre_call_hook is a 200 chat response with that content; the provider is not called."""
    app, handler = proxy
    r = await post(app, "answer")
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "answered by the pre-call hook"
    assert fake_provider.requests == []
    assert names(handler) == ["pre_call"]


async def test_pre_call_string_is_streamed_when_asked(proxy: Any, fake_provider: FakeProvider) -> None:
    """With stream=true the hook's answer arrives as SSE chunks ending in [DONE]."""
    app, _ = proxy
    r = await post(app, "answer", stream=True)
    events = [e[len("data: "):] for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(orjson.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "answered by the pre-call hook"
    assert fake_provider.requests == []


@pytest.mark.parametrize(("action", "status", "message"), [
    ("reject_http", 403, "blocked by policy"),
    ("reject_ratelimit", 429, "slow down"),
])
async def test_pre_call_hook_raising_rejects_with_mapped_status(proxy: Any, fake_provider: FakeProvider, action: str,
                                                                status: int, message: str) -> None:
    """An HTTPException or an lmgate exception raised by async_pre_call_hook becomes that status; the failure hook runs."""
    app, handler = proxy
    r = await post(app, action)
    assert r.status_code == status
    assert message in r.json()["error"]["message"]
    assert fake_provider.requests == []
    assert names(handler)[-1] == "post_failure"


async def test_moderation_runs_in_parallel_with_the_call(proxy: Any, fake_provider: FakeProvider) -> None:
    """async_moderation_hook is still running when the provider receives the request."""
    app, handler = proxy
    handler.wait_for_provider = lambda: fake_provider.wait_for_requests(1, timeout=10)
    r = await post(app, "moderate_parallel")
    assert r.status_code == 200
    assert handler.moderation_saw_provider_call is True


async def test_moderation_rejection_fails_the_request(proxy: Any) -> None:
    """A moderation hook that raises turns the request into its error."""
    app, handler = proxy
    r = await post(app, "moderate_reject")
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "flagged by moderation"
    assert "post_success" not in names(handler)


async def test_failure_hook_can_replace_the_error(proxy: Any, fake_provider: FakeProvider) -> None:
    """An HTTPException returned by async_post_call_failure_hook replaces the client's error."""
    fake_provider.enqueue(Reply(status=500))
    app, handler = proxy
    r = await post(app, "failure_override")
    assert r.status_code == 418
    assert r.json()["error"]["message"] == "teapot says no"
    assert ("post_failure", "InternalServerError") in handler.calls


async def test_failure_hook_sees_provider_errors(proxy: Any, fake_provider: FakeProvider) -> None:
    """Without a replacement, the provider's error reaches the client after the failure hook saw it."""
    fake_provider.enqueue(Reply(status=503))
    app, handler = proxy
    r = await post(app)
    assert r.status_code == 503
    assert handler.calls[-1] == ("post_failure", "ServiceUnavailableError")


async def test_streaming_hooks_wrap_and_change_chunks(proxy: Any) -> None:
    """The iterator hook wraps the stream and the per-chunk hook's changes reach the client."""
    app, handler = proxy
    r = await post(app, stream=True)
    events = [e[len("data: "):] for e in r.text.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(orjson.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "HELLO FROM FAKE"
    chunk_calls = names(handler).count("stream_chunk")
    assert chunk_calls == len(events) - 1
    assert ("stream_iterator_end", chunk_calls) in handler.calls
    assert "post_success" not in names(handler)


async def test_embeddings_pre_call_string_is_a_400(proxy: Any, fake_provider: FakeProvider) -> None:
    """For embeddings a pre-call string rejects the request with 400 (there is no chat answer to give)."""
    app, _ = proxy
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        r = await c.post("/v1/embeddings", headers=AUTH, json={"model": "fast", "input": "x", "metadata": {"action": "answer"}})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "answered by the pre-call hook"


def test_only_overridden_hooks_are_called() -> None:
    """A logger that overrides only async_pre_call_hook contributes that hook and no other."""
    from lmgate.integrations.custom_logger import CustomLogger

    class OnlyPre(CustomLogger):
        async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: Any, call_type: Any) -> Any:
            return None

    hooks = HookSet([OnlyPre(), CustomLogger(), print])
    assert len(hooks.pre_call) == 1
    assert hooks.moderation == hooks.post_success == hooks.post_failure == hooks.stream_chunk == hooks.stream_iterator == ()
    assert HookSet([CustomLogger()]).empty


async def test_pre_call_answer_is_logged_like_any_call(proxy: Any, fake_provider: FakeProvider) -> None:
    """A request answered by a pre-call hook still reaches the loggers once: success, zero usage and cost, flagged."""
    from lmgate.testing import CapturingLogger

    app, _ = proxy
    capture = CapturingLogger()
    lmgate.callbacks.append(capture)
    for stream in (False, True):
        assert (await post(app, "answer", stream=stream)).status_code == 200
    assert await lmgate.aflush_callbacks(10)
    events = capture.of("async_log_success_event", "async_log_failure_event")
    assert [e.hook for e in events] == ["async_log_success_event"] * 2
    for event in events:
        slo = event.kwargs["standard_logging_object"]
        assert slo["metadata"]["answered_by_pre_call_hook"] is True
        assert slo["response_cost"] == 0 and slo["total_tokens"] == 0
        assert slo["response"]["choices"][0]["message"]["content"] == "answered by the pre-call hook"
    assert fake_provider.requests == []


async def test_failure_hook_hears_authentication_failures(proxy: Any) -> None:
    """A request rejected for a bad key reaches async_post_call_failure_hook (with no key hash), then gets 401."""
    app, handler = proxy
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy") as c:
        r = await c.post(
            "/v1/chat/completions", headers={"Authorization": "Bearer sk-wrong-000000000000"},
            json={"model": "fast", "messages": HI},
        )
    assert r.status_code == 401
    assert [name for name, _ in handler.calls] == ["post_failure"]
