"""The OpenTelemetry logger: one finished span per call with the GenAI semantic-convention attributes."""

from __future__ import annotations

import pytest
from fakes import FakeProvider
from helpers import MESSAGES, call, flush
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import lmgate
from lmgate.loggers import OpenTelemetryLogger


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lmgate.callbacks = [OpenTelemetryLogger(tracer_provider=provider)]
    yield exporter
    provider.shutdown()


@pytest.mark.parametrize(("mode", "stream"), [("sync", False), ("sync", True), ("async", False), ("async", True)])
def test_one_span_per_call_with_genai_attributes(spans, mode, stream):
    """Each call, sync or async, streamed or not, is one CLIENT span named 'chat <model>' covering the call."""
    call(mode, stream, mock_response="hello world", temperature=0.3, max_tokens=50)
    flush()
    (span,) = spans.get_finished_spans()
    assert span.name == "chat gpt-4o-mini" and span.kind == SpanKind.CLIENT
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == "gpt-4o-mini"
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (10, 20)
    assert a["gen_ai.request.temperature"] == 0.3 and a["gen_ai.request.max_tokens"] == 50
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("stop",)
    assert a["lmgate.response_cost_usd"] == pytest.approx(1.35e-05)
    assert "gen_ai.input.messages" not in a  # content is opt-in
    assert span.start_time < span.end_time and span.status.status_code != StatusCode.ERROR


def test_failure_span_has_error_type_and_status(spans):
    """A failed call's span has error.type and an ERROR status with the message."""
    with pytest.raises(lmgate.RateLimitError):
        call("sync", False, mock_response=lmgate.RateLimitError("slow down"))
    flush()
    (span,) = spans.get_finished_spans()
    assert span.attributes["error.type"] == "RateLimitError"
    assert span.status.status_code == StatusCode.ERROR and "slow down" in span.status.description


def test_embeddings_and_server_address(spans, fake_provider: FakeProvider):
    """An embedding call over HTTP is an 'embeddings' span with the server address and port."""
    lmgate.embedding(model="openai/text-embedding-3-small", input=["a"], api_base=fake_provider.base_url + "/v1", api_key="sk-x")
    flush()
    (span,) = spans.get_finished_spans()
    assert span.name == "embeddings text-embedding-3-small"
    assert span.attributes["server.address"] == "127.0.0.1" and span.attributes["server.port"] == fake_provider.port


def test_content_capture_is_opt_in():
    """capture_content=True records the prompt and answer as JSON attributes."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lmgate.callbacks = [OpenTelemetryLogger(tracer_provider=provider, capture_content=True)]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="the answer")
    flush()
    (span,) = exporter.get_finished_spans()
    assert '"content":"Hi"' in span.attributes["gen_ai.input.messages"]
    assert "the answer" in span.attributes["gen_ai.output.messages"]


def test_otel_by_name_uses_the_global_provider():
    """'otel' in lmgate.callbacks resolves to an OpenTelemetryLogger."""
    lmgate.callbacks = ["otel"]
    lmgate.completion(model="gpt-4o-mini", messages=MESSAGES, mock_response="x")
    flush()
    from lmgate._callbacks.registry import resolve_callback

    assert isinstance(resolve_callback("otel"), OpenTelemetryLogger)
