"""The proxy's JSON responses: bodies encoded with orjson, errors in the OpenAI shape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.responses import Response

from .connections import SPECIAL_HEADERS, httptools_cycle, write_whole
from .errors import ProxyError

JSON = "application/json"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content), status_code=status, headers=headers, media_type=JSON)


class EncodedJSON(Response):
    """A 200 whose JSON body is already encoded and whose header names are already lower case:
    the same answer as ``Response(body, headers=headers, media_type=JSON)`` (same headers, same
    order), without Starlette's header building (the forwarding path answers this once a request).

    On uvicorn's httptools server it is written whole, in one call (``connections.write_whole``):
    the bytes ``send`` would write for its two messages, with ``send``'s checks; anywhere else,
    and where ``send`` would do more, it is sent as those two messages.

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
        self._headers_in = headers
        length = str(len(body))
        # the head's own lines, written whole when the names are what uvicorn's send writes as they
        # are (lower case, none it reads itself); else None and the two messages go
        names = "".join(headers)
        self._lines: tuple[bytes, bytes, bytes] | None = None
        encoded_names = _whole_names(names, headers)
        if encoded_names is not None:
            try:
                lines = ""  # a loop, not a comprehension (its function and frame): once a request
                for name, value in headers.items():
                    lines += f"{name}: {value}\r\n"
                self._lines = (
                    f"{lines}content-length: {length}\r\ncontent-type: application/json\r\n".encode(
                        "latin-1"
                    ),
                    encoded_names,
                    "".join(headers.values()).encode("latin-1"),
                )
            except UnicodeEncodeError:  # raised below, as before, by the list's own encoding
                self._lines = None
        self._length = length
        if self._lines is None:  # sent as two messages: the list now, as before (an error here too)
            self.raw_headers  # noqa: B018

    @property
    def raw_headers(self) -> list[tuple[bytes, bytes]]:  # type: ignore[override]
        """Starlette's header list, made when something asks for it (the server's send does)."""
        raw = self.__dict__.get("_raw")
        if raw is None:
            raw = [
                (name.encode("latin-1"), value.encode("latin-1")) for name, value in self._headers_in.items()
            ]
            raw.append((b"content-length", self._length.encode("latin-1")))
            raw.append((b"content-type", _JSON_BYTES))
            self._raw = raw
            self._lines = None  # the list may be changed (``headers``): send what it says
        return raw  # type: ignore[no-any-return]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:  # Response.__call__ for an HTTP answer without a background task
            lines = self._lines
            cycle = getattr(send, "__self__", None)
            if (
                lines is None
                or type(cycle) is not httptools_cycle()
                or not write_whole(cycle, lines[0], lines[1], lines[2], self.body)
            ):
                await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
                await send({"type": "http.response.body", "body": self.body})
        finally:
            if self.after is not None:
                self.after()


_JSON_BYTES = JSON.encode("latin-1")

# joined header names (none of them one uvicorn's send reads itself) -> their bytes when an
# answer with them may be written whole (all lower case, latin-1), else None: the same few sets
# on every answer, so decided once each (issue 18). Without a special name the decision depends
# on the joined text alone (lower case and encoding go character by character).
_WHOLE_NAMES: dict[str, bytes | None] = {}
_WHOLE_NAMES_MAX = 256  # names a hook chose among them: past this many, the rest are decided each time


def _whole_names(names: str, headers: dict[str, str]) -> bytes | None:
    """``names`` (``headers``' names joined) as bytes when the answer may be written whole."""
    if not SPECIAL_HEADERS.isdisjoint(headers):
        return None
    try:
        return _WHOLE_NAMES[names]
    except KeyError:
        pass
    whole = None
    if names == names.lower():
        try:
            whole = names.encode("latin-1")
        except UnicodeEncodeError:
            whole = None
    if len(_WHOLE_NAMES) < _WHOLE_NAMES_MAX:
        _WHOLE_NAMES[names] = whole
    return whole


def error_response(error: ProxyError) -> Response:
    return Response(error.body(), status_code=error.status, headers=error.headers or None, media_type=JSON)


__all__ = ["JSON", "EncodedJSON", "error_response", "json_response"]
