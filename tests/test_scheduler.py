"""The scheduler's tick over the real SQL, at fixed clocks: compliance properties with random
time zones, clocks and contact histories (hypothesis), several ticks racing at once."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns import scheduler
from campaigns.compliance import in_window, rules_for
from dialkit import db
from tests.sched_helpers import add_lead, add_past_attempt, make_campaign, quiesce

UTC = dt.UTC
ZONE_SETS = [
    ["America/New_York"], ["America/Los_Angeles"], ["Pacific/Honolulu"], ["America/Chicago"],
    ["America/Chicago", "America/Denver"],  # an ambiguous number: both must allow it
    ["America/New_York", "America/Los_Angeles"], ["Asia/Kolkata"],
    ["Asia/Kolkata", "America/New_York"],
    ["Asia/Kolkata", "America/Denver"],  # India's windows there never overlap: never callable
    ["Europe/London"],
]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=8)
    await db.migrate(pool)
    yield pool
    await pool.close()


lead_strategy = st.fixed_dictionaries({
    "zones": st.sampled_from(ZONE_SETS),
    "country": st.sampled_from(["US", "IN", "GB"]),
    "state": st.sampled_from(["pending", "retry", "callback"]),
    "past_attempts": st.lists(st.floats(min_value=0.01, max_value=9.0), max_size=9),
    "conversation_days_ago": st.none() | st.floats(min_value=0.01, max_value=10.0),
    "dnc": st.sampled_from(["no", "no", "campaign", "global"]),
})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    now=st.datetimes(min_value=dt.datetime(2026, 1, 1), max_value=dt.datetime(2026, 12, 31),
                     timezones=st.just(UTC)),
    leads=st.lists(lead_strategy, min_size=1, max_size=12),
    max_concurrent=st.integers(1, 6),
    global_cap=st.integers(1, 8),
    other_live=st.integers(0, 3),
    racers=st.integers(1, 4),
)
async def test_tick_never_breaks_a_rule(
    pool: asyncpg.Pool, now: dt.datetime, leads: list[dict], max_concurrent: int,
    global_cap: int, other_live: int, racers: int,
) -> None:
    await quiesce(pool)
    cid = await make_campaign(pool, max_concurrent=max_concurrent, max_attempts=20)
    # live attempts of another (paused) campaign count against the global cap
    other = await make_campaign(pool, status="paused")
    for _ in range(other_live):
        lead = await add_lead(pool, other, state="dialing")
        await pool.execute("INSERT INTO attempts (campaign_id, lead_id, carrier, state)"
                           " VALUES ($1, $2, 'twilio', 'dialing')", other, lead)
    facts: dict[int, dict] = {}
    for spec in leads:
        conv = (now - dt.timedelta(days=spec["conversation_days_ago"])
                if spec["conversation_days_ago"] is not None else None)
        next_at = now - dt.timedelta(minutes=1) if spec["state"] != "pending" else None
        lead = await add_lead(pool, cid, zones=spec["zones"], country=spec["country"],
                              state=spec["state"], next_at=next_at, conversation_at=conv)
        for days in spec["past_attempts"]:
            await add_past_attempt(pool, cid, lead, now - dt.timedelta(days=days))
        if spec["dnc"] != "no":
            phone = await pool.fetchval("SELECT phone FROM leads WHERE id = $1", lead)
            await pool.execute(
                "INSERT INTO dnc (phone, campaign_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                phone, cid if spec["dnc"] == "campaign" else None)
        facts[lead] = {**spec, "conversation_at": conv}

    results = await asyncio.gather(*(
        scheduler.tick_campaign(pool, cid, now=now, global_cap=global_cap) for _ in range(racers)))

    queued = [a for r in results for a in r.queued]
    assert len(queued) == len(set(queued))
    rows = await pool.fetch(
        "SELECT a.lead_id, a.created_at, l.state FROM attempts a JOIN leads l ON l.id = a.lead_id"
        " WHERE a.campaign_id = $1 AND a.state = 'queued'", cid)
    in_db = await pool.fetch("SELECT id FROM attempts WHERE campaign_id = $1 AND state = 'queued'",
                             cid)
    assert sorted(queued) == sorted(str(r["id"]) for r in in_db)
    dialled = [r["lead_id"] for r in rows]
    # never two live attempts for one lead; never over either cap
    assert len(dialled) == len(set(dialled))
    assert len(dialled) <= max_concurrent
    total_live = await pool.fetchval(
        "SELECT count(*) FROM attempts WHERE state = ANY($1::text[])", list(scheduler.LIVE_STATES))
    assert total_live <= max(global_cap, other_live)
    assert len(dialled) <= max(0, global_cap - other_live)
    for lead in dialled:
        f = facts[lead]
        rules = rules_for(f["country"])
        assert f["dnc"] == "no", "a number on a do-not-call list was dialled"
        assert in_window(now, f["zones"], rules.window), "dialled outside the calling window"
        recent = [d for d in f["past_attempts"] if dt.timedelta(days=d) < rules.attempt_period]
        assert len(recent) < rules.max_attempts, "over the attempt cap"
        if f["state"] != "callback" and f["conversation_at"] is not None:
            assert now - f["conversation_at"] >= rules.quiet_after_conversation
        row = await pool.fetchrow("SELECT state FROM leads WHERE id = $1", lead)
        assert row["state"] == "dialing"
    # every lead not dialled is left consistent: on a list, closed, or due later
    for lead, f in facts.items():
        if lead in dialled:
            continue
        row = await pool.fetchrow("SELECT state, next_at FROM leads WHERE id = $1", lead)
        if f["dnc"] != "no":
            assert row["state"] in ("dnc", f["state"])  # dnc, or not examined (caps)
        if row["state"] in ("pending", "retry", "callback") and row["next_at"] is not None \
                and row["next_at"] > now:
            # postponed: the time given must itself be inside the window
            assert in_window(row["next_at"], f["zones"], rules_for(f["country"]).window)
    await quiesce(pool)


async def test_due_callbacks_first_then_never_dialled(pool: asyncpg.Pool) -> None:
    await quiesce(pool)
    now = dt.datetime(2026, 6, 3, 15, 0, tzinfo=UTC)  # 11:00 in New York
    cid = await make_campaign(pool, max_concurrent=2)
    retry = await add_lead(pool, cid, state="retry", next_at=now - dt.timedelta(hours=1))
    pending = await add_lead(pool, cid)
    callback = await add_lead(pool, cid, state="callback", next_at=now - dt.timedelta(minutes=5),
                              conversation_at=now - dt.timedelta(days=1))
    later = await add_lead(pool, cid, state="callback", next_at=now + dt.timedelta(hours=1))
    result = await scheduler.tick_campaign(pool, cid, now=now, global_cap=None)
    leads = [r["lead_id"] for r in await pool.fetch(
        "SELECT lead_id FROM attempts WHERE campaign_id = $1 ORDER BY lead_id", cid)]
    assert len(result.queued) == 2
    assert sorted(leads) == sorted([callback, pending])  # the call-back despite yesterday's talk
    assert retry not in leads and later not in leads
    await quiesce(pool)


async def test_outside_window_is_postponed_to_the_window(pool: asyncpg.Pool) -> None:
    await quiesce(pool)
    now = dt.datetime(2026, 6, 3, 4, 0, tzinfo=UTC)  # midnight in New York
    cid = await make_campaign(pool)
    lead = await add_lead(pool, cid)
    result = await scheduler.tick_campaign(pool, cid, now=now, global_cap=None)
    assert result.queued == [] and result.postponed == 1
    next_at = await pool.fetchval("SELECT next_at FROM leads WHERE id = $1", lead)
    assert next_at == dt.datetime(2026, 6, 3, 12, 0, tzinfo=UTC)  # 08:00 EDT
    # at that time it is dialled
    result = await scheduler.tick_campaign(pool, cid, now=next_at, global_cap=None)
    assert len(result.queued) == 1
    await quiesce(pool)


async def test_dnc_and_exhausted_leads_are_closed_and_campaign_completes(pool: asyncpg.Pool) -> None:
    await quiesce(pool)
    now = dt.datetime(2026, 6, 3, 16, 0, tzinfo=UTC)
    cid = await make_campaign(pool, max_attempts=2)
    blocked = await add_lead(pool, cid, phone="+14155550199")
    await pool.execute("INSERT INTO dnc (phone) VALUES ('+14155550199') ON CONFLICT DO NOTHING")
    used = await add_lead(pool, cid, attempts=2)
    # India's 08:00-19:00 in Kolkata and in Denver never overlap (12.5 h apart)
    never = await add_lead(pool, cid, zones=["Asia/Kolkata", "America/Denver"], country="IN")
    result = await scheduler.tick_campaign(pool, cid, now=now, global_cap=None)
    assert result.queued == [] and result.closed == 3
    states = {r["id"]: r["state"] for r in await pool.fetch(
        "SELECT id, state FROM leads WHERE campaign_id = $1", cid)}
    assert states == {blocked: "dnc", used: "exhausted", never: "exhausted"}
    result = await scheduler.tick_campaign(pool, cid, now=now, global_cap=None)
    assert result.stopped == "completed"
    assert await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", cid) == "completed"
    audit = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject_type = 'campaign' AND subject_id = $1",
        str(cid))
    assert audit == 1


async def test_campaign_dates(pool: asyncpg.Pool) -> None:
    await quiesce(pool)
    now = dt.datetime(2026, 6, 3, 16, 0, tzinfo=UTC)
    early = await make_campaign(pool, starts_at=now + dt.timedelta(hours=1))
    await add_lead(pool, early)
    assert (await scheduler.tick_campaign(pool, early, now=now, global_cap=None)).stopped == \
        "not_started"
    over = await make_campaign(pool, ends_at=now - dt.timedelta(minutes=1),
                               starts_at=now - dt.timedelta(days=1))
    await add_lead(pool, over)
    result = await scheduler.tick_campaign(pool, over, now=now, global_cap=None)
    assert result.stopped == "ended" and result.queued == []
    assert await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", over) == "completed"
    await quiesce(pool)


@pytest.mark.slow
async def test_many_racing_ticks_over_many_campaigns_respect_the_global_cap(
    pool: asyncpg.Pool,
) -> None:
    await quiesce(pool)
    now = dt.datetime(2026, 6, 3, 16, 0, tzinfo=UTC)
    campaigns = [await make_campaign(pool, max_concurrent=7) for _ in range(4)]
    for cid in campaigns:
        for _ in range(15):
            await add_lead(pool, cid)
    results = await asyncio.gather(*(
        scheduler.tick(pool, now=now, global_cap=17) for _ in range(6)))
    queued = [a for r in results for a in r.queued]
    assert len(queued) == 17 == len(set(queued))
    per = await pool.fetch("SELECT campaign_id, count(*) AS n FROM attempts WHERE state = 'queued'"
                           " GROUP BY campaign_id")
    assert all(r["n"] <= 7 for r in per)
    await quiesce(pool)
