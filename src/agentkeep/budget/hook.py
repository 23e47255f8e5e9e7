"""The `Budget` hook: refuses, reserves, settles and records, around every model request and priced tool.

    before_run           402 price_unknown when a budget applies and the model has no price;
                         402 budget_exceeded when the run's session or user is already spent
    wrap_model_request   reserve the request's worst case (input bound + max_tokens at the model's
                         prices) against every cap → send → settle the real cost, release the rest
    wrap_tool_call       the same for a tool that declares a fixed cost (`metadata={"cost_usd": …}`)

Without any cap configured, nothing is reserved or refused, but every request still lands in the
ledger, so usage and a cap configured later start from the truth.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import structlog
from pydantic_ai.messages import ModelResponse
from pydantic_ai.settings import ModelSettings

from agentkeep.budget.alerts import AlertDispatcher
from agentkeep.budget.ledger import Ledger
from agentkeep.budget.prices import Price, Pricer, to_nano, to_usd
from agentkeep.budget.reclaimer import Reclaimer
from agentkeep.budget.records import NO_CAPS, SESSION, USER_DAY, Caps, Entry, Refused, Reservation, utc_day
from agentkeep.budget.tokens import InputBound
from agentkeep.errors import BudgetExceeded, PriceUnknown
from agentkeep.hooks import Hook, ModelCall, ModelProceed, RunState, ToolCall, ToolProceed

__all__ = ["Budget", "BudgetMetrics"]

log = structlog.get_logger("agentkeep.budget")

_SCOPE_LABEL = {SESSION: "session", USER_DAY: "user"}
_SCOPE_NAME = {SESSION: "session's budget", USER_DAY: "user's daily budget"}


def _ignore(*_: Any) -> None:
    return None


@dataclass
class BudgetMetrics:
    """Where the hook reports to metrics. The server wires Prometheus; the default reports nowhere."""

    cost: Callable[[str, float], None] = _ignore  # (model, usd) per priced request
    rejection: Callable[[str], None] = _ignore  # scope: run, session, user, or price
    overrun: Callable[[str], None] = _ignore  # scope: run, session, user


@dataclass
class _RunBudget:
    """The budget's view of one run: its spend and holds, for the run cap and the run's `cost_usd`."""

    spent_nano: int = 0
    held_nano: int = 0
    unpriced: bool = False
    closed: bool = False
    bound: InputBound = field(default_factory=InputBound)


class Budget(Hook):
    """Prices, the ledger and hard caps around model requests and priced tool calls."""

    def __init__(
        self,
        ledger: Ledger,
        pricer: Pricer,
        caps: Caps = NO_CAPS,
        *,
        thresholds: list[int] | None = None,
        alerts: AlertDispatcher | None = None,
        max_tokens: int = 4096,
        metrics: BudgetMetrics | None = None,
    ) -> None:
        self.ledger = ledger
        self.pricer = pricer
        self.caps = caps
        self.thresholds = thresholds or []
        self.alerts = alerts
        self.max_tokens = max_tokens
        self.metrics = metrics or BudgetMetrics()
        self.reclaimer = Reclaimer(ledger)

    def start(self) -> None:
        """Once the event loop runs: start reclaiming dead processes' reservations (`Reclaimer`)."""
        self.reclaimer.start()

    async def aclose(self, timeout: float) -> None:
        """At shutdown: give alert deliveries in flight up to `timeout` to finish, then close the ledger."""
        await self.reclaimer.stop()
        if self.alerts is not None:
            await self.alerts.drain(timeout)
        self.ledger.close()

    # --- the run ---

    async def before_run(self, run: RunState) -> None:
        state = _RunBudget(spent_nano=await self.ledger.run_total(run.run_id))
        run.extras["budget"] = state
        run.cost_usd = to_usd(state.spent_nano)
        if not self.caps.any:
            return
        model = run.model
        if model is not None and self.pricer.price(model) is None:
            raise self._price_unknown(_model_name(model))
        if self.caps.run is not None and state.spent_nano >= self.caps.run:
            raise self._refused("run", f"the run's budget of {_usd(self.caps.run)} is spent")
        for scope, ref in ((SESSION, run.session_id), (USER_DAY, None)):
            cap = self.caps.of(scope)
            if cap is None:
                continue
            counter = await self.ledger.counter(scope, run.user_id, ref or utc_day())
            # Exhausted means settled spend; room merely held by runs in flight may yet come back.
            if counter.closed:
                raise self._refused(
                    _SCOPE_LABEL[scope],
                    f"the {_SCOPE_NAME[scope]} was closed: a provider billed more than was reserved",
                )
            if counter.spent_nano >= cap:
                raise self._refused(_SCOPE_LABEL[scope], _spent_message(scope, cap, counter.spent_nano))

    # --- model requests ---

    async def wrap_model_request(self, run: RunState, call: ModelCall, proceed: ModelProceed) -> ModelResponse:
        state = _state(run)
        price = self.pricer.price(call.model)
        if not self.caps.any:
            answer = await proceed()
            await self._record(run, state, call, price, answer, None, 0)
            return answer
        if price is None:
            raise self._price_unknown(call.model_name)
        settings = dict(call.context.model_settings or {})
        max_tokens = settings.get("max_tokens")
        if not isinstance(max_tokens, int):
            # Without a ceiling on the output there is no worst case to reserve.
            max_tokens = settings["max_tokens"] = self.max_tokens
            call.context.model_settings = cast(ModelSettings, settings)
        input_bound = state.bound.tokens(call.messages, call.context.model_request_parameters)
        amount = price.worst_nano(input_bound, max_tokens)
        reservation = await self._reserve(run, state, amount)
        response: ModelResponse = await self._holding(reservation, state, amount, proceed)
        await self._record(run, state, call, price, response, reservation, amount)
        return response

    async def _record(
        self,
        run: RunState,
        state: _RunBudget,
        call: ModelCall,
        price: Price | None,
        response: ModelResponse,
        reservation: Reservation | None,
        amount: int,
    ) -> None:
        if price is not None and response.model_name and response.model_name != call.model_name:
            price = self.pricer.price_response(call.model, response.model_name)
        cost = None if price is None else price.cost_nano(response.usage, response.provider_details)
        entry = Entry(
            run.run_id,
            run.user_id,
            run.session_id,
            run.agent,
            "model",
            call.model_name,
            response.usage.input_tokens,
            response.usage.output_tokens,
            cost,
        )
        await self._settle(run, state, entry, reservation, amount)
        if cost is not None:
            self.metrics.cost(call.model_name, to_usd(cost))

    # --- tools ---

    async def wrap_tool_call(self, run: RunState, call: ToolCall, proceed: ToolProceed) -> Any:
        fixed = (call.metadata or {}).get("cost_usd")
        if not isinstance(fixed, int | float) or isinstance(fixed, bool) or fixed <= 0:
            return await proceed()
        state = _state(run)
        amount = to_nano(fixed)
        reservation = await self._reserve(run, state, amount) if self.caps.any else None
        result = await self._holding(reservation, state, amount if reservation else 0, proceed)
        entry = Entry(run.run_id, run.user_id, run.session_id, run.agent, "tool", call.name, 0, 0, amount)
        await self._settle(run, state, entry, reservation, amount if reservation else 0)
        return result

    # --- reserve, hold, settle ---

    async def _reserve(self, run: RunState, state: _RunBudget, amount: int) -> Reservation:
        run_cap = self.caps.run
        if state.closed:
            raise self._refused("run", "the run was stopped: its provider billed more than was reserved")
        if run_cap is not None and state.spent_nano + state.held_nano + amount > run_cap:
            raise self._refused(
                "run", f"the run's budget of {_usd(run_cap)} cannot cover the next request (up to {_usd(amount)})"
            )
        try:
            reservation = await self._try_reserve(run, amount)
        except Refused as refused:
            raise self._refused(
                _SCOPE_LABEL[refused.scope],
                f"the {_SCOPE_NAME[refused.scope]} of {_usd(refused.cap)} cannot cover the next request "
                f"(up to {_usd(amount)}; {_usd(refused.state.spent_nano)} spent, "
                f"{_usd(refused.state.held_nano)} held by requests in flight)",
            ) from None
        state.held_nano += amount
        return reservation

    async def _try_reserve(self, run: RunState, amount: int) -> Reservation:
        try:
            return await self.ledger.reserve(run.user_id, run.session_id, run.run_id, amount, self.caps)
        except Refused:
            # Room held by a process that died is given back only when someone needs it: now.
            if not await self.ledger.reclaim_expired():
                raise
        return await self.ledger.reserve(run.user_id, run.session_id, run.run_id, amount, self.caps)

    async def _holding(
        self, reservation: Reservation | None, state: _RunBudget, amount: int, proceed: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run `proceed` while keeping `reservation` alive; give it back if `proceed` fails."""
        if reservation is None:
            return await proceed()
        keeper = _KeepAlive(self.ledger, reservation)
        try:
            return await proceed()
        except BaseException:
            state.held_nano -= amount
            await self.ledger.release(reservation)  # ends even if this run is cancelled
            raise
        finally:
            keeper.stop()

    async def _settle(
        self, run: RunState, state: _RunBudget, entry: Entry, reservation: Reservation | None, amount: int
    ) -> None:
        close: list[str] = []
        if reservation is not None and entry.cost_nano is not None and entry.cost_nano > amount:
            close = self._overrun(run, state, entry, amount)
        state.held_nano -= amount
        state.spent_nano += entry.cost_nano or 0
        state.unpriced = state.unpriced or entry.cost_nano is None
        run.cost_usd = None if state.unpriced else to_usd(state.spent_nano)
        settled = await self.ledger.settle(entry, reservation, close=close, caps=self.caps, thresholds=self.thresholds)
        if reservation is not None and not settled.held_released:
            log.warning("budget_reservation_expired_in_flight", run_id=run.run_id, reserved=to_usd(amount))
        if settled.alerts and self.alerts is not None:
            self.alerts.notify(settled.alerts)

    def _overrun(self, run: RunState, state: _RunBudget, entry: Entry, amount: int) -> list[str]:
        """The provider billed more than the worst case: close every capped scope, whose cap can no
        longer be promised, and say so."""
        assert entry.cost_nano is not None
        scopes = [s for s in (SESSION, USER_DAY) if self.caps.of(s) is not None]
        labels = [_SCOPE_LABEL[s] for s in scopes]
        if self.caps.run is not None:
            state.closed = True
            labels.append("run")
        log.error(
            "budget_overrun",
            run_id=run.run_id,
            model=entry.model,
            reserved=to_usd(amount),
            billed=to_usd(entry.cost_nano),
            closed=labels,
        )
        for label in labels:
            self.metrics.overrun(label)
        return scopes

    # --- refusals ---

    def _refused(self, scope: str, why: str) -> BudgetExceeded:
        self.metrics.rejection(scope)
        return BudgetExceeded(f"budget exceeded: {why}")

    def _price_unknown(self, model: str) -> PriceUnknown:
        self.metrics.rejection("price")
        return PriceUnknown(
            f"model {model!r} has no known price and a budget applies; "
            "give it one in AGENTKEEP_PRICES_FILE (USD per million input and output tokens)"
        )


class _KeepAlive:
    """Renews a reservation every third of its TTL while its request runs, so only a dead process's
    reservations expire. A timer, not a task: most requests end before the first renewal is due."""

    def __init__(self, ledger: Ledger, reservation: Reservation) -> None:
        self._ledger = ledger
        self._reservation = reservation
        self._loop = asyncio.get_running_loop()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._timer = self._loop.call_later(ledger.ttl_s / 3, self._beat)

    def _beat(self) -> None:
        self._task = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        try:
            if not await self._ledger.renew(self._reservation):
                log.warning("budget_reservation_lost", reservation=self._reservation.id)
                return
        except Exception as exc:  # the database may be back by the next beat
            log.warning("budget_reservation_renew_failed", error=type(exc).__name__)
        if not self._stopped:
            self._timer = self._loop.call_later(self._ledger.ttl_s / 3, self._beat)

    def stop(self) -> None:
        self._stopped = True
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


def _state(run: RunState) -> _RunBudget:
    state = run.extras.get("budget")
    if not isinstance(state, _RunBudget):  # a run whose before_run another hook refused first
        state = run.extras["budget"] = _RunBudget()
    return state


def _model_name(model: Any) -> str:
    return model if isinstance(model, str) else str(getattr(model, "model_name", model))


def _usd(nano: int) -> str:
    return "$" + f"{to_usd(nano):.6f}".rstrip("0").rstrip(".")


def _spent_message(scope: str, cap: int, spent: int) -> str:
    return f"the {_SCOPE_NAME[scope]} of {_usd(cap)} is spent ({_usd(spent)} so far)"
