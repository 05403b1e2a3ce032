"""``lmgate keys``, ``lmgate teams`` and ``lmgate spend``: the management API from a terminal.

They talk to a running proxy (``--url``, else ``$LMGATE_URL``, else http://127.0.0.1:4000) as
its admin (``--master-key``, else ``$LMGATE_MASTER_KEY``, else ``$LITELLM_MASTER_KEY``), over
the same routes a script would use (docs/keys.md), and print aligned tables; ``--json``
prints the proxy's answer as it came instead. A key's text is printed once, by ``keys create``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

DEFAULT_URL = "http://127.0.0.1:4000"
_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class CliError(Exception):
    """A problem to print (without a traceback) and exit 1 with."""


# ------------------------------------------------------------------------------ arguments


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help=f"the proxy (default $LMGATE_URL, else {DEFAULT_URL})")
    parser.add_argument(
        "--master-key",
        default=None,
        help="the admin key (default $LMGATE_MASTER_KEY, else $LITELLM_MASTER_KEY); prefer the variable: "
        "a flag is visible to other users in the process list",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the proxy's JSON answer instead of a table"
    )


def _limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", help="models it may call, comma-separated (default: every model)")
    parser.add_argument("--max-budget", type=float, help="budget in USD")
    parser.add_argument("--budget-duration", help="budget window: 30s, 15m, 1h, 30d, 2w, 1mo")
    parser.add_argument("--rpm", type=int, help="requests per minute")
    parser.add_argument("--tpm", type=int, help="tokens per minute")
    parser.add_argument("--metadata", help="a JSON object")


def _key_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alias", help="a name people recognise the key by")
    parser.add_argument("--team", help="the team id it belongs to")
    parser.add_argument("--user", help="the user id it belongs to")
    parser.add_argument("--duration", help="lifetime from now: 1h, 30d, …; default: never expires")
    parser.add_argument("--parallel", type=int, help="most requests in flight at once")
    parser.add_argument("--tags", help="tags, comma-separated")
    _limits(parser)


def add_parsers(sub: Any) -> None:
    """``keys``, ``teams`` and ``spend`` on the main parser's subparsers."""
    keys = sub.add_parser("keys", help="manage a running proxy's virtual keys (docs/keys.md)")
    keys_actions = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_actions.add_parser("create", help="a new key (its text is printed once)")
    _key_fields(create)
    _connection(create)
    listing = keys_actions.add_parser("list", help="every key, or a team's or a user's")
    listing.add_argument("--team", help="only this team's keys")
    listing.add_argument("--user", help="only this user's keys")
    _connection(listing)
    info = keys_actions.add_parser("info", help="one key: by its text (sk-…) or its hash")
    info.add_argument("key")
    _connection(info)
    update = keys_actions.add_parser("update", help="change a key's fields")
    update.add_argument("key")
    _key_fields(update)
    blocking = update.add_mutually_exclusive_group()
    blocking.add_argument("--block", action="store_true", help="refuse its requests")
    blocking.add_argument("--unblock", action="store_true", help="accept its requests again")
    _connection(update)
    delete = keys_actions.add_parser("delete", help="delete keys")
    delete.add_argument("keys", nargs="+")
    _connection(delete)

    teams = sub.add_parser("teams", help="manage a running proxy's teams (docs/keys.md)")
    team_actions = teams.add_subparsers(dest="teams_command", required=True)
    tcreate = team_actions.add_parser("create", help="a new team")
    tcreate.add_argument("--id", help="its id (default: a new UUID)")
    tcreate.add_argument("--alias", help="its name")
    _limits(tcreate)
    _connection(tcreate)
    tlist = team_actions.add_parser("list", help="every team")
    _connection(tlist)
    tinfo = team_actions.add_parser("info", help="one team and its keys")
    tinfo.add_argument("team_id")
    _connection(tinfo)
    tupdate = team_actions.add_parser("update", help="change a team's fields")
    tupdate.add_argument("team_id")
    tupdate.add_argument("--alias", help="its name")
    _limits(tupdate)
    _connection(tupdate)
    tdelete = team_actions.add_parser("delete", help="delete teams (and their keys)")
    tdelete.add_argument("team_ids", nargs="+")
    _connection(tdelete)

    spend = sub.add_parser("spend", help="what a running proxy's keys, teams, users or models spent")
    spend.add_argument("--by", required=True, choices=("key", "team", "user", "model"))
    spend.add_argument(
        "--since",
        default="30d",
        help="a date (2026-01-31), an ISO time, or a duration ago (24h, 7d); default 30d",
    )
    spend.add_argument("--until", default=None, help="same forms as --since; default: now")
    _connection(spend)


