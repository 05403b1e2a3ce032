"""The proxy's JSON responses: bodies encoded with orjson, errors in the OpenAI shape."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from .errors import ProxyError

JSON = "application/json"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type=JSON)


def error_response(error: ProxyError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers or None, media_type=JSON)


__all__ = ["JSON", "error_response", "json_response"]
