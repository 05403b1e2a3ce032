"""``lmgate serve``: load the config, say what was loaded, run uvicorn.

One worker runs the app object built here. ``--workers N`` hands uvicorn an import string
(``lmgate.proxy.server:app_factory``) and the config path in ``LMGATE_PROXY_CONFIG``; each
worker builds its own app (uvicorn's workers are separate processes). The parent validates
the whole config first (loading callbacks too), so a bad config fails once, before any worker
starts.

The server runs on uvloop and httptools when they are installed (the ``proxy`` extra), else on
asyncio and h11 (``--loop``/``--http`` choose); either HTTP protocol is wrapped by
``connections.py`` (connection cap, header/body timeouts, JSON errors from the HTTP layer).
At start the open-file limit is raised to its hard limit, so connections are not refused for
want of file descriptors.

SIGTERM/SIGINT: uvicorn stops accepting, lets in-flight requests finish (bounded by
``general_settings.graceful_shutdown_timeout_s``), then the app's lifespan flushes every
logger (``general_settings.flush_timeout_s``).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from typing import Any

from .config import ConfigError, ProxyConfig, ServerLimits, load_config

ENV_CONFIG = "LMGATE_PROXY_CONFIG"
DEFAULT_HOST = "0.0.0.0"  # with a master key
LOOPBACK_HOST = "127.0.0.1"  # without one, unless --host says otherwise
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_FACTORY = "lmgate.proxy.server:app_factory"


FILES_HEADROOM = 100  # open files beyond the client connections: upstream connections, logs, spools


def serve(args: Any) -> int:
    """Run the proxy until SIGTERM/SIGINT; 2 for a bad config, 0 after a clean shutdown."""
    import uvicorn

    from .app import create_app
    from .loading import apply_config, describe
    from .logs import logging_config, setup_logging

    log_format = getattr(args, "log_format", "text")
    try:
        setup_logging(args.log_level, log_format)
    except ValueError as error:
        print(f"lmgate serve: {error}", file=sys.stderr)
        return 2
    import orjson

    from ..loggers.writer_child import LOG_CONFIG_ENV

    # the log store's writer processes share this stderr: their lines as this process writes its own
    os.environ[LOG_CONFIG_ENV] = orjson.dumps(logging_config(args.log_level, log_format)).decode()
    say = logging.getLogger("lmgate.proxy.server")  # through the same formatter as every other line
    workers = int(getattr(args, "workers", 1) or 1)
    if workers < 1:
        say.error("lmgate serve: --workers must be at least 1")
        return 2
    try:
        config = load_config(args.config)
        if workers == 1:
            app = create_app(config)
            applied = app.state.proxy.applied
        else:
            applied = apply_config(config)
    except ConfigError as error:
        say.error("lmgate serve: bad config: %s", error)
        return 2
    host, where = bind_address(config, getattr(args, "host", None))
    try:
        http_name, http_protocol = protocol_for(getattr(args, "http", "auto"), config.limits)
        loop = _loop(getattr(args, "loop", "auto"))
    except ValueError as error:
        say.error("lmgate serve: %s", error)
        return 2
    files = raise_open_file_limit()
    if 0 < files < config.limits.max_connections + FILES_HEADROOM:
        say.warning(
            f"lmgate serve: the open-file limit ({files}) leaves little room above "
            f"general_settings.max_connections ({config.limits.max_connections}) for upstream connections "
            "and files; lower max_connections or raise the hard limit (ulimit -Hn)"
        )
    say.info(
        f"{describe(config, applied)} | listening on http://{host}:{args.port}{where}"
        f"{f' ({workers} workers)' if workers > 1 else ''} | {http_name}, {loop}, open files {files}"
    )
    options: dict[str, Any] = {
        "host": host,
        "port": args.port,
        "log_level": args.log_level,
        "access_log": False,  # lmgate.proxy.access writes the request lines (logs.py)
        "log_config": logging_config(args.log_level, log_format),  # every worker: one formatter
        "lifespan": "on",
        "timeout_graceful_shutdown": config.graceful_shutdown_timeout_s,
        "loop": loop,
        "http": http_protocol,
        # no route speaks WebSocket: "none" keeps uvicorn from importing the websockets
        # package (3.3 MiB of idle RSS) and answers an Upgrade request as plain HTTP
        "ws": "none",
        "timeout_keep_alive": config.limits.keep_alive_timeout_s,
    }
    if workers == 1:
        _server_class()(uvicorn.Config(app, **options)).run()
    else:
        os.environ[ENV_CONFIG] = os.path.abspath(args.config)
        uvicorn.run(_FACTORY, factory=True, workers=workers, **options)
    return 0


def protocol_for(http_impl: str, limits: ServerLimits) -> tuple[str, Any]:
    """The HTTP protocol to hand uvicorn (``auto``: httptools when installed, else h11), and its name."""
    from . import connections

    if http_impl not in ("auto", "h11", "httptools"):
        raise ValueError(f"--http must be auto, h11 or httptools, got {http_impl!r}")
    if http_impl == "httptools" and connections.GuardedHttpToolsProtocol is None:
        raise ValueError("--http httptools: httptools is not installed (pip install 'lmgate[proxy]')")
    if http_impl != "h11" and connections.GuardedHttpToolsProtocol is not None:
        return "httptools", functools.partial(connections.GuardedHttpToolsProtocol, limits=limits)
    # h11 only when chosen: importing it (and uvicorn's h11 protocol) costs ~0.5 MiB of idle RSS
    from .connections_h11 import GuardedH11Protocol

    return "h11", functools.partial(GuardedH11Protocol, limits=limits)


def bind_address(config: ProxyConfig, host: str | None) -> tuple[str, str]:
    """The address to listen on, and what the startup line adds about it.

    Without a master key every request is accepted, so unless ``--host`` is given the proxy
    listens on the loopback interface only: an open proxy is never exposed by mistake.
    """
    if host:
        if not config.master_key and host not in LOOPBACK_HOSTS:
            return host, " (no master key: anyone who can reach this address can use every model)"
        return host, ""
    if config.master_key:
        return DEFAULT_HOST, ""
    return LOOPBACK_HOST, " (loopback only, because there is no master key; pass --host to listen elsewhere)"


def _loop(choice: str) -> str:
    if choice not in ("auto", "asyncio", "uvloop"):
        raise ValueError(f"--loop must be auto, asyncio or uvloop, got {choice!r}")
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        if choice == "uvloop":
            raise ValueError("--loop uvloop: uvloop is not installed (pip install 'lmgate[proxy]')") from None
        return "asyncio"
    return "uvloop"


def raise_open_file_limit() -> int:
    """Raise the soft open-file limit to the hard limit (each connection is a file); the new soft limit."""
    try:
        import resource
    except ImportError:  # not on this platform
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):  # e.g. macOS refuses RLIM_INFINITY: keep the soft limit
            pass
    return soft


def _server_class() -> Any:
    """uvicorn's ``Server``, owning SIGTERM/SIGINT for the whole process, except that it does not
    re-raise the signal after its graceful shutdown: the lifespan has flushed every logger by
    then, and the re-raised signal would end the process with -15 instead of serve() returning 0."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            tune_gc()  # after the lifespan's start: the imports and clients it made are kept too

        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            self._captured_signals.clear()

    return Server


