"""What every part of the proxy app shares, built once per app from the config."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .auth import KeyBackend, MasterKeyBackend
from .config import ConfigError, ProxyConfig
from .hooks import HookCache
from .loading import Applied
from .metrics import Metrics
from .router import build_router

if TYPE_CHECKING:  # sqlalchemy is imported only by a proxy that asks for virtual keys
    from ..control.store import KeyStore
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
        if config.virtual_keys and backend is None:
            self.key_store, self.key_backend = _virtual_keys(config)
            backend = self.key_backend
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


__all__ = ["ProxyState"]
