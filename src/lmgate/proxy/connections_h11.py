"""uvicorn's h11 protocol with the connection guard (``connections.Guard``): used with
``--http h11`` or when httptools is not installed. Its own module so that a server on httptools
never imports h11."""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from .config import ServerLimits
from .connections import Guard, _head_size, _Refused


class _HeadCheckingConnection(h11.Connection):
    """h11's connection, telling the protocol when a head or a body is complete."""

    def __init__(self, guard: Guard, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self.guard = guard

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            if self.guard._refusal is None:
                status = error.error_status_hint if error.error_status_hint in (400, 431) else 400
                if status == 431:
                    self.guard._refusal = (
                        431,
                        f"request headers are over the limit of "
                        f"{self.guard.limits.max_header_bytes} bytes "
                        "(general_settings.max_request_header_kb)",
                    )
                else:
                    self.guard._refusal = (400, f"malformed HTTP request: {error}")
            raise
        if isinstance(event, h11.Request):
            try:
                self.guard._head_complete(_head_size(event.target, event.headers))
            except _Refused:
                raise h11.RemoteProtocolError("request headers too large", error_status_hint=431) from None
        elif isinstance(event, h11.EndOfMessage):
            self.guard._body_complete()
        return event


class GuardedH11Protocol(Guard, H11Protocol):
    """uvicorn's h11 protocol with the guard's limits, timeouts and JSON errors."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard_init(limits)
        self.conn = _HeadCheckingConnection(self, limits.max_header_bytes)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._guard_connected()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard_lost()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.draining:
            return
        self._guard_data(len(data))
        super().data_received(data)
        self._guard_after_data()

    def on_response_complete(self) -> None:
        self._guard_response_complete()
        super().on_response_complete()  # parses a pipelined request's head that waited
        self._arm_pending()

    def send_400_response(self, msg: str) -> None:
        self._send_error(msg)

    def shutdown(self) -> None:
        if self.draining:  # answered already; its parser may be in any state
            self.transport.close()
            return
        super().shutdown()


__all__ = ["GuardedH11Protocol"]
