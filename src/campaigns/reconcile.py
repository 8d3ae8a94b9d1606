"""After a crash, and periodically: attempts and calls left in flight are brought back in
line with what the carriers say, without ever dialling a lead twice.

- Calls left `in_progress` by a node that stopped (not live in the registry, no turn or
  event for `orphan_after`) are closed as failed, and their attempts settled.
- Attempts dialing / ringing / in progress with a carrier SID, unchanged for `stale_after`,
  get the carrier's own status (Twilio `GET Calls/{Sid}.json`, Exotel call details),
  applied like a status callback; a call the carrier does not know fails the attempt.
- Attempts `dialing` without a SID for `lost_after` (the process died between the claim and
  the carrier's answer) fail with "lost before the carrier answered": the lead is retried
  per its `failed` rule, so never sooner than that rule allows.
- Attempts `queued` for `queued_after` get their dial job again (`redefer(attempt id,
  carrier)`): the job's atomic claim makes a duplicate harmless.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import asyncpg

from campaigns.attempts import AttemptState, from_exotel, from_twilio
from campaigns.settle import settle
from campaigns.status import apply, call_finished, end_attempt

__all__ = ["CarrierStatus", "Reconciled", "reconcile"]

log = logging.getLogger(__name__)

#: (carrier, call SID) -> the carrier's status name, or None when it does not know the call
CarrierStatus = Callable[[str, str], Awaitable[str | None]]
ACTOR = "reconcile"
LOST = "lost before the carrier answered"
ORPHANED = "the node running the call stopped"


@dataclass
class Reconciled:
    calls_closed: list[str] = field(default_factory=list)
    statuses_applied: int = 0
    lost: list[str] = field(default_factory=list)
    redeferred: list[str] = field(default_factory=list)
    errors: int = 0


def _state(carrier: str, status: str | None) -> AttemptState | None:
    if status is None:
        return None
    return from_twilio(status) if carrier == "twilio" else from_exotel(status)


async def reconcile(
    pool: asyncpg.Pool,
    *,
    now: dt.datetime,
    carrier_status: CarrierStatus | None,
    redefer: Callable[[str, str], Awaitable[None]],
    live_calls: Collection[str] = (),
    orphan_after: dt.timedelta = dt.timedelta(minutes=2),
    stale_after: dt.timedelta = dt.timedelta(seconds=60),
    lost_after: dt.timedelta = dt.timedelta(minutes=5),
    queued_after: dt.timedelta = dt.timedelta(seconds=30),
    limit: int = 500,
) -> Reconciled:
    out = Reconciled()
    await _close_orphans(pool, now, set(live_calls), now - orphan_after, limit, out)
    if carrier_status is not None:
        rows = await pool.fetch(
            "SELECT id, carrier, carrier_sid FROM attempts"
            " WHERE state IN ('dialing', 'ringing', 'in_progress') AND carrier_sid IS NOT NULL"
            " AND updated_at < $1 ORDER BY updated_at LIMIT $2", now - stale_after, limit,
        )
        for row in rows:
            try:
                status = await carrier_status(row["carrier"], row["carrier_sid"])
            except Exception as exc:  # a carrier outage: try again next time
                log.warning("carrier status of attempt %s unavailable: %s", row["id"],
                            type(exc).__name__)
                out.errors += 1
                continue
            state = _state(row["carrier"], status)
            extra = {"attempt_id": str(row["id"]), "event": "reconcile"}
            if status is None:
                state, extra["error"] = "failed", "the carrier does not know the call"
            if state is None:
                continue
            async with pool.acquire() as conn:
                done = await apply(conn, row["carrier"], row["carrier_sid"], state, now, extra)
            out.statuses_applied += int(done.changed)
    lost = await pool.fetch(
        "SELECT id FROM attempts WHERE state = 'dialing' AND carrier_sid IS NULL"
        " AND COALESCE(dialed_at, created_at) < $1 LIMIT $2", now - lost_after, limit,
    )
    for row in lost:
        async with pool.acquire() as conn, conn.transaction():
            locked = await conn.fetchrow(
                "SELECT id, state FROM attempts WHERE id = $1 AND state = 'dialing'"
                " AND carrier_sid IS NULL FOR UPDATE", row["id"])
            if locked is None:
                continue
            await end_attempt(conn, locked, "failed", now, ACTOR, error=LOST)
            await settle(conn, row["id"], at=now, actor=ACTOR)
        out.lost.append(str(row["id"]))
    queued = await pool.fetch(
        "SELECT id, carrier FROM attempts WHERE state = 'queued' AND created_at < $1"
        " ORDER BY created_at"
        " LIMIT $2", now - queued_after, limit,
    )
    for row in queued:
        await redefer(str(row["id"]), row["carrier"])
        out.redeferred.append(str(row["id"]))
    if out.calls_closed or out.lost or out.redeferred or out.statuses_applied:
        log.info("reconciled: %d calls closed, %d statuses, %d lost, %d re-deferred",
                 len(out.calls_closed), out.statuses_applied, len(out.lost), len(out.redeferred))
    return out


async def _close_orphans(
    pool: asyncpg.Pool, now: dt.datetime, live: set[str], quiet_since: dt.datetime, limit: int,
    out: Reconciled,
) -> None:
    rows = await pool.fetch(
        "SELECT c.id FROM calls c WHERE c.status = 'in_progress' AND c.started_at < $1"
        " AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.call_id = c.id AND t.created_at >= $1)"
        " AND NOT EXISTS (SELECT 1 FROM call_events e WHERE e.call_id = c.id AND e.at >= $1)"
        " ORDER BY c.started_at LIMIT $2", quiet_since, limit,
    )
    for row in rows:
        call_id = str(row["id"])
        if call_id in live:
            continue
        closed = await pool.fetchval(
            "UPDATE calls SET status = 'failed', failure_reason = $2, ended_at = $3"
            " WHERE id = $1 AND status = 'in_progress' RETURNING id",
            uuid.UUID(call_id), ORPHANED, now,
        )
        if closed is None:
            continue
        async with pool.acquire() as conn:
            await call_finished(conn, call_id, now, failed=ORPHANED)
        out.calls_closed.append(call_id)
