"""The log store on ClickHouse, over its HTTP interface (httpx; no native driver needed).

    store: {type: clickhouse, url: "http://user:password@127.0.0.1:8123/lmgate", retention_days: 30}

The table (``lmgate_calls`` in the URL's database, made if missing) is a ``ReplacingMergeTree``
partitioned by day (``toYYYYMMDD`` of the call's start, UTC) and ordered by
``(start_time, call_id)``.

Idempotent writes: a batch is delivered again when its insert went through but its answer was
lost (a timeout), or after a SIGKILL between the insert and the spool's acknowledgement. Three
ways were weighed. ClickHouse's own insert deduplication (identical blocks, or an
``insert_deduplication_token``) exists only for Replicated tables on the releases Debian ships
(18.16), and a retried batch may hold other records than the first try. Reading with ``FINAL``
(a ``ReplacingMergeTree`` collapsing copies at read time) made the overview 40% slower at a
million rows and ran a logs page out of memory on 18.16. So ``write`` looks first: one query for
which of the batch's call ids are stored already (through the primary key's ``start_time``
range, a few granules) and inserts only the others. One writer thread per store and spool
segments owned by one process at a time mean no two writers race on the same records. The table
is a ``ReplacingMergeTree`` ordered by ``(start_time, call_id)`` all the same, so a copy that got
in some other way (two proxies replaying one spool directory by hand) collapses at the next
merge (``OPTIMIZE TABLE … FINAL`` forces it).

Retention: servers from 19.6 on get a table ``TTL`` (``ALTER TABLE … MODIFY TTL``, so a changed
``retention_days`` applies to an existing table); older servers have no TTL, and ``prune()``
(on open, then at most hourly after a write) drops the day partitions wholly older than the
cut-off instead (so there retention works in whole days).

ClickHouse 18.16 has no query parameters: every value reaches SQL through ``_quote``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from .base import BUCKETS, GROUP_BYS, SERIES_GROUP_BYS, TOTALS_FIELDS, Filters, Page, series_rows
from .schema import COLUMNS as _SCHEMA_COLUMNS

PRUNE_EVERY_S = 3600.0
# plain str names: SQLAlchemy's are a str subclass that orjson refuses as keys
COLUMNS = tuple(str(name) for name in _SCHEMA_COLUMNS)
TABLE = "lmgate_calls"
TTL_SINCE = (19, 6)  # the first release with table TTLs
_NULLABLE_TEXT = (
    "trace_id",
    "call_type",
    "model",
    "response_model",
    "provider",
    "model_id",
    "model_group",
    "key_hash",
    "key_alias",
    "team_id",
    "team_alias",
    "user_id",
    "end_user",
    "error_class",
    "error_code",
)
_TYPES: dict[str, str] = {
    "call_id": "String",
    "start_time": "Float64",
    "end_time": "Nullable(Float64)",
    **{name: "Nullable(String)" for name in _NULLABLE_TEXT},
    "status": "String",
    "prompt_tokens": "Nullable(Int64)",
    "completion_tokens": "Nullable(Int64)",
    "total_tokens": "Nullable(Int64)",
    "cost": "Nullable(Float64)",
    "latency_ms": "Nullable(Float64)",
    "ttft_ms": "Nullable(Float64)",
    "stream": "UInt8",
    "cache_hit": "UInt8",
    "tags": "Array(String)",
    "payload": "String",
    "payload_bytes": "UInt64",
    "truncated": "UInt8",
    # what a cache hit saved (the payload's saved_cache_cost): a column here, for totals()
    "saved_cost": "Float64",
}
_BOOLS = ("stream", "cache_hit", "truncated")
LIST_COLUMNS = [c for c in COLUMNS if c != "payload"]
_START = "toDateTime(toUInt32(start_time), 'UTC')"


def _quote(value: Any) -> str:
    """A SQL literal for ClickHouse (strings escaped the way its parser reads them)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def parse_version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.strip().split("."):
        if not piece.isdigit():
            break
        parts.append(int(piece))
    return tuple(parts)


