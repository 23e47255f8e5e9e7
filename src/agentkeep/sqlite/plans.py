"""Statements compiled once for SQLite and run straight on the driver.

A statement marked `precompiled` (a constant its owner builds once) is compiled once per set of
parameter names, with its parameters' and rows' type conversions, and then runs on the `sqlite3`
connection directly: SQLAlchemy's per-execution work (cache key, execution context, result
wrapping) cost more than SQLite's own. Elsewhere (PostgreSQL, aiosqlite) it runs as any statement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

__all__ = ["FetchedRows", "Plan", "is_precompiled", "precompiled"]

E = TypeVar("E", bound=sa.Executable)

_PRECOMPILED = "agentkeep_precompiled"
_DIALECT = sqlite.dialect()


def is_precompiled(statement: sa.Executable) -> bool:
    return bool(statement.get_execution_options().get(_PRECOMPILED))


def precompiled(statement: E) -> E:
    """Mark a statement built once for the direct path; elsewhere (PostgreSQL, aiosqlite) it runs as
    any statement. Its values are parameters or constants of its own."""
    return statement.execution_options(**{_PRECOMPILED: True})


class FetchedRows:
    """What a precompiled statement returns: its rows, already fetched, and its rowcount."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]

    def first(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def scalar_one(self) -> Any:
        if not self._rows:
            raise sa.exc.NoResultFound("No row was found when one was required")
        if len(self._rows) > 1:
            raise sa.exc.MultipleResultsFound("Multiple rows were found when exactly one was required")
        return self._rows[0][0]


class Plan:
    """A statement compiled for SQLite: its SQL, and how to order and convert its parameters and rows."""

    def __init__(self, statement: sa.Executable, keys: tuple[str, ...]) -> None:
        compiled = cast(
            sa.sql.compiler.SQLCompiler,
            cast(sa.ClauseElement, statement).compile(dialect=_DIALECT, column_keys=list(keys)),
        )
        self.sql = compiled.string
        # (the caller's parameter name, or None for a constant of the statement; the constant; its conversion)
        self.params: list[tuple[str | None, Any, Callable[[Any], Any] | None]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            convert = bind.type.dialect_impl(_DIALECT).bind_processor(_DIALECT)
            if bind.required and name not in keys:
                raise ValueError(f"no value for parameter {name!r} of a precompiled statement")
            self.params.append((name, None, convert) if name in keys else (None, bind.effective_value, convert))
        # Every value the caller's, none converted: just their names, in order.
        plain = all(name is not None and convert is None for name, _, convert in self.params)
        self.plain = [name for name, _, _ in self.params if name is not None] if plain else None
        returning = compiled.effective_returning or ()
        columns = statement.selected_columns if isinstance(statement, sa.Select) else returning
        self.returns_rows = isinstance(statement, sa.Select) or bool(returning)
        self.convert_rows = [c.type.dialect_impl(_DIALECT).result_processor(_DIALECT, None) for c in columns]

    def execute(self, driver: Any, parameters: Mapping[str, Any]) -> FetchedRows:
        if self.plain is not None:  # the common case, kept to one comprehension: it runs per statement
            values = [parameters[name] for name in self.plain]
        else:
            values = [
                (c if n is None else parameters[n]) if f is None else f(c if n is None else parameters[n])
                for n, c, f in self.params
            ]
        cursor = driver.execute(self.sql, values)
        if not self.returns_rows:
            return FetchedRows([], cursor.rowcount)
        rows = cursor.fetchall()
        if any(self.convert_rows):
            rows = [tuple(c(v) if c else v for c, v in zip(self.convert_rows, row, strict=True)) for row in rows]
        return FetchedRows(rows, cursor.rowcount)
