"""``lmgate._sse_events.SSEEvents`` reads a stream exactly as ``httpx_sse`` does (issue 18).

Each stream below is given to both, whole and split at every point (and one character at a
time): the events, their names, data, ids and retries must be the same.
"""

from __future__ import annotations

import httpx
import pytest
from httpx_sse import EventSource

from lmgate._sse_events import SSEEvents

OPENAI = "".join(f'data: {{"i": {i}, "t": "a\\u00e9:b"}}\n\n' for i in range(3)) + "data: [DONE]\n\n"
STREAMS = [
    OPENAI,
    "data: a\n\ndata: b\n\n\n\ndata: c\n\n",
    "event: message_start\ndata: {}\n\nevent: ping\ndata: x\ndata: y\n\n",
    "data: a\r\n\r\ndata: b\r\rdata: c\r\n\r\n",
    ": comment\n\ndata:no-space\n\ndata:  two spaces\n\n",
    "id: 7\ndata: a\n\n\n\ndata: b\n\nid: bad\0id\ndata: c\n\n",
    "retry: 10\ndata: a\n\nretry: x\ndata: b\n\nunknown: z\ndata\n\n",
    "data: a\n\ndata: unterminated",
    "data: a\n\ndata: b\n\r",
    "data: a\n\ndata: b\r",
    "id: 1\n\n\r",
    "",
    "\n\n\n",
]


def _reference(pieces: list[str]) -> list[tuple[str, str, str, int | None]]:
    response = httpx.Response(
        200, headers={"content-type": "text/event-stream"}, content=iter([p.encode() for p in pieces])
    )
    return [(e.event, e.data, e.id, e.retry) for e in EventSource(response).iter_sse()]


def _ours(pieces: list[str]) -> list[tuple[str, str, str, int | None]]:
    events = SSEEvents()
    out = [e for piece in pieces for e in events.feed(piece)] + events.end()
    return [(e.event, e.data, e.id, e.retry) for e in out]


@pytest.mark.parametrize("stream", STREAMS)
def test_events_are_httpx_sses_at_every_split(stream: str) -> None:
    assert _ours([stream]) == _reference([stream])
    for cut in range(1, len(stream)):
        pieces = [stream[:cut], stream[cut:]]
        assert _ours(pieces) == _reference(pieces), cut
    singles = list(stream)
    assert _ours(singles) == _reference(singles)


def test_whole_openai_events_are_read() -> None:
    assert [e[1] for e in _ours([OPENAI])][-1] == "[DONE]"
    assert len(_ours([OPENAI])) == 4


@pytest.mark.parametrize("stream", STREAMS)
def test_whole_data_is_the_data_of_what_feed_gives_or_none(stream: str) -> None:
    """``whole_data`` answers only when ``feed`` would give plain ``message`` events, and then
    their data; otherwise it reads nothing, so ``feed`` after it gives what it gives alone."""
    cuts = [[stream]] + [[stream[:cut], stream[cut:]] for cut in range(1, len(stream))]
    for pieces in cuts:
        fast, plain = SSEEvents(), SSEEvents()
        for piece in pieces:
            expected = [(e.event, e.data, e.id, e.retry) for e in plain.feed(piece)]
            whole = fast.whole_data(piece)
            if whole is None:
                got = [(e.event, e.data, e.id, e.retry) for e in fast.feed(piece)]
            else:
                got = [("message", data, fast._last_id, None) for data in whole]
            assert got == expected, (pieces, piece)
        assert [e.data for e in fast.end()] == [e.data for e in plain.end()]
    assert SSEEvents().whole_data(OPENAI) is not None  # the usual stream takes the fast lane