# ------------------------------------------------------------------------------------ HTTP


class Admin:
    def __init__(self, args: argparse.Namespace, transport: Any = None) -> None:
        import httpx

        self.url = (args.url or os.environ.get("LMGATE_URL") or DEFAULT_URL).rstrip("/")
        key = args.master_key or os.environ.get("LMGATE_MASTER_KEY") or os.environ.get("LITELLM_MASTER_KEY")
        if not key or not key.strip():
            raise CliError("no admin key: set LMGATE_MASTER_KEY (or pass --master-key)")
        self.client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key.strip()}"},
            timeout=30,
            transport=transport,
        )

    def __call__(self, method: str, path: str, body: dict[str, Any] | None = None, **params: Any) -> Any:
        import httpx

        query = {k: v for k, v in params.items() if v is not None}
        try:
            r = self.client.request(method, path, json=body, params=query)
        except httpx.TransportError as failure:
            raise CliError(f"cannot reach the proxy at {self.url}: {failure}") from None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code != 200:
            error = data.get("error") if isinstance(data, dict) else None
            message = error.get("message") if isinstance(error, dict) else r.text[:300]
            param = error.get("param") if isinstance(error, dict) else None
            where = f" ({param})" if param else ""
            hint = (
                " — is virtual_keys on in its config?"
                if r.status_code == 404 and "no route" in str(message)
                else ""
            )
            raise CliError(f"{method} {path}: {r.status_code}{where}: {message}{hint}")
        return data

    def close(self) -> None:
        self.client.close()


# -------------------------------------------------------------------------------- commands


def _token(key: str) -> str:
    """What the proxy stores for a key named by its text (``sk-…``) or its SHA-256 hash."""
    import hashlib

    if len(key) == 64 and all(c in "0123456789abcdef" for c in key):
        return key
    return hashlib.sha256(key.encode()).hexdigest()


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [part.strip() for part in text.split(",") if part.strip()]


