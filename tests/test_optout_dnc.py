"""An opt-out on a call puts the number on the do-not-call lists at once (migration
006_optout_dnc.sql), written through the call store as a live call writes its outcome:
campaign and global lists for a campaign attempt's call, the global list for a single
call, the lead (and every waiting lead with that phone) in state 'dnc', one audit row."""

from __future__ import annotations

import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from dialkit import db
from dialkit.store import CallStore
from tests.outbox_receiver import insert_campaign


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    await db.migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> CallStore:
    return CallStore(pool)


def _phone() -> str:
    return f"+1415{random.randrange(10**7):07d}"


async def _lead(pool: asyncpg.Pool, campaign: str, phone: str, state: str = "pending") -> int:
    return int(await pool.fetchval(
        "INSERT INTO leads (campaign_id, account_ref, name, phone, country, zones, amount_due,"
        " currency, due_date, state) VALUES ($1, $2, 'Dana Doe', $3, 'US', '{America/New_York}',"
        " 100, 'USD', '2026-12-31', $4) RETURNING id",
        uuid.UUID(campaign), f"ACC-{uuid.uuid4().hex[:8]}", phone, state,
    ))


async def _attempt(pool: asyncpg.Pool, campaign: str, lead: int, call_id: str | None) -> str:
    return str(await pool.fetchval(
        "INSERT INTO attempts (campaign_id, lead_id, call_id, carrier, state)"
        " VALUES ($1, $2, $3, 'twilio', 'in_progress') RETURNING id",
        uuid.UUID(campaign), lead, uuid.UUID(call_id) if call_id else None,
    ))


async def _dnc(pool: asyncpg.Pool, phone: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT campaign_id, reason, source, created_by FROM dnc WHERE phone = $1"
        " ORDER BY campaign_id NULLS FIRST", phone)
    return [dict(r) for r in rows]


async def _state(pool: asyncpg.Pool, lead: int) -> str:
    return str(await pool.fetchval("SELECT state FROM leads WHERE id = $1", lead))


async def _audit(pool: asyncpg.Pool, subject_type: str, subject_id: object) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT * FROM audit_log WHERE subject_type = $1 AND subject_id = $2 ORDER BY id",
        subject_type, str(subject_id))


OPT_OUT = {"outcome": "opt_out", "opt_out": True, "opt_out_reason": "attorney"}


async def test_an_opt_out_on_a_campaign_call_goes_on_both_lists_at_once(
    pool: asyncpg.Pool, store: CallStore
) -> None:
    phone = _phone()
    campaign = await insert_campaign(pool, webhook_url=None, secret="s")
    other_campaign = await insert_campaign(pool, webhook_url=None, secret="s")
    lead = await _lead(pool, campaign, phone, state="dialing")
    waiting = await _lead(pool, other_campaign, phone, state="retry")
    finished = await _lead(pool, other_campaign, phone, state="done")
    call_id = await store.create_call("twilio", {}, to_number=phone)
    attempt = await _attempt(pool, campaign, lead, call_id)

    await store.set_outcome(call_id, OPT_OUT)

    assert await _dnc(pool, phone) == [
        {"campaign_id": None, "reason": "attorney", "source": "opt_out", "created_by": "call"},
        {"campaign_id": uuid.UUID(campaign), "reason": "attorney", "source": "opt_out",
         "created_by": "call"},
    ]
    assert await _state(pool, lead) == "dnc"
    assert await _state(pool, waiting) == "dnc"  # never dialled again, in any campaign
    assert await _state(pool, finished) == "done"
    [row] = await _audit(pool, "lead", lead)
    assert (row["actor"], row["action"]) == ("call", "dnc_add")
    assert row["data"]["attempt_id"] == attempt and row["data"]["call_id"] == call_id
    assert row["data"]["campaign_list"] and row["data"]["global_list"]
    assert row["data"]["leads_marked"] == 2
    assert phone not in str(row["data"])

    # writing the outcome again changes nothing and audits nothing more
    await store.set_outcome(call_id, OPT_OUT)
    await store.set_outcome(call_id, {"ptp_amount": None})
    assert len(await _dnc(pool, phone)) == 2
    assert len(await _audit(pool, "lead", lead)) == 1


async def test_an_outcome_that_becomes_an_opt_out_later_in_the_call(
    pool: asyncpg.Pool, store: CallStore
) -> None:
    phone = _phone()
    campaign = await insert_campaign(pool, webhook_url=None, secret="s")
    lead = await _lead(pool, campaign, phone, state="dialing")
    call_id = await store.create_call("twilio", {}, to_number=phone)
    await _attempt(pool, campaign, lead, call_id)

    await store.set_outcome(call_id, {"right_party": True})
    assert await _dnc(pool, phone) == []
    assert await _state(pool, lead) == "dialing"
    await store.set_outcome(call_id, {"opt_out": True, "opt_out_reason": "stop_request"})
    assert [r["reason"] for r in await _dnc(pool, phone)] == ["stop_request", "stop_request"]
    assert await _state(pool, lead) == "dnc"


