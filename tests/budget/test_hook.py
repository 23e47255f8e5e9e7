"""The `Budget` hook in the real run pipeline, in process, with FunctionModel at the model boundary."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, Tool
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import RequestUsage

from agentkeep.budget import Budget, BudgetMetrics, Ledger, Pricer
from agentkeep.budget.prices import NANO, to_nano
from agentkeep.budget.records import SESSION, USER_DAY, Caps, utc_day
from agentkeep.config import Settings
from agentkeep.errors import RunFailed
from agentkeep.runtime import RunRequest, Runtime
from agentkeep.stores.sql import SQLStore

# $1 per million input tokens and $1,000 per million output tokens: 100 output tokens cost $0.10.
PRICES = {"priced": {"input": 1, "output": 1000}}


class Script:
    """A FunctionModel that answers from a list and remembers the settings of every request."""

    def __init__(self, *responses: ModelResponse) -> None:
        self.responses = list(responses)
        self.settings: list[dict[str, Any]] = []

    def __call__(self, messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        self.settings.append(dict(info.model_settings or {}))
        return self.responses.pop(0)


def _text(output_tokens: int = 100) -> ModelResponse:
    return ModelResponse(parts=[TextPart("answer")], usage=RequestUsage(input_tokens=10, output_tokens=output_tokens))


def _call(tool: str = "lookup") -> ModelResponse:
    return ModelResponse(parts=[ToolCallPart(tool, {})], usage=RequestUsage(input_tokens=10, output_tokens=100))


@pytest.fixture
async def store(sqlite_url: str) -> AsyncIterator[SQLStore]:
    opened = SQLStore(sqlite_url)
    await opened.open()
    yield opened
    await opened.close()


class Counting(BudgetMetrics):
    def __init__(self) -> None:
        self.rejections: list[str] = []
        self.overruns: list[str] = []
        self.costs: list[tuple[str, float]] = []
        super().__init__(
            cost=lambda model, usd: self.costs.append((model, usd)),
            rejection=self.rejections.append,
            overrun=self.overruns.append,
        )


def _runtime(
    store: SQLStore, tmp_path: Path, script: Script, caps: Caps, *, settings: dict[str, Any] | None = None
) -> tuple[Runtime, Budget, Counting]:
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(PRICES))
    metrics = Counting()
    budget = Budget(Ledger(store.engine), Pricer.from_file(path), caps, max_tokens=150, metrics=metrics)

    async def lookup() -> str:
        return "found"

    agent: Agent[None, str] = Agent(
        FunctionModel(script, model_name="priced"),
        name="a",
        model_settings=settings,  # type: ignore[arg-type]
        tools=[lookup, Tool(_search, name="search", metadata={"cost_usd": 0.25})],
    )
    return Runtime(Settings(), {"a": agent}, store, hooks=[budget]), budget, metrics


SEARCHES: list[str] = []


async def _search() -> str:
    SEARCHES.append("search")
    return "results"


async def test_max_tokens_is_set_when_a_budget_applies_and_the_agent_set_none(store: SQLStore, tmp_path: Path) -> None:
    """The request carries max_tokens = the configured ceiling; an agent's own value is kept."""
    script = Script(_text(), _text())
    runtime, _, _ = _runtime(store, tmp_path, script, Caps(user_daily=to_nano(10)))
    await runtime.run(RunRequest("hi"))
    assert script.settings[-1]["max_tokens"] == 150
    runtime, _, _ = _runtime(store, tmp_path, script, Caps(user_daily=to_nano(10)), settings={"max_tokens": 42})
    await runtime.run(RunRequest("hi"))
    assert script.settings[-1]["max_tokens"] == 42


async def test_cost_and_ledger_agree_and_the_run_record_carries_the_cost(store: SQLStore, tmp_path: Path) -> None:
    """Two requests of $0.10 each: the RunResult says $0.20, the ledger has two rows summing to it."""
    runtime, budget, metrics = _runtime(store, tmp_path, Script(_call(), _text()), Caps(user_daily=to_nano(10)))
    result = await runtime.run(RunRequest("hi"))
    assert result["cost_usd"] == pytest.approx(0.20002)
    assert await budget.ledger.run_total(result["run_id"]) == to_nano(0.20002)
    assert [model for model, _ in metrics.costs] == ["priced", "priced"]


