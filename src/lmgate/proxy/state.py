"""What every part of the proxy app shares, built once per app from the config."""

from __future__ import annotations

import time

from .auth import KeyBackend, MasterKeyBackend
from .config import ProxyConfig
from .hooks import HookCache
from .loading import Applied
from .metrics import Metrics
from .router import Router


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
        self.router = Router(config)
        self.metrics = Metrics(config.model_names)
        self.cache = HookCache()
        self.backend: KeyBackend = backend if backend is not None else MasterKeyBackend(config.master_key)
        self.created = int(time.time())
        self.known_models = ", ".join(config.model_names) or "(none configured)"


__all__ = ["ProxyState"]
