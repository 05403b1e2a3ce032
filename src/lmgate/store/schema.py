"""The store's tables and their migrations.

Versioned with a one-row ``schema_version`` table and an ordered list of steps (``MIGRATIONS``):
opening a store applies the steps it has not seen, all in one transaction. Alembic was
weighed and left out: it needs a migration environment on disk and its own CLI, too heavy for
a file created silently on a user's machine; the steps here are plain SQLAlchemy Core, so they
move into Alembic revisions unchanged if the server backends want them.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
    text,
)

metadata = MetaData()

calls = Table(
    "calls",
    metadata,
    Column("call_id", String, primary_key=True),  # the primary key makes a redelivered batch a no-op
    Column("start_time", Float, nullable=False),  # POSIX seconds
    Column("end_time", Float),
    Column("trace_id", String),
    Column("call_type", String),
    Column("model", String),
    Column("response_model", String),
    Column("provider", String),
    Column("model_id", String),  # the deployment
    Column("model_group", String),
    Column("key_hash", String),
    Column("key_alias", String),
    Column("team_id", String),
    Column("team_alias", String),
    Column("user_id", String),
    Column("end_user", String),
    Column("status", String, nullable=False),  # success | failure
    Column("error_class", String),
    Column("error_code", String),
    Column("prompt_tokens", Integer),
    Column("completion_tokens", Integer),
    Column("total_tokens", Integer),
    Column("cost", Float),
    Column("latency_ms", Float),
    Column("ttft_ms", Float),
    Column("stream", Boolean, nullable=False, default=False),
    Column("cache_hit", Boolean, nullable=False, default=False),
    Column("tags", Text),  # a JSON list
    Column("payload", Text, nullable=False),  # the standard logging payload (JSON), maybe truncated
    Column("payload_bytes", Integer),  # its size before any truncation
    Column("truncated", Boolean, nullable=False, default=False),
    # time first, then what the overview sums and groups on: a time range is read from this index
    # alone (each row's table page is read only for a column it lacks), not by a random page read
    # per call, which is what made wide ranges slow (rows are large: they carry the payload)
    Index(
        "ix_calls_start_cover",
        "start_time",
        "status",
        "latency_ms",
        "cost",
        "total_tokens",
        "prompt_tokens",
        "completion_tokens",
        "cache_hit",
        "model",
    ),
    Index("ix_calls_model_start", "model", "start_time"),  # SQLite scans it to group by model
    # these three serve no query on SQLite (version 5 drops them there): a filter on a key, team
    # or user is an OR over two columns (key_hash OR key_alias, ...), and SQLite uses indexes for
    # an OR only when each of its columns has one, so such a filter reads the time index; they
    # only cost each insert (~6,000 instructions apiece). PostgreSQL keeps them
    Index("ix_calls_key_start", "key_hash", "start_time"),
    Index("ix_calls_team_start", "team_id", "start_time"),
    Index("ix_calls_user_start", "user_id", "start_time"),
    Index("ix_calls_status_start", "status", "start_time"),
    Index("ix_calls_trace", "trace_id"),
)

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))

# the columns a row carries, in table order
COLUMNS = tuple(c.name for c in calls.columns)


def _v1(conn: Connection) -> None:
    calls.create(conn, checkfirst=True)


def _v2_covering_time_index(conn: Connection) -> None:
    # the time index becomes a covering one (same leading column: it serves every lookup the old
    # one did); measured 7x faster for a 7-day overview over 100,000 calls
    conn.execute(text("DROP INDEX IF EXISTS ix_calls_start"))
    conn.execute(
        text(
            "CREATE INDEX IF NOT EXISTS ix_calls_start_cover ON calls (start_time, status, latency_ms, "
            "cost, total_tokens, prompt_tokens, completion_tokens, cache_hit, model)"
        )
    )


# ---- the hourly rollup (docs/store.md, "The hourly rollup") ----
# What an overview sums, per hour and per value of the dimensions an overview filters or groups
# on without a key, team or user filter; and a latency histogram per the same cell. Added to by
# the store's write, once per batch, in the batch's own transaction, from the rows that batch
# inserted (a redelivered, ignored row never counts twice); a deletion (retention) takes its row
# out by a trigger. Version 3 kept it by a trigger per inserted row (version 4 drops that one).
ROLLUP_DIMS = ("model", "model_group", "response_model", "provider", "status", "cache_hit")
# the histogram's cells leave out cache_hit (nothing filters or groups on it): half the rows to read
LATENCY_DIMS = ROLLUP_DIMS[:-1]
ROLLUP_SUMS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost",
    "saved_cost",
)
# latency histogram buckets: bucket b holds [1.1**b - 1, 1.1**(b + 1) - 1) ms, 10% wide
LATENCY_BASE = 1.1


def hour_sql(row: str) -> str:
    return f"(CAST({row}start_time AS INTEGER) / 3600 * 3600)"  # parenthesised: || binds tighter


def bucket_sql(row: str) -> str:
    # a negative latency (a clock stepped back) counts in bucket 0
    return f"CAST(ln(max({row}latency_ms, 0) + 1) / ln({LATENCY_BASE}) AS INTEGER)"


def dims_key_sql(row: str, dims: tuple[str, ...] = ROLLUP_DIMS) -> str:
    # one text key for a cell: quote() keeps NULL apart from 'NULL' and is self-delimiting,
    # where a UNIQUE index over the columns would treat every NULL as distinct
    return " || '|' || ".join([hour_sql(row)] + [f"quote({row}{d})" for d in dims])


def sums_sql(row: str) -> list[str]:
    """Each row's contribution to ``ROLLUP_SUMS`` (the same as the raw queries' sums)."""
    return [
        "1",
        f"{row}status != 'success'",
        f"coalesce({row}prompt_tokens, 0)",
        f"coalesce({row}completion_tokens, 0)",
        f"coalesce({row}total_tokens, 0)",
        f"coalesce({row}cost, 0.0)",
        # a truncated payload is not JSON: its saved cost is unknown, counted as 0
        f"CASE WHEN {row}cache_hit AND json_valid({row}payload) "
        f"THEN coalesce(json_extract({row}payload, '$.saved_cache_cost'), 0.0) ELSE 0.0 END",
    ]


def _rollup_statements() -> list[str]:
    dims = ", ".join(ROLLUP_DIMS)
    sums = ", ".join(ROLLUP_SUMS)
    new_dims = ", ".join(f"NEW.{d}" for d in ROLLUP_DIMS)
    ldims = ", ".join(LATENCY_DIMS)
    new_ldims = ", ".join(f"NEW.{d}" for d in LATENCY_DIMS)
    add = ", ".join(f"{s} = {s} + excluded.{s}" for s in ROLLUP_SUMS)
    take = ", ".join(f"{s} = {s} - ({v})" for s, v in zip(ROLLUP_SUMS, sums_sql("OLD."), strict=True))
    raw_sums = ", ".join(f"sum({v})" for v in sums_sql(""))
    return [
        """CREATE TABLE calls_hourly (dims TEXT PRIMARY KEY, hour INTEGER NOT NULL, model TEXT,
            model_group TEXT, response_model TEXT, provider TEXT, status TEXT NOT NULL,
            cache_hit BOOLEAN NOT NULL, requests INTEGER NOT NULL, errors INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            total_tokens INTEGER NOT NULL, cost FLOAT NOT NULL, saved_cost FLOAT NOT NULL)""",
        "CREATE INDEX ix_calls_hourly_hour ON calls_hourly (hour)",
        """CREATE TABLE calls_hourly_latency (dims TEXT NOT NULL, bucket INTEGER NOT NULL,
            hour INTEGER NOT NULL, model TEXT, model_group TEXT, response_model TEXT, provider TEXT,
            status TEXT NOT NULL, n INTEGER NOT NULL,
            PRIMARY KEY (dims, bucket))""",
        "CREATE INDEX ix_calls_hourly_latency_hour ON calls_hourly_latency (hour)",
        # backfill from the rows already stored
        f"""INSERT INTO calls_hourly (dims, hour, {dims}, {sums})
            SELECT {dims_key_sql("")}, {hour_sql("")}, {dims}, {raw_sums} FROM calls
            GROUP BY 1""",
        f"""INSERT INTO calls_hourly_latency (dims, bucket, hour, {ldims}, n)
            SELECT {dims_key_sql("", LATENCY_DIMS)}, {bucket_sql("")}, {hour_sql("")}, {ldims}, count(*)
            FROM calls
            WHERE latency_ms IS NOT NULL GROUP BY 1, 2""",
        f"""CREATE TRIGGER calls_rollup_insert AFTER INSERT ON calls BEGIN
            INSERT INTO calls_hourly (dims, hour, {dims}, {sums})
            VALUES ({dims_key_sql("NEW.")}, {hour_sql("NEW.")}, {new_dims}, {", ".join(sums_sql("NEW."))})
            ON CONFLICT (dims) DO UPDATE SET {add};
            INSERT INTO calls_hourly_latency (dims, bucket, hour, {ldims}, n)
            SELECT {dims_key_sql("NEW.", LATENCY_DIMS)}, {bucket_sql("NEW.")}, {hour_sql("NEW.")},
            {new_ldims}, 1
            WHERE NEW.latency_ms IS NOT NULL
            ON CONFLICT (dims, bucket) DO UPDATE SET n = n + 1;
        END""",
        f"""CREATE TRIGGER calls_rollup_delete AFTER DELETE ON calls BEGIN
            UPDATE calls_hourly SET {take} WHERE dims = {dims_key_sql("OLD.")};
            UPDATE calls_hourly_latency SET n = n - 1
            WHERE OLD.latency_ms IS NOT NULL AND dims = {dims_key_sql("OLD.", LATENCY_DIMS)}
            AND bucket = {bucket_sql("OLD.")};
        END""",
    ]


def rollup_add_statements() -> list[str]:
    """What adds the rows with ``rowid > ?`` (one parameter) to the rollup: two set-based
    upserts, one per rollup table. ``SQLiteStore.write`` runs them in the batch's transaction
    for the rows it has just inserted (since version 4; before, a trigger per inserted row); a
    program that inserts rows into ``calls`` by its own SQL runs them after (bench/store_scale.py)."""
    dims = ", ".join(ROLLUP_DIMS)
    sums = ", ".join(ROLLUP_SUMS)
    ldims = ", ".join(LATENCY_DIMS)
    add = ", ".join(f"{s} = {s} + excluded.{s}" for s in ROLLUP_SUMS)
    raw_sums = ", ".join(f"sum({v})" for v in sums_sql(""))
    return [
        f"""INSERT INTO calls_hourly (dims, hour, {dims}, {sums})
            SELECT {dims_key_sql("")}, {hour_sql("")}, {dims}, {raw_sums} FROM calls
            WHERE rowid > ? GROUP BY 1
            ON CONFLICT (dims) DO UPDATE SET {add}""",
        f"""INSERT INTO calls_hourly_latency (dims, bucket, hour, {ldims}, n)
            SELECT {dims_key_sql("", LATENCY_DIMS)}, {bucket_sql("")}, {hour_sql("")}, {ldims}, count(*)
            FROM calls WHERE rowid > ? AND latency_ms IS NOT NULL GROUP BY 1, 2
            ON CONFLICT (dims, bucket) DO UPDATE SET n = n + excluded.n""",
    ]


def _v3_hourly_rollup(conn: Connection) -> None:
    if conn.dialect.name != "sqlite":
        return  # PostgreSQL shares these steps and computes its percentiles in SQL, exactly
    for statement in _rollup_statements():
        conn.execute(text(statement))


def _v4_rollup_per_batch(conn: Connection) -> None:
    # the rollup is added to once per batch by SQLiteStore.write (rollup_add_statements): a
    # trigger per inserted row cost more than the insert with all its indexes (docs/store.md,
    # "Cost"); the delete trigger stays (retention deletes by range, any path may delete)
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER IF EXISTS calls_rollup_insert"))


# indexes no SQLite query uses (the comment on them in ``calls``)
UNUSED_SQLITE_INDEXES = ("ix_calls_key_start", "ix_calls_team_start", "ix_calls_user_start")


def _v5_drop_unused_indexes(conn: Connection) -> None:
    # each was one more b-tree insert per row for the store's writer (docs/store.md, "The writer
    # child's cost"); SQLite's planner never picked them (EXPLAIN QUERY PLAN of every filter:
    # tests/test_store_indexes.py holds that no query plan names them)
    if conn.dialect.name == "sqlite":
        for name in UNUSED_SQLITE_INDEXES:
            conn.execute(text(f"DROP INDEX IF EXISTS {name}"))


# ordered: step i brings the schema from version i to i + 1; append, never edit a shipped step
MIGRATIONS: list[Callable[[Connection], None]] = [
    _v1,
    _v2_covering_time_index,
    _v3_hourly_rollup,
    _v4_rollup_per_batch,
    _v5_drop_unused_indexes,
]


def migrate(conn: Connection) -> int:
    """Apply the steps this database has not seen; returns the version it is at."""
    schema_version.create(conn, checkfirst=True)
    current = conn.execute(select(schema_version.c.version)).scalar()
    if current is None:
        conn.execute(schema_version.insert().values(version=0))
        current = 0
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"the log store's schema is version {current}, newer than this lmgate knows "
            f"({len(MIGRATIONS)}): upgrade lmgate or point it at another file"
        )
    for version in range(current, len(MIGRATIONS)):
        MIGRATIONS[version](conn)
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": version + 1})
    return len(MIGRATIONS)
