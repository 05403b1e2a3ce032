"""Server-sent events from a stream's text, as ``httpx_sse`` reads them, with a fast lane.

``httpx_sse.EventSource`` splits a stream into lines through two generators and a decoder
object per line; for an OpenAI-compatible stream that was the largest part of lmgate's cost per
streamed event after the response objects (issue 18). ``SSEEvents`` follows the same
specification (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation)
with the same choices as ``httpx_sse`` 0.4 (only ``\\r\\n``, ``\\r`` and ``\\n`` end a line, an
unterminated last line is read but never dispatched, an ``id`` with NUL is ignored) and gives
its ``ServerSentEvent`` objects; a piece of text that is whole events of one ``data: …`` line
each, the usual case, is split in one pass. ``tests/test_sse_events.py`` holds it to
``httpx_sse`` on every split of many streams.
"""

from __future__ import annotations

from httpx_sse import ServerSentEvent


class SSEEvents:
    """An incremental decoder: ``feed`` each piece of text, then ``end``; each returns the events
    completed."""

    __slots__ = ("_buffer", "_data", "_event", "_last_id", "_retry", "_trailing_cr")

    def __init__(self) -> None:
        self._buffer = ""  # the text after the last line end
        self._trailing_cr = False  # the text ended in "\r": maybe the first half of "\r\n"
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, text: str) -> list[ServerSentEvent]:
        out: list[ServerSentEvent] = []
        if (
            text.endswith("\n\n")
            and not self._buffer
            and not self._trailing_cr
            and not self._event
            and not self._data
            and self._retry is None
            and "\r" not in text
        ):  # whole events, nothing pending: each block is its lines and a blank line
            for block in text[:-2].split("\n\n"):
                if block.startswith("data: ") and "\n" not in block:
                    out.append(ServerSentEvent("", block[6:], self._last_id, None))
                else:
                    for line in block.split("\n"):
                        self._line(line, out)
                    self._line("", out)
            return out
        for line in self._lines(text):
            self._line(line, out)
        return out

    def whole_data(self, text: str) -> list[str] | None:
        """The data of the events ``feed(text)`` would give, when ``text`` is whole events of one
        ``data: …`` line each and nothing is pending (the usual OpenAI-compatible piece): no
        event objects made. Their event name is ``message``, their id the last one. None, with
        nothing read, for any other text: ``feed`` it then."""
        if (
            not text.endswith("\n\n")
            or self._buffer
            or self._trailing_cr
            or self._event
            or self._data
            or self._retry is not None
            or "\r" in text
        ):
            return None
        out: list[str] = []
        for block in text[:-2].split("\n\n"):
            if not block.startswith("data: ") or "\n" in block:
                return None
            out.append(block[6:])
        return out

    def end(self) -> list[ServerSentEvent]:
        """The stream is over: its unterminated last line is read (and never dispatched, unless
        it was a lone ``\\r``, a blank line)."""
        out: list[ServerSentEvent] = []
        if self._buffer or self._trailing_cr:
            line, self._buffer, self._trailing_cr = self._buffer, "", False
            self._line(line, out)
        return out

    def _lines(self, text: str) -> list[str]:
        # httpx_sse's SSELineDecoder.decode: a trailing "\r" waits for the next piece
        if self._trailing_cr:
            text = "\r" + text
            self._trailing_cr = False
        if text.endswith("\r"):
            self._trailing_cr = True
            text = text[:-1]
        if not text:
            return []
        trailing_newline = text[-1] in "\n\r"
        lines = (text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text).split("\n")
        if trailing_newline:
            lines.pop()
        if len(lines) == 1 and not trailing_newline:
            self._buffer += lines[0]
            return []
        if self._buffer:
            lines[0] = self._buffer + lines[0]
            self._buffer = ""
        if not trailing_newline:
            self._buffer = lines.pop()
        return lines

    def _line(self, line: str, out: list[ServerSentEvent]) -> None:
        # httpx_sse's SSEDecoder.decode
        if not line:
            if not self._event and not self._data and not self._last_id and self._retry is None:
                return
            out.append(ServerSentEvent(self._event, "\n".join(self._data), self._last_id, self._retry))
            self._event = ""
            self._data = []
            self._retry = None
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry":
            try:
                self._retry = int(value)
            except (TypeError, ValueError):
                pass


__all__ = ["SSEEvents"]
