"""OpenTelemetry: one span per call, following the GenAI semantic conventions.

    from lmgate.loggers.otel import OpenTelemetryLogger
    lmgate.callbacks = [OpenTelemetryLogger()]          # the global TracerProvider
    lmgate.callbacks = ["otel"]                          # the same, by name (proxy YAML too)

The span covers the call (its start and end times are the call's), is named
``"{operation} {model}"`` (``chat gpt-4o-mini``), has kind CLIENT, and carries the
``gen_ai.*`` attributes (provider, operation, request parameters, response id and model,
finish reasons, token usage), ``error.type`` and an error status for failures, and lmgate's own
``lmgate.*`` attributes (cost, cache hit, call id, stream status). Prompts and answers are only
recorded with ``capture_content=True`` (as ``gen_ai.input.messages`` / ``gen_ai.output.messages``).

Batching and export are the OpenTelemetry SDK's job (its ``BatchSpanProcessor`` and exporter):
this logger only creates finished spans, which costs microseconds; ``flush`` forces the
provider's processors to export.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from .._callbacks.custom_logger import CustomLogger

if TYPE_CHECKING:
    from ..settings import Settings

# lmgate provider names → the GenAI conventions' well-known values
_PROVIDER_NAMES = {
    "azure": "azure.ai.openai",
    "hosted_vllm": "openai",
    "lm_studio": "openai",
    "ollama_chat": "openai",
    "gemini": "gcp.gemini",
    "mistral": "mistral_ai",
    "xai": "x_ai",
}
_REQUEST_ATTRIBUTES = {
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
    "n": "gen_ai.request.choice.count",
}
NAMES = ("otel", "opentelemetry")


class OpenTelemetryLogger(CustomLogger):
    """One finished span per call; see the module docstring."""

    def __init__(
        self,
        tracer_provider: Any = None,
        capture_content: bool = False,
        *,
        owns_provider: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tracer_provider = tracer_provider
        self.capture_content = capture_content
        # a provider made for this logger alone (langfuse) is shut down by close(), not by atexit:
        # the exit flush goes through flush() first, so no span is lost and none is reported pending
        self.owns_provider = owns_provider
        self._closed = False
        self._tracer: Any = None

    def _get_tracer(self) -> Any:
        if self._tracer is None:
            from opentelemetry import trace  # imported on first use: only users of this logger pay for it

            provider = self.tracer_provider or trace.get_tracer_provider()
            self._tracer = provider.get_tracer("lmgate")
        return self._tracer

    # sync and async hooks do the same quick work
    def log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record_span(kwargs["standard_logging_object"])

    def log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record_span(kwargs["standard_logging_object"])

    async def async_log_success_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record_span(kwargs["standard_logging_object"])

    async def async_log_failure_event(
        self, kwargs: dict[str, Any], response_obj: Any, start_time: Any, end_time: Any
    ) -> None:
        self.record_span(kwargs["standard_logging_object"])

    def record_span(self, slo: dict[str, Any]) -> None:
        """Create the finished span of one call from its standard logging payload."""
        from opentelemetry.trace import SpanKind, Status, StatusCode

        operation = "embeddings" if "embedding" in slo["call_type"] else "chat"
        model = slo["model"]
        span = self._get_tracer().start_span(
            f"{operation} {model}",
            kind=SpanKind.CLIENT,
            start_time=int(slo["startTime"] * 1e9),
            attributes=self.attributes(slo, operation),
        )
        if slo["status"] == "failure":
            info = slo["error_information"]
            span.set_attribute("error.type", info.get("error_class") or "Exception")
            span.set_status(Status(StatusCode.ERROR, info.get("error_message") or None))
        span.end(end_time=int(slo["endTime"] * 1e9))

    def attributes(self, slo: dict[str, Any], operation: str) -> dict[str, Any]:
        provider = slo.get("custom_llm_provider") or "unknown"
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": _PROVIDER_NAMES.get(provider, provider),
            "gen_ai.request.model": slo["model"],
            "gen_ai.usage.input_tokens": slo["prompt_tokens"],
            "gen_ai.usage.output_tokens": slo["completion_tokens"],
            "lmgate.call_id": slo["litellm_call_id"],
            "lmgate.trace_id": slo["trace_id"],
            "lmgate.cache_hit": bool(slo.get("cache_hit")),
        }
        for param, name in _REQUEST_ATTRIBUTES.items():
            value = (slo.get("model_parameters") or {}).get(param)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[name] = value
        stop = (slo.get("model_parameters") or {}).get("stop")
        if stop:
            attrs["gen_ai.request.stop_sequences"] = (
                [stop] if isinstance(stop, str) else [str(s) for s in stop]
            )
        response = slo.get("response") or {}
        if response.get("id"):
            attrs["gen_ai.response.id"] = response["id"]
        if slo.get("response_model"):
            attrs["gen_ai.response.model"] = slo["response_model"]
        reasons = [c.get("finish_reason") for c in response.get("choices") or [] if c.get("finish_reason")]
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
        if slo.get("api_base"):
            from urllib.parse import urlsplit

            parts = urlsplit(slo["api_base"])
            if parts.hostname:
                attrs["server.address"] = parts.hostname
            if parts.port:
                attrs["server.port"] = parts.port
        if slo.get("response_cost") is not None:
            attrs["lmgate.response_cost_usd"] = slo["response_cost"]
        if slo.get("stream_status"):
            attrs["lmgate.stream_status"] = slo["stream_status"]
        if self.capture_content and not self.turn_off_message_logging:
            attrs["gen_ai.input.messages"] = orjson.dumps(slo.get("messages")).decode()
            outputs = [c.get("message") for c in response.get("choices") or []]
            attrs["gen_ai.output.messages"] = orjson.dumps(outputs).decode()
        return attrs

    def close(self, timeout: float | None = None) -> bool:
        """Flush; and shut down the provider when this logger made it."""
        done = self.flush(timeout)
        if self.owns_provider and not self._closed:
            self._closed = True
            self.tracer_provider.shutdown()
        return done

    def flush(self, timeout: float | None = None) -> bool:
        if self._closed:
            return True
        provider = self.tracer_provider
        if provider is None:
            if self._tracer is None:
                return True
            from opentelemetry import trace

            provider = trace.get_tracer_provider()
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is None:
            return True
        millis = 30_000 if timeout is None else max(0, int(timeout * 1000))
        return bool(force_flush(millis))


LANGFUSE_NAMES = ("langfuse", "langfuse_otel")
DEFAULT_LANGFUSE_HOST = "https://cloud.langfuse.com"
LANGFUSE_TRACES_PATH = "/api/public/otel/v1/traces"


def langfuse_logger(
    environ: Any = None, *, capture_content: bool = True, exporter_options: dict[str, Any] | None = None
) -> OpenTelemetryLogger:
    """Spans to Langfuse's OTLP/HTTP endpoint, ``{LANGFUSE_HOST}/api/public/otel/v1/traces``, with
    Basic auth from ``LANGFUSE_PUBLIC_KEY`` / ``LANGFUSE_SECRET_KEY`` (``LANGFUSE_OTEL_HOST`` wins
    over ``LANGFUSE_HOST``; the default is Langfuse Cloud). Its own TracerProvider with a batch span
    processor: the global provider (and ``otel``) stays the application's. Prompts and answers are
    recorded, as the reference's Langfuse logger does, unless message logging is turned off."""
    import base64
    import os

    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from .._secrets import remember_secret
    from ._env import LoggerConfigError

    env = os.environ if environ is None else environ
    public, secret = env.get("LANGFUSE_PUBLIC_KEY"), env.get("LANGFUSE_SECRET_KEY")
    if not public or not secret:
        raise LoggerConfigError(
            "langfuse: set LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY (the project's API keys)"
        )
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise LoggerConfigError(
            "langfuse: needs the OTLP/HTTP exporter: pip install 'lmgate[otel]' "
            "(opentelemetry-exporter-otlp-proto-http)"
        ) from None
    host = (env.get("LANGFUSE_OTEL_HOST") or env.get("LANGFUSE_HOST") or DEFAULT_LANGFUSE_HOST).rstrip("/")
    token = base64.b64encode(f"{public}:{secret}".encode()).decode()
    remember_secret(secret)
    remember_secret(token)
    exporter = OTLPSpanExporter(
        endpoint=host + LANGFUSE_TRACES_PATH,
        headers={"Authorization": f"Basic {token}"},
        **(exporter_options or {}),
    )
    provider = TracerProvider(
        resource=Resource.create({"service.name": env.get("OTEL_SERVICE_NAME") or "lmgate"}),
        shutdown_on_exit=False,
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return OpenTelemetryLogger(tracer_provider=provider, capture_content=capture_content, owns_provider=True)


def logger_for_name(name: str, settings: Settings | None = None) -> OpenTelemetryLogger | None:
    """``"otel"`` / ``"opentelemetry"`` in a callback list: a logger on the global TracerProvider,
    configured by ``callback_settings[name]`` of ``settings`` (default: the module's);
    ``"langfuse"`` / ``"langfuse_otel"``: ``langfuse_logger()``."""
    if name in LANGFUSE_NAMES:
        return langfuse_logger()
    if name not in NAMES:
        return None
    from ..settings import DEFAULT

    entry = ((settings or DEFAULT).callback_settings or {}).get(name) or {}
    capture = bool(entry.get("message_logging", entry.get("capture_content", False)))
    return OpenTelemetryLogger(capture_content=capture)


__all__ = ["OpenTelemetryLogger", "langfuse_logger", "logger_for_name"]
