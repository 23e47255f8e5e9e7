"""Never bankrupt the user: prices, the cost ledger, hard caps with reservations, alerts.

    prices.py   what a request costs (AGENTKEEP_PRICES_FILE, then genai-prices; local is free)
    tokens.py   an upper bound of a request's input tokens, from the bytes sent
    records.py  caps, ledger entries, reservations, alerts: plain records
    tables.py   the ledger's tables (created by `stores.schema` migration 2)
    ledger.py   the ledger, budget counters and reservations: atomic across processes
    transactor.py  how one ledger transaction runs on SQLite (`agentkeep.sqlite`) and on PostgreSQL
    hook.py     the `Budget` hook around model requests and priced tools
    reclaimer.py   gives back the reservations of processes that died, on a timer
    alerts.py   threshold alerts: a log event and a webhook POST, exactly once each

The server builds one `Budget` per process with `budget_from_settings`, starts it (its reclaimer)
and hands it to the runtime.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.budget.alerts import AlertDispatcher, parse_thresholds
from agentkeep.budget.hook import Budget, BudgetMetrics
from agentkeep.budget.ledger import Ledger
from agentkeep.budget.prices import Pricer, to_nano
from agentkeep.budget.records import Caps
from agentkeep.config import Settings

__all__ = ["AlertDispatcher", "Budget", "BudgetMetrics", "Caps", "Ledger", "Pricer", "budget_from_settings", "caps_of"]


def caps_of(settings: Settings) -> Caps:
    """The configured caps, in nano-dollars."""

    def nano(usd: float | None) -> int | None:
        return None if usd is None else to_nano(usd)

    return Caps(
        run=nano(settings.budget_run_usd),
        session=nano(settings.budget_session_usd),
        user_daily=nano(settings.budget_user_daily_usd),
    )


def budget_from_settings(settings: Settings, engine: AsyncEngine, metrics: BudgetMetrics | None = None) -> Budget:
    """The `Budget` hook this configuration asks for, on the store's engine. Raises `ConfigError`."""
    ledger = Ledger(engine, reservation_ttl_s=settings.budget_reservation_ttl_s)
    return Budget(
        ledger,
        Pricer.from_file(settings.prices_file),
        caps_of(settings),
        thresholds=parse_thresholds(settings.budget_alerts_usd),
        alerts=AlertDispatcher(ledger, settings.alert_webhook_url),
        max_tokens=settings.budget_max_tokens,
        metrics=metrics,
    )
