"""A bank's support agent shaped like Pydantic AI's `bank_support` example, served as an AgentApp.

Its deps hold a real SQLite connection, opened once per process by the app's `lifespan` (the file is
BANK_DB, which the test creates), and the customer the run's request names in its metadata
(`customer_id`). Every lifespan enter/exit and every deps factory call appends a line to AGENT_LOG,
with this process's pid, so a test can count them per process:

    lifespan enter <pid>        lifespan exit <pid>
    deps <run_id> <session_id> <user_id> <agent> <customer_id> <pid>
    balance <customer_id> <pid>                    (the tool read the database)

TARGETs: `:app` (the app), `:broken_deps` (a factory that raises), `:broken_lifespan` (a lifespan
that raises), `:bare` (the agent alone, whose deps_type needs an AgentApp). `TOOL_SLEEP_S` makes
`customer_balance` slow, so a test can kill the process while it runs. The `statement` task asks the
agent from inside a task.
"""

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, RunContext

from agentkeep import AgentApp, RunInfo
from agentkeep.durable import ask, task


def _log(line: str) -> None:
    with Path(os.environ["AGENT_LOG"]).open("a") as fh:
        fh.write(f"{line} {os.getpid()}\n")


@dataclass
class Bank:
    """What the lifespan opens once per process: the bank's database."""

    conn: sqlite3.Connection

    def customer_name(self, customer_id: int) -> str | None:
        row = self.conn.execute("SELECT name FROM customers WHERE id = ?", (customer_id,)).fetchone()
        return row[0] if row else None

    def customer_balance(self, customer_id: int) -> float:
        row = self.conn.execute("SELECT balance FROM customers WHERE id = ?", (customer_id,)).fetchone()
        if row is None:
            raise ValueError("customer not found")
        return float(row[0])


@dataclass
class SupportDependencies:
    customer_id: int
    db: Bank


support_agent = Agent(
    "openai-chat:mock",
    deps_type=SupportDependencies,
    instructions="You are a support agent in our bank. Reply using the customer's name.",
)


@support_agent.instructions
async def add_customer_name(ctx: RunContext[SupportDependencies]) -> str:
    return f"The customer's name is {ctx.deps.db.customer_name(ctx.deps.customer_id)!r}"


@support_agent.tool(metadata={"idempotent": True})  # a read: safe to run again after a crash cut it
async def customer_balance(ctx: RunContext[SupportDependencies]) -> str:
    """Returns the customer's current account balance."""
    await asyncio.sleep(float(os.environ.get("TOOL_SLEEP_S", "0")))
    balance = ctx.deps.db.customer_balance(ctx.deps.customer_id)
    _log(f"balance {ctx.deps.customer_id}")
    return f"${balance:.2f}"


@asynccontextmanager
async def open_bank() -> AsyncIterator[Bank]:
    conn = sqlite3.connect(os.environ["BANK_DB"], check_same_thread=False)
    _log("lifespan enter")
    try:
        yield Bank(conn)
    finally:
        conn.close()
        _log("lifespan exit")


def support_deps(run: RunInfo) -> SupportDependencies:
    customer = int(run.metadata.get("customer_id", 123))
    _log(f"deps {run.run_id} {run.session_id} {run.user_id} {run.agent} {customer}")
    return SupportDependencies(customer_id=customer, db=run.resources)


async def failing_deps(run: RunInfo) -> SupportDependencies:
    raise ConnectionError("the secret DSN postgresql://bank:hunter2@db/bank is unreachable")


@asynccontextmanager
async def failing_lifespan() -> AsyncIterator[Any]:
    raise ConnectionError("the secret DSN postgresql://bank:hunter2@db/bank is unreachable")
    yield


app = AgentApp(support_agent, deps=support_deps, lifespan=open_bank, name="bank")
broken_deps = AgentApp(support_agent, deps=failing_deps, lifespan=open_bank, name="bank")
broken_lifespan = AgentApp(support_agent, deps=support_deps, lifespan=failing_lifespan, name="bank")
bare = support_agent


@task("statement")
async def statement(input: dict[str, Any]) -> str:
    """A task whose agent call needs the bank's deps too."""
    return await ask(support_agent, str(input.get("question", "What is my balance?")))
