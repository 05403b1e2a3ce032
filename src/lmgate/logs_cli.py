"""``lmgate logs``: read the log store from a terminal (tail, show, stats, export).

Aligned tables on a terminal (bold header, failures in red, unless NO_COLOR); tab-separated
lines when piped (one row a line, a header first), so ``cut``/``awk``/``sort`` work. Times
are UTC. ``--url`` reads a running proxy's store through its dashboard API instead of a file.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

TAIL_COLUMNS = ("time", "call_id", "model", "provider", "status", "tokens", "cost", "latency_ms")
STATS_COLUMNS = ("requests", "errors", "total_tokens", "cost", "p50_ms", "p95_ms", "p99_ms", "cache_hit_rate")
EXPORT_PAGE = 1000


def add_parser(sub: Any) -> None:
    """The ``logs`` subcommand and its own subcommands, on the main parser's subparsers."""
    logs = sub.add_parser("logs", help="read the log store: tail, show, stats, export (docs/store.md)")
    logs.add_argument(
        "--db",
        default=None,
        help="the store's SQLite file (default <data dir>/logs.sqlite3)",
    )
    logs.add_argument(
        "--data-dir",
        default=None,
        help="the data directory (default $LMGATE_DATA_DIR, else $XDG_DATA_HOME/lmgate, else ~/.local/share/lmgate)",
    )
    logs.add_argument(
        "--url",
        default=None,
        help="read a running proxy's store through its API (http://host:4000) instead of a file",
    )
    logs.add_argument(
        "--api-key",
        default=None,
        help="with --url: the key to send (default $LMGATE_API_KEY, else $LMGATE_MASTER_KEY); "
        "a virtual key sees its own calls only",
    )
    actions = logs.add_subparsers(dest="logs_command", required=True)
    tail = actions.add_parser("tail", help="the newest calls, oldest first")
    tail.add_argument("-n", type=int, default=20, help="how many (default 20)")
    tail.add_argument(
        "-f", "--follow", action="store_true", help="then print calls as they are stored (Ctrl-C stops)"
    )
    tail.add_argument(
        "--interval", type=float, default=1.0, help="with -f: seconds between looks (default 1)"
    )
    _add_filters(tail)
    show = actions.add_parser(
        "show", help="one call: its columns, the other calls of its trace, and its full payload"
    )
    show.add_argument("call_id")
    stats = actions.add_parser(
        "stats", help="requests, errors, tokens, cost, latency percentiles, cache hits per group"
    )
    stats.add_argument(
        "--by", required=True, choices=("model", "provider", "key", "team", "user", "day", "hour", "tag")
    )
    _add_filters(stats)
    export = actions.add_parser(
        "export", help="every matching call (newest first) as CSV or JSON lines, on stdout"
    )
    export.add_argument("--format", required=True, choices=("csv", "jsonl"))
    _add_filters(export)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="model, model group or response model")
    parser.add_argument("--key", help="key hash or alias")
    parser.add_argument("--team", help="team id or alias")
    parser.add_argument("--user", help="user id or end user")
    parser.add_argument("--status", choices=("success", "failure"))
    parser.add_argument("--since", help="an ISO time (2026-01-31T12:00) or a duration ago (15m, 2h, 7d)")
    parser.add_argument("--until", help="same forms as --since")
    parser.add_argument("--search", help="text anywhere in the stored payload")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if getattr(args, "url", None):
        return _run_remote(args, out)
    from .store.base import DB_FILE, default_path

    path = args.db or (os.path.join(args.data_dir, DB_FILE) if args.data_dir else default_path())
    if not os.path.exists(path):
        # no store yet is no calls yet: an empty answer (exit 0) and what to do; never a new file
        print(
            f'lmgate logs: no log store at {path} yet: turn the store logger on (callbacks: ["store"], '
            "docs/store.md) or give --db PATH",
            file=sys.stderr,
        )
        return _empty(args, out)
    try:
        from .store import open_store
    except ModuleNotFoundError as error:
        print(f"lmgate logs needs the store extra: pip install 'lmgate[store]' ({error})", file=sys.stderr)
        return 2
    try:
        filters = _filters(args)
    except ValueError as error:
        print(f"lmgate logs: {error}", file=sys.stderr)
        return 2
    store = open_store(path)
    try:
        return _COMMANDS[args.logs_command](store, args, filters, out)
    finally:
        store.close()