def location(url: str) -> str:
    """The URL without credentials: ``scheme://host:port/database``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("store: a ClickHouse url is http(s)://[user:password@]host:port/database")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}/{parts.path.strip('/') or 'default'}"


class ClickHouseError(RuntimeError):
    """The server refused a statement (its message, without credentials)."""


class ClickHouseStore:
    """``base.LogStore`` on a ClickHouse server's HTTP interface."""

    def __init__(
        self,
        url: str,
        *,
        retention_days: float | None = None,
        clock: Callable[[], float] = time.time,
        timeout: float = 30.0,
        table: str = TABLE,
    ) -> None:
        import httpx

        if retention_days is not None and retention_days <= 0:
            raise ValueError(f"store: retention_days must be above 0, got {retention_days!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("store: a ClickHouse url is http(s)://[user:password@]host:port/database")
        self.database = parts.path.strip("/") or "default"
        if not self.database.replace("_", "").isalnum() or not table.replace("_", "").isalnum():
            raise ValueError(f"store: {self.database!r}.{table!r} is not a plain ClickHouse name")
        self.table = f"{self.database}.{table}"
        self.retention_days = retention_days
        self._clock = clock
        port = f":{parts.port}" if parts.port else ""
        # where it is, without credentials: names the spool directory and appears in messages
        self.location = location(url)
        auth = (unquote(parts.username), unquote(parts.password or "")) if parts.username else None
        self._http = httpx.Client(
            base_url=f"{parts.scheme}://{parts.hostname}{port}", auth=auth, timeout=timeout
        )
        self._pruned_at = 0.0
        try:
            self.version = parse_version(self._sql("SELECT version()"))
            self.has_ttl = self.version >= TTL_SINCE
            self._migrate()
            self.prune()
        except BaseException:
            self._http.close()
            raise

    def __repr__(self) -> str:
        return f"<ClickHouseStore {self.location} {'.'.join(map(str, self.version))}>"

    # ---- the wire ----
    def _sql(self, statement: str, body: bytes | None = None) -> str:
        params = {"output_format_json_quote_64bit_integers": "0", "database": self.database}
        if body is None:
            answer = self._http.post("/", params=params, content=statement.encode())
        else:
            answer = self._http.post("/", params={**params, "query": statement}, content=body)
        if answer.status_code != 200:
            raise ClickHouseError(f"ClickHouse answered {answer.status_code}: {answer.text[:500].strip()}")
        return answer.text

    def _rows(self, statement: str) -> list[dict[str, Any]]:
        text = self._sql(f"{statement} FORMAT JSON")
        return orjson.loads(text)["data"]  # type: ignore[no-any-return]

    def _migrate(self) -> None:
        columns = ", ".join(f"{name} {kind}" for name, kind in _TYPES.items())
        self._sql(
            f"CREATE TABLE IF NOT EXISTS {self.table} ({columns}) ENGINE = ReplacingMergeTree() "
            f"PARTITION BY toYYYYMMDD({_START}) ORDER BY (start_time, call_id)"
        )
        if self.has_ttl and self.retention_days:
            seconds = int(self.retention_days * 86400)
            self._sql(f"ALTER TABLE {self.table} MODIFY TTL {_START} + toIntervalSecond({seconds})")

    # ---- writing ----
    def write(self, rows: Iterable[Mapping[str, Any]]) -> int:
        """Insert the rows whose call is not stored yet, in one INSERT (one block: all or none);
        returns how many were new (see the module docstring: idempotent writes)."""
        fresh = {str(row["call_id"]): row for row in rows}
        if not fresh:
            return 0
        starts = [float(row["start_time"]) for row in fresh.values()]
        # the primary key's start_time range first: the lookup reads a few granules, not the table
        stored = self._rows(
            f"SELECT call_id FROM {self.table} WHERE start_time >= {_quote(min(starts))} "
            f"AND start_time <= {_quote(max(starts))} AND call_id IN ({', '.join(map(_quote, fresh))})"
        )
        for found in stored:
            fresh.pop(found["call_id"], None)
        if fresh:
            lines = [_line(row) for row in fresh.values()]
            self._sql(f"INSERT INTO {self.table} FORMAT JSONEachRow", b"\n".join(lines))
        if self.retention_days and self._clock() - self._pruned_at >= PRUNE_EVERY_S:
            self.prune()
        return len(fresh)

    def prune(self) -> int:
        """Drop the day partitions wholly older than ``retention_days`` (the TTL's job on servers
        that have one; this is a backstop there). Returns how many were dropped."""
        if not self.retention_days:
            return 0
        now = self._clock()
        self._pruned_at = now
        cutoff = time.strftime("%Y%m%d", time.gmtime(now - self.retention_days * 86400))
        found = self._rows(
            "SELECT DISTINCT partition FROM system.parts WHERE active "
            f"AND database = {_quote(self.database)} AND table = {_quote(self.table.split('.', 1)[1])}"
        )
        old = sorted(str(r["partition"]).strip("'") for r in found if str(r["partition"]).strip("'") < cutoff)
        for partition in old:
            self._sql(f"ALTER TABLE {self.table} DROP PARTITION {partition}")
        return len(old)

    # ---- reading ----
    def query(self, filters: Filters = Filters(), page: Page = Page()) -> list[dict[str, Any]]:
        """Two steps, so a page of 50 never makes the server sort every column of a million
        rows: first the page's window in time from the small columns, then its rows, read
        through the primary key's ``start_time`` range only."""
        where = _where(filters)
        wanted = int(page.offset) + int(page.limit)
        if int(page.limit) <= 0:
            return []
        edge = self._rows(
            f"SELECT min(start_time) AS edge, count() AS n FROM (SELECT start_time FROM {self.table} "
            f"{where} ORDER BY start_time DESC, call_id DESC LIMIT {wanted})"
        )[0]
        if not edge["n"]:
            return []
        window = f"start_time >= {_quote(float(edge['edge']))}"
        where = f"{where} AND {window}" if where else f"WHERE {window}"
        found = self._rows(
            f"SELECT {', '.join(LIST_COLUMNS)} FROM {self.table} {where} "
            f"ORDER BY start_time DESC, call_id DESC LIMIT {int(page.offset)}, {int(page.limit)}"
        )
        return [_listed(r) for r in found]

    def get(self, call_id: str) -> dict[str, Any] | None:
        found = self._rows(
            f"SELECT {', '.join(COLUMNS)} FROM {self.table} WHERE call_id = {_quote(call_id)} LIMIT 1"
        )
        if not found:
            return None
        row = _listed(found[0])
        row["payload"] = orjson.loads(row["payload"])
        return row

    def count(self, filters: Filters = Filters()) -> int:
        return int(self._rows(f"SELECT count() AS n FROM {self.table} {_where(filters)}")[0]["n"])

    def stats(self, group_by: str, filters: Filters = Filters()) -> list[dict[str, Any]]:
        if group_by not in GROUP_BYS:
            raise ValueError(f"stats: group_by must be one of {', '.join(GROUP_BYS)}, got {group_by!r}")
        rows = self._aggregate(_group_key(group_by), filters, (0.50, 0.95, 0.99), cache=True)
        for row in rows:
            row.pop("saved_cost", None)
        if group_by in ("day", "hour"):
            return sorted(rows, key=lambda r: (r["group"] is not None, r["group"] or ""))
        return sorted(rows, key=lambda r: (-r["requests"], r["group"] is not None, r["group"] or ""))

    def totals(self, filters: Filters = Filters()) -> dict[str, Any]:
        found = self._aggregate(None, filters, (0.50, 0.95), cache=True)
        if not found or not found[0]["requests"]:
            return {name: (0 if name in ("requests", "errors") else None) for name in TOTALS_FIELDS}
        row = found[0]
        row["error_rate"] = row["errors"] / row["requests"]
        return {name: row.get(name) for name in TOTALS_FIELDS}

    def timeseries(
        self, bucket: str, filters: Filters = Filters(), group_by: str | None = None
    ) -> list[dict[str, Any]]:
        if bucket not in BUCKETS:
            raise ValueError(f"timeseries: bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")
        if group_by is not None and group_by not in SERIES_GROUP_BYS:
            raise ValueError(
                f"timeseries: group_by must be one of {', '.join(SERIES_GROUP_BYS)}, got {group_by!r}"
            )
        width = BUCKETS[bucket]
        rows = self._aggregate(
            _group_key(group_by) if group_by else None,
            filters,
            (0.50, 0.95),
            bucket=f"intDiv(toUInt32(start_time), {width}) * {width}",
        )
        return series_rows(rows, sort=True)

    def _aggregate(
        self,
        key: str | None,
        filters: Filters,
        quantiles: tuple[float, ...],
        *,
        cache: bool = False,
        bucket: str | None = None,
    ) -> list[dict[str, Any]]:
        """Sums per group (``key``) and time ``bucket``; latency percentiles by nearest rank, the
        rule of ``base.percentile`` (18.16 has no quantileExactLow; sorting groupArray() in SQL
        gave the same answers 4x slower)."""
        fields = [
            "count() AS requests",
            "countIf(status != 'success') AS errors",
            "ifNull(sum(prompt_tokens), 0) AS prompt_tokens",
            "ifNull(sum(completion_tokens), 0) AS completion_tokens",
            "ifNull(sum(total_tokens), 0) AS total_tokens",
            "ifNull(sum(cost), 0) AS cost",
            # nearest rank: quantileExact(level) takes sorted[floor(level * n)]; a level a hair
            # below q gives sorted[ceil(q * n) - 1], base.percentile's rank (q * n is a multiple
            # of 1/100 for these q, so the hair never crosses another rank)
            "quantilesExact({})(latency_ms) AS latencies".format(
                ", ".join(repr(q - 1e-12) for q in quantiles)
            ),
            "count(latency_ms) AS timed",
        ]
        for i, q in enumerate(quantiles, start=1):
            fields.append(f"if(timed = 0, NULL, latencies[{i}]) AS p{round(q * 100)}_ms")
        if cache:
            fields += ["avg(cache_hit) AS cache_hit_rate", "sumIf(saved_cost, cache_hit = 1) AS saved_cost"]
        keys = []
        if bucket is not None:
            keys.append(f"{bucket} AS bucket_start")
        if key is not None:
            keys.append(f"{key} AS group_key")
        group = f" GROUP BY {', '.join(k.rsplit(' AS ', 1)[1] for k in keys)}" if keys else ""
        found = self._rows(f"SELECT {', '.join(keys + fields)} FROM {self.table} {_where(filters)}{group}")
        out = []
        for row in found:
            row.pop("latencies", None)
            row.pop("timed", None)
            row["group"] = _group_value(row.pop("group_key", None)) if key is not None else None
            out.append(row)
        return out

    def close(self) -> None:
        self._http.close()


def _line(row: Mapping[str, Any]) -> bytes:
    out: dict[str, Any] = {name: row.get(name) for name in COLUMNS}
    for name in _BOOLS:
        out[name] = 1 if out[name] else 0
    tags = out["tags"]
    out["tags"] = orjson.loads(tags) if isinstance(tags, str) else list(tags or [])
    out["payload_bytes"] = int(out["payload_bytes"] or 0)
    saved = 0.0
    if out["cache_hit"] and out["payload"]:  # a cache hit (a small share): what it saved
        value = orjson.loads(out["payload"]).get("saved_cache_cost")
        saved = float(value) if isinstance(value, (int, float)) else 0.0
    out["saved_cost"] = saved
    return orjson.dumps(out)


def _group_value(value: Any) -> Any:
    return None if value == "" else value


def _group_key(group_by: str) -> str:
    if group_by == "day":
        return f"toString(toDate({_START}, 'UTC'))"
    if group_by == "hour":
        return f"substring(toString(toStartOfHour({_START})), 1, 16)"
    if group_by == "tag":  # one row per tag; an untagged call once, under None ('' here)
        return "arrayJoin(if(empty(tags), [''], tags))"
    return {
        "model": "model",
        "provider": "provider",
        "key": "coalesce(key_alias, key_hash)",
        "team": "coalesce(team_alias, team_id)",
        "user": "coalesce(user_id, end_user)",
    }[group_by]


def _where(f: Filters) -> str:
    out: list[str] = []

    def either(value: str, *columns: str) -> None:
        out.append("(" + " OR ".join(f"{c} = {_quote(value)}" for c in columns) + ")")

    if f.model:
        either(f.model, "model", "model_group", "response_model")
    if f.provider:
        either(f.provider, "provider")
    if f.key:
        either(f.key, "key_hash", "key_alias")
    if f.team:
        either(f.team, "team_id", "team_alias")
    if f.user:
        either(f.user, "user_id", "end_user")
    if f.status:
        either(f.status, "status")
    if f.since is not None:
        out.append(f"start_time >= {_quote(float(f.since))}")
    if f.until is not None:
        out.append(f"start_time < {_quote(float(f.until))}")
    if getattr(f, "trace_id", None):
        either(f.trace_id, "trace_id")  # type: ignore[arg-type]
    if f.search:
        # ASCII case-insensitive, like SQLite's LIKE
        out.append(f"positionCaseInsensitive(payload, {_quote(f.search)}) > 0")
    return f"WHERE {' AND '.join(out)}" if out else ""


def _listed(row: dict[str, Any]) -> dict[str, Any]:
    for name in _BOOLS:
        if name in row:
            row[name] = bool(row[name])
    row["tags"] = list(row.get("tags") or [])
    return row


__all__ = ["ClickHouseError", "ClickHouseStore", "location", "parse_version"]
