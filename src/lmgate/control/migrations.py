"""Versioned schema migrations, run at start: an ordered list and a one-row version table.

Why not Alembic: its runner is built around a script directory with an ``env.py`` and a CLI
step; run embedded at every start it brings a template directory and its own configuration
into the package for a schema of three tables. A migration here is a function of a
synchronous SQLAlchemy connection, applied in order inside one transaction with the version
row, so a start either moves the schema to the latest version or leaves it as it was.
Several instances starting at once are serialised: PostgreSQL by a transaction-scoped advisory
lock taken first, SQLite by a file lock beside the database (``store.KeyStore.start``).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from . import schema

_version = sa.Table("lmgate_schema_version", sa.MetaData(), sa.Column("version", sa.Integer, nullable=False))


def _v1_initial(conn: sa.Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.teams, schema.users, schema.keys])


def _v2_spend_ledger(conn: sa.Connection) -> None:
    schema.metadata.create_all(conn, tables=[schema.spend_ledger])


def _v3_users_and_customers(conn: sa.Connection) -> None:
    """The reference's user fields on ``lmgate_users`` (only those a version-1 table lacks: a
    database created by this lmgate has them from step 1) and the end users' table."""
    have = {c["name"] for c in sa.inspect(conn).get_columns(schema.users.name)}
    preparer = conn.dialect.identifier_preparer
    for name in schema.USER_FIELDS_V3:
        if name in have:
            continue
        column = schema.users.c[name]
        kind = column.type.compile(dialect=conn.dialect)
        conn.execute(
            sa.text(
                f"ALTER TABLE {preparer.quote(schema.users.name)} ADD COLUMN {preparer.quote(name)} {kind}"
            )
        )
    schema.metadata.create_all(conn, tables=[schema.customers])


def _add_missing(conn: sa.Connection, table: sa.Table, names: tuple[str, ...]) -> None:
    have = {c["name"] for c in sa.inspect(conn).get_columns(table.name)}
    preparer = conn.dialect.identifier_preparer
    for name in names:
        if name not in have:
            kind = table.c[name].type.compile(dialect=conn.dialect)
            conn.execute(
                sa.text(f"ALTER TABLE {preparer.quote(table.name)} ADD COLUMN {preparer.quote(name)} {kind}")
            )


def _v4_soft_budgets(conn: sa.Connection) -> None:
    """``soft_budget`` on keys, teams and users (a database made by this version has them from
    step 1) and the table of the alerts fired."""
    for table in schema.SOFT_BUDGET_TABLES:
        _add_missing(conn, table, ("soft_budget",))
    schema.metadata.create_all(conn, tables=[schema.budget_alerts])


def _v5_alert_outbox(conn: sa.Connection) -> None:
    """The alerts' outbox: ``alert`` and ``delivered_at`` on the alerts' table (a database made
    by this version has them from step 4). The alerts already there were handed to their
    subscribers by the lmgate that fired them (or lost with it): they count as delivered, so
    the outbox never sends them again."""
    table = schema.budget_alerts
    _add_missing(conn, table, schema.ALERT_OUTBOX_FIELDS)
    conn.execute(table.update().where(table.c.delivered_at.is_(None)).values(delivered_at=table.c.fired_at))


#: (version, what it does, the step); append only, never edit a released step
MIGRATIONS: tuple[tuple[int, str, Callable[[sa.Connection], None]], ...] = (
    (1, "keys, teams and users", _v1_initial),
    (2, "the spend ledger", _v2_spend_ledger),
    (3, "user fields, end users (customers)", _v3_users_and_customers),
    (4, "soft budgets and their alerts", _v4_soft_budgets),
    (5, "the soft-budget alerts' outbox", _v5_alert_outbox),
)
LATEST = MIGRATIONS[-1][0]


def current_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table(_version.name):
        return 0
    value = conn.execute(sa.select(_version.c.version)).scalar()
    return int(value or 0)


def migrate(conn: sa.Connection) -> list[int]:
    """Apply every migration newer than the database's version; the versions applied.

    A database newer than this lmgate (a later version wrote it) is refused rather than used.
    """
    if conn.dialect.name == "postgresql":  # instances starting at once: one migrates, the others wait
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(7345012901)"))
    _version.create(conn, checkfirst=True)
    have = current_version(conn)
    if have > LATEST:
        raise RuntimeError(
            f"the key database is at schema version {have}, newer than this lmgate knows ({LATEST}): "
            "upgrade lmgate, or point it at another database"
        )
    applied = []
    for version, _what, step in MIGRATIONS:
        if version > have:
            step(conn)
            applied.append(version)
    if applied:
        if have == 0 and conn.execute(sa.select(sa.func.count()).select_from(_version)).scalar() == 0:
            conn.execute(_version.insert().values(version=applied[-1]))
        else:
            conn.execute(_version.update().values(version=applied[-1]))
    return applied


__all__ = ["LATEST", "MIGRATIONS", "current_version", "migrate"]
