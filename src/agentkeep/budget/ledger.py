"""The cost ledger and the budget counters, on the store's database (SQLAlchemy Core).

Why caps hold under any concurrency, across every process sharing the database: a reservation is
one conditional upsert per capped counter (`held = held + amount WHERE spent + held + amount <=
cap`) inside one write transaction. SQLite serialises write transactions (`BEGIN IMMEDIATE`);
PostgreSQL row-locks the counter and re-checks the condition on the row's latest version. Either
way two reservations can never both see the same room. Settling moves the real cost from `held`
to `spent` in one transaction with the ledger row, so the ledger and the counters never disagree.

Locks are always taken in one order — reservation row, then counters sorted by (scope, user,
ref) — so PostgreSQL transactions cannot deadlock; `Transactor` retries one as a second defence.
Each method's transaction is a synchronous body (`_reserve`, `_settle`, …) that `Transactor` runs;
the statements run on every request are built once and `precompiled` for SQLite's direct path.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from agentkeep.budget.records import (
    NO_CAPS,
    SESSION,
    USER_DAY,
    Alert,
    Caps,
    CounterState,
    Entry,
    Refused,
    Reservation,
    Settled,
    utc_day,
)
from agentkeep.budget.tables import alerts, counters, ledger, reservations
from agentkeep.budget.transactor import Conn, Transactor
from agentkeep.sqlite import precompiled

__all__ = ["Ledger"]

_COUNTER_KEY = [counters.c.scope, counters.c.user_id, counters.c.ref]
_P = sa.bindparam


class _Statements:
    """The hot statements, built once with bind parameters: building a statement costs more than
    running it on SQLite, and a prebuilt one also keeps its compiled form cached."""

    def __init__(self, dialect: str) -> None:
        insert: Any = _insert_for(dialect)
        new_counter = insert(counters).values(
            scope=_P("scope"),
            user_id=_P("user_id"),
            ref=_P("ref"),
            spent_nano=_P("cost"),
            held_nano=_P("amount"),
            closed=_P("close"),
            updated_at=_P("now"),
        )
        hold = {"held_nano": counters.c.held_nano + _P("amount"), "updated_at": _P("now")}
        room = sa.and_(
            counters.c.closed.is_(False), counters.c.spent_nano + counters.c.held_nano + _P("amount") <= _P("cap")
        )
        self.hold_capped = new_counter.on_conflict_do_update(
            index_elements=_COUNTER_KEY, set_=hold, where=room
        ).returning(counters.c.held_nano)
        self.hold = new_counter.on_conflict_do_update(index_elements=_COUNTER_KEY, set_=hold).returning(
            counters.c.held_nano
        )
        spend = {
            "spent_nano": counters.c.spent_nano + _P("cost"),
            "held_nano": counters.c.held_nano - _P("released"),
            "updated_at": _P("now"),
        }
        self.spend = new_counter.on_conflict_do_update(index_elements=_COUNTER_KEY, set_=spend).returning(
            counters.c.spent_nano
        )
        self.spend_and_close = new_counter.on_conflict_do_update(
            index_elements=_COUNTER_KEY, set_={**spend, "closed": True}
        ).returning(counters.c.spent_nano)
        self.unhold = (
            counters.update()
            .where(counters.c.scope == _P("k_scope"), counters.c.user_id == _P("k_user"), counters.c.ref == _P("k_ref"))
            .values(held_nano=counters.c.held_nano - _P("amount"))
        )
        self.drop = reservations.delete().where(reservations.c.id == _P("id"))
        self.claim_alert = insert(alerts).on_conflict_do_nothing()
        self.reserve = reservations.insert().values({c.name: _P(c.name) for c in reservations.c})
        self.record = ledger.insert().values({c.name: _P(c.name) for c in ledger.c if c.name != "id"})
        for name, statement in list(vars(self).items()):
            setattr(self, name, precompiled(statement))


class Ledger:
    """Reads and writes the ledger tables through the store's engine."""

    def __init__(self, engine: AsyncEngine, *, reservation_ttl_s: float = 60.0) -> None:
        self.engine = engine
        self.ttl_s = reservation_ttl_s
        self._db = Transactor(engine)
        self._sql = _Statements(engine.dialect.name)

    def close(self) -> None:
        self._db.close()

    # --- reservations ---

    async def reserve(self, user_id: str, session_id: str, run_id: str, amount_nano: int, caps: Caps) -> Reservation:
        """Hold `amount_nano` on the session's and the user's day counters; `Refused` when it does not fit."""
        reservation = Reservation(secrets.token_hex(16), user_id, session_id, utc_day(), amount_nano)
        await self._db.write(partial(self._reserve, reservation, run_id, caps))
        return reservation

    def _reserve(self, r: Reservation, run_id: str, caps: Caps, conn: Conn) -> None:
        now = time.time()
        for scope, ref in ((SESSION, r.session_id), (USER_DAY, r.day)):
            cap = caps.of(scope)
            if not self._hold(conn, scope, r.user_id, ref, r.amount_nano, cap, now):
                raise Refused(scope, _counter(conn, scope, r.user_id, ref), cap or 0)
        values = {"id": r.id, "run_id": run_id, "user_id": r.user_id, "session_id": r.session_id, "day": r.day}
        conn.execute(self._sql.reserve, {**values, "amount_nano": r.amount_nano, "expires_at": now + self.ttl_s})

    def _hold(self, conn: Conn, scope: str, user_id: str, ref: str, amount: int, cap: int | None, now: float) -> bool:
        if cap is not None and amount > cap:
            return False
        params = {"scope": scope, "user_id": user_id, "ref": ref, "cost": 0, "amount": amount, "close": False}
        stmt = self._sql.hold if cap is None else self._sql.hold_capped
        return conn.execute(stmt, {**params, "now": now, "cap": cap}).first() is not None

    async def renew(self, reservation: Reservation) -> bool:
        """Push the expiry of a reservation still in use; False when it had already been reclaimed."""
        return await self._db.write(partial(self._renew, reservation.id))

    def _renew(self, reservation_id: str, conn: Conn) -> bool:
        update = reservations.update().where(reservations.c.id == reservation_id)
        return bool(conn.execute(update.values(expires_at=time.time() + self.ttl_s)).rowcount)

    async def release(self, reservation: Reservation) -> None:
        """Give a reservation back unspent (its request failed before a response); a cancelled
        caller still waits for it to end."""
        await self._db.write(partial(self._release, reservation), finish=True)

    def _release(self, r: Reservation, conn: Conn) -> None:
        if self._drop(conn, r.id):
            for scope, ref in ((SESSION, r.session_id), (USER_DAY, r.day)):
                self._unhold(conn, scope, r.user_id, ref, r.amount_nano)

    async def reclaim_expired(self) -> int:
        """Release the reservations of processes that died holding them; returns how many."""
        return await self._db.write(self._reclaim)

    def _reclaim(self, conn: Conn) -> int:
        r = reservations.c
        expired = sa.select(r.id, r.user_id, r.session_id, r.day, r.amount_nano).where(r.expires_at < time.time())
        rows = conn.execute(expired.with_for_update(skip_locked=True)).all()
        if not rows:
            return 0
        conn.execute(reservations.delete().where(r.id.in_([row[0] for row in rows])))
        owed: dict[tuple[str, str, str], int] = {}
        for _, user, session, day, amount in rows:
            for key in ((SESSION, user, session), (USER_DAY, user, day)):
                owed[key] = owed.get(key, 0) + amount
        for (scope, user_id, ref), amount in sorted(owed.items()):
            self._unhold(conn, scope, user_id, ref, amount)
        return len(rows)

    def _unhold(self, conn: Conn, scope: str, user_id: str, ref: str, amount: int) -> None:
        conn.execute(self._sql.unhold, {"k_scope": scope, "k_user": user_id, "k_ref": ref, "amount": amount})

    def _drop(self, conn: Conn, reservation_id: str) -> bool:
        return bool(conn.execute(self._sql.drop, {"id": reservation_id}).rowcount)

    # --- settling ---

    async def settle(
        self,
        entry: Entry,
        reservation: Reservation | None,
        *,
        close: Sequence[str] = (),
        caps: Caps = NO_CAPS,
        thresholds: Sequence[int] = (),
    ) -> Settled:
        """Record `entry`, move its cost from held to spent, and claim any alert thresholds it crosses.

        `close` names the scopes (session, user_day) to close because the provider billed more than
        was reserved. Without a reservation (no cap applies) the spend is still counted, so a cap
        configured later starts from the truth. A cancelled caller still waits for it to end.
        """
        return await self._db.write(partial(self._settle, entry, reservation, close, caps, thresholds), finish=True)

    def _settle(
        self,
        entry: Entry,
        reservation: Reservation | None,
        close: Sequence[str],
        caps: Caps,
        thresholds: Sequence[int],
        conn: Conn,
    ) -> Settled:
        now = time.time()
        day = reservation.day if reservation is not None else utc_day(now)
        cost = entry.cost_nano or 0
        released = reservation is not None and self._drop(conn, reservation.id)
        held = reservation.amount_nano if released and reservation is not None else 0
        conn.execute(self._sql.record, _ledger_row(entry, day, now))
        settled = Settled(0, 0, released)
        for scope, ref in ((SESSION, entry.session_id), (USER_DAY, day)):
            spent = self._spend(conn, scope, entry.user_id, ref, cost, held, scope in close, now)
            if scope == SESSION:
                settled.session_spent_nano = spent
            else:
                settled.day_spent_nano = spent
            for threshold in thresholds:
                if spent - cost < threshold <= spent:
                    alert = Alert(scope, entry.user_id, ref, threshold, spent, caps.of(scope), now)
                    if self._claim_alert(conn, alert):
                        settled.alerts.append(alert)
        return settled

    def _spend(
        self, conn: Conn, scope: str, user_id: str, ref: str, cost: int, held: int, close: bool, now: float
    ) -> int:
        params = {"scope": scope, "user_id": user_id, "ref": ref, "cost": cost, "amount": 0, "close": close}
        stmt = self._sql.spend_and_close if close else self._sql.spend
        return int(conn.execute(stmt, {**params, "released": held, "now": now}).scalar_one())

    def _claim_alert(self, conn: Conn, alert: Alert) -> bool:
        row = {
            "scope": alert.scope,
            "user_id": alert.user_id,
            "ref": alert.ref,
            "threshold_nano": alert.threshold_nano,
            "spent_nano": alert.spent_nano,
            "created_at": alert.at,
            "attempts": 0,
            "delivered_at": None,
        }
        return bool(conn.execute(self._sql.claim_alert, row).rowcount)

    async def mark_delivered(self, alert: Alert, attempts: int, delivered: bool) -> None:
        """Record how the delivery of `alert` went, for operators reading the alerts table."""
        key = (
            alerts.c.scope == alert.scope,
            alerts.c.user_id == alert.user_id,
            alerts.c.ref == alert.ref,
            alerts.c.threshold_nano == alert.threshold_nano,
        )
        update = alerts.update().where(*key).values(attempts=attempts, delivered_at=time.time() if delivered else None)
        await self._db.write(lambda conn: conn.execute(update))

    # --- reading ---

    async def counter(self, scope: str, user_id: str, ref: str) -> CounterState:
        return await self._db.read(partial(_counter, scope=scope, user_id=user_id, ref=ref))

    async def run_total(self, run_id: str) -> int:
        """Settled spend of one run, from the ledger (a resumed run carries its spend over)."""
        return await self._db.read(lambda conn: int(conn.execute(_RUN_TOTAL, {"k_run": run_id}).scalar_one()))

    async def total(self) -> int:
        """Settled spend of everyone, ever."""
        query = sa.select(sa.func.coalesce(sa.func.sum(ledger.c.cost_nano), 0))
        return await self._db.read(lambda conn: int(conn.execute(query).scalar_one()))

    async def user_totals(self, user_id: str, day: str) -> tuple[int, int]:
        """A user's settled spend on `day` and in its month, from the ledger (index: user_id, day)."""
        month = day[:7]
        today = sa.func.sum(sa.case((ledger.c.day == day, ledger.c.cost_nano), else_=0))
        query = sa.select(sa.func.coalesce(today, 0), sa.func.coalesce(sa.func.sum(ledger.c.cost_nano), 0)).where(
            ledger.c.user_id == user_id, ledger.c.day >= f"{month}-01", ledger.c.day <= f"{month}-31"
        )

        def body(conn: Conn) -> tuple[int, int]:
            row = conn.execute(query).first() or (0, 0)  # an aggregate answers one row
            return int(row[0]), int(row[1])

        return await self._db.read(body)


