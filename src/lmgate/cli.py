"""The ``lmgate`` command: ``lmgate demo``, ``lmgate serve --config config.yaml``, ``lmgate logs …``,
``lmgate ui``, ``lmgate keys|teams|spend …`` (a running proxy's management API), ``lmgate --version``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="lmgate", description="lmgate: an LLM gateway with an observability pipeline"
    )
    parser.add_argument("--version", action="version", version=f"lmgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run a completion, a stream and an async call on the mock provider")
    serve = sub.add_parser("serve", help="run the OpenAI-compatible proxy")
    serve.add_argument("--config", required=True, help="path to config.yaml")
    serve.add_argument(
        "--host",
        default=None,
        help="address to bind (default 0.0.0.0 with a master key, 127.0.0.1 without one)",
    )
    serve.add_argument("--port", type=int, default=4000, help="port (default 4000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=("critical", "error", "warning", "info", "debug", "trace"),
        help="log level (default info; trace also logs every connection)",
    )
    serve.add_argument(
        "--http",
        default="auto",
        choices=("auto", "h11", "httptools"),
        help="HTTP implementation (default auto: httptools when installed, else h11)",
    )
    serve.add_argument(
        "--loop",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
        help="event loop (default auto: uvloop when installed, else asyncio)",
    )
    serve.add_argument(
        "--data-dir",
        default=None,
        help="where lmgate keeps its data (the virtual-key database): overrides "
        "general_settings.data_dir and LMGATE_DATA_DIR",
    )
    serve.add_argument(
        "--no-store",
        action="store_true",
        help="do not keep calls in the log store (on by default: docs/store.md)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="server log lines: text (default) or json (one object a line, for log shippers)",
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    if command not in ("serve", "demo"):
        # the other commands' parsers only when they may be needed: a server process (one per
        # worker) then never imports the CLI modules of logs, keys and the dashboard
        from .logs_cli import add_parser as add_logs_parser

        add_logs_parser(sub)
        from .keys_cli import add_parsers as add_keys_parsers

        add_keys_parsers(sub)
        from .ui.app import add_parser as add_ui_parser

        add_ui_parser(sub)
    args = parser.parse_args(argv)
    if args.command in ("keys", "teams", "spend"):
        from .keys_cli import run as run_keys

        return run_keys(args)
    if args.command == "ui":
        from .ui.app import run as run_ui

        return run_ui(args)
    if args.command == "logs":
        from .logs_cli import run as run_logs

        return run_logs(args)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo()
    try:
        from .proxy.server import serve as run_serve
    except ModuleNotFoundError as error:
        print(f"lmgate serve needs the proxy extra: pip install 'lmgate[proxy]' ({error})", file=sys.stderr)
        return 2
    from .loggers import signals

    signals.disable()  # the server owns SIGTERM: lmgate's exit flush runs in its lifespan, not a handler
    if args.data_dir:  # the environment carries it to every worker process
        os.environ["LMGATE_DATA_DIR"] = os.path.abspath(os.path.expanduser(args.data_dir))
    # the log store is on in `lmgate serve` unless turned off (proxy/store_config.py); the
    # environment carries the choice to every worker process
    os.environ["LMGATE_STORE"] = "off" if args.no_store else (os.environ.get("LMGATE_STORE") or "on")
    # the store's writes run in a child process of each worker (loggers/store_process.py) when
    # the worker may use a second CPU, else in its delivery thread (loggers/store.py writer_for)
    os.environ.setdefault("LMGATE_STORE_WRITER", "auto")
    # the spend ledger's batches too (proxy/spend_process.py: the journal files are handed over)
    os.environ.setdefault("LMGATE_SPEND_WRITER", "auto")
    return run_serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
