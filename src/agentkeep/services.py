"""The composition root: every part one agentkeep process runs agents with, built in one place.

    build_services(settings, agents, me=..., dequeue=...)   on the event loop the parts will use:
        store        open the database (migrating it on a deployment's first start)
        tracing      OpenTelemetry, when AGENTKEEP_OTEL_ENDPOINT asks for it
        keys         the API keys, on the store
        budget       prices, ledger and caps, on the store's engine, reporting to the metrics
        resilience   breakers and retries, reporting to the metrics
        runtime      the run pipeline, with the hooks in their order (below)
        durable      the durable engine over the runtime; not started (the entry point decides when)
    Services.aclose()   drain the runs, stop the durable engine, then close the rest

The hook order around every model request and tool call, outermost first:

    Telemetry → Resilience → Budget → extra_hooks → StepRecorder

Telemetry times, and sees, everything the others do; the breaker refuses a run on an open model
before the budget prices anything; the step recorder, innermost, times the request as sent.

Every entry point builds its process from here: `agentkeep serve` and `agentkeep worker` (the app's
lifespan, `server.create_app`), a Lambda container (`serverless.container`). HTTP-only parts, the
per-caller rate limit and the authenticator, stay with the app. A layer above durable, runtime,
stores, budget, resilience and observability, and below server and serverless.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agentkeep.budget import Budget, BudgetMetrics, budget_from_settings
from agentkeep.config import Settings
from agentkeep.durable import DurableEngine, Identity, identity
from agentkeep.durable.schedules import check_schedules
from agentkeep.hooks import Hook
from agentkeep.loader import AgentMap
from agentkeep.observability import Telemetry, Tracing, configure_tracing, metrics
from agentkeep.observability.steps import StepRecorder
from agentkeep.resilience import CircuitState, Resilience
from agentkeep.runtime import Runtime
from agentkeep.stores import open_store
from agentkeep.stores.keys import KeyStore
from agentkeep.stores.sql import SQLStore
from agentkeep.tools.files import check_workspace

__all__ = ["Services", "build_services"]

# How long budget alerts in flight get to be delivered at shutdown.
_ALERT_DRAIN_S = 5.0


@dataclass
class Services:
    """One process's parts, built by `build_services`; `aclose()` shuts them down."""

    settings: Settings
    agents: AgentMap
    me: Identity  # this process to the durable engine: executor id and application version
    store: SQLStore
    keys: KeyStore  # API keys, for the HTTP authenticator
    telemetry: Telemetry  # logs, metrics and the /v1/stats snapshot; a hook unless AGENTKEEP_TELEMETRY=false
    steps: StepRecorder  # each run's model requests and tool calls, for GET /v1/runs/{id}/steps
    resilience: Resilience
    budget: Budget
    runtime: Runtime
    durable: DurableEngine
    tracing: Tracing | None  # None unless AGENTKEEP_OTEL_ENDPOINT is set

    async def aclose(self) -> None:
        """Let the runs in flight finish (up to AGENTKEEP_DRAIN_TIMEOUT_S), stop the durable engine
        (a run still executing stays unfinished in DBOS and the next process resumes it), then close
        the budget, the breakers' storage, the database and tracing, which flushes its last spans."""
        self.runtime.draining = True
        await self.runtime.wait_idle(self.settings.drain_timeout_s)
        await self.durable.stop()
        await self.budget.aclose(timeout=_ALERT_DRAIN_S)
        await self.resilience.close()
        await self.store.close()
        if self.tracing is not None:
            self.tracing.shutdown()


async def build_services(
    settings: Settings,
    agents: AgentMap,
    *,
    me: Identity | None = None,
    dequeue: bool = True,
    extra_hooks: Sequence[Hook] = (),
) -> Services:
    """Build a process's parts on the running event loop, which the database pool then belongs to.

    `me`: this process to the durable engine (default: this host, no source to version by);
    `dequeue=False`: the engine only queues and cancels background runs, another process executes
    them (`serve --no-worker`, a Lambda HTTP function); `extra_hooks` run inside the budget, outside
    the step recorder. Raises `ConfigError` for a schedule naming what does not exist, or object
    storage without its client installed.
    """
    check_schedules(settings.schedules, agents)
    check_workspace(settings)
    store = await open_store(settings.database_url.get_secret_value())
    tracing: Tracing | None = None
    try:
        tracing = configure_tracing(settings)
        telemetry, steps = Telemetry(settings), StepRecorder()
        resilience = _resilience(settings)
        budget = budget_from_settings(settings, store.engine, _budget_metrics())
        hooks = [*([telemetry] if settings.telemetry else []), resilience, budget, *extra_hooks, steps]
        runtime = Runtime(settings, agents, store, hooks=hooks)
        me = me or identity(settings, source=None, port=0)
        durable = DurableEngine(settings, runtime, me, dequeue=dequeue)
    except BaseException:
        await store.close()
        if tracing is not None:
            tracing.shutdown()
        raise
    budget.start()  # its reclaimer of dead processes' reservations: in every process, engine or not
    return Services(
        settings=settings,
        agents=agents,
        me=me,
        store=store,
        keys=KeyStore(store),
        telemetry=telemetry,
        steps=steps,
        resilience=resilience,
        budget=budget,
        runtime=runtime,
        durable=durable,
        tracing=tracing,
    )


# --- the budget and the breakers, reporting to the contract's metrics (neither package knows them) ---


def _resilience(settings: Settings) -> Resilience:
    """Breakers (shared through Redis when configured) and retries.

    agentkeep_circuit_state{model}                 every breaker state a request observes
    agentkeep_model_requests_total{model,outcome}  outcome="retried" for each attempt retried;
                                                   the Telemetry hook counts the final attempt
    """
    return Resilience.from_settings(settings, on_state=_circuit_state, on_retry=_retried)


def _circuit_state(model: str, state: CircuitState) -> None:
    metrics.CIRCUIT_STATE.labels(metrics.bounded("model", model)).set(int(state))


def _retried(model: str) -> None:
    metrics.MODEL_REQUESTS.labels(metrics.bounded("model", model), "retried").inc()


def _budget_metrics() -> BudgetMetrics:
    """The budget's reports: agentkeep_cost_usd_total, agentkeep_budget_rejections_total, overruns."""
    overruns = getattr(metrics, "BUDGET_OVERRUNS", None)

    def cost(model: str, usd: float) -> None:
        metrics.COST.labels(model=metrics.bounded("model", model)).inc(usd)

    def rejection(scope: str) -> None:
        metrics.BUDGET_REJECTIONS.labels(scope=scope).inc()

    def overrun(scope: str) -> None:
        if overruns is not None:
            overruns.labels(scope=scope).inc()

    return BudgetMetrics(cost=cost, rejection=rejection, overrun=overrun)
