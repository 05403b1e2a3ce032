"""Errors as the OpenAI API shapes them: ``{"error": {"message", "type", "param", "code"}}``.

``ProxyError`` is what the routes raise; ``to_proxy_error`` maps anything else at one place:
an lmgate exception keeps its ``status_code``, an HTTPException-like object (``status_code``
and ``detail``, as Starlette's and FastAPI's) keeps its status and detail, any other error
is a 500. Messages pass through secret masking.
"""

from __future__ import annotations

from typing import Any

import orjson

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class ProxyError(Exception):
    """An error the proxy answers with, already shaped for the client."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        from .._secrets import scrub

        self.status = status
        self.message = scrub(message)
        self.type = type or _TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        self.param = param
        self.code = code or str(status)
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self) -> bytes:
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        )


def _detail_message(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        inner = detail.get("error") or detail.get("message")
        if isinstance(inner, str):
            return inner
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
    try:
        return orjson.dumps(detail).decode()
    except TypeError:
        return str(detail)


def is_http_exception(error: BaseException) -> bool:
    """Starlette/FastAPI-style ``HTTPException``: an int ``status_code`` and a ``detail``."""
    return isinstance(getattr(error, "status_code", None), int) and hasattr(error, "detail")


def to_proxy_error(error: BaseException) -> ProxyError:
    """The client-facing error for any exception."""
    from .. import exceptions as exc

    if isinstance(error, ProxyError):
        return error
    if isinstance(error, exc.LmgateError):
        status = int(error.status_code or 500)
        headers = {}
        if error.retry_after is not None:
            headers["retry-after"] = str(int(error.retry_after + 0.999))
        code = None
        if isinstance(error, exc.UnknownModelError):
            code = "model_not_found"
        elif isinstance(error, exc.ContextWindowExceededError):
            code = "context_length_exceeded"
        return ProxyError(status, str(error), code=code, headers=headers)
    if is_http_exception(error):
        status = int(error.status_code)  # type: ignore[attr-defined]
        detail = error.detail  # type: ignore[attr-defined]
        return ProxyError(
            status, _detail_message(detail), headers=dict(getattr(error, "headers", None) or {})
        )
    foreign = getattr(error, "status_code", None)
    if isinstance(foreign, int) and 400 <= foreign <= 599:
        return ProxyError(foreign, f"{type(error).__name__}: {error}")
    return ProxyError(500, f"{type(error).__name__}: {error}", type="internal_server_error")


__all__ = ["ProxyError", "is_http_exception", "to_proxy_error"]