def app_factory() -> Any:
    """The app for one worker process, from the config named in ``LMGATE_PROXY_CONFIG``."""
    from ..loggers import signals
    from .app import create_app

    signals.disable()  # each worker's uvicorn owns SIGTERM; the lifespan flushes the loggers

    path = os.environ.get(ENV_CONFIG)
    if not path:
        raise SystemExit(f"lmgate serve: {ENV_CONFIG} is not set")
    try:
        config: ProxyConfig = load_config(path)
        app = create_app(config)
    except ConfigError as error:
        print(f"lmgate serve: bad config: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    tune_gc()
    return app


# the serving process's garbage collector (issue 18). A request in flight holds a few hundred
# container objects; with 50 in flight, CPython's default threshold (700 allocations) ran a young
# collection every ~8 requests, promoted the in-flight objects, and every few seconds a full
# collection walked the whole heap (~50k objects: modules, the price table, the config): about
# 15% of the proxy's CPU at c=50 (the gc callbacks' thread CPU time under wrk; docs/proxy.md).
# The objects that live as long as the process are frozen out of every collection, and young
# collections run ten times less often (a few thousand more young objects at most). A forwarded
# request leaves no cyclic garbage (gc.DEBUG_SAVEALL found none under load), so no memory waits
# on the rarer collections.
GC_YOUNG_THRESHOLD = 7000


def tune_gc() -> None:
    """Freeze what exists now out of the collector's walks; raise the young generation's threshold."""
    import gc

    # no gc.collect() first: it would hold the first requests ~20 ms, and the collector has run all
    # through start-up, so what garbage is frozen with the rest is at most its last few hundred objects
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young:  # 0: the collector is off; leave it so
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), middle, old)


__all__ = [
    "DEFAULT_HOST",
    "ENV_CONFIG",
    "LOOPBACK_HOST",
    "app_factory",
    "bind_address",
    "raise_open_file_limit",
    "tune_gc",
    "serve",
]
