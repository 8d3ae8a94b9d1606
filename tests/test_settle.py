"""Settling ended attempts: the lead's next state (pure rules), the campaign pausing itself
on failures, and the reconciliation of attempts a crash left in flight (real SQL, fixed
clocks)."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from campaigns import reconcile
from campaigns.models import CampaignSettings, RetryRule, RetryRules
from campaigns.settle import next_lead_state, settle
from campaigns.status import end_attempt
from dialkit import db
from tests.sched_helpers import add_lead, make_campaign, quiesce

AT = dt.datetime(2026, 6, 3, 15, 0, tzinfo=dt.UTC)
RULES = RetryRules()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    await db.migrate(pool)
    yield pool
    await pool.close()


def _next(state: str, outcome: dict | None = None, so_far: dict | None = None,
          attempts: int = 1, max_attempts: int = 6, **kw: object):
    return next_lead_state(state, outcome, at=AT, lead_attempts=attempts,
                           max_attempts=max_attempts, retry=RULES, retries_so_far=so_far or {},
                           **kw)  # type: ignore[arg-type]


def test_retries_widen_then_exhaust() -> None:
    gaps = [_next("no_answer", so_far={"no_answer": n}).next_at - AT for n in range(3)]
    assert gaps == [dt.timedelta(minutes=120), dt.timedelta(minutes=240),
                    dt.timedelta(minutes=480)]
    assert _next("no_answer", so_far={"no_answer": 3}).state == "exhausted"
    # another disposition has its own count
    assert _next("busy", so_far={"no_answer": 3}).state == "retry"
    assert _next("busy", attempts=6).state == "exhausted"  # max attempts


def test_outcomes_decide_over_the_carrier_state() -> None:
    assert _next("completed", {"outcome": "opt_out", "opt_out": True}).state == "dnc"
    done = _next("completed", {"outcome": "promise_to_pay", "right_party": True})
    assert done.state == "done" and done.conversation_at == AT
    wrong = _next("completed", {"outcome": "wrong_party"})
    assert wrong.state == "done" and wrong.conversation_at is None
    at = AT + dt.timedelta(days=2)
    back = _next("completed", {"outcome": "callback", "callback_at": at})
    assert (back.state, back.next_at, back.conversation_at) == ("callback", at, AT)
    vague = _next("completed", {"outcome": "callback"})
    assert vague.state == "callback" and vague.next_at == AT + dt.timedelta(minutes=120)
    machine = _next("completed", {"outcome": "voicemail"})
    assert machine.disposition == "voicemail" and machine.state == "retry"
    spoke = _next("completed", {"outcome": "hung_up", "right_party": True})
    assert spoke.state == "retry" and spoke.conversation_at == AT  # the quiet days apply
    nothing = _next("completed", None)
    assert nothing.disposition == "failed"
    assert _next("queued", None, permanent="invalid context").state == "exhausted"


async def test_a_campaign_pauses_itself_on_failures(pool: asyncpg.Pool) -> None:
    await quiesce(pool)
    settings = CampaignSettings(failure_window=5, pause_failure_rate=0.6)
    cid = await make_campaign(pool, settings=settings)
    for i in range(5):
        lead = await add_lead(pool, cid, state="dialing", attempts=1)
        aid = await pool.fetchval(
            "INSERT INTO attempts (campaign_id, lead_id, carrier, state) VALUES ($1, $2,"
            " 'twilio', 'dialing') RETURNING id", cid, lead)
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT id, state FROM attempts WHERE id = $1", aid)
            state = "failed" if i != 1 else "busy"
            await end_attempt(conn, row, state, AT + dt.timedelta(minutes=i), "test")
            await settle(conn, aid, at=AT + dt.timedelta(minutes=i))
        status = await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", cid)
        assert status == ("paused" if i == 4 else "running"), i
    reason = await pool.fetchval("SELECT status_reason FROM campaigns WHERE id = $1", cid)
    assert "4 of the last 5 attempts failed" in reason


async def test_reconcile_after_a_crash(pool: asyncpg.Pool) -> None:
    await quiesce(pool)
    retry = RetryRules(failed=RetryRule(delay_minutes=45, max_retries=2))
    cid = await make_campaign(pool, settings=CampaignSettings(retry=retry))
    old = AT - dt.timedelta(minutes=10)
    lost_lead = await add_lead(pool, cid, state="dialing", attempts=1)
    lost = await pool.fetchval(
        "INSERT INTO attempts (campaign_id, lead_id, carrier, state, created_at, dialed_at,"
        " updated_at) VALUES ($1, $2, 'twilio', 'dialing', $3, $3, $3) RETURNING id",
        cid, lost_lead, old)
    known_lead = await add_lead(pool, cid, state="dialing", attempts=1)
    known = await pool.fetchval(
        "INSERT INTO attempts (campaign_id, lead_id, carrier, carrier_sid, state, created_at,"
        " updated_at) VALUES ($1, $2, 'twilio', 'CArecon1', 'ringing', $3, $3) RETURNING id",
        cid, known_lead, old)
    queued_lead = await add_lead(pool, cid, state="dialing", attempts=1)
    queued = await pool.fetchval(
        "INSERT INTO attempts (campaign_id, lead_id, carrier, state, created_at, updated_at)"
        " VALUES ($1, $2, 'twilio', 'queued', $3, $3) RETURNING id", cid, queued_lead, old)
    asked: list[tuple[str, str]] = []
    redeferred: list[str] = []

    async def carrier_status(carrier: str, sid: str) -> str | None:
        asked.append((carrier, sid))
        return "busy"

    async def redefer(attempt_id: str, carrier: str) -> None:
        assert carrier == "twilio"
        redeferred.append(attempt_id)

    done = await reconcile.reconcile(pool, now=AT, carrier_status=carrier_status,
                                     redefer=redefer)
    assert asked == [("twilio", "CArecon1")] and done.statuses_applied == 1
    assert await pool.fetchval("SELECT state FROM attempts WHERE id = $1", known) == "busy"
    row = await pool.fetchrow("SELECT state, error FROM attempts WHERE id = $1", lost)
    assert (row["state"], row["error"]) == ("failed", reconcile.LOST)
    lead = await pool.fetchrow("SELECT state, next_at FROM leads WHERE id = $1", lost_lead)
    # retried no sooner than its rule
    assert lead["state"] == "retry" and lead["next_at"] == AT + dt.timedelta(minutes=45)
    assert redeferred == [str(queued)]
    # a second pass finds nothing more to do
    again = await reconcile.reconcile(pool, now=AT, carrier_status=carrier_status,
                                      redefer=redefer)
    assert not again.lost and again.statuses_applied == 0
    await quiesce(pool)
