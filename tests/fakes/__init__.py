"""Real local servers for the tests: a fake LLM provider (and a fake Gemini API), a fake log receiver, a real redis-server,
and the guard that keeps every test's traffic on the loopback interface."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from .bedrock import BedrockReply, FakeBedrock
from .gemini import FakeGemini, GeminiReply
from .provider import DEFAULT_TEXT, BackgroundHTTPServer, FakeProvider, RecordedRequest, Reply
from .receiver import LogReceiver, ReceivedRequest
from .redis_server import RedisServer, RedisServerError
from .vertex import FakeVertex, make_service_account

__all__ = [
    "DEFAULT_TEXT",
    "BackgroundHTTPServer",
    "BedrockReply",
    "FakeBedrock",
    "FakeGemini",
    "FakeProvider",
    "FakeVertex",
    "GeminiReply",
    "LogReceiver",
    "ReceivedRequest",
    "RecordedRequest",
    "RedisServer",
    "RedisServerError",
    "Reply",
    "check_loopback",
    "make_service_account",
    "install_loopback_guard",
]


def _is_loopback_host(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    if not isinstance(host, str):
        return False
    host = host.strip("[]").split("%")[0]
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def check_loopback(address: Any) -> None:
    """Raise RuntimeError unless ``address`` (a socket address) is loopback or a unix socket path."""
    if isinstance(address, (str, bytes)):  # AF_UNIX path or abstract socket
        return
    if isinstance(address, tuple) and address and _is_loopback_host(address[0]):
        return
    raise RuntimeError(f"test tried to reach beyond loopback: {address!r}")


def install_loopback_guard() -> Callable[[], None]:
    """Wrap socket.socket.connect/connect_ex and socket.create_connection; returns the undo function."""
    orig_connect = socket.socket.connect
    orig_connect_ex = socket.socket.connect_ex
    orig_create_connection = socket.create_connection

    def connect(self: socket.socket, address: Any) -> None:
        check_loopback(address)
        return orig_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check_loopback(address)
        return orig_connect_ex(self, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        check_loopback(address)
        return orig_create_connection(address, *args, **kwargs)

    connect.loopback_guard = True  # type: ignore[attr-defined]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.create_connection = create_connection

    def uninstall() -> None:
        socket.socket.connect = orig_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = orig_connect_ex  # type: ignore[method-assign]
        socket.create_connection = orig_create_connection

    return uninstall
