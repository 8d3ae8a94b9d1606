"""Carrier status callbacks (and the call's own end) applied to dial attempts.

`apply(conn, carrier, sid, state, at, extra)` moves an attempt along
`campaigns.attempts.advance`, so a callback repeated, late or out of order changes nothing
it should not. The attempt is found by the id our status-callback URL carries
(`extra["attempt_id"]`, which also covers a callback that beats the dialer's write of the
carrier's call SID) or else by (carrier, SID).

A terminal state releases the attempt's concurrency slot at once (the slot is the live
row) and settles the lead (`campaigns.settle`), except while the answered call's media is
still live: the outcome is still being recorded, so the call's end (`call_finished`)
settles it. Whichever of the two comes last settles; the other is a no-op.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from campaigns import audit
from campaigns.attempts import TERMINAL, AttemptState, advance
from campaigns.settle import settle

__all__ = ["Applied", "apply", "call_finished", "end_attempt"]

ACTOR = "carrier"


@dataclass(frozen=True)
class Applied:
    #: an attempt matched the callback
    found: bool
    #: the attempt's state changed
    changed: bool = False
    state: str | None = None
    attempt_id: str | None = None
    #: the lead was settled by this callback
    settled: bool = False


async def apply(
    conn: asyncpg.Connection,
    carrier: str,
    sid: str | None,
    state: AttemptState,
    at: dt.datetime,
    extra: Mapping[str, Any] | None = None,
) -> Applied:
    """Apply one status report, in its own transaction on `conn`."""
    extra = dict(extra or {})
    async with conn.transaction():
        row = await _find(conn, carrier, sid, extra.get("attempt_id"))
        if row is None:
            return Applied(False)
        if sid and row["carrier_sid"] is None:
            await conn.execute("UPDATE attempts SET carrier_sid = $2 WHERE id = $1", row["id"], sid)
        changed = await end_attempt(conn, row, state, at, ACTOR,
                                    error=extra.get("error"), data=extra)
        settled = False
        if state in TERMINAL and await _media_done(conn, row["call_id"]):
            settled = await settle(conn, row["id"], at=at) is not None
        current = state if changed else row["state"]
        return Applied(True, changed, current, str(row["id"]), settled)


async def end_attempt(
    conn: asyncpg.Connection,
    row: Mapping[str, Any],
    state: AttemptState,
    at: dt.datetime,
    actor: str,
    *,
    error: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> bool:
    """Move the (locked) attempt `row` to `state` if `advance` allows; audited."""
    new = advance(row["state"], state)
    if new is None:
        return False
    await conn.execute(
        "UPDATE attempts SET state = $2, updated_at = now(),"
        " answered_at = CASE WHEN $2 = 'in_progress' THEN COALESCE(answered_at, $3) ELSE answered_at END,"
        " ended_at = CASE WHEN $2 = ANY($4::text[]) THEN COALESCE(ended_at, $3) ELSE ended_at END,"
        " error = COALESCE($5, error) WHERE id = $1",
        row["id"], new, at, list(TERMINAL), error,
    )
    info = {k: v for k, v in (data or {}).items() if k in ("duration", "answered_by", "event")}
    await audit.record(conn, actor, audit.STATUS_CHANGE, "attempt", str(row["id"]),
                       {"from": row["state"], "to": new, **({"error": error} if error else {}),
                        **info})
    return True


async def call_finished(conn: asyncpg.Connection, call_id: uuid.UUID | str, at: dt.datetime,
                        failed: str | None = None) -> bool:
    """The call's media session ended: its attempt is over (completed unless the carrier
    said more already) and is settled. True when an attempt was settled."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT id, state, carrier_sid, call_id FROM attempts WHERE call_id = $1 FOR UPDATE",
            uuid.UUID(str(call_id)),
        )
        if row is None:
            return False
        await end_attempt(conn, row, "completed", at, "call", error=failed)
        return await settle(conn, row["id"], at=at) is not None


async def _find(
    conn: asyncpg.Connection, carrier: str, sid: str | None, attempt_id: Any
) -> asyncpg.Record | None:
    cols = "id, state, carrier_sid, call_id"
    if attempt_id:
        try:
            aid = uuid.UUID(str(attempt_id))
        except ValueError:
            return None
        row = await conn.fetchrow(
            f"SELECT {cols} FROM attempts WHERE id = $1 AND carrier = $2 FOR UPDATE", aid, carrier)
        # the SID, once known, must agree: a callback for another call is not this one's
        if row is not None and (not sid or row["carrier_sid"] in (None, sid)):
            return row
        return None
    if not sid:
        return None
    return await conn.fetchrow(
        f"SELECT {cols} FROM attempts WHERE carrier = $1 AND carrier_sid = $2 FOR UPDATE",
        carrier, sid,
    )


async def _media_done(conn: asyncpg.Connection, call_id: uuid.UUID | None) -> bool:
    """False while the attempt's call has live media (its outcome is still being written)."""
    if call_id is None:
        return True
    status = await conn.fetchval("SELECT status FROM calls WHERE id = $1", call_id)
    return status != "in_progress"
