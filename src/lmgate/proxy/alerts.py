"""Soft-budget alerts delivered to a webhook: the reference's ``general_settings.alerting:
["webhook"]`` with the ``WEBHOOK_URL`` environment variable.

A crossed soft budget (``spend.SpendWriter``, once per budget window across instances) is
POSTed to ``WEBHOOK_URL`` as the reference's ``WebhookEvent``: one JSON object per alert,
``event: "soft_budget_crossed"``, ``event_group`` (``key``, ``team``, ``internal_user``),
``spend``, ``max_budget``, ``soft_budget``, ``token`` (the key's SHA-256, never the key),
``key_alias``, ``team_id``, ``team_alias``, ``user_id``, ``event_message``, the reference's
other fields as null, and lmgate's ``budget_window_start`` / ``budget_window_end`` and
``alert_id`` (the alert's identity, ``spend.alert_id``: the same on every delivery of it).

Delivery is the batch pipeline every HTTP logger uses (``loggers.batch.BatchLogger`` over
``loggers.http_exporter.HTTPExporter``): the alert is queued (never a request's wait), written
ahead to a spool under ``<data dir>/spool/alerting_webhook`` (a process that dies before the
POST sends it at its next start; one that dies before the spool write has the alert in the
ledger's outbox, ``spend.SpendWriter.redeliver_alerts``, which its next start delivers),
retried on a connection error, 408, 429 and 5xx until delivered, and every drop counted in the
logger's ``stats()`` (``/metrics``: ``lmgate_logger_*{logger="alerting_webhook"}``).

Delivery is at least once: an instance killed after its spool write and before the outbox's
mark, or a claim whose lease ran out, delivers the alert again. Every POST of one alert carries
the same ``Idempotency-Key`` (``lmgate-alert-<alert_id>``, not the spool segment's key other
HTTP loggers use), so a receiver that honours the key, or dedupes on ``alert_id``, sees it once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..exceptions import ConfigError

WEBHOOK = "webhook"
WEBHOOK_ENV = "WEBHOOK_URL"
LOGGER_NAME = "alerting_webhook"
# the reference's alerting types: the ones lmgate does not deliver are named in the startup
# warning (as the whole key was before), anything else is a typo
REFERENCE_TYPES = ("slack", "email", "webhook", "discord", "msteams", "pagerduty")
_GROUPS = {"key": "key", "team": "team", "user": "internal_user", "end_user": "customer"}


def webhook_url(
    general: Mapping[str, Any], env: Mapping[str, str], file: str, virtual_keys: bool
) -> str | None:
    """The URL soft-budget alerts go to, or None; raises ``ConfigError`` naming the file, the
    key and the fix for an unknown alerting type, or ``webhook`` without ``WEBHOOK_URL``."""
    value = general.get("alerting")
    if value is None:
        return None
    where = "general_settings.alerting"
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a list of alerting types", file, where, fix='e.g. alerting: ["webhook"]')
    for kind in value:
        if kind not in REFERENCE_TYPES:
            raise ConfigError(
                f"unknown alerting type {kind!r}",
                file,
                where,
                fix=f'use "webhook" (delivered by lmgate) or one of the reference\'s '
                f"{', '.join(t for t in REFERENCE_TYPES if t != WEBHOOK)} (accepted, not delivered)",
            )
    if WEBHOOK not in value or not virtual_keys:  # soft budgets are virtual keys' (docs/keys.md)
        return None
    url = (env.get(WEBHOOK_ENV) or "").strip()
    if not url:
        raise ConfigError(
            f"alerting names webhook but the {WEBHOOK_ENV} environment variable is not set",
            file,
            where,
            fix=f"export {WEBHOOK_ENV}=https://… (where soft-budget alerts are POSTed), or drop webhook",
        )
    if not url.startswith(("http://", "https://")):
        # the value is not echoed: a webhook URL often carries its token
        raise ConfigError(
            f"the {WEBHOOK_ENV} environment variable is not an http(s) URL",
            file,
            where,
            fix=f"set {WEBHOOK_ENV} to the receiver's http:// or https:// URL",
        )
    return url


def webhook_event(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The reference's ``WebhookEvent`` of one soft-budget alert (``spend._alert``'s)."""
    scope = alert.get("scope")
    soft = alert.get("soft_budget")
    return {
        "spend": alert.get("spend"),
        "max_budget": alert.get("max_budget"),
        "soft_budget": soft,
        "token": alert.get("token"),
        "customer_id": alert.get("id") if scope == "end_user" else None,
        "user_id": alert.get("user_id"),
        "team_id": alert.get("team_id"),
        "team_alias": alert.get("team_alias"),
        "user_email": None,
        "key_alias": alert.get("key_alias"),
        "projected_exceeded_date": None,
        "projected_spend": None,
        "event": "soft_budget_crossed",
        "event_group": _GROUPS.get(str(scope), str(scope)),
        "event_message": f"Soft Budget Crossed - Total Soft Budget: ${soft} ({alert.get('label')})",
        "budget_window_start": _iso(alert.get("window_start")),
        "budget_window_end": _iso(alert.get("window_end")),
        "alert_id": alert.get("alert_id"),
    }


