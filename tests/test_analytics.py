"""Campaign analytics from the rollups the triggers keep: a known set of campaigns, leads,
attempts and calls is written the way the system writes them (attempt rows moved through
the state machine by status updates, calls, turns, events and outcomes through the call
store), and every figure is checked exactly, percentiles within the stated bucket
resolution; re-applied and upgraded terminal states, late call records and deletions keep
the rollups equal to a rebuild from the raw rows."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from ai.conversation.commands import RecordTurn
from ai.types import Action
from ai.vocabulary import outcome_fields
from campaigns.analytics import (
    BUCKET_GROWTH,
    bucket_of,
    bucket_value_ms,
    campaign_analytics,
    hour_range,
    overview,
)
from campaigns.attempts import TERMINAL, AttemptState, advance
from dialkit import api_analytics
from dialkit.config import Settings
from dialkit.db import create_pool, migrate
from dialkit.openapi import INSTALLED
from dialkit.providers import Providers
from dialkit.server import build_app
from dialkit.store import CallStore

UTC = dt.UTC
RESOLUTION = math.sqrt(BUCKET_GROWTH) - 1  # a reported percentile is within 2.5 %


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def db_url(admin_database_url: str) -> AsyncIterator[str]:
    """A database of this module's own: the overview sums every campaign in it."""
    name = f"dialkit_analytics_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(admin_database_url)
    yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    admin = await asyncpg.connect(admin_database_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, max_size=4)
    await migrate(pool)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(db_url: str, base_settings: Settings, light_providers: Providers) -> AsyncIterator[str]:
    """The server's app on this module's database, with the analytics routes."""
    app = build_app(base_settings.model_copy(update={"database_url": db_url}), light_providers)
    installed = app[INSTALLED].routes if INSTALLED in app else []
    if not any(r.path == "/api/analytics/overview" for r in installed):
        api_analytics.routes.install(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


# ---- writing as the system does -------------------------------------------------------


async def new_campaign(pool: asyncpg.Pool, name: str) -> str:
    return str(await pool.fetchval(
        "INSERT INTO campaigns (name, playbook_name, playbook_version, carrier, caller_id,"
        " max_concurrent, max_attempts, webhook_secret) VALUES ($1, 'collections', '1',"
        " 'twilio', '+15550100000', 5, 7, 'secret') RETURNING id", name))


async def new_lead(pool: asyncpg.Pool, campaign: str, ref: str, currency: str = "USD",
                   zone: str = "America/New_York") -> int:
    return int(await pool.fetchval(
        "INSERT INTO leads (campaign_id, account_ref, name, phone, country, zones, amount_due,"
        " currency, due_date) VALUES ($1, $2, 'Debtor', '+15551230000', $3, $4, 500, $5,"
        " '2026-12-31') RETURNING id",
        uuid.UUID(campaign), ref, "IN" if currency == "INR" else "US", [zone], currency))


async def new_attempt(pool: asyncpg.Pool, campaign: str, lead: int, created: dt.datetime,
                      local_hour: int | None, call_id: str | None = None) -> str:
    """The scheduler's insert: a queued attempt."""
    return str(await pool.fetchval(
        "INSERT INTO attempts (campaign_id, lead_id, call_id, carrier, local_hour, created_at)"
        " VALUES ($1, $2, $3, 'twilio', $4, $5) RETURNING id",
        uuid.UUID(campaign), lead, uuid.UUID(call_id) if call_id else None, local_hour, created))


async def report(pool: asyncpg.Pool, attempt: str, incoming: AttemptState, when: dt.datetime) -> None:
    """A carrier status callback applied the way the status webhook does: through the
    state machine, stamping answered_at / ended_at."""
    async with pool.acquire() as conn, conn.transaction():
        current = await conn.fetchval("SELECT state FROM attempts WHERE id = $1 FOR UPDATE",
                                      uuid.UUID(attempt))
        nxt = advance(current, incoming)
        if nxt is None:
            return
        await conn.execute(
            "UPDATE attempts SET state = $2, updated_at = now(),"
            " dialed_at = CASE WHEN $2 = 'dialing' THEN $3 ELSE dialed_at END,"
            " answered_at = CASE WHEN $2 = 'in_progress' THEN $3 ELSE answered_at END,"
            " ended_at = CASE WHEN $4 THEN coalesce(ended_at, $3) ELSE ended_at END"
            " WHERE id = $1", uuid.UUID(attempt), nxt, when, nxt in TERMINAL)


async def reapply(pool: asyncpg.Pool, attempt: str) -> None:
    """A writer that re-applies the terminal state blindly (no state-machine check)."""
    await pool.execute("UPDATE attempts SET state = state, updated_at = now() WHERE id = $1",
                       uuid.UUID(attempt))


async def run_call(store: CallStore, call_id: str, *, greeting_ms: float | None,
                   v2v: list[float], actions: list[Action]) -> None:
    """What a media session records: the call claimed, the greeting's first audio, agent
    and caller turns, the agent's actions as outcome fields, the end."""
    await store.claim_call(call_id, "twilio", "CA" + call_id[:8], "MZ" + call_id[:8], {})
    if greeting_ms is not None:
        await store.add_event(call_id, "greeting_audio", round(greeting_ms),
                              {"latency_ms": greeting_ms, "audio": "greeting"})
    seq = 0
    for ms in v2v:
        seq += 1
        await store.add_turn(call_id, RecordTurn(seq, "caller", "yes", seq * 1000, seq * 1000 + 500,
                                                 stt_ms=200.0))
        seq += 1
        await store.add_turn(call_id, RecordTurn(seq, "agent", "ok", seq * 1000, seq * 1000 + 900,
                                                 voice_to_voice_ms=ms))
    for action in actions:
        await store.set_outcome(call_id, outcome_fields(action))
    await store.call_ended(call_id, "completed", None, None)


async def dial(pool: asyncpg.Pool, store: CallStore, campaign: str, lead: int,
               created: dt.datetime, local_hour: int | None, fate: list[AttemptState],
               talk_s: int = 0, **call: Any) -> str:
    """One attempt from queued through `fate` (callbacks, answered after 10 s, ended
    talk_s later); when answered, its call runs between the two."""
    call_id = await store.create_call("twilio", {}, "+15551230000") if call or talk_s else None
    attempt = await new_attempt(pool, campaign, lead, created, local_hour, call_id)
    t = created
    for state in fate:
        if state in TERMINAL:
            t = t + dt.timedelta(seconds=talk_s)
        elif state == "in_progress":
            t = t + dt.timedelta(seconds=10)
            if call_id is not None:
                await run_call(store, call_id, **call)
        await report(pool, attempt, state, t)
    return attempt


ANSWERED: list[AttemptState] = ["dialing", "ringing", "in_progress", "completed"]


def pay(amount: float) -> list[Action]:
    return [Action("right_party_verified"),
            Action("promise_to_pay", {"amount": amount, "date": "2026-12-15", "plan": "full"}),
            Action("end_call", {"outcome": "promise_to_pay"})]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def world(pool: asyncpg.Pool) -> dict[str, Any]:
    """Campaign A: ten attempts of every kind over three days (known figures below);
    campaign B: two; campaign C: deleted (left out of the overview)."""
    store = CallStore(pool)
    a = await new_campaign(pool, "A")
    usd = await new_lead(pool, a, "a-usd")
    usd2 = await new_lead(pool, a, "a-usd-2")
    inr = await new_lead(pool, a, "a-inr", currency="INR", zone="Asia/Kolkata")
    ids: dict[str, str] = {}
    # Nov 30, 15:xx UTC
    ids["a1"] = await dial(pool, store, a, usd, at(30, 15, 5), 10, ANSWERED, talk_s=120,
                           greeting_ms=800.0, v2v=[700.0, 900.0, 1100.0], actions=pay(150.0))
    ids["a2"] = await dial(pool, store, a, usd2, at(30, 15, 40), 10, ANSWERED, talk_s=60,
                           greeting_ms=2500.0, v2v=[1500.0],
                           actions=[Action("right_party_verified"),
                                    Action("opt_out", {"reason": "stop_request"}),
                                    Action("end_call", {"outcome": "opt_out"})])
    # Nov 30, 16:xx UTC: answered by the wrong person, no greeting audio ever played
    ids["a3"] = await dial(pool, store, a, usd, at(30, 16, 10), 11, ANSWERED, talk_s=30,
                           greeting_ms=None, v2v=[],
                           actions=[Action("wrong_party"), Action("end_call", {"outcome": "wrong_party"})])
    # completed, then the asynchronous AMD verdict makes it voicemail
    ids["a4"] = await dial(pool, store, a, usd2, at(30, 16, 20), 11, [*ANSWERED, "voicemail"],
                           talk_s=25, greeting_ms=3000.0, v2v=[],
                           actions=[Action("voicemail"), Action("end_call", {"outcome": "voicemail"})])
    ids["a5"] = await dial(pool, store, a, usd, at(30, 14, 0), 9, ["dialing", "ringing", "no_answer"])
    ids["a6"] = await dial(pool, store, a, usd2, at(30, 14, 30), 9, ["dialing", "busy", "busy"])
    ids["a7"] = await dial(pool, store, a, usd, at(30, 17, 0), None, ["dialing", "failed"])
    ids["a8"] = await dial(pool, store, a, usd2, at(30, 17, 30), 12, ["dialing", "ringing"])
    # Dec 1, 03:10 UTC: India, in INR; its call's turns were written before the attempt
    # was linked to the call
    call9 = await store.create_call("twilio", {}, "+919800000000")
    await run_call(store, call9, greeting_ms=1200.0, v2v=[600.0, 650.0], actions=pay(2000.5))
    ids["a9"] = await new_attempt(pool, a, inr, dt.datetime(2026, 12, 1, 3, 10, tzinfo=UTC), 8)
    for state, t in (("dialing", 0), ("in_progress", 5), ("completed", 95)):
        await report(pool, ids["a9"], state,
                     dt.datetime(2026, 12, 1, 3, 10, tzinfo=UTC) + dt.timedelta(seconds=t))
    await pool.execute("UPDATE attempts SET call_id = $2 WHERE id = $1",
                       uuid.UUID(ids["a9"]), uuid.UUID(call9))
    # Nov 29: canceled
    ids["a10"] = await dial(pool, store, a, inr, at(29, 9, 0), 14, ["canceled"])

    b = await new_campaign(pool, "B")
    lb = await new_lead(pool, b, "b-1")
    ids["b1"] = await dial(pool, store, b, lb, at(30, 15, 0), 10, ANSWERED, talk_s=200,
                           greeting_ms=900.0, v2v=[4000.0], actions=pay(99.99))
    ids["b2"] = await dial(pool, store, b, lb, at(30, 15, 30), 10, ["dialing", "no_answer"])

    c = await new_campaign(pool, "C")
    lc = await new_lead(pool, c, "c-1")
    await dial(pool, store, c, lc, at(30, 15, 0), 10, ["dialing", "no_answer"])
    await pool.execute("UPDATE campaigns SET deleted_at = now() WHERE id = $1", uuid.UUID(c))
    return {"a": a, "b": b, "c": c, "ids": ids, "store": store}


# ---- the figures -----------------------------------------------------------------------


def near(reported: float | None, exact: float) -> bool:
    return reported is not None and abs(reported - exact) <= exact * RESOLUTION


async def test_every_figure_of_a_campaign(pool: asyncpg.Pool, world: dict[str, Any]) -> None:
    r = await campaign_analytics(pool, world["a"])
    assert r is not None and r.name == "A" and r.since is None and r.until is None
    m = r.metrics
    assert (m.attempts, m.in_flight, m.ended) == (10, 1, 9)
    assert (m.connected, m.voicemail, m.no_answer, m.busy, m.failed, m.canceled) == (4, 1, 1, 1, 1, 1)
    assert m.connect_rate == 4 / 9 and m.voicemail_rate == 1 / 9
    assert m.right_party_contacts == 3 and m.right_party_rate == 3 / 4
    assert m.promises == 2 and m.promise_rate == 2 / 3
    assert [(p.currency, p.promises, p.amount) for p in m.promised] == [
        ("INR", 1, Decimal("2000.50")), ("USD", 1, Decimal("150.00"))]
    assert m.opt_outs == 1
    # a1 120 s, a2 60 s, a3 30 s, a9 90 s
    assert m.handled_calls == 4 and m.average_handle_s == 75.0
    # agent turns: 600 650 700 900 1100 1500 → nearest rank p50 = 3rd, p95 = 6th
    assert m.voice_to_voice.samples == 6
    assert near(m.voice_to_voice.p50_ms, 700) and near(m.voice_to_voice.p95_ms, 1500)
    # connected calls' greetings: 800, 2500, 1200 (a3 had none; a4 is voicemail)
    assert m.greeting.samples == 3
    assert near(m.greeting.p50_ms, 1200) and near(m.greeting.p95_ms, 2500)
    # a2 spoke after 2.5 s, a3 never spoke
    assert m.abandoned == 2 and m.abandonment_rate == 2 / 4
    hours = {h.local_hour: h for h in r.by_local_hour}
    assert list(hours) == [None, 8, 9, 10, 11, 12, 14]
    assert (hours[9].attempts, hours[9].no_answer, hours[9].busy) == (2, 1, 1)
    h10 = hours[10]
    assert (h10.attempts, h10.connected, h10.right_party_contacts, h10.promises, h10.opt_outs) == (2, 2, 2, 1, 1)
    assert (hours[11].attempts, hours[11].connected, hours[11].voicemail) == (2, 1, 1)
    assert (hours[None].attempts, hours[None].failed) == (1, 1)
    assert (hours[12].attempts, hours[12].connected) == (1, 0)  # still ringing
    assert (hours[8].connected, hours[8].promises) == (1, 1)
    assert hours[14].canceled == 1


async def test_date_range_in_whole_utc_hours(pool: asyncpg.Pool, world: dict[str, Any]) -> None:
    day = await campaign_analytics(pool, world["a"], at(30, 0), dt.datetime(2026, 12, 1, tzinfo=UTC))
    assert day is not None
    m = day.metrics
    assert (m.attempts, m.connected, m.canceled, m.promises) == (8, 3, 0, 1)
    assert [(p.currency, p.amount) for p in m.promised] == [("USD", Decimal("150.00"))]
    assert m.voice_to_voice.samples == 4 and m.greeting.samples == 2
    # 15:30 rounds down to 15:00 and 15:06 up to 16:00: a1 (15:05) and a2 (15:40)
    with pytest.raises(ValueError, match="after"):
        await campaign_analytics(pool, world["a"], at(30, 15, 30), at(30, 15, 6))
    hour = await campaign_analytics(pool, world["a"], at(30, 15, 30), at(30, 15, 36))
    assert hour is not None
    assert (hour.since, hour.until) == (at(30, 15), at(30, 16))
    assert (hour.metrics.attempts, hour.metrics.connected, hour.metrics.abandoned) == (2, 2, 1)
    assert hour.metrics.voice_to_voice.samples == 4
    # an exact hour boundary is not widened: [16:00, 17:00) holds a3 and a4 only
    later = await campaign_analytics(pool, world["a"], at(30, 16), at(30, 17))
    assert later is not None and later.metrics.attempts == 2
    # only until: everything before Nov 30 (a10)
    before = await campaign_analytics(pool, world["a"], None, at(30, 0))
    assert before is not None and (before.metrics.attempts, before.metrics.canceled) == (1, 1)
    # since: Dec 1 on (a9), read from a whole day of daily histograms plus hours
    after = await campaign_analytics(pool, world["a"], dt.datetime(2026, 12, 1, tzinfo=UTC))
    assert after is not None and after.metrics.voice_to_voice.samples == 2
    assert near(after.metrics.voice_to_voice.p95_ms, 650)
    # a span of whole days and partial days at both ends sums the same samples
    span = await campaign_analytics(pool, world["a"], at(29, 8, 59), dt.datetime(2026, 12, 1, 3, 11, tzinfo=UTC))
    assert span is not None
    assert span.metrics.attempts == 10 and span.metrics.voice_to_voice.samples == 6
    assert span.metrics.greeting.samples == 3


async def test_overview_sums_the_live_campaigns(pool: asyncpg.Pool, world: dict[str, Any]) -> None:
    o = await overview(pool, None, None)
    t = o.totals
    assert (t.attempts, t.connected, t.no_answer, t.promises, t.right_party_contacts) == (12, 5, 2, 3, 4)
    assert t.connect_rate == 5 / 11
    assert [(p.currency, p.amount) for p in t.promised] == [
        ("INR", Decimal("2000.50")), ("USD", Decimal("249.99"))]
    assert t.voice_to_voice.samples == 7 and near(t.voice_to_voice.p95_ms, 4000)
    assert t.average_handle_s == (120 + 60 + 30 + 90 + 200) / 5
    assert [c.name for c in o.campaigns] == ["A", "B"]  # C is deleted
    b = o.campaigns[1].metrics
    assert (b.attempts, b.connected, b.promises, b.abandoned) == (2, 1, 1, 0)
    assert b.voice_to_voice.samples == 1 and near(b.voice_to_voice.p50_ms, 4000)
    assert [(p.currency, p.amount) for p in b.promised] == [("USD", Decimal("99.99"))]
    assert o.campaigns[0].metrics == (await campaign_analytics(pool, world["a"])).metrics  # type: ignore[union-attr]
    h10 = next(h for h in o.by_local_hour if h.local_hour == 10)
    assert (h10.attempts, h10.connected) == (4, 3)
    day = await overview(pool, at(29, 0), at(29, 23))
    assert day.totals.attempts == 1 and [c.name for c in day.campaigns] == ["A"]


async def test_unknown_and_deleted_campaigns(pool: asyncpg.Pool, world: dict[str, Any]) -> None:
    assert await campaign_analytics(pool, str(uuid.uuid4())) is None
    assert await campaign_analytics(pool, world["c"]) is None
    with pytest.raises(ValueError):
        await campaign_analytics(pool, "not-a-uuid")
    empty = await new_campaign(pool, "empty")
    r = await campaign_analytics(pool, empty)
    assert r is not None and r.metrics.attempts == 0 and r.metrics.connect_rate is None
    assert r.metrics.voice_to_voice.p50_ms is None and r.by_local_hour == []
    await pool.execute("DELETE FROM campaigns WHERE id = $1", uuid.UUID(empty))


async def test_http_reports(api: str, pool: asyncpg.Pool, world: dict[str, Any]) -> None:
    a = world["a"]
    async with httpx.AsyncClient(base_url=api) as http:
        r = await http.get(f"/api/campaigns/{a}/analytics")
        assert r.status_code == 200
        expected = await campaign_analytics(pool, a)
        assert expected is not None and r.json() == expected.model_dump(mode="json")
        # a date alone is its whole UTC day, at both ends
        r = await http.get(f"/api/campaigns/{a}/analytics", params={"from": "2026-11-30", "to": "2026-11-30"})
        assert r.status_code == 200
        body = r.json()
        assert (body["since"], body["until"]) == ("2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z")
        assert body["metrics"]["attempts"] == 8
        r = await http.get(f"/api/campaigns/{a}/analytics",
                           params={"from": "2026-11-30T20:45:00+05:30", "to": "2026-11-30T15:50:00Z"})
        assert r.status_code == 200 and r.json()["since"] == "2026-11-30T15:00:00Z"
        assert r.json()["metrics"]["attempts"] == 2
        r = await http.get("/api/analytics/overview", params={"from": "2026-11-29"})
        assert r.status_code == 200
        assert r.json() == (await overview(pool, at(29, 0))).model_dump(mode="json")
        doc = (await http.get("/openapi.json")).json()
        route = doc["paths"]["/api/campaigns/{campaign_id}/analytics"]["get"]
        assert {p["name"] for p in route["parameters"]} >= {"campaign_id", "from", "to"}
        assert {"200", "404", "422"} <= set(route["responses"])
        assert "/api/analytics/overview" in doc["paths"]


async def test_http_refusals(api: str, world: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=api) as http:
        for unknown in (str(uuid.uuid4()), world["c"], "not-a-campaign"):
            r = await http.get(f"/api/campaigns/{unknown}/analytics")
            assert r.status_code == 404 and r.json()["field"] == "campaign_id"
        for path in (f"/api/campaigns/{world['a']}/analytics", "/api/analytics/overview"):
            r = await http.get(path, params={"from": "2026-12-02", "to": "2026-12-01"})
            assert r.status_code == 422
            assert r.json()["field"] == "from" and "after" in r.json()["error"]
            for bad in ({"from": "last tuesday"}, {"from": "0001-01-01T00:00:00+05:00"},
                        {"to": "9999-12-31T23:59:59"}, {"from": "2026-02-30"}):
                r = await http.get(path, params=bad)
                assert r.status_code == 400 and r.json()["field"] == next(iter(bad))


# ---- the rollups stay right ------------------------------------------------------------


async def rollups(pool: asyncpg.Pool, campaign: str) -> dict[str, list[tuple[Any, ...]]]:
    cid = uuid.UUID(campaign)
    out = {}
    for table, cond in (("analytics_hourly", "attempts <> 0"), ("analytics_daily", "attempts <> 0"),
                        ("analytics_latency", "n <> 0"),
                        ("analytics_daily_latency", "n <> 0"), ("analytics_attempts", "true")):
        rows = await pool.fetch(f"SELECT * FROM {table} WHERE campaign_id = $1 AND {cond}", cid)
        out[table] = sorted(tuple(r.values()) for r in rows)
    return out


async def test_triggers_agree_with_a_rebuild_from_raw_rows(pool: asyncpg.Pool, world: dict[str, Any]) -> None:
    for campaign in (world["a"], world["b"]):
        kept = await rollups(pool, campaign)
        await pool.execute("SELECT analytics_rebuild($1)", uuid.UUID(campaign))
        assert await rollups(pool, campaign) == kept


async def test_repeated_and_upgraded_states_count_once(pool: asyncpg.Pool, world: dict[str, Any]) -> None:
    a, ids, store = world["a"], world["ids"], world["store"]
    before = await campaign_analytics(pool, a)
    for key in ("a1", "a4", "a5", "a6", "a7", "a10"):
        await reapply(pool, ids[key])
        state = await pool.fetchval("SELECT state FROM attempts WHERE id = $1", uuid.UUID(ids[key]))
        await report(pool, ids[key], state, at(30, 23))  # a late duplicate callback
        await report(pool, ids[key], "ringing", at(30, 23))  # a stale one
    # outcome fields written again, and a turn repeated (the store ignores a seq it has)
    a1_call = await pool.fetchval("SELECT call_id FROM attempts WHERE id = $1", uuid.UUID(ids["a1"]))
    await store.set_outcome(str(a1_call), outcome_fields(Action("right_party_verified")))
    await store.add_turn(str(a1_call), RecordTurn(2, "agent", "ok", 2000, 2900, voice_to_voice_ms=700.0))
    after = await campaign_analytics(pool, a)
    assert after == before
    # the one live attempt ends: attempts stay 10, connected 4 → ... it ended no-answer
    await report(pool, ids["a8"], "no_answer", at(30, 17, 31))
    await report(pool, ids["a8"], "no_answer", at(30, 17, 32))
    ended = await campaign_analytics(pool, a)
    assert ended is not None
    assert (ended.metrics.attempts, ended.metrics.in_flight, ended.metrics.no_answer) == (10, 0, 2)
    # an upgrade moves an attempt between counters: a1 completed → voicemail
    await report(pool, ids["a1"], "voicemail", at(30, 23))
    vm = await campaign_analytics(pool, a)
    assert vm is not None
    assert (vm.metrics.connected, vm.metrics.voicemail, vm.metrics.ended) == (3, 2, 10)
    assert vm.metrics.greeting.samples == 2  # a voicemail's greeting is not a live greeting
    assert vm.metrics.abandoned == 2 and vm.metrics.handled_calls == 3
    kept = await rollups(pool, a)
    await pool.execute("SELECT analytics_rebuild($1)", uuid.UUID(a))
    assert await rollups(pool, a) == kept


async def test_records_after_the_end_and_deletions(pool: asyncpg.Pool) -> None:
    store = CallStore(pool)
    c = await new_campaign(pool, "late")
    lead = await new_lead(pool, c, "late-1")
    attempt = await dial(pool, store, c, lead, at(20, 10), 10, ANSWERED, talk_s=40,
                         greeting_ms=2100.0, v2v=[800.0], actions=[])
    r = await campaign_analytics(pool, c)
    assert r is not None and (r.metrics.right_party_contacts, r.metrics.abandoned) == (0, 1)
    call_id = str(await pool.fetchval("SELECT call_id FROM attempts WHERE id = $1", uuid.UUID(attempt)))
    # the outcome and one more turn are written after the attempt ended
    await store.set_outcome(call_id, outcome_fields(Action("right_party_verified")))
    await store.add_turn(call_id, RecordTurn(9, "agent", "bye", 9000, 9500, voice_to_voice_ms=1300.0))
    r = await campaign_analytics(pool, c)
    assert r is not None and r.metrics.right_party_contacts == 1
    assert r.metrics.voice_to_voice.samples == 2
    # the call's records deleted with the call: the attempt keeps counting, its call's do not
    await pool.execute("DELETE FROM calls WHERE id = $1", uuid.UUID(call_id))
    r = await campaign_analytics(pool, c)
    assert r is not None and (r.metrics.attempts, r.metrics.connected) == (1, 1)
    assert (r.metrics.right_party_contacts, r.metrics.voice_to_voice.samples, r.metrics.abandoned) == (0, 0, 1)
    await pool.execute("DELETE FROM attempts WHERE id = $1", uuid.UUID(attempt))
    r = await campaign_analytics(pool, c)
    assert r is not None and r.metrics.attempts == 0
    # a campaign deleted outright takes its rollups with it
    await dial(pool, store, c, lead, at(20, 11), 11, ["dialing", "busy"])
    await pool.execute("DELETE FROM campaigns WHERE id = $1", uuid.UUID(c))
    for table in ("analytics_hourly", "analytics_daily", "analytics_latency", "analytics_daily_latency",
                  "analytics_attempts"):
        assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE campaign_id = $1", uuid.UUID(c)) == 0


async def race(pool: asyncpg.Pool, call_id: str, attempt: str, ended: dt.datetime,
               greeting_first: bool) -> None:
    """The media session's greeting event and the status webhook's terminal update, each in
    its own transaction; the first writer holds the attempt's row lock (taken by the
    trigger) and the second waits for its commit."""
    async with pool.acquire() as c1, pool.acquire() as c2:
        t1, t2 = c1.transaction(), c2.transaction()
        await t1.start()
        await t2.start()
        greet = ("INSERT INTO call_events (call_id, t_ms, kind, data) VALUES"
                 " ($1, 900, 'greeting_audio', '{\"latency_ms\": 900}')", uuid.UUID(call_id))
        end = ("UPDATE attempts SET state = 'completed', ended_at = $2 WHERE id = $1",
               uuid.UUID(attempt), ended)
        (first, t_first), (second, t_second) = (
            ((c2, greet), t2), ((c1, end), t1)) if greeting_first else (((c1, end), t1), ((c2, greet), t2))
        await first[0].execute(*first[1])
        waiting = asyncio.ensure_future(second[0].execute(*second[1]))
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await t_first.commit()
        await waiting
        await t_second.commit()


async def test_concurrent_writers_of_one_attempt(pool: asyncpg.Pool) -> None:
    """Whichever of two concurrent writers commits first, the rollups end equal to a rebuild."""
    store = CallStore(pool)
    c = await new_campaign(pool, "race")
    lead = await new_lead(pool, c, "race-1")
    for i in range(6):
        call_id = await store.create_call("twilio", {}, "+15551230000")
        attempt = await new_attempt(pool, c, lead, at(21, 10, i), 10, call_id)
        await report(pool, attempt, "in_progress", at(21, 10, i))
        await race(pool, call_id, attempt, at(21, 11, i), greeting_first=i % 2 == 0)
    r = await campaign_analytics(pool, c)
    assert r is not None and (r.metrics.connected, r.metrics.greeting.samples, r.metrics.abandoned) == (6, 6, 0)
    kept = await rollups(pool, c)
    await pool.execute("SELECT analytics_rebuild($1)", uuid.UUID(c))
    assert await rollups(pool, c) == kept


# ---- units -------------------------------------------------------------------------------


def test_buckets_match_the_sql_and_hold_their_values() -> None:
    for ms in (0.2, 1.0, 1.04, 55.0, 700.0, 1499.9, 2000.0, 60_000.0):
        b = bucket_of(ms)
        if b:
            assert BUCKET_GROWTH ** (b - 1) <= ms < BUCKET_GROWTH ** b
            assert abs(bucket_value_ms(b) - ms) <= ms * (BUCKET_GROWTH - 1)
    assert bucket_of(10**9) == 255


async def test_sql_bucket_function_agrees(pool: asyncpg.Pool) -> None:
    values = [0.5, 1.0, 3.3, 250.0, 799.99, 2000.0, 12_345.6]
    got = await pool.fetch("SELECT analytics_bucket(v) AS b FROM unnest($1::float8[]) AS v", values)
    assert [r["b"] for r in got] == [bucket_of(v) for v in values]


def test_hour_range_rounds_outwards_and_refuses_a_reversed_range() -> None:
    assert hour_range(at(3, 10, 59), at(3, 12, 1)) == (at(3, 10), at(3, 13))
    assert hour_range(at(3, 10), at(3, 12)) == (at(3, 10), at(3, 12))
    assert hour_range(dt.datetime(2026, 11, 3, 10, 30), None) == (at(3, 10), None)
    with pytest.raises(ValueError):
        hour_range(at(3, 12), at(3, 11, 59))
