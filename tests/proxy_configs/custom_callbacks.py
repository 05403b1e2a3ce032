"""A proxy handler overriding every proxy hook; what each does is chosen by metadata["action"]."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.exceptions import HTTPException

import lmgate
from lmgate.integrations.custom_logger import CustomLogger


def _action(data: dict[str, Any]) -> str:
    return str((data.get("metadata") or {}).get("action") or "")


class ProxyHandler(CustomLogger):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.moderation_saw_provider_call: bool | None = None
        self.wait_for_provider: Any = None  # set by the test: a blocking fn returning True when the call arrived

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict[str, Any], call_type: str) -> Any:
        self.calls.append(("pre_call", user_api_key_dict.api_key))
        action = _action(data)
        await cache.async_set_cache("last_action", action)
        if action == "answer":
            return "answered by the pre-call hook"
        if action == "reject_http":
            raise HTTPException(status_code=403, detail={"error": "blocked by policy"})
        if action == "reject_ratelimit":
            raise lmgate.RateLimitError("slow down", "proxy", "fast")
        if action == "rewrite":
            data = dict(data)
            data["messages"] = [{"role": "system", "content": "be brief"}, *data["messages"]]
            data["temperature"] = 0.25
            return data
        return None

    async def async_moderation_hook(self, data: dict[str, Any], user_api_key_dict: Any, call_type: str) -> Any:
        self.calls.append(("moderation", call_type))
        action = _action(data)
        if action == "moderate_parallel" and self.wait_for_provider is not None:
            self.moderation_saw_provider_call = await asyncio.to_thread(self.wait_for_provider)
        if action == "moderate_reject":
            raise HTTPException(status_code=400, detail="flagged by moderation")
        return None

    async def async_post_call_success_hook(self, data: dict[str, Any], user_api_key_dict: Any, response: Any) -> Any:
        self.calls.append(("post_success", None))
        additional_headers = getattr(response, "_hidden_params", {}).get("additional_headers", {}) or {}
        additional_headers["x-litellm-custom-header"] = "my-value"
        response._hidden_params["additional_headers"] = additional_headers
        if _action(data) == "replace":
            response.choices[0].message.content = "replaced by the post-call hook"
        return response

    async def async_post_call_failure_hook(self, request_data: dict[str, Any], original_exception: BaseException,
                                           user_api_key_dict: Any, traceback_str: str | None = None) -> Any:
        self.calls.append(("post_failure", type(original_exception).__name__))
        if _action(request_data) == "failure_override":
            return HTTPException(status_code=418, detail="teapot says no")
        return None

    async def async_post_call_streaming_hook(self, user_api_key_dict: Any, response: Any) -> Any:
        self.calls.append(("stream_chunk", None))
        delta = response.choices[0].delta
        if delta.content:
            delta.content = delta.content.upper()
        return response

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: Any, response: Any, request_data: dict[str, Any]) -> Any:
        self.calls.append(("stream_iterator", None))
        count = 0
        async for chunk in response:
            count += 1
            yield chunk
        self.calls.append(("stream_iterator_end", count))


proxy_handler_instance = ProxyHandler()
