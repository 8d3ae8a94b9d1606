"""The scheduler's tick: which leads are dialled now, decided in PostgreSQL so any number of
workers (processes or machines) can tick at once.

Per running campaign, in one transaction:

1. a transaction advisory lock on the campaign (`pg_try_advisory_xact_lock`): a worker
   that does not get it skips the campaign, another one is ticking it;
2. the campaign's live attempts (queued, dialing, ringing, in progress) are counted
   against `max_concurrent`;
3. due leads are picked `FOR UPDATE SKIP LOCKED`: due call-backs first, then pending and
   retry leads by `next_at` (never-dialled first);
4. each is checked with `compliance.decide` (calling window in every candidate zone,
   attempts in the period, quiet days after a conversation, the campaign's and the global
   do-not-call list) and the campaign's `max_attempts`; a lead not allowed now gets
   `next_at = decision.not_before`, or state `dnc` / `exhausted` when never;
5. under a global transaction advisory lock, the live attempts of every campaign are
   counted against the global cap, and the attempts are created (`queued`) with their
   leads set `dialing`; the partial unique index `attempts_one_live_idx` is the last line
   against two live attempts for one lead.

Concurrency slots are these counts of live `attempts` rows, not counters in Redis: the
count is exact, a slot frees itself in the same transaction that ends the attempt (every
terminal status, including no-answer and failed), and nothing is left held when a process
dies. The dial jobs are deferred by the caller after the commit (`TickResult.queued`); an
attempt whose job was lost is re-deferred by the reconciliation.

The clock is an argument (`now`), so tests run the real SQL at fixed times.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args
from zoneinfo import ZoneInfo

import asyncpg

from campaigns import audit
from campaigns.attempts import TERMINAL, AttemptState
from campaigns.compliance import ComplianceRules, ContactHistory, Decision, decide, rules_for
from campaigns.models import CampaignSettings

__all__ = [
    "CAMPAIGN_LOCK",
    "GLOBAL_LOCK",
    "LIVE_STATES",
    "CampaignTick",
    "TickResult",
    "global_room",
    "tick",
    "tick_campaign",
]

#: attempt states that hold a concurrency slot
LIVE_STATES: tuple[str, ...] = tuple(s for s in get_args(AttemptState) if s not in TERMINAL)
#: advisory lock keys: (CAMPAIGN_LOCK, hashtext(campaign id)) per campaign, GLOBAL_LOCK for
#: the global cap (always taken after a campaign's, never before)
CAMPAIGN_LOCK = 0x44_4B_43  # "DKC"
GLOBAL_LOCK = 0x64_69_61_6C_67_63  # "dialgc"
#: attempts older than this never count against a period (CountryRules allows ≤ 90 days)
HISTORY_DAYS = 90
ACTOR = "scheduler"


@dataclass
class CampaignTick:
    campaign_id: str
    #: the campaign's carrier (its dial jobs go to that carrier's queue)
    carrier: str = ""
    #: attempts created (queued), to be given dial jobs
    queued: list[str] = field(default_factory=list)
    #: leads examined (a decision was made for each)
    decisions: int = 0
    #: leads moved to a later time (outside the window, frequency caps)
    postponed: int = 0
    #: leads that will never be dialled by this campaign (dnc, exhausted)
    closed: int = 0
    #: why nothing (more) was queued: locked, not_started, ended, campaign_full, global_full,
    #: no_due_leads, completed, batch
    stopped: str = ""


@dataclass
class TickResult:
    campaigns: list[CampaignTick] = field(default_factory=list)

    @property
    def queued(self) -> list[str]:
        return [a for c in self.campaigns for a in c.queued]

    @property
    def dials(self) -> list[tuple[str, str]]:
        """(attempt id, carrier) of every attempt created."""
        return [(a, c.carrier) for c in self.campaigns for a in c.queued]

    @property
    def decisions(self) -> int:
        return sum(c.decisions for c in self.campaigns)


async def tick(
    pool: asyncpg.Pool, *, now: dt.datetime, global_cap: int | None, batch: int = 200
) -> TickResult:
    """One pass over every running campaign; returns the attempts created (their dial jobs
    are the caller's to defer, after this returns: every transaction has committed)."""
    ids = await pool.fetch(
        "SELECT id FROM campaigns WHERE status = 'running' AND deleted_at IS NULL ORDER BY id"
    )
    result = TickResult()
    for row in ids:
        result.campaigns.append(
            await tick_campaign(pool, row["id"], now=now, global_cap=global_cap, batch=batch)
        )
    return result


async def global_room(conn: asyncpg.Connection, global_cap: int | None) -> int | None:
    """Under the global lock (taken here, held to the end of the caller's transaction):
    how many more live attempts the global cap allows (None: no cap)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", GLOBAL_LOCK)
    if global_cap is None:
        return None
    live = await conn.fetchval(
        "SELECT count(*) FROM attempts WHERE state = ANY($1::text[])", list(LIVE_STATES)
    )
    return max(0, global_cap - int(live))


async def tick_campaign(
    pool: asyncpg.Pool,
    campaign_id: uuid.UUID | str,
    *,
    now: dt.datetime,
    global_cap: int | None,
    batch: int = 200,
) -> CampaignTick:
    cid = uuid.UUID(str(campaign_id))
    out = CampaignTick(str(cid))
    async with pool.acquire() as conn, conn.transaction():
        locked = await conn.fetchval(
            "SELECT pg_try_advisory_xact_lock($1, hashtext($2::text))", CAMPAIGN_LOCK, str(cid)
        )
        if not locked:
            out.stopped = "locked"
            return out
        camp = await conn.fetchrow(
            "SELECT id, carrier, max_concurrent, max_attempts, starts_at, ends_at, settings"
            " FROM campaigns WHERE id = $1 AND status = 'running' AND deleted_at IS NULL"
            " FOR SHARE", cid,
        )
        if camp is None:
            out.stopped = "not_running"
            return out
        out.carrier = camp["carrier"]
        if camp["starts_at"] is not None and now < camp["starts_at"]:
            out.stopped = "not_started"
            return out
        if camp["ends_at"] is not None and now >= camp["ends_at"]:
            await _complete(conn, cid, "the campaign's end date has passed")
            out.stopped = "ended"
            return out
        live = await conn.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND state = ANY($2::text[])",
            cid, list(LIVE_STATES),
        )
        room = int(camp["max_concurrent"]) - int(live)
        if room <= 0:
            out.stopped = "campaign_full"
            return out
        settings = CampaignSettings.model_validate(camp["settings"] or {})
        overrides = settings.compliance_overrides()
        chosen: list[tuple[int, int | None]] = []
        later: list[tuple[int, dt.datetime]] = []
        any_due = False
        while len(chosen) < room and out.decisions < batch:
            want = min(batch - out.decisions, (room - len(chosen)) * 2 + 8)
            rows = await _due(conn, cid, now, want, [lead for lead, _ in chosen])
            if not rows:
                break
            any_due = True
            for row, decision in await _decide(conn, cid, rows, now, overrides):
                out.decisions += 1
                if row["attempts"] >= camp["max_attempts"]:
                    await _close(conn, row, "exhausted", "max attempts reached")
                    out.closed += 1
                elif decision.allowed:
                    if len(chosen) < room:
                        chosen.append((row["id"], _local_hour(now, row["zones"])))
                elif decision.reason == "do_not_call":
                    await _close(conn, row, "dnc", "on a do-not-call list")
                    out.closed += 1
                elif decision.not_before is None:
                    await _close(conn, row, "exhausted", f"never callable: {decision.reason}")
                    out.closed += 1
                else:
                    later.append((row["id"], decision.not_before))
                    out.postponed += 1
            if later:  # out of the due set, so the next pick of this loop skips them
                await conn.execute(
                    "UPDATE leads l SET next_at = p.at, updated_at = now()"
                    " FROM unnest($1::bigint[], $2::timestamptz[]) AS p(id, at) WHERE l.id = p.id",
                    [i for i, _ in later], [t for _, t in later],
                )
                later.clear()
        if chosen:
            free = await global_room(conn, global_cap)
            if free is not None and free < len(chosen):
                chosen = chosen[:free]
                out.stopped = "global_full"
            if chosen:
                out.queued = await _queue(conn, cid, camp["carrier"], chosen, now)
        if not out.stopped:
            out.stopped = "campaign_full" if len(out.queued) >= room else (
                "batch" if out.decisions >= batch else "no_due_leads")
        if not any_due and not live and await _finished(conn, cid):
            await _complete(conn, cid, "no lead is left to call")
            out.stopped = "completed"
    return out


async def _due(
    conn: asyncpg.Connection, cid: uuid.UUID, now: dt.datetime, limit: int, exclude: list[int]
) -> list[asyncpg.Record]:
    cols = "id, phone, country, zones, state, attempts, conversation_at"
    rows = await conn.fetch(
        f"SELECT {cols} FROM leads WHERE campaign_id = $1 AND state = 'callback'"
        " AND next_at <= $2 AND id <> ALL($3::bigint[])"
        " ORDER BY next_at, id LIMIT $4 FOR UPDATE SKIP LOCKED",
        cid, now, exclude, limit,
    )
    if len(rows) < limit:
        rows += await conn.fetch(
            f"SELECT {cols} FROM leads WHERE campaign_id = $1 AND state IN ('pending', 'retry')"
            " AND (next_at IS NULL OR next_at <= $2) AND id <> ALL($3::bigint[])"
            " ORDER BY next_at NULLS FIRST, id LIMIT $4 FOR UPDATE SKIP LOCKED",
            cid, now, exclude, limit - len(rows),
        )
    return list(rows)


async def _decide(
    conn: asyncpg.Connection,
    cid: uuid.UUID,
    rows: Sequence[asyncpg.Record],
    now: dt.datetime,
    overrides: Mapping[str, ComplianceRules],
) -> list[tuple[asyncpg.Record, Decision]]:
    ids = [r["id"] for r in rows]
    history: dict[int, list[dt.datetime]] = {
        h["lead_id"]: list(h["times"])
        for h in await conn.fetch(
            "SELECT lead_id, array_agg(created_at) AS times FROM attempts"
            " WHERE lead_id = ANY($1::bigint[]) AND created_at > $2 GROUP BY lead_id",
            ids, now - dt.timedelta(days=HISTORY_DAYS),
        )
    }
    blocked = {
        d["phone"]
        for d in await conn.fetch(
            "SELECT DISTINCT phone FROM dnc WHERE phone = ANY($1::text[])"
            " AND (campaign_id IS NULL OR campaign_id = $2)",
            list({r["phone"] for r in rows}), cid,
        )
    }
    out = []
    for row in rows:
        rules = rules_for(row["country"], dict(overrides))
        times = [t for t in history.get(row["id"], ()) if t > now - rules.attempt_period]
        # a call-back the person asked for is made with their consent: the quiet days
        # after that conversation do not hold it back (12 CFR 1006.14(b)(3))
        last = None if row["state"] == "callback" else row["conversation_at"]
        hist = ContactHistory(times, last, row["phone"] in blocked)
        try:
            decision = decide(now, list(row["zones"] or ()), hist, rules)
        except ValueError:  # a zone name this machine's tz database does not know
            decision = Decision(False, "no_time_zone")
        out.append((row, decision))
    return out


def _local_hour(now: dt.datetime, zones: Sequence[str] | None) -> int | None:
    try:
        return now.astimezone(ZoneInfo(zones[0])).hour if zones else None
    except (ValueError, KeyError):
        return None


async def _queue(
    conn: asyncpg.Connection,
    cid: uuid.UUID,
    carrier: str,
    chosen: list[tuple[int, int | None]],
    now: dt.datetime,
) -> list[str]:
    rows = await conn.fetch(
        "WITH picked AS ("
        "  SELECT * FROM unnest($1::bigint[], $2::smallint[]) AS p(lead_id, local_hour)),"
        " ins AS ("
        "  INSERT INTO attempts (campaign_id, lead_id, carrier, state, local_hour, created_at,"
        "                        updated_at)"
        "  SELECT $3, lead_id, $4, 'queued', local_hour, $5, $5 FROM picked"
        "  RETURNING id, lead_id)"
        " UPDATE leads l SET state = 'dialing', attempts = l.attempts + 1, next_at = NULL,"
        "   updated_at = now()"
        " FROM ins WHERE l.id = ins.lead_id RETURNING ins.id",
        [lead for lead, _ in chosen], [hour for _, hour in chosen], cid, carrier, now,
    )
    return [str(r["id"]) for r in rows]


async def _close(conn: asyncpg.Connection, row: Mapping[str, Any], state: str, reason: str) -> None:
    await conn.execute(
        "UPDATE leads SET state = $2, next_at = NULL, updated_at = now() WHERE id = $1",
        row["id"], state,
    )
    await audit.record(conn, ACTOR, audit.LEAD_STATE, "lead", str(row["id"]),
                       {"state": state, "reason": reason})


async def _finished(conn: asyncpg.Connection, cid: uuid.UUID) -> bool:
    return not await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM leads WHERE campaign_id = $1"
        " AND state IN ('pending', 'retry', 'callback', 'dialing'))", cid,
    )


async def _complete(conn: asyncpg.Connection, cid: uuid.UUID, reason: str) -> None:
    done = await conn.fetchval(
        "UPDATE campaigns SET status = 'completed', status_reason = $2, updated_at = now()"
        " WHERE id = $1 AND status = 'running' RETURNING id", cid, reason,
    )
    if done is not None:
        await audit.record(conn, ACTOR, audit.CAMPAIGN_STATE, "campaign", str(cid),
                           {"status": "completed", "reason": reason})
