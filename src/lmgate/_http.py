"""The shared HTTP clients and the one place httpx errors become lmgate errors.

One pooled ``httpx.Client`` serves every sync call in the process; one ``httpx.AsyncClient``
per event loop serves async calls (a client cannot cross loops), sending over aiohttp. A caller
may hand in their own clients instead (``lmgate.client_session`` / ``lmgate.aclient_session``, as in the
reference implementation): proxies, custom TLS, transports. httpx is imported here, lazily,
so ``import lmgate`` stays fast.
"""

from __future__ import annotations

import atexit
import functools
import threading
import weakref
from typing import TYPE_CHECKING, Any

from . import exceptions as exc
from .settings import DEFAULT, Settings

if TYPE_CHECKING:
    import asyncio

    import httpx

    from ._aiohttp_transport import AiohttpTransport

DEFAULT_TIMEOUT_S = 600.0
DEFAULT_CONNECT_TIMEOUT_S = 5.0
_MAX_CONNECTIONS = 1000
_MAX_KEEPALIVE = 200

_lock = threading.Lock()
_sync_client: httpx.Client | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
    weakref.WeakKeyDictionary()
)
_async_wires: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AiohttpTransport] = (
    weakref.WeakKeyDictionary()
)


_ssl_context: Any = None
_ssl_lock = threading.Lock()  # apart from _lock: sync_client() calls _verify() while holding that


def _verify() -> Any:
    """One SSL context for every client: building one loads the CA bundle (~25 ms), and each
    event loop gets its own AsyncClient."""
    global _ssl_context
    if _ssl_context is None:
        import httpx

        with _ssl_lock:
            if _ssl_context is None:
                _ssl_context = httpx.create_ssl_context()
    return _ssl_context


def _limits() -> Any:
    import httpx

    return httpx.Limits(max_connections=_MAX_CONNECTIONS, max_keepalive_connections=_MAX_KEEPALIVE)


_default_timeout: Any = None


def timeout(value: Any) -> Any:
    """An httpx timeout from a number of seconds, an httpx.Timeout, or None (the default)."""
    global _default_timeout
    if value is None and _default_timeout is not None:
        return _default_timeout  # every call without its own timeout: one immutable object
    import httpx

    if value is None:
        _default_timeout = httpx.Timeout(DEFAULT_TIMEOUT_S, connect=DEFAULT_CONNECT_TIMEOUT_S)
        return _default_timeout
    if isinstance(value, httpx.Timeout):
        return value
    seconds = float(value)
    return httpx.Timeout(seconds, connect=min(seconds, DEFAULT_CONNECT_TIMEOUT_S))


@functools.lru_cache(maxsize=256)
def url(text: str) -> httpx.URL:
    """The parsed URL, parsed once per distinct URL: httpx parses and validates a string URL on
    every request (~50 µs); a deployment's endpoint URL is the same every time."""
    import httpx

    return httpx.URL(text)


def sync_client(settings: Settings = DEFAULT) -> httpx.Client:
    # ``client_session`` (``lmgate.client_session``): a caller's own httpx client, if set
    user = settings.client_session
    if user is not None:
        return user  # type: ignore[no-any-return]
    global _sync_client
    client = _sync_client
    if client is None:
        import httpx

        with _lock:
            if _sync_client is None:
                _sync_client = httpx.Client(limits=_limits(), timeout=timeout(None), verify=_verify())
                atexit.register(_close_sync_client)  # release pooled connections cleanly at exit
            client = _sync_client
    return client


def _close_sync_client() -> None:
    global _sync_client
    client, _sync_client = _sync_client, None
    if client is not None:
        client.close()


def _running_loop() -> asyncio.AbstractEventLoop:
    # asyncio imported here, not at the top: a sync call never needs it (nor the ssl it imports);
    # when a loop is running it is already loaded
    import asyncio

    return asyncio.get_running_loop()


def async_client(settings: Settings = DEFAULT) -> httpx.AsyncClient:
    # ``aclient_session`` (``lmgate.aclient_session``): a caller's own httpx client, if set
    user = settings.aclient_session
    if user is not None:
        return user  # type: ignore[no-any-return]
    loop = _running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _new_async_client()
        _async_clients[loop] = client
    return client


def _new_async_client() -> httpx.AsyncClient:
    """httpx's API over this loop's aiohttp wire (issue 18; see _aiohttp_transport). Proxies from
    the environment keep httpx's own transports."""
    import httpx

    return httpx.AsyncClient(
        limits=_limits(),
        timeout=timeout(None),
        verify=_verify(),
        transport=_loop_wire(_running_loop()),
    )


def async_wire(settings: Settings = DEFAULT) -> AiohttpTransport | None:
    """This loop's aiohttp wire for lmgate's own async calls (a fraction of the CPU per request of
    going through httpx's client), or None when the caller set ``lmgate.aclient_session`` (or an
    HTTP(S) proxy in the environment, which httpx's transports honour): then callers use
    ``async_client()``."""
    if settings.aclient_session is not None or _env_proxies():
        return None
    return _loop_wire(_running_loop())


# the last loop asked for and its wire: a server has one loop, and a WeakKeyDictionary lookup
# builds a weak reference on every call
_last_wire: tuple[weakref.ref[asyncio.AbstractEventLoop], AiohttpTransport] | None = None


def _loop_wire(loop: asyncio.AbstractEventLoop) -> AiohttpTransport:
    global _last_wire
    last = _last_wire
    if last is not None and last[0]() is loop:
        return last[1]
    wire = _async_wires.get(loop)
    if wire is None:
        from ._aiohttp_transport import AiohttpTransport

        wire = AiohttpTransport(_verify(), _limits())
        _async_wires[loop] = wire
    _last_wire = (weakref.ref(loop), wire)
    return wire


_env_proxy: bool | None = None


def _env_proxies() -> bool:
    """Whether the environment names an HTTP(S) proxy (read once: httpx reads it once per client)."""
    global _env_proxy
    if _env_proxy is None:
        import urllib.request

        _env_proxy = any(k in ("http", "https", "all") for k in urllib.request.getproxies())
    return _env_proxy


def map_transport_error(error: BaseException, provider: str | None, model: str | None) -> exc.LmgateError:
    """An httpx exception as the most specific lmgate error."""
    import httpx

    if isinstance(error, exc.LmgateError):
        return error
    if isinstance(error, httpx.TimeoutException):
        return exc.Timeout(
            f"request timed out: {type(error).__name__}: {error}", provider, model, status_code=408
        )
    if isinstance(error, (httpx.TransportError, httpx.StreamError)):
        return exc.APIConnectionError(f"connection failed: {type(error).__name__}: {error}", provider, model)
    return exc.APIConnectionError(f"{type(error).__name__}: {error}", provider, model)
