"""Seeing what agentkeep does: logs, metrics, the stats snapshot, traces.

    logs.py       structlog pipeline, redaction                 configure_logging()
    metrics.py    the Prometheus registry and contract metrics  metrics.RUNS, metrics.exposition(), …
    stats.py      the /v1/stats snapshot over recent runs       RunStats
    telemetry.py  the Hook that feeds all three for each run    Telemetry
    tracing.py    OpenTelemetry via Pydantic AI, when asked     configure_tracing()

A low layer: it knows hooks, config and errors, never the runtime, the server or the stores.
"""

from agentkeep.observability import metrics
from agentkeep.observability.logs import configure_logging
from agentkeep.observability.stats import RunStats
from agentkeep.observability.telemetry import Telemetry
from agentkeep.observability.tracing import Tracing, configure_tracing

__all__ = ["RunStats", "Telemetry", "Tracing", "configure_logging", "configure_tracing", "metrics"]
