"""Traces: OpenTelemetry through Pydantic AI's own instrumentation, only when asked for.

With the `otel` extra installed and `OTEL_EXPORTER_OTLP_ENDPOINT` (or `_TRACES_ENDPOINT`) set, every
run exports a trace over OTLP/HTTP: an `invoke_agent` span with `chat <model>` spans for model
requests and `execute_tool <name>` spans for tools, carrying the GenAI semantic-convention
attributes (`gen_ai.request.model`, `gen_ai.usage.input_tokens`, `gen_ai.tool.name`, …). The
exporter reads the standard `OTEL_*` variables itself (headers, timeouts, `OTEL_SERVICE_NAME`).

Without the endpoint nothing is imported and agents stay uninstrumented, so tracing costs nothing.
Prompts and completions go into spans only at `AGENTKEEP_LOG_LEVEL=debug`, the same rule as logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from agentkeep import __version__
from agentkeep.config import Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

__all__ = ["Tracing", "configure_tracing"]

log = structlog.get_logger("agentkeep.observability")


class Tracing:
    """The tracer provider agentkeep installed; `shutdown()` flushes the spans still buffered."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider

    def shutdown(self) -> None:
        self.provider.shutdown()


def configure_tracing(settings: Settings) -> Tracing | None:
    """Instrument every Pydantic AI agent when an OTLP endpoint is configured; None otherwise."""
    if not settings.otel_endpoint:
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("tracing.disabled", reason="OTEL_EXPORTER_OTLP_ENDPOINT is set but the otel extra is not installed")
        return None
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings

    resource = Resource.create({SERVICE_VERSION: __version__})
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "agentkeep"}))  # OTEL_SERVICE_NAME, when set, wins
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    Agent.instrument_all(
        InstrumentationSettings(
            tracer_provider=provider,
            include_content=settings.log_level == "debug",
            include_model_request_parameters=False,  # every tool's full schema on every span: too heavy to ship
        )
    )
    log.info("tracing.enabled", service=str(resource.attributes.get(SERVICE_NAME)))
    return Tracing(provider)