async def test_a_run_that_would_cross_its_cap_stops_before_the_request(store: SQLStore, tmp_path: Path) -> None:
    """Run cap $0.25: the first request ($0.15 worst) fits, the second would not after $0.10 spent."""
    script = Script(_call(), _text())
    runtime, _, metrics = _runtime(store, tmp_path, script, Caps(run=to_nano(0.25)))
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest("hi", session_id="s"))
    assert failed.value.error_type == "budget_exceeded" and failed.value.http_status == 402
    assert len(script.settings) == 1
    assert metrics.rejections == ["run"]
    session = await store.get_session("anonymous", "s")
    assert session is not None and session.history_chunks == []


async def test_an_exhausted_user_is_refused_before_any_request(store: SQLStore, tmp_path: Path) -> None:
    """Spend made while no cap was set still counts: with the day's spend at the cap configured
    afterwards, a new run fails at once with budget_exceeded."""
    script = Script(_text(), _text())
    uncapped, _, _ = _runtime(store, tmp_path, script, Caps())
    await uncapped.run(RunRequest("first"))
    runtime, _, metrics = _runtime(store, tmp_path, script, Caps(user_daily=to_nano(0.10001)))
    with pytest.raises(RunFailed, match="is spent") as failed:
        await runtime.run(RunRequest("second"))
    assert failed.value.error_type == "budget_exceeded"
    assert len(script.settings) == 1
    assert metrics.rejections == ["user"]


async def test_an_unpriced_model_is_refused_before_any_request(store: SQLStore, tmp_path: Path) -> None:
    """With a budget, a model without a price fails the run with price_unknown and sends nothing."""
    script = Script(_text())
    runtime, budget, metrics = _runtime(store, tmp_path, script, Caps(session=to_nano(1)))
    budget.pricer.overrides.clear()
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest("hi"))
    assert failed.value.error_type == "price_unknown" and failed.value.http_status == 402
    assert script.settings == []
    assert metrics.rejections == ["price"]


async def test_a_provider_billing_past_the_reservation_closes_the_capped_scopes(
    store: SQLStore, tmp_path: Path
) -> None:
    """A reply of 1,000 output tokens against max_tokens 150 is an overrun: logged, counted, and the
    session's and the user's budgets close."""
    script = Script(_text(output_tokens=1000), _text())
    caps = Caps(session=to_nano(100), user_daily=to_nano(100))
    runtime, budget, metrics = _runtime(store, tmp_path, script, caps)
    result = await runtime.run(RunRequest("hi", session_id="s"))
    assert result["cost_usd"] == pytest.approx(1.00001)
    assert sorted(metrics.overruns) == ["session", "user"]
    assert (await budget.ledger.counter(SESSION, "anonymous", "s")).closed
    assert (await budget.ledger.counter(USER_DAY, "anonymous", utc_day())).closed
    with pytest.raises(RunFailed, match="closed"):
        await runtime.run(RunRequest("again", session_id="other"))


async def test_a_tool_with_a_declared_cost_is_reserved_and_recorded(store: SQLStore, tmp_path: Path) -> None:
    """`metadata={"cost_usd": 0.25}` puts a tool row of $0.25 in the ledger and in the run's cost."""
    from agentkeep.budget.tables import ledger as ledger_table

    script = Script(_call("search"), _text())
    runtime, _, _ = _runtime(store, tmp_path, script, Caps(user_daily=to_nano(10)))
    result = await runtime.run(RunRequest("search something"))
    assert result["cost_usd"] == pytest.approx(0.45002)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(ledger_table.select().where(ledger_table.c.kind == "tool"))).all()
    assert [(r.model, r.cost_nano) for r in rows] == [("search", NANO // 4)]


async def test_a_tool_that_does_not_fit_is_refused_before_it_runs(store: SQLStore, tmp_path: Path) -> None:
    """Run cap $0.30: the $0.25 tool does not fit after a $0.10 request, so it never executes."""
    script = Script(_call("search"), _text())
    runtime, _, _ = _runtime(store, tmp_path, script, Caps(run=to_nano(0.30)))
    SEARCHES.clear()
    with pytest.raises(RunFailed) as failed:
        await runtime.run(RunRequest("search something"))
    assert failed.value.error_type == "budget_exceeded"
    assert SEARCHES == []