def idempotency_key(event: bytes) -> str | None:
    """The Idempotency-Key of one alert's POST (a ``webhook_event`` as spooled): the alert's own,
    or None for an event without an id."""
    import orjson

    try:
        value = orjson.loads(event).get("alert_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return f"lmgate-alert-{value}" if isinstance(value, str) and value else None


def _iso(seconds: Any) -> str | None:
    if not seconds:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(seconds)))


def _alert_exporter() -> Any:
    """``HTTPExporter`` whose POST of an alert carries the alert's own Idempotency-Key (made
    lazily: the exporter's module is imported only when alerting is configured)."""
    from ..loggers.exporter import Batch
    from ..loggers.http_exporter import HTTPExporter

    class AlertBatch(Batch):
        def record_key(self, i: int) -> str:
            return idempotency_key(self.records[i]) or super().record_key(i)

    class AlertExporter(HTTPExporter):
        def export(self, batch: Batch) -> Any:
            # "single": one POST per record, each with ``record_key`` (the alert's own)
            return super().export(AlertBatch(batch.records, batch.key, batch.offsets, batch.prepared))

    return AlertExporter


class WebhookAlerts:
    """An ``SpendWriter.on_alert`` subscriber: each alert queued for the webhook, never awaited."""

    def __init__(self, url: str, spool_dir: Path, transport: Any = None) -> None:
        from ..loggers.batch import BatchLogger

        exporter = _alert_exporter()(
            url,
            {"Content-Type": "application/json"},
            "single",  # one POST per alert, a JSON object, as the reference sends it
            max_concurrency=1,
            transport=transport,
            name=LOGGER_NAME,
        )
        self.logger = BatchLogger(
            exporter,
            name=LOGGER_NAME,
            batch_size=1,
            flush_interval=0.2,
            spool="write_ahead",  # on disk before the alert is counted as sent
            spool_dir=str(spool_dir),
        )

    def __call__(self, alert: dict[str, Any]) -> None:
        """Queue the alert, on disk in the spool when this returns; raises when it could not be
        spooled, so the alert stays undelivered in the ledger's outbox for the next start."""
        failed = self.logger.stats()["spool_write_failed"]
        self.logger.enqueue(webhook_event(alert))
        if self.logger.stats()["spool_write_failed"] != failed:
            raise OSError("the alert could not be written to the webhook's spool")

    def stats(self) -> dict[str, Any]:
        return self.logger.stats()


__all__ = ["LOGGER_NAME", "WEBHOOK_ENV", "WebhookAlerts", "webhook_event", "webhook_url"]