_COUNTER = precompiled(
    sa.select(counters.c.spent_nano, counters.c.held_nano, counters.c.closed).where(
        counters.c.scope == _P("k_scope"), counters.c.user_id == _P("k_user"), counters.c.ref == _P("k_ref")
    )
)
_RUN_TOTAL = precompiled(
    sa.select(sa.func.coalesce(sa.func.sum(ledger.c.cost_nano), 0)).where(ledger.c.run_id == _P("k_run"))
)


def _counter(conn: Conn, scope: str, user_id: str, ref: str) -> CounterState:
    row = conn.execute(_COUNTER, {"k_scope": scope, "k_user": user_id, "k_ref": ref}).first()
    return CounterState() if row is None else CounterState(int(row[0]), int(row[1]), bool(row[2]))


def _insert_for(dialect: str) -> Any:
    """The dialect's INSERT with ON CONFLICT (both SQLite and PostgreSQL spell it the same way)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _ledger_row(entry: Entry, day: str, now: float) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "user_id": entry.user_id,
        "session_id": entry.session_id,
        "agent": entry.agent,
        "kind": entry.kind,
        "model": entry.model[:256],
        "input_tokens": entry.input_tokens,
        "output_tokens": entry.output_tokens,
        "cost_nano": entry.cost_nano,
        "day": day,
        "created_at": now,
    }
