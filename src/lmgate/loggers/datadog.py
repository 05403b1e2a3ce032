"""``datadog``: standard logging payloads as Datadog logs, through the logs intake HTTP API.

    lmgate.callbacks = ["datadog"]          # DD_API_KEY and DD_SITE from the environment

A preset of the generic API logger (``generic_api.py``), so it has the same batching, retries,
413/400 splitting, spool and counts; only the record shape differs. Each call becomes one log
entry as the reference sends it (``DatadogPayload``): ``ddsource``, ``ddtags``, ``hostname``,
``service``, ``status`` (``info``, or ``error`` for a failure) and ``message``, the standard
logging payload as a JSON string. Batches are POSTed as a JSON array to
``https://http-intake.logs.{DD_SITE}/api/v2/logs`` with the ``DD-API-KEY`` header (Datadog's
"Send logs" API), at most 1,000 entries a request, Datadog's limit.

Environment, as the reference reads it: ``DD_API_KEY``, ``DD_SITE``; ``LITELLM_DD_AGENT_HOST``
/ ``LITELLM_DD_AGENT_PORT`` (default 10518) to send through a Datadog agent; ``DD_BASE_URL`` to
override the intake's origin; ``DD_SOURCE`` (default ``litellm``), ``DD_SERVICE``
(``litellm-server``), ``DD_ENV`` (``unknown``), ``DD_VERSION`` (``unknown``), ``HOSTNAME``,
``POD_NAME``; ``DD_BATCH_SIZE``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from .. import _conf
from ._env import LoggerConfigError
from .exporter import Batch, Outcome
from .generic_api import GenericAPILogger, GenericAPISettings
from .http_exporter import HTTPExporter

NAMES = ("datadog",)
# Datadog's intake takes at most 1,000 entries (and 5 MB) per request
DD_MAX_BATCH_SIZE = 1000
DEFAULT_AGENT_PORT = "10518"


@dataclass(frozen=True)
class DatadogFields:
    """The fixed fields of every entry, read from the environment once."""

    source: str
    service: str
    hostname: str
    tags: tuple[str, ...]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DatadogFields:
        env = os.environ if environ is None else environ
        hostname = env.get("HOSTNAME") or socket.gethostname()
        service = env.get("DD_SERVICE") or "litellm-server"
        tags = [
            f"env:{env.get('DD_ENV') or 'unknown'}",
            f"service:{service}",
            f"version:{env.get('DD_VERSION') or 'unknown'}",
            f"HOSTNAME:{hostname}",
            f"POD_NAME:{env.get('POD_NAME') or 'unknown'}",
        ]
        return cls(
            source=env.get("DD_SOURCE") or "litellm", service=service, hostname=hostname, tags=tuple(tags)
        )

    def entry(self, record: bytes) -> bytes:
        """One standard logging payload (compact JSON) as one Datadog log entry."""
        payload = orjson.loads(record)
        tags = list(self.tags)
        if isinstance(payload, dict):
            tags.extend(str(t) for t in payload.get("request_tags") or () if t is not None)
            failed = payload.get("status") == "failure"
        else:
            failed = False
        return orjson.dumps(
            {
                "ddsource": self.source,
                "ddtags": ",".join(tags),
                "hostname": self.hostname,
                "message": record.decode("utf-8"),
                "service": self.service,
                "status": "error" if failed else "info",
            }
        )


class DatadogExporter(HTTPExporter):
    """The generic HTTP exporter, with each record wrapped as a Datadog log entry on the way out
    (the queue and the spool keep standard payloads, so a split or a retry rewraps the same)."""

    def __init__(self, *args: Any, fields: DatadogFields, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields = fields

    def export(self, batch: Batch) -> Outcome | Sequence[Outcome]:
        entries = [self.fields.entry(record) for record in batch.records]
        return super().export(Batch(entries, batch.key, batch.offsets))


def _endpoint(dd_site: str | None, environ: Mapping[str, str]) -> str:
    base = environ.get("DD_BASE_URL")
    if base:
        return base.rstrip("/") + "/api/v2/logs"
    agent = environ.get("LITELLM_DD_AGENT_HOST")
    if agent:
        return f"http://{agent}:{environ.get('LITELLM_DD_AGENT_PORT') or DEFAULT_AGENT_PORT}/api/v2/logs"
    site = dd_site or environ.get("DD_SITE")
    if not site:
        raise LoggerConfigError(
            "datadog: DD_SITE is not set: set it to your Datadog site (datadoghq.com, us5.datadoghq.com, "
            "datadoghq.eu, ...), or LITELLM_DD_AGENT_HOST to send through an agent"
        )
    return f"https://http-intake.logs.{site}/api/v2/logs"


class DatadogLogger(GenericAPILogger):
    """Datadog logs through the generic API logger; see the module docstring. Takes the generic
    logger's keyword arguments (``batch_size``, ``spool``, ``gzip``, ``transport``, ...)."""

    takes_generic_headers = False  # a webhook's token never travels to Datadog

    def __init__(
        self,
        dd_api_key: str | None = None,
        dd_site: str | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        env = os.environ if environ is None else environ
        endpoint = _endpoint(dd_site, env)
        api_key = dd_api_key or env.get("DD_API_KEY")
        if not api_key and not env.get("LITELLM_DD_AGENT_HOST"):
            raise LoggerConfigError("datadog: DD_API_KEY is not set: set it to a Datadog API key")
        batch_size = kwargs.pop("batch_size", None)
        if batch_size is None:
            batch_size = env.get("DD_BATCH_SIZE") or DD_MAX_BATCH_SIZE
        batch_size = min(
            _conf.number(batch_size, name="batch_size", integer=True, above=0), DD_MAX_BATCH_SIZE
        )
        self.dd_fields = DatadogFields.from_env(env)
        super().__init__(
            endpoint=endpoint,
            headers={"DD-API-KEY": api_key} if api_key else {},
            log_format="json_array",
            callback_name=kwargs.pop("callback_name", "datadog"),
            batch_size=batch_size,
            **kwargs,
        )

    def make_exporter(self, settings: GenericAPISettings, transport: Any) -> HTTPExporter:
        return DatadogExporter(
            settings.endpoint,
            settings.headers,
            "json_array",
            timeout=settings.timeout,
            gzip=settings.gzip,
            max_concurrency=settings.max_concurrency,
            transport=transport,
            name="datadog",
            fields=self.dd_fields,
        )


if TYPE_CHECKING:
    from ..settings import Settings


def logger_for_name(name: str, settings: Settings | None = None) -> DatadogLogger | None:
    """``"datadog"`` in a callback list; its ``callback_settings`` entry in ``settings`` (default:
    the module's), if any, gives arguments."""
    if name not in NAMES:
        return None
    from ..settings import DEFAULT

    options = dict(((settings or DEFAULT).callback_settings or {}).get(name) or {})
    options.pop("callback_type", None)
    return DatadogLogger(**options)


__all__ = ["DatadogExporter", "DatadogFields", "DatadogLogger", "logger_for_name"]
