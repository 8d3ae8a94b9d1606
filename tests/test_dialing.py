"""Whole campaigns against the emulated carriers (Twilio and Exotel REST APIs that send
status callbacks and open the media stream of answered calls), through the server's own
in-process job worker: scheduler tick → dial job → carrier → callbacks / media → settled."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from campaigns import analytics
from campaigns.models import CampaignSettings, RetryRule, RetryRules
from dialkit.config import Settings
from dialkit.providers import build_providers
from dialkit.server import start_server
from emulators.carrier_line import MachineLine, QuietLine
from emulators.carriers import Carriers, running_carriers
from emulators.fates import Fate, Quirks
from tests.conftest import RunningServer
from tests.sched_helpers import add_lead, make_campaign, quiesce

pytestmark = pytest.mark.slow

EXOTEL_SECRET = "exotel-secret-for-dialing-tests"
CUSTOM = {"birth_year": "1984", "creditor": "Northwind Bank", "callback_number": "+14155550100"}
ONCE = RetryRule(delay_minutes=60, max_retries=0)


def noon_zone() -> str:
    """A zone where it is about noon now, so the calling window is open whenever the test
    runs (Etc/GMT-N is UTC+N)."""
    offset = 12 - dt.datetime.now(dt.UTC).hour
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def campaign_server(base: Settings, carriers: Carriers, **extra: Any
                          ) -> AsyncIterator[RunningServer]:
    port = free_port()
    settings = base.model_copy(update={
        **carriers.settings(), "public_url": f"http://127.0.0.1:{port}",
        "exotel_webhook_secret": SecretStr(EXOTEL_SECRET), "scheduler_tick_s": 1,
        "run_jobs": True, "stt": "null", "tts": "tone", **extra,
    })
    providers = await build_providers(settings, warmup=False)
    runner, bound = await start_server(settings, providers, port=port)
    try:
        yield RunningServer(runner, bound, settings)
    finally:
        await runner.cleanup()


async def wait_for(pool: asyncpg.Pool, query: str, *args: Any, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not await pool.fetchval(query, *args):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {query}")
        await asyncio.sleep(0.25)


def dials_by_number(carriers: Carriers) -> Counter[str]:
    twilio = [dict(r.form).get("To") for r in carriers.twilio.requests
              if r.method == "POST" and r.path.endswith("/Calls.json")]
    exotel = [dict(r.form).get("From") for r in carriers.exotel.requests
              if r.method == "POST" and r.path.endswith("/Calls/connect.json")]
    return Counter(n for n in [*twilio, *exotel] if n)


async def test_a_twilio_campaign_ends_with_the_right_lead_states(base_settings: Settings) -> None:
    numbers = {k: f"+1415555{n:04d}" for n, k in enumerate(
        ["answered", "no_answer", "busy", "failed", "voicemail", "invalid", "dnc", "twice"], 7100)}
    fates = {
        numbers["answered"]: Fate.answered(lambda: QuietLine(hang_up_after_s=1.5)),
        numbers["no_answer"]: Fate.no_answer(ring_s=0.3),
        numbers["busy"]: Fate.busy(),
        numbers["failed"]: Fate.failed(),
        numbers["voicemail"]: Fate.voicemail(lambda: MachineLine(greeting_s=0.3, max_message_s=6)),
        # its callbacks replayed and out of order
        numbers["twice"]: Fate.no_answer(ring_s=0.3, quirks=Quirks.of(
            duplicate=["ringing", "completed"], hold=["initiated"])),
    }
    retry = RetryRules(no_answer=ONCE, busy=RetryRule(delay_minutes=60, max_retries=1),
                       failed=ONCE, voicemail=ONCE)
    async with running_carriers(fates=fates) as carriers, \
            campaign_server(base_settings, carriers) as server:
        pool: asyncpg.Pool = server.state.pool
        await quiesce(pool)
        cid = await make_campaign(pool, status="draft", max_concurrent=3, max_attempts=3,
                                  playbook="collections-default@1.0", webhook_url=None,
                                  settings=CampaignSettings(retry=retry))
        leads: dict[str, int] = {}
        for kind, phone in numbers.items():
            custom = {k: v for k, v in CUSTOM.items() if kind != "invalid" or k != "creditor"}
            leads[kind] = await add_lead(pool, cid, phone=phone, custom=custom,
                                         zones=[noon_zone()])
        await pool.execute("INSERT INTO dnc (phone, campaign_id) VALUES ($1, $2)",
                           numbers["dnc"], cid)
        await pool.execute("UPDATE campaigns SET status = 'running' WHERE id = $1", cid)
        assert server.state.jobs is not None
        await server.state.jobs.kick()
        # settled: every lead out of `dialing` and nothing pending
        await wait_for(pool, "SELECT NOT EXISTS (SELECT 1 FROM leads WHERE campaign_id = $1"
                       " AND state IN ('pending', 'dialing'))", cid)
        await carriers.idle(60)
        states = {kind: await pool.fetchrow(
            "SELECT l.state, l.last_state, l.next_at, a.state AS attempt, a.error, a.disposition"
            " FROM leads l LEFT JOIN attempts a ON a.lead_id = l.id WHERE l.id = $1", lead)
            for kind, lead in leads.items()}
        assert states["answered"]["attempt"] == "completed"
        assert states["no_answer"]["attempt"] == "no_answer"
        assert states["no_answer"]["state"] == "exhausted"
        assert states["twice"]["attempt"] == "no_answer"
        assert states["twice"]["state"] == "exhausted"
        assert states["busy"]["attempt"] == "busy"
        assert states["busy"]["state"] == "retry" and states["busy"]["next_at"] is not None
        assert states["failed"]["attempt"] == "failed"
        assert states["voicemail"]["attempt"] == "voicemail"
        assert states["voicemail"]["disposition"] == "voicemail"
        assert states["invalid"]["attempt"] == "failed"
        assert "creditor" in states["invalid"]["error"]
        assert states["invalid"]["state"] == "exhausted"
        assert states["dnc"]["state"] == "dnc" and states["dnc"]["attempt"] is None
        dials = dials_by_number(carriers)
        assert numbers["invalid"] not in dials and numbers["dnc"] not in dials
        assert max(dials.values()) == 1, dials  # no lead dialled twice
        # the answered call reached our media server with its token, and was recorded
        call = await pool.fetchrow(
            "SELECT c.status, c.carrier_call_id FROM calls c JOIN attempts a ON a.call_id = c.id"
            " WHERE a.lead_id = $1", leads["answered"])
        assert call["status"] == "completed" and call["carrier_call_id"]
        # every slot was released: nothing live
        assert not await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1"
            " AND state IN ('queued', 'dialing', 'ringing', 'in_progress')", cid)
        assert await pool.fetchval("SELECT status FROM campaigns WHERE id = $1", cid) == "running"
        # the campaign's analytics agree with what the carriers did
        report = await analytics.campaign_analytics(pool, str(cid))
        assert report is not None
        m = report.metrics
        assert (m.attempts, m.in_flight, m.connected, m.voicemail, m.no_answer, m.busy,
                m.failed) == (7, 0, 1, 1, 2, 1, 2)
        assert sum(h.attempts for h in report.by_local_hour) == 7


async def test_an_exotel_campaign_completes(base_settings: Settings) -> None:
    phones = [f"+9198{n:08d}" for n in range(4521000, 4521004)]
    fates = {phones[0]: Fate.answered(lambda: QuietLine(hang_up_after_s=1.0)),
             phones[1]: Fate.busy(), phones[2]: Fate.no_answer(ring_s=0.2),
             phones[3]: Fate.failed()}
    once = RetryRules(no_answer=ONCE, busy=ONCE, failed=ONCE, voicemail=ONCE)
    async with running_carriers(fates=fates) as carriers, \
            campaign_server(base_settings, carriers) as server:
        pool: asyncpg.Pool = server.state.pool
        await quiesce(pool)
        cid = await make_campaign(pool, carrier="exotel", caller_id="+918045678900",
                                  max_concurrent=2, playbook="collections-default@1.0",
                                  settings=CampaignSettings(default_region="IN", retry=once))
        for phone in phones:
            await add_lead(pool, cid, phone=phone, country="IN", zones=[noon_zone()],
                           currency="INR", custom={**CUSTOM, "callback_number": "+14155550100"})
        await wait_for(pool, "SELECT status = 'completed' FROM campaigns WHERE id = $1", cid)
        rows = await pool.fetch("SELECT l.phone, l.state, a.state AS attempt FROM leads l"
                                " JOIN attempts a ON a.lead_id = l.id WHERE l.campaign_id = $1",
                                cid)
        by_phone = {r["phone"]: (r["state"], r["attempt"]) for r in rows}
        assert by_phone == {phones[0]: ("exhausted", "completed"),
                            phones[1]: ("exhausted", "busy"),
                            phones[2]: ("exhausted", "no_answer"),
                            phones[3]: ("exhausted", "failed")}
        assert max(dials_by_number(carriers).values()) == 1
        ids = [str(r["id"]) for r in await pool.fetch(
            "SELECT id FROM attempts WHERE campaign_id = $1", cid)]
        dialled = await pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'dial' AND subject_id = ANY($1::text[])",
            ids)
        assert dialled == 4