def _metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CliError(f"--metadata is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise CliError("--metadata must be a JSON object")
    return value


def _body(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """The API fields the given options set (``names``: option → field); unset ones left out."""
    converters = {"models": _split, "tags": _split, "metadata": _metadata}
    body = {}
    for option, field in names.items():
        value = getattr(args, option, None)
        if value is not None:
            body[field] = converters.get(option, lambda v: v)(value)
    return body


_KEY_OPTIONS = {
    "alias": "key_alias",
    "team": "team_id",
    "user": "user_id",
    "duration": "duration",
    "parallel": "max_parallel_requests",
    "tags": "tags",
    "models": "models",
    "max_budget": "max_budget",
    "budget_duration": "budget_duration",
    "rpm": "rpm_limit",
    "tpm": "tpm_limit",
    "metadata": "metadata",
}
_TEAM_OPTIONS = {
    "alias": "team_alias",
    "models": "models",
    "max_budget": "max_budget",
    "budget_duration": "budget_duration",
    "rpm": "rpm_limit",
    "tpm": "tpm_limit",
    "metadata": "metadata",
}
KEY_COLUMNS = ("key", "alias", "team", "user", "models", "spend", "budget", "expires", "blocked")
TEAM_COLUMNS = ("team_id", "alias", "models", "spend", "budget", "rpm", "tpm", "blocked")


def _key_row(k: dict[str, Any]) -> list[str]:
    return [
        str(k.get("key_name") or k.get("token", "")[:12]),
        _cell(k.get("key_alias")),
        _cell(k.get("team_id")),
        _cell(k.get("user_id")),
        ",".join(k.get("models") or []) or "all",
        _money(k.get("spend")),
        _money(k.get("max_budget")),
        _cell((k.get("expires") or "")[:19].replace("T", " ") or None),
        "yes" if k.get("blocked") else "no",
    ]


def _team_row(t: dict[str, Any]) -> list[str]:
    return [
        str(t.get("team_id")),
        _cell(t.get("team_alias")),
        ",".join(t.get("models") or []) or "all",
        _money(t.get("spend")),
        _money(t.get("max_budget")),
        _cell(t.get("rpm_limit")),
        _cell(t.get("tpm_limit")),
        "yes" if t.get("blocked") else "no",
    ]


def _keys(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    action = args.keys_command
    if action == "create":
        made = admin("POST", "/key/generate", _body(args, _KEY_OPTIONS))
        if args.json:
            _dump(made, out)
            return
        out.write(f"key: {made['key']}\n(shown once: lmgate keeps only its hash)\n\n")
        _fields(made, out)
    elif action == "list":
        listed = admin("GET", "/key/list", team_id=args.team, user_id=args.user, return_full_object="true")
        if args.json:
            _dump(listed, out)
            return
        table(KEY_COLUMNS, [_key_row(k) for k in listed["keys"]], out, empty="(no keys)")
    elif action == "info":
        # the hash, not the text, goes in the URL: a query string lands in the access logs of
        # whatever sits in front of the proxy (the proxy takes a key's text or its hash)
        info = admin("GET", "/key/info", key=_token(args.key))
        if args.json:
            _dump(info, out)
        else:
            _fields(info["info"], out)
    elif action == "update":
        body = _body(args, _KEY_OPTIONS)
        if args.block or args.unblock:
            body["blocked"] = bool(args.block)
        if not body:
            raise CliError("nothing to change: give at least one option (see lmgate keys update --help)")
        updated = admin("POST", "/key/update", {"key": args.key, **body})
        if args.json:
            _dump(updated, out)
        else:
            _fields(updated, out)
    elif action == "delete":
        deleted = admin("POST", "/key/delete", {"keys": args.keys})
        if args.json:
            _dump(deleted, out)
            return
        out.write(f"deleted {len(deleted['deleted_keys'])} key(s)\n")


def _teams(admin: Admin, args: argparse.Namespace, out: TextIO) -> None:
    action = args.teams_command
    if action == "create":
        body = _body(args, _TEAM_OPTIONS)
        if args.id:
            body["team_id"] = args.id
        made = admin("POST", "/team/new", body)
        if args.json:
            _dump(made, out)
        else:
            _fields(made, out)
    elif action == "list":
        listed = admin("GET", "/team/list")
        if args.json:
            _dump(listed, out)
            return
        table(TEAM_COLUMNS, [_team_row(t) for t in listed], out, empty="(no teams)")
    elif action == "info":
        info = admin("GET", "/team/info", team_id=args.team_id)
        if args.json:
            _dump(info, out)
            return
        _fields(info["team_info"], out)
        out.write("\n")
        table(KEY_COLUMNS, [_key_row(k) for k in info["keys"]], out, empty="(no keys)")
    elif action == "update":
        body = _body(args, _TEAM_OPTIONS)
        if not body:
            raise CliError("nothing to change: give at least one option (see lmgate teams update --help)")
        updated = admin("POST", "/team/update", {"team_id": args.team_id, **body})
        if args.json:
            _dump(updated, out)
        else:
            _fields(updated, out)
    elif action == "delete":
        deleted = admin("POST", "/team/delete", {"team_ids": args.team_ids})
        if args.json:
            _dump(deleted, out)
            return
        out.write(
            f"deleted {len(deleted['deleted_teams'])} team(s) and {len(deleted['deleted_keys'])} key(s)\n"
        )


def when(text: str, now: float) -> str:
    """A ``--since``/``--until`` value as the API takes it: a date or an ISO time as given, a
    duration (``24h``, ``7d``) as the UTC time that long before ``now``."""
    text = text.strip()
    unit = text[-1:]
    if unit in _DURATION_UNITS and text[:-1].replace(".", "", 1).isdigit():
        moment = now - float(text[:-1]) * _DURATION_UNITS[unit]
        return datetime.fromtimestamp(moment, timezone.utc).isoformat()
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(
            f"not a date, time or duration: {text!r} (try 2026-01-31, 2026-01-31T12:00 or 7d)"
        ) from None
    return text


SPEND_GROUPS = {"key": "api_key", "team": "team", "user": "user", "model": "model"}


def _spend(admin: Admin, args: argparse.Namespace, out: TextIO, now: float) -> None:
    since = when(args.since, now)
    until = when(args.until, now) if args.until else datetime.fromtimestamp(now, timezone.utc).isoformat()
    report = admin(
        "GET", "/global/spend/report", start_date=since, end_date=until, group_by=SPEND_GROUPS[args.by]
    )
    if args.json:
        _dump(report, out)
        return
    header: tuple[str, ...] = (args.by, "spend", "requests", "tokens")
    rows: list[list[str]] = []
    spent_total = 0.0
    if args.by == "team":  # the reference's daily shape: summed over the days here
        totals: dict[str, list[float]] = {}
        for day in report:
            for team in day["teams"]:
                entry = totals.setdefault(str(team["team_name"]), [0.0, 0])
                entry[0] += team["total_spend"]
                entry[1] += sum(int(m.get("total_tokens") or 0) for m in team["metadata"])
        for name, (spent, tokens) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
            rows.append([name, _money(spent), "-", str(int(tokens))])
            spent_total += spent
    else:
        field = {"key": "api_key", "user": "user_id", "model": "model"}[args.by]
        names: dict[str, tuple[str, str]] = {}
        if args.by == "key":  # a key by the masked name and alias `keys list` shows, not its hash
            header = ("key", "alias", "spend", "requests", "tokens")
            listed = admin("GET", "/key/list", return_full_object="true")["keys"]
            names = {
                k["token"]: (k.get("key_name") or k["token"][:12], _cell(k.get("key_alias"))) for k in listed
            }
        for r in report:
            value = r[field]
            label = [str(value) if value is not None else "(none)"]
            if args.by == "key":
                label = list(names.get(value, (str(value)[:12] + " (deleted)", "-")))
            tokens = int(r["total_input_tokens"] or 0) + int(r["total_output_tokens"] or 0)
            rows.append([*label, _money(r["total_cost"]), str(r.get("requests", "-")), str(tokens)])
            spent_total += float(r["total_cost"] or 0.0)
    out.write(f"spend by {args.by}, {_shown(since)} to {_shown(until)}\n")
    table(header, rows, out, empty="(no spend in this period)")
    if rows:
        out.write(f"total {_money(spent_total)}\n")


def _shown(moment: str) -> str:
    """An API time as a person reads it: ``2026-01-31 12:00 UTC`` (a date stays a date)."""
    if len(moment) == 10:
        return moment
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc)
    return parsed.strftime("%Y-%m-%d %H:%M UTC")


def run(args: argparse.Namespace, out: TextIO | None = None, transport: Any = None) -> int:
    out = out or sys.stdout
    try:
        admin = Admin(args, transport)
        try:
            if args.command == "keys":
                _keys(admin, args, out)
            elif args.command == "teams":
                _teams(admin, args, out)
            else:
                _spend(admin, args, out, time.time())
        finally:
            admin.close()
    except CliError as error:
        print(f"lmgate {args.command}: {error}", file=sys.stderr)
        return 1
    return 0


# ------------------------------------------------------------------------------ formatting


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


def _money(value: Any) -> str:
    return "-" if value is None else f"${float(value):.4f}"


def _dump(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _fields(record: dict[str, Any], out: TextIO) -> None:
    """One record as ``name  value`` lines, names aligned."""
    width = max((len(k) for k in record), default=0)
    for name in sorted(record):
        value = record[name]
        text = json.dumps(value) if isinstance(value, (dict, list, bool)) else _cell(value)
        out.write(f"{name.ljust(width)}  {text}\n")


def table(header: Sequence[str], rows: list[list[str]], out: TextIO, empty: str = "(none)") -> None:
    """Aligned columns (numbers and money right-aligned), an upper-case header."""
    head = [h.upper() for h in header]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    numeric = [bool(rows) and all(_numeric(r[i]) for r in rows) for i in range(len(head))]
    for cells in (head, *rows):
        line = "  ".join(
            c.rjust(w) if n else c.ljust(w) for c, w, n in zip(cells, widths, numeric, strict=True)
        )
        out.write(line.rstrip() + "\n")
    if not rows:
        out.write(empty + "\n")


def _numeric(cell: str) -> bool:
    return cell == "-" or cell.lstrip("$").replace(".", "", 1).isdigit()


__all__ = ["add_parsers", "run", "table", "when"]
