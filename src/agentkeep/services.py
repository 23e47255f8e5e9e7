"""The composition root: every part one agentkeep process runs agents with, built in one place.

    build_services(settings, agents, me=..., dequeue=...)   on the event loop the parts will use:
        store        open the database (migrating it on a deployment's first start)
        tracing      OpenTelemetry, when AGENTKEEP_OTEL_ENDPOINT asks for it
        keys         the API keys, on the store
        budget       prices, ledger and caps, on the store's engine, reporting to the metrics
        resilience   breakers and retries, reporting to the metrics
        runtime      the run pipeline, with the hooks in their order (below)
        lifespans    each AgentApp's `lifespan()`, entered once; what it yields is its runs'
                     `RunInfo.resources`. One that raises stops the start (`StartupFailed`)
        durable      the durable engine over the runtime; not started (the entry point decides when)
        approvals    runs waiting for tool decisions: resume, cancel, and the timer of their deadline
    Services.aclose()   drain the runs, stop the durable engine, exit the lifespans, then close the rest

The hook order around every model request and tool call, outermost first:

    Telemetry → RunLimits → Resilience → Budget → extra_hooks → StepRecorder

Telemetry times, and sees, everything the others do; the run's caps on tokens and tool calls
refuse before anything is sent or priced (only when AGENTKEEP_MAX_TOKENS_PER_RUN or
AGENTKEEP_MAX_TOOL_CALLS_PER_RUN is set); the breaker refuses a run on an open model before the
budget prices anything; the step recorder, innermost, times the request as sent.

Every entry point builds its process from here: `agentkeep serve` and `agentkeep worker` (the app's
lifespan, `server.create_app`), a Lambda container (`serverless.container`). HTTP-only parts, the
per-caller rate limit and the authenticator, stay with the app. A layer above durable, runtime,
stores, budget, resilience and observability, and below server and serverless.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field

import structlog

from agentkeep.approvals import Approvals, Expiry
from agentkeep.budget import Budget, BudgetMetrics, budget_from_settings
from agentkeep.config import Settings
from agentkeep.durable import DurableEngine, Identity, identity
from agentkeep.durable.schedules import check_schedules
from agentkeep.errors import StartupFailed
from agentkeep.hooks import Hook
from agentkeep.loader import AgentMap
from agentkeep.observability import Telemetry, Tracing, configure_tracing, metrics
from agentkeep.observability.steps import StepRecorder
from agentkeep.resilience import CircuitState, Resilience
from agentkeep.resilience.limits import RunLimits
from agentkeep.runtime import Runtime
from agentkeep.stores import open_store
from agentkeep.stores.keys import KeyStore
from agentkeep.stores.sql import SQLStore
from agentkeep.tools.files import check_workspace

__all__ = ["Services", "build_services"]

log = structlog.get_logger("agentkeep.services")

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
    approvals: Approvals  # runs waiting for tool decisions
    expiry: Expiry  # closes those past AGENTKEEP_APPROVAL_TIMEOUT_S, in every process
    tracing: Tracing | None  # None unless AGENTKEEP_OTEL_ENDPOINT is set
    lifespans: AsyncExitStack = field(default_factory=AsyncExitStack)  # the AgentApps' lifespans, entered

    async def aclose(self) -> None:
        """Let the runs in flight finish (up to AGENTKEEP_DRAIN_TIMEOUT_S), stop the durable engine
        (a run still executing stays unfinished in DBOS and the next process resumes it), exit the
        AgentApps' lifespans, then close the budget, the breakers' storage, the database and
        tracing, which flushes its last spans."""
        self.runtime.draining = True
        await self.runtime.wait_idle(self.settings.drain_timeout_s)
        await self.durable.stop()
        await self.expiry.stop()
        try:
            await self.lifespans.aclose()
        except Exception as exc:  # the user's cleanup failing must not keep the database open
            log.error("app.lifespan_exit_failed", exc_info=exc)
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
    storage without its client installed; `StartupFailed` for an AgentApp's lifespan that raised.
    """
    check_schedules(settings.schedules, agents)
    check_workspace(settings)
    store = await open_store(settings.database_url.get_secret_value())
    tracing: Tracing | None = None
    lifespans = AsyncExitStack()
    try:
        tracing = configure_tracing(settings)
        telemetry, steps = Telemetry(settings), StepRecorder()
        resilience = _resilience(settings)
        budget = budget_from_settings(settings, store.engine, _budget_metrics())
        hooks = [*([telemetry] if settings.telemetry else []), *_limits(settings), resilience, budget]
        runtime = Runtime(settings, agents, store, hooks=[*hooks, *extra_hooks, steps])
        await _enter_lifespans(runtime, lifespans)
        me = me or identity(settings, source=None, port=0)
        durable = DurableEngine(settings, runtime, me, dequeue=dequeue)
        approvals = Approvals(runtime, announce=durable.announce)
        expiry = Expiry(approvals, settings.approval_timeout_s)
    except BaseException:
        await lifespans.aclose()
        await store.close()
        if tracing is not None:
            tracing.shutdown()
        raise
    budget.start()  # its reclaimer of dead processes' reservations: in every process, engine or not
    expiry.start()  # likewise: a process that serves only synchronous runs never starts the engine
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
        approvals=approvals,
        expiry=expiry,
        tracing=tracing,
        lifespans=lifespans,
    )


async def _enter_lifespans(runtime: Runtime, stack: AsyncExitStack) -> None:
    """Enter each AgentApp's lifespan once (an app served under two names shares it) and keep what
    it yields for its runs' `RunInfo.resources`."""
    entered: dict[int, object] = {}
    for name, app in runtime.served.apps.items():
        if app.lifespan is None:
            continue
        if id(app) not in entered:
            try:
                entered[id(app)] = await stack.enter_async_context(app.lifespan())
            except Exception as exc:
                # No traceback: a start-up failure is one line (the CLI's); the log says what it was.
                log.error("app.lifespan_failed", agent=name, exc_type=type(exc).__name__, error=str(exc))
                why = f"the lifespan of agent {name!r} failed at startup ({type(exc).__name__})"
                raise StartupFailed(why) from None
        runtime.served.resources[name] = entered[id(app)]


def _limits(settings: Settings) -> list[Hook]:
    """The run's caps on tokens and tool calls, when either is set (`resilience.limits`)."""
    if settings.max_tokens_per_run is None and settings.max_tool_calls_per_run is None:
        return []
    return [RunLimits(max_tokens=settings.max_tokens_per_run, max_tool_calls=settings.max_tool_calls_per_run)]


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