def _run_remote(args: argparse.Namespace, out: TextIO) -> int:
    from .ui.client import RemoteStore, RemoteStoreError

    key = args.api_key or os.environ.get("LMGATE_API_KEY") or os.environ.get("LMGATE_MASTER_KEY")
    try:
        filters = _filters(args)
    except ValueError as error:
        print(f"lmgate logs: {error}", file=sys.stderr)
        return 2
    store = RemoteStore(args.url, key)
    try:
        return _COMMANDS[args.logs_command](store, args, filters, out)
    except RemoteStoreError as error:
        print(f"lmgate logs: {error}", file=sys.stderr)
        return 1
    finally:
        store.close()


def _empty(args: argparse.Namespace, out: TextIO) -> int:
    if args.logs_command == "show":
        print(f"lmgate logs: no call {args.call_id!r} in the store", file=sys.stderr)
        return 1
    if args.logs_command == "tail":
        _print_table(TAIL_COLUMNS, [], out)  # no follow without a store: there is nothing to poll
    elif args.logs_command == "stats":
        _print_table((args.by, *STATS_COLUMNS), [], out)
    elif args.format == "csv":
        from .store.sqlite import LIST_COLUMNS

        csv.writer(out).writerow([c.name for c in LIST_COLUMNS])
    return 0


def _filters(args: argparse.Namespace) -> Any:
    from .store import Filters

    return Filters(
        model=getattr(args, "model", None),
        key=getattr(args, "key", None),
        team=getattr(args, "team", None),
        user=getattr(args, "user", None),
        status=getattr(args, "status", None),
        search=getattr(args, "search", None),
        since=_when(getattr(args, "since", None), "--since"),
        until=_when(getattr(args, "until", None), "--until"),
    )


def _when(text: str | None, option: str) -> float | None:
    if not text:
        return None
    from . import _conf
    from .exceptions import ConfigError

    try:
        return time.time() - float(_conf.duration_s(text, name=option))
    except ConfigError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{option}: expected an ISO time (2026-01-31T12:00) or a duration (15m, 2h, 7d), got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


# ---- subcommands ----
def _tail(store: Any, args: argparse.Namespace, filters: Any, out: TextIO) -> int:
    from .store import Page

    by_marker = hasattr(store, "newer")  # SQLite: rows in the order written, none missed
    marker = store.last_marker() if args.follow and by_marker else 0  # before the query
    rows = list(reversed(store.query(filters, Page(limit=max(args.n, 0)))))
    shown = {r["call_id"] for r in rows}
    aligned = _print_table(TAIL_COLUMNS, [_tail_cells(r) for r in rows], out)
    if not args.follow:
        return 0
    out.flush()
    since = max([r["start_time"] for r in rows], default=time.time())
    try:
        while True:
            time.sleep(max(args.interval, 0.01))  # a reader polling a store another process writes
            if by_marker:
                new, marker = store.newer(marker, filters)
            else:
                # another backend, or a proxy's API: calls started in the last minute before the
                # newest seen (a slow call is stored after faster ones that began later)
                window = replace(filters, since=max(filters.since or 0, since - 60))
                new = [r for r in reversed(store.query(window, Page(limit=500))) if r["call_id"] not in shown]
                since = max([since, *(r["start_time"] for r in new)])
            for row in new:
                if row["call_id"] not in shown:
                    cells = _tail_cells(row)
                    out.write((aligned(cells) if aligned else "\t".join(cells)) + "\n")
            if by_marker:
                shown.clear()  # only the first look can overlap the initial rows
            else:
                shown.update(r["call_id"] for r in new)
                if len(shown) > 100_000:
                    shown = {r["call_id"] for r in new}
            out.flush()
    except KeyboardInterrupt:
        return 0


def _tail_cells(r: dict[str, Any]) -> list[str]:
    return [
        _time(r["start_time"]),
        r["call_id"],
        _cell(r["model"]),
        _cell(r["provider"]),
        r["status"] if r["status"] == "success" else f"{r['status']}:{r['error_class'] or '?'}",
        _cell(r["total_tokens"]),
        _money(r["cost"]),
        _ms(r["latency_ms"]),
    ]


