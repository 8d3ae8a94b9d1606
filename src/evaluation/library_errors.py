"""The evaluation library's refusals, each with the field it is about, so the REST API
answers 404 (`NotFound`), 409 (`Conflict`) or 400 (`Invalid`) with the same reason the
CLI and the run orchestrator show."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg
from pydantic import ValidationError

__all__ = ["Conflict", "Executor", "Invalid", "LibraryError", "NotFound", "invalid", "transaction"]

#: an asyncpg connection (possibly inside the caller's transaction) or a pool
Executor: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


class LibraryError(ValueError):
    """A library request that cannot be done; `field` names what it is about."""

    def __init__(self, reason: str, field: str | None = None) -> None:
        self.reason = reason
        self.field = field
        super().__init__(reason)


class NotFound(LibraryError):
    """No such personality, prompt version, scenario or set."""


class Conflict(LibraryError):
    """The request clashes with what is stored: a name taken, a deleted personality, a used
    prompt version, a scenario still in a set."""


class Invalid(LibraryError):
    """Bad input: the reason reads `field: what is wrong`."""


def invalid(exc: ValidationError, prefix: str | None = None) -> Invalid:
    """pydantic's first problem as an Invalid (`prefix.field: message`)."""
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(p) for p in first["loc"])
    where = ".".join(p for p in (prefix, path) if p)
    msg = str(first["msg"]).removeprefix("Value error, ")
    return Invalid(f"{where}: {msg}" if where else msg, field=where or None)


@asynccontextmanager
async def transaction(db: Any) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction: the caller's own (a savepoint inside theirs), or one
    taken from the pool."""
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn, conn.transaction():
            yield conn
    else:
        async with db.transaction():
            yield db
