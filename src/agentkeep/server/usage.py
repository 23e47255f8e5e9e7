"""`GET /v1/usage`: the caller's spend today and this month, per budget the cap and what remains, and
the last 24 hours hour by hour (the console's chart)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from agentkeep.api_models import ERROR_RESPONSES
from agentkeep.budget import Budget
from agentkeep.budget.prices import to_usd
from agentkeep.budget.records import SESSION, USER_DAY, CounterState, utc_day
from agentkeep.errors import Unauthorized
from agentkeep.runtime import check_session_id
from agentkeep.server.routes import current_user
from agentkeep.server.state import AppState, app_state
from agentkeep.stores.reports import HOUR_S, hour_start

__all__ = ["caller_is_admin", "router"]

router = APIRouter()
_HOURS = 24


class BudgetOut(BaseModel):
    """One budget: its cap, and for the caller's day (or the named session) what it leaves."""

    cap_usd: float
    session_id: str | None = None
    spent_usd: float | None = None
    held_usd: float | None = Field(None, description="Reserved by model requests in flight.")
    remaining_usd: float | None = None
    closed: bool | None = Field(None, description="Closed after a provider billed more than was reserved.")


class TodayOut(BaseModel):
    date: str = Field(description="The UTC day, YYYY-MM-DD.")
    spent_usd: float
    held_usd: float


class MonthOut(BaseModel):
    month: str = Field(description="The UTC month, YYYY-MM.")
    spent_usd: float


class HourOut(BaseModel):
    hour: str = Field(description="The start of the UTC hour, YYYY-MM-DDTHH:00:00Z.")
    cost_usd: float = Field(description="Settled spend in the hour.")
    runs: int = Field(description="Runs started in the hour.")
    tokens: int = Field(description="Input and output tokens of the hour's model requests.")


class UsageOut(BaseModel):
    user_id: str
    today: TodayOut
    month: MonthOut
    budgets: dict[str, BudgetOut] = Field(description="Configured budgets: user_daily, session, run.")
    hourly: list[HourOut] = Field(description="The last 24 hours, oldest first; the last is the current hour.")


async def caller_is_admin(request: Request, _caller: Annotated[str, Depends(current_user)]) -> bool:
    """Whether the caller holds an admin key; authenticating (`current_user`) sets `request.state.is_admin`."""
    return bool(getattr(request.state, "is_admin", False))


@router.get(
    "/v1/usage",
    response_model=UsageOut,
    response_model_exclude_none=True,
    responses=ERROR_RESPONSES,
    summary="Spend today and this month, and what the budgets leave",
)
async def get_usage(
    state: Annotated[AppState, Depends(app_state)],
    caller: Annotated[str, Depends(current_user)],
    is_admin: Annotated[bool, Depends(caller_is_admin)],
    user_id: Annotated[str | None, Query(max_length=128, description="Another user's usage (admin keys only).")] = None,
    session_id: Annotated[str | None, Query(description="Also report this session's budget.")] = None,
) -> dict[str, Any]:
    if user_id is not None and user_id != caller and not is_admin:
        raise Unauthorized("user_id needs an admin key; without it you see your own usage")
    user = user_id or caller
    budget = _budget(state)
    ledger = budget.ledger
    day = utc_day()
    # Only reads: room held by processes that died is given back by the budget's reclaimer.
    spent_today, spent_month = await ledger.user_totals(user, day)
    today = await ledger.counter(USER_DAY, user, day)
    caps = budget.caps
    budgets: dict[str, Any] = {}
    if caps.user_daily is not None:
        budgets["user_daily"] = _budget_view(caps.user_daily, today)
    if caps.session is not None:
        if session_id is not None:
            check_session_id(session_id)
            budgets["session"] = {
                "session_id": session_id,
                **_budget_view(caps.session, await ledger.counter(SESSION, user, session_id)),
            }
        else:
            budgets["session"] = {"cap_usd": to_usd(caps.session)}
    if caps.run is not None:
        budgets["run"] = {"cap_usd": to_usd(caps.run)}
    return {
        "user_id": user,
        "today": {"date": day, "spent_usd": to_usd(spent_today), "held_usd": to_usd(today.held_nano)},
        "month": {"month": day[:7], "spent_usd": to_usd(spent_month)},
        "budgets": budgets,
        "hourly": await _hourly(state, user),
    }


async def _hourly(state: AppState, user: str) -> list[dict[str, Any]]:
    since = hour_start() - (_HOURS - 1) * HOUR_S
    return [
        {
            "hour": datetime.fromtimestamp(hour.hour, UTC).strftime("%Y-%m-%dT%H:00:00Z"),
            "cost_usd": to_usd(hour.cost_nano),
            "runs": hour.runs,
            "tokens": hour.tokens,
        }
        for hour in await state.rt.store.usage_by_hour(user, since, _HOURS)
    ]


def _budget_view(cap: int, counter: CounterState) -> dict[str, Any]:
    remaining = 0 if counter.closed else max(0, cap - counter.spent_nano - counter.held_nano)
    return {
        "cap_usd": to_usd(cap),
        "spent_usd": to_usd(counter.spent_nano),
        "held_usd": to_usd(counter.held_nano),
        "remaining_usd": to_usd(remaining),
        "closed": counter.closed,
    }


def _budget(state: AppState) -> Budget:
    budget = state.budget
    if budget is None:
        raise RuntimeError("the budget is not started")
    return budget