def _show(store: Any, args: argparse.Namespace, filters: Any, out: TextIO) -> int:
    row = store.get(args.call_id)
    if row is None:
        print(f"lmgate logs: no call {args.call_id!r} in the store", file=sys.stderr)
        return 1
    payload = row.pop("payload")
    trace = row.pop("trace", None)
    if trace is None and row.get("trace_id"):
        from .store import Filters, Page

        start = float(row["start_time"])
        found = store.query(
            Filters(trace_id=row["trace_id"], since=start - 86400, until=start + 86400), Page(limit=100)
        )
        trace = sorted(
            (r for r in found if r.get("trace_id") == row["trace_id"]), key=lambda r: r["start_time"]
        )
    row["time"] = _time(row["start_time"])
    width = max(len(k) for k in row)
    for name, value in row.items():
        if value is not None and value != []:
            out.write(f"{name.ljust(width)}  {value}\n")
    out.write(f"trace {row.get('trace_id') or '-'}: {len(trace or [])} call(s)\n")
    if trace:
        _print_table(TAIL_COLUMNS, [_tail_cells(r) for r in trace], out)
    from .ui.query import masked_payload  # credentials in it masked, as on the dashboard

    out.write("payload:\n")
    out.write(orjson.dumps(masked_payload(payload), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def _stats(store: Any, args: argparse.Namespace, filters: Any, out: TextIO) -> int:
    groups = store.stats(args.by, filters)
    table = [
        [
            _cell(g["group"]),
            str(g["requests"]),
            str(g["errors"]),
            str(g["total_tokens"]),
            _money(g["cost"]),
            _ms(g["p50_ms"]),
            _ms(g["p95_ms"]),
            _ms(g["p99_ms"]),
            f"{(g['cache_hit_rate'] or 0) * 100:.1f}%",
        ]
        for g in groups
    ]
    _print_table((args.by, *STATS_COLUMNS), table, out)
    return 0


def _export(store: Any, args: argparse.Namespace, filters: Any, out: TextIO) -> int:
    if hasattr(store, "max_page"):  # a proxy's API: the columns its logs list has
        from .ui.query import LOG_COLUMNS

        names = list(LOG_COLUMNS)
    else:
        from .store.sqlite import LIST_COLUMNS

        names = [c.name for c in LIST_COLUMNS]
    if args.format == "csv":
        from .ui.query import csv_cell  # formula-like text (=cmd|…) quoted, as the dashboard's CSV

        writer = csv.writer(out)
        writer.writerow(names)
        for row in _all_rows(store, filters):
            writer.writerow([csv_cell(row[n]) for n in names])
    else:
        from .ui.query import masked_payload  # as show and the dashboard: rows stored before the
        # payload was masked at build, and key-shaped text in messages and responses

        for row in _all_rows(store, filters):
            full = store.get(row["call_id"])
            if full is not None:
                full.pop("trace", None)
                if "payload" in full:
                    full["payload"] = masked_payload(full["payload"])
                out.write(orjson.dumps(full).decode() + "\n")
    return 0


def _all_rows(store: Any, filters: Any) -> Iterator[dict[str, Any]]:
    from .store import Page

    size = min(EXPORT_PAGE, getattr(store, "max_page", EXPORT_PAGE))
    offset = 0
    while True:
        rows = store.query(filters, Page(limit=size, offset=offset))
        yield from rows
        if len(rows) < size:
            return
        offset += size


# ---- formatting ----
def _time(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.6f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_table(
    header: Sequence[str], rows: list[list[str]], out: TextIO
) -> Callable[[Sequence[str]], str] | None:
    """Aligned columns on a terminal (numbers right-aligned, header bold unless NO_COLOR);
    tab-separated when piped. Returns the terminal's line formatter (for rows printed later)."""
    if not out.isatty():
        for cells in (header, *rows):
            out.write("\t".join(cells) + "\n")
        return None
    # a call id is 36 characters and a time 19: columns keep their width for rows that come later
    widths = [max(len(str(r[i])) for r in (header, *rows)) for i in range(len(header))]
    numeric = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(header))]

    def aligned(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    head = aligned(header)
    colour = not os.environ.get("NO_COLOR")
    out.write((f"\033[1m{head}\033[0m" if colour else head) + "\n")
    for row in rows:
        line = aligned(row)
        failed = any(cell.startswith("failure") for cell in row)
        out.write((f"\033[31m{line}\033[0m" if colour and failed else line) + "\n")
    if not rows:
        out.write("(no calls match)\n")
    return aligned


_COMMANDS: dict[str, Callable[[Any, argparse.Namespace, Any, TextIO], int]] = {
    "tail": _tail,
    "show": _show,
    "stats": _stats,
    "export": _export,
}


def _numeric(cell: str) -> bool:
    return cell == "-" or cell.lstrip("$").rstrip("%").replace(".", "", 1).isdigit()