async def test_other_outcomes_touch_no_list(pool: asyncpg.Pool, store: CallStore) -> None:
    phone = _phone()
    campaign = await insert_campaign(pool, webhook_url=None, secret="s")
    lead = await _lead(pool, campaign, phone, state="dialing")
    call_id = await store.create_call("twilio", {}, to_number=phone)
    await _attempt(pool, campaign, lead, call_id)
    await store.set_outcome(call_id, {"outcome": "dispute", "dispute": True, "dispute_reason": "disputed"})
    assert await _dnc(pool, phone) == []
    assert await _state(pool, lead) == "dialing"


async def test_an_opt_out_on_a_single_call_goes_on_the_global_list(
    pool: asyncpg.Pool, store: CallStore
) -> None:
    phone = _phone()
    campaign = await insert_campaign(pool, webhook_url=None, secret="s")
    waiting = await _lead(pool, campaign, phone, state="pending")
    call_id = await store.create_call("twilio", {}, to_number=phone)
    await store.set_outcome(call_id, {"outcome": "opt_out", "opt_out": True})
    assert await _dnc(pool, phone) == [
        {"campaign_id": None, "reason": "stop_request", "source": "opt_out", "created_by": "call"},
    ]
    assert await _state(pool, waiting) == "dnc"
    [row] = await _audit(pool, "call", call_id)
    assert row["data"]["global_list"] and row["data"]["leads_marked"] == 1

    # a call without a number has nothing to list
    anonymous = await store.create_call("twilio", {})
    await store.set_outcome(anonymous, {"opt_out": True})
    assert await _audit(pool, "call", anonymous) == []


async def test_an_attempt_linked_to_its_call_after_the_opt_out(
    pool: asyncpg.Pool, store: CallStore
) -> None:
    phone = _phone()
    campaign = await insert_campaign(pool, webhook_url=None, secret="s")
    lead = await _lead(pool, campaign, phone, state="dialing")
    attempt = await _attempt(pool, campaign, lead, None)
    call_id = await store.create_call("twilio", {}, to_number=phone)
    await store.set_outcome(call_id, OPT_OUT)
    assert [r["campaign_id"] for r in await _dnc(pool, phone)] == [None]

    await pool.execute("UPDATE attempts SET call_id = $2 WHERE id = $1", uuid.UUID(attempt), uuid.UUID(call_id))
    assert [r["campaign_id"] for r in await _dnc(pool, phone)] == [None, uuid.UUID(campaign)]
    assert await _state(pool, lead) == "dnc"


async def test_the_lists_commit_with_the_outcome_or_not_at_all(
    pool: asyncpg.Pool, store: CallStore
) -> None:
    phone = _phone()
    call_id = await store.create_call("twilio", {}, to_number=phone)
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO call_outcomes (call_id, opt_out) VALUES ($1, true)", uuid.UUID(call_id))
                assert len(await conn.fetch("SELECT 1 FROM dnc WHERE phone = $1", phone)) == 1
                raise RuntimeError("the outcome write failed")
    assert await _dnc(pool, phone) == []


@pytest.mark.slow
async def test_a_caller_who_says_stop_calling_me_is_never_dialled_again(
    speech_server: tuple[str, Any], pool: asyncpg.Pool
) -> None:
    """The real call path: a simulated debtor speaks over the media WebSocket (speech
    recognition, the scripted playbook, synthesis) and tells the agent to stop calling."""
    from evaluation.audio_call import run_simulated_call
    from evaluation.personas import load_persona

    url, providers = speech_server
    phone = load_persona("hostile").phone
    campaign = await insert_campaign(pool, webhook_url=None, secret="s")
    waiting = await _lead(pool, campaign, phone, state="pending")
    # earlier calls of the session with this persona (it always opts out) listed it already
    await pool.execute("DELETE FROM dnc WHERE phone = $1", phone)
    started = await pool.fetchval("SELECT now()")
    try:
        result = await run_simulated_call(url, "hostile", providers.stt, providers.tts, max_seconds=150)
        assert result.status == "completed", result.failure_reason
        assert result.outcome == "opt_out" and result.opt_out
        listed = await _dnc(pool, phone)
        assert {"campaign_id": None, "reason": "stop_request", "source": "opt_out",
                "created_by": "call"} in listed
        assert await _state(pool, waiting) == "dnc"
        [row] = await _audit(pool, "call", result.call_id)
        # this campaign's waiting lead, and any other test's lead with the persona's number
        assert row["data"]["global_list"] and row["data"]["leads_marked"] >= 1
    finally:
        # the persona's number is shared with other tests of the session
        await pool.execute("DELETE FROM dnc WHERE phone = $1 AND source = 'opt_out' AND created_at >= $2",
                           phone, started)
