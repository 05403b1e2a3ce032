"""The proxy's JSON responses: bodies encoded with orjson, errors in the OpenAI shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from .errors import ProxyError

JSON = "application/json"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type=JSON)


class EncodedJSON(Response):
    """A 200 whose JSON body is already encoded and whose header names are already lower case:
    the same answer as ``Response(body, headers=headers, media_type=JSON)`` (same headers, same
    order), without Starlette's header building (the forwarding path answers this once a request).

    ``after`` runs once the answer is handed to the server, whether or not that worked: the
    request's bookkeeping (its metrics and access line) then no longer delays the answer itself
    (issue 18: at one request at a time, it overlaps the client's turn-around instead).
    """

    def __init__(self, body: bytes, headers: dict[str, str], after: Callable[[], None] | None = None) -> None:
        self.after = after
        self.body = body
        self.status_code = 200
        self.media_type = JSON
        self.background = None
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
        raw.append((b"content-length", str(len(body)).encode("latin-1")))
        raw.append((b"content-type", _JSON_BYTES))
        self.raw_headers = raw

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:  # Response.__call__ for an HTTP answer without a background task
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await send({"type": "http.response.body", "body": self.body})
        finally:
            if self.after is not None:
                self.after()


_JSON_BYTES = JSON.encode("latin-1")


def error_response(error: ProxyError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers or None, media_type=JSON)


__all__ = ["JSON", "EncodedJSON", "error_response", "json_response"]
