"""The audit log: who did what to which subject, and when (table `audit_log`).

Rows are append-only: a trigger refuses every UPDATE, and every DELETE except inside the
retention purge (`purge`), which sets `dialkit.audit_purge` for its own transaction only.
`record` writes on the connection it is given, so an audit row commits (or rolls back)
with the change it describes when the caller passes its transaction's connection.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, TypeAlias, get_args

import asyncpg

# ---- the vocabulary of actions ---------------------------------------------------------

Action = Literal[
    "dial", "status_change", "outcome", "dnc_add", "dnc_remove", "api_write", "campaign_state",
    "lead_state", "webhook_given_up", "api_key",
]

#: a dial was placed (or refused) for an attempt
DIAL = "dial"
#: an attempt's carrier state changed
STATUS_CHANGE = "status_change"
#: a call's outcome was recorded
OUTCOME = "outcome"
#: a number went on a do-not-call list (by API, upload or the caller's opt-out)
DNC_ADD = "dnc_add"
#: a number was taken off a do-not-call list
DNC_REMOVE = "dnc_remove"
#: any other write through the REST API (create, update, delete, upload)
API_WRITE = "api_write"
#: a campaign was started, paused, resumed, cancelled, completed or paused itself
CAMPAIGN_STATE = "campaign_state"
#: a lead changed state (retry, callback, done, exhausted...)
LEAD_STATE = "lead_state"
#: an outcome webhook was given up after its last attempt
WEBHOOK_GIVEN_UP = "webhook_given_up"
#: an API key was created or revoked
API_KEY = "api_key"

ACTIONS: dict[str, str] = {
    DIAL: "a dial was placed (or refused) for an attempt",
    STATUS_CHANGE: "an attempt's carrier state changed",
    OUTCOME: "a call's outcome was recorded",
    DNC_ADD: "a number went on a do-not-call list",
    DNC_REMOVE: "a number was taken off a do-not-call list",
    API_WRITE: "a write through the REST API",
    CAMPAIGN_STATE: "a campaign changed state",
    LEAD_STATE: "a lead changed state",
    WEBHOOK_GIVEN_UP: "an outcome webhook was given up after its last attempt",
    API_KEY: "an API key was created or revoked",
}
assert set(ACTIONS) == set(get_args(Action)), "one vocabulary of audit actions"

#: an asyncpg connection (inside the caller's transaction) or a pool
Executor: TypeAlias = "asyncpg.Connection | asyncpg.Pool"


async def record(
    conn: Executor,
    actor: str,
    action: str,
    subject_type: str,
    subject_id: str | None,
    data: dict[str, Any] | None = None,
) -> None:
    """Append one row. `actor`: an API key's name, "local", "scheduler", "carrier", "call"...
    `data` must not hold a full phone number (mask it) or a secret."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; known: {', '.join(sorted(ACTIONS))}")
    await conn.execute(
        "INSERT INTO audit_log (actor, action, subject_type, subject_id, data)"
        " VALUES ($1, $2, $3, $4, $5)",
        actor, action, subject_type, subject_id, data or {},
    )


async def purge(pool: asyncpg.Pool, retention: timedelta, now: datetime) -> int:
    """Delete rows older than `retention` (before now - retention); returns how many."""
    if retention <= timedelta(0):
        raise ValueError("audit retention must be positive")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL dialkit.audit_purge = 'on'")
        status: str = await conn.execute("DELETE FROM audit_log WHERE at < $1", now - retention)
    return int(status.rsplit(" ", 1)[-1])


# ---- reading ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditQuery:
    subject_type: str | None = None
    subject_id: str | None = None
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 100
    #: the `next` cursor of a previous page
    cursor: str | None = None


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(str(row_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The row id a cursor stands for; ValueError when it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        value = int(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a cursor returned by this API") from exc
    if value <= 0:
        raise ValueError("not a cursor returned by this API")
    return value


async def query(conn: Executor, q: AuditQuery) -> tuple[list[dict[str, Any]], str | None]:
    """Rows matching every filter given, newest first; and the cursor of the next page
    (None on the last). `since` is inclusive, `until` exclusive."""
    where: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        where.append(sql.format(f"${len(args)}"))

    if q.subject_type is not None:
        add("subject_type = {}", q.subject_type)
    if q.subject_id is not None:
        add("subject_id = {}", q.subject_id)
    if q.action is not None:
        add("action = {}", q.action)
    if q.actor is not None:
        add("actor = {}", q.actor)
    if q.since is not None:
        add("at >= {}", q.since)
    if q.until is not None:
        add("at < {}", q.until)
    if q.cursor is not None:
        add("id < {}", decode_cursor(q.cursor))
    limit = max(1, min(q.limit, 1000))
    args.append(limit + 1)
    sql = (
        "SELECT id, at, actor, action, subject_type, subject_id, data FROM audit_log"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY id DESC LIMIT ${len(args)}"
    )
    rows = [dict(r) for r in await conn.fetch(sql, *args)]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]["id"]) if more and rows else None


class RetentionSettings(Protocol):
    audit_retention_days: int


async def purge_expired(pool: asyncpg.Pool, settings: RetentionSettings) -> int:
    """The daily purge job's body: rows past `settings.audit_retention_days` go."""
    now = datetime.now(UTC)
    return await purge(pool, timedelta(days=settings.audit_retention_days), now)
