"""What every part of the proxy app shares, built once per app from the config."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .auth import KeyBackend, MasterKeyBackend
from .config import ConfigError, ProxyConfig
from .hooks import HookCache
from .loading import Applied
from .metrics import Metrics
from .router import build_router

if TYPE_CHECKING:  # sqlalchemy is imported only by a proxy that asks for virtual keys
    from ..control.store import KeyStore
    from .budgets import Enforcer
    from .virtual_keys import DatabaseKeyBackend


class ProxyState:
    """The config, the deployment router, the metrics, the hooks' cache and the key backend.

    ``backend`` decides who a key belongs to (``auth.KeyBackend``): the master key unless the
    caller passes another.
    """

    def __init__(
        self, config: ProxyConfig, applied: Applied | None, backend: KeyBackend | None = None
    ) -> None:
        self.config = config
        self.applied = applied
        self.router = build_router(config)  # an lmgate.Router
        # the config's deployments by id: what the metrics, logs and prices read
        self.deployments = {d.model_id: d for d in config.model_list}
        self.metrics = Metrics(config.model_names)
        self.cache = HookCache()
        # virtual keys (general_settings.virtual_keys): the key store, started in the app's lifespan
        self.key_store: KeyStore | None = None
        self.key_backend: DatabaseKeyBackend | None = None
        # the keys' limits and budgets (budgets.py), their counters and the spend writer
        self.enforcer: Enforcer | None = None
        self.limits_redis: Any = None
        # batch loggers of the proxy's own (not callbacks: no call's record reaches them), shown
        # with the callbacks' in /metrics and /health/readiness: (name, logger with stats())
        self.extra_loggers: list[tuple[str, Any]] = []
        if config.virtual_keys and backend is None:
            self.key_store, self.key_backend = _virtual_keys(config)
            backend = self.key_backend
            self.enforcer, self.limits_redis = _enforcer(self, self.key_store)
            if self.enforcer.writer is not None:  # soft budgets' alerts counted in /metrics
                self.enforcer.writer.on_alert.append(self.metrics.budget_alert)
                if config.alert_webhook_url:  # and POSTed to general_settings.alerting's webhook
                    self.extra_loggers.append(_webhook_alerts(config, self.enforcer.writer))
        self.backend: KeyBackend = backend if backend is not None else MasterKeyBackend(config.master_key)
        self.created = int(time.time())
        self.known_models = ", ".join(config.model_names) or "(none configured)"


def _virtual_keys(config: ProxyConfig) -> tuple[KeyStore, DatabaseKeyBackend]:
    if not config.master_key:
        raise ConfigError(
            "virtual keys need an admin: set general_settings.master_key (or LMGATE_MASTER_KEY)",
            config.path,
            "general_settings.virtual_keys",
        )
    try:
        from ..control.store import KeyStore, async_url
        from .virtual_keys import DatabaseKeyBackend
    except ImportError as error:
        raise ConfigError(
            f"virtual keys need the keys extra: pip install 'lmgate[keys]' ({error})",
            config.path,
            "general_settings.virtual_keys",
        ) from None
    import sqlalchemy as sa

    from .._secrets import remember_secret

    store = KeyStore.for_config(config.database_url, config.data_dir)
    try:
        url = sa.make_url(async_url(store.url))
    except (ValueError, sa.exc.ArgumentError) as error:
        raise ConfigError(str(error), config.path, "general_settings.database_url") from None
    remember_secret(url.password if isinstance(url.password, str) else None)  # masked in every log line
    return store, DatabaseKeyBackend(store, config.master_key)


def _enforcer(state: ProxyState, store: KeyStore) -> tuple[Enforcer, Any]:
    """The limits' counters: in Redis when ``router_settings`` names one (every instance
    shares them), else in this process; spend goes to the ledger through a journal."""
    from .._paths import data_dir
    from ..control.ledger import Ledger
    from .budgets import Enforcer, group_prices
    from .leases import RedisCounters
    from .limits import MemoryCounters, redis_client
    from .spend import JOURNAL_DIR, SpendWriter

    settings = state.config.router_settings
    client = None
    counters: Any
    if settings.get("redis_url") or settings.get("redis_host"):
        try:
            client = redis_client(settings)
            counters = RedisCounters(client)  # per-instance leases; batches over hiredis (resp.py)
        except ImportError:
            raise ConfigError(
                "limits shared across instances need the redis package: pip install 'lmgate[redis]'",
                state.config.path,
                "router_settings.redis_url",
            ) from None
    else:
        counters = MemoryCounters()
    import os

    # how often settled spend goes to the ledger (rows wait in the journal meanwhile); the
    # environment only, an operating knob: tests set it high to see the journal do its job
    interval = float(os.environ.get("LMGATE_SPEND_FLUSH_INTERVAL_S") or 1.0)
    writer = SpendWriter(
        Ledger(store),
        data_dir(state.config.data_dir) / JOURNAL_DIR,
        interval_s=interval,
        process=_ledger_process(store.url),
    )
    return Enforcer(counters, writer, group_prices(state)), client


def _webhook_alerts(config: ProxyConfig, writer: Any) -> tuple[str, Any]:
    """Soft-budget alerts POSTed to ``WEBHOOK_URL`` (proxy/alerts.py), spooled in the data dir."""
    from .._paths import data_dir
    from .alerts import LOGGER_NAME, WebhookAlerts

    assert config.alert_webhook_url is not None
    alerts = WebhookAlerts(config.alert_webhook_url, data_dir(config.data_dir) / "spool" / LOGGER_NAME)
    writer.on_alert.append(alerts)
    return LOGGER_NAME, alerts.logger


def _ledger_process(url: str) -> Any:
    """The child process that writes spend batches (``spend_process.py``) when
    ``LMGATE_SPEND_WRITER`` says ``process`` (``lmgate serve``'s ``auto`` on two CPUs or more), else
    None (this process).
    An in-memory SQLite database is this process's own: written here."""
    from .spend_process import LedgerProcess, writer_choice

    if writer_choice() != "process":
        return None
    scheme, _, rest = url.partition("://")
    if scheme.split("+", 1)[0].lower() == "sqlite" and rest.lstrip("/") in ("", ":memory:"):
        return None
    return LedgerProcess(url)


__all__ = ["ProxyState"]
