"""The tables of the control plane (SQLAlchemy Core), as the latest migration leaves them.

Times are Unix seconds (``Float``): the same on SQLite and PostgreSQL, and compared without
time-zone conversions. Lists and mappings are ``JSON``. A key is stored only as the SHA-256 of
its text (``token``); ``key_name`` is its masked form (``sk-...abcd``) for people to recognise.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

teams = sa.Table(
    "lmgate_teams",
    metadata,
    sa.Column("team_id", sa.String(128), primary_key=True),
    sa.Column("team_alias", sa.String(256)),
    sa.Column("models", sa.JSON, nullable=False, default=list),
    sa.Column("max_budget", sa.Float),
    sa.Column("budget_duration", sa.String(32)),
    sa.Column("rpm_limit", sa.Integer),
    sa.Column("tpm_limit", sa.Integer),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("blocked", sa.Boolean, nullable=False, default=False),
    sa.Column("spend", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

users = sa.Table(
    "lmgate_users",
    metadata,
    sa.Column("user_id", sa.String(128), primary_key=True),
    sa.Column("user_email", sa.String(256)),
    sa.Column("max_budget", sa.Float),
    sa.Column("budget_duration", sa.String(32)),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("spend", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

keys = sa.Table(
    "lmgate_keys",
    metadata,
    sa.Column("token", sa.String(64), primary_key=True),  # SHA-256 hex of the key
    sa.Column("key_name", sa.String(32), nullable=False),
    sa.Column("key_alias", sa.String(256)),
    sa.Column("team_id", sa.String(128), sa.ForeignKey("lmgate_teams.team_id"), index=True),
    sa.Column("user_id", sa.String(128), index=True),
    sa.Column("models", sa.JSON, nullable=False, default=list),
    sa.Column("max_budget", sa.Float),
    sa.Column("budget_duration", sa.String(32)),
    sa.Column("expires_at", sa.Float),
    sa.Column("rpm_limit", sa.Integer),
    sa.Column("tpm_limit", sa.Integer),
    sa.Column("max_parallel_requests", sa.Integer),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    sa.Column("tags", sa.JSON, nullable=False, default=list),
    sa.Column("blocked", sa.Boolean, nullable=False, default=False),
    sa.Column("spend", sa.Float, nullable=False, default=0.0),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# ---- spend (migration 2, the "limits" block): one row per request that reached a provider ----
# The ledger is the truth of spend: ``keys.spend``, ``teams.spend`` and ``users.spend`` are its
# sums, updated in the same transaction as the rows they add (``control/ledger.py``). A row is
# keyed by its request id, so writing a batch twice (a journal replayed after a crash) adds it
# once. ``started_at`` (when the request started) decides the budget window it is charged to.
spend_ledger = sa.Table(
    "lmgate_spend_ledger",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("team_id", sa.String(128)),
    sa.Column("user_id", sa.String(128)),
    sa.Column("end_user", sa.String(256)),
    sa.Column("model", sa.String(256)),
    sa.Column("cost", sa.Float, nullable=False),
    sa.Column("prompt_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("completion_tokens", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("ended_at", sa.Float, nullable=False),
    sa.Index("ix_lmgate_spend_token_started", "token", "started_at"),
    sa.Index("ix_lmgate_spend_team_started", "team_id", "started_at"),
    sa.Index("ix_lmgate_spend_user_started", "user_id", "started_at"),
    sa.Index("ix_lmgate_spend_end_user_started", "end_user", "started_at"),
)

# ---- people and end users (migration 3, the "keysadmin" block) ----
# ``lmgate_users`` gains the reference's user fields (added by migration 3 to a database made by
# version 1; a new database gets them from version 1's create_all of the table above). End users
# (customers) are the ``user`` a request body names: not callers of the proxy, but the people a
# platform's app calls on behalf of, who may carry a budget of their own.
USER_FIELDS_V3 = ("user_alias", "user_role", "rpm_limit", "tpm_limit")
users.append_column(sa.Column("user_alias", sa.String(256)))
users.append_column(sa.Column("user_role", sa.String(32)))
users.append_column(sa.Column("rpm_limit", sa.Integer))
users.append_column(sa.Column("tpm_limit", sa.Integer))

customers = sa.Table(
    "lmgate_customers",
    metadata,
    sa.Column("user_id", sa.String(256), primary_key=True),  # the request body's ``user``
    sa.Column("alias", sa.String(256)),
    sa.Column("blocked", sa.Boolean, nullable=False, default=False),
    sa.Column("max_budget", sa.Float),
    sa.Column("budget_duration", sa.String(32)),
    sa.Column("rpm_limit", sa.Integer),
    sa.Column("tpm_limit", sa.Integer),
    sa.Column("default_model", sa.String(256)),
    sa.Column("allowed_model_region", sa.String(32)),
    sa.Column("metadata", sa.JSON, nullable=False, default=dict),
    # no spend column: an end user's spend is the sum of its rows in the spend ledger (reports.py)
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# ---- soft budgets (migration 4, the "limits" block) ----
# ``soft_budget`` (USD) on keys, teams and users: crossing it raises an alert, never a refusal.
# An alert fires once per budget window across every instance: its row is the proof it fired.
SOFT_BUDGET_TABLES = (keys, teams, users)
for _table in SOFT_BUDGET_TABLES:
    _table.append_column(sa.Column("soft_budget", sa.Float))

budget_alerts = sa.Table(
    "lmgate_budget_alerts",
    metadata,
    sa.Column("scope", sa.String(16), primary_key=True),  # key | team | user
    sa.Column("scope_id", sa.String(128), primary_key=True),  # the key's hash, a team or user id
    sa.Column("window_start", sa.Float, primary_key=True),  # 0 for a budget that never resets
    sa.Column("soft_budget", sa.Float, nullable=False),
    sa.Column("spend", sa.Float, nullable=False),  # the window's spend when it was crossed
    sa.Column("fired_at", sa.Float, nullable=False),
)

# ---- the alerts' outbox (migration 5, the "limits" block) ----
# An alert row is written first (it decides which instance fires), then the alert is handed to
# its subscribers (the webhook's write-ahead spool), then ``delivered_at`` is set: a process
# killed between the row and the hand-off leaves ``delivered_at`` NULL, and the next start
# delivers the alert from ``alert`` (the alert as the subscribers got it, JSON). Rows from
# before migration 5 count as delivered (``delivered_at`` = ``fired_at``). ``claimed_at``: when an
# instance took the row to hand it over (its insert, or a redelivery's claim that only one
# instance wins); a claim older than the lease (``proxy/spend.ALERT_CLAIM_LEASE_S``) is taken again,
# so a claimer killed before its hand-off does not strand the alert.
ALERT_OUTBOX_FIELDS = ("alert", "delivered_at", "claimed_at")
budget_alerts.append_column(sa.Column("alert", sa.JSON))
budget_alerts.append_column(sa.Column("delivered_at", sa.Float))
budget_alerts.append_column(sa.Column("claimed_at", sa.Float))

__all__ = [
    "ALERT_OUTBOX_FIELDS",
    "SOFT_BUDGET_TABLES",
    "USER_FIELDS_V3",
    "budget_alerts",
    "customers",
    "keys",
    "metadata",
    "spend_ledger",
    "teams",
    "users",
]
