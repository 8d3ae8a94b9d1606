"""Carrier status callbacks for dial attempts over real HTTP: signed or refused, replayed,
reordered, for unknown calls, before the dialer stored the SID, and the call's own end."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest_asyncio
from pydantic import SecretStr

from dialkit.config import Settings
from media.twilio_signature import twilio_signature
from tests.conftest import RunningServer
from tests.sched_helpers import add_lead, make_campaign, quiesce
from tests.test_call_end_transfer import dialkit_server

TOKEN = "twilio-auth-token-for-status-tests"
EXOTEL_SECRET = "exotel-secret-for-status-tests"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def server(base_settings: Settings) -> AsyncIterator[RunningServer]:
    async with dialkit_server(
        base_settings, twilio_account_sid="AC" + "0" * 32, twilio_auth_token=SecretStr(TOKEN),
        twilio_api_base="http://127.0.0.1:9", exotel_account_sid="exo",
        exotel_api_key=SecretStr("k"), exotel_api_token=SecretStr("t"),
        exotel_api_base="http://127.0.0.1:9", exotel_webhook_secret=SecretStr(EXOTEL_SECRET),
        run_jobs=False,
    ) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(server: RunningServer) -> asyncpg.Pool:
    state_pool: asyncpg.Pool = server.state.pool
    return state_pool


async def _attempt(pool: asyncpg.Pool, carrier: str = "twilio", sid: str | None = None,
                   state: str = "dialing", **campaign: Any) -> tuple[uuid.UUID, int, str]:
    cid = await make_campaign(pool, carrier=carrier, **campaign)
    lead = await add_lead(pool, cid, state="dialing", attempts=1)
    sid = sid if sid is not None else f"CA{uuid.uuid4().hex}"
    aid = await pool.fetchval(
        "INSERT INTO attempts (campaign_id, lead_id, carrier, carrier_sid, state, dialed_at)"
        " VALUES ($1, $2, $3, $4, $5, now()) RETURNING id", cid, lead, carrier, sid or None, state)
    return aid, lead, sid


async def _twilio(server: RunningServer, form: dict[str, str], attempt: Any = None,
                  signature: str | None = "sign") -> httpx.Response:
    url = f"{server.http}/webhooks/twilio/call-status"
    if attempt is not None:
        url += f"?attempt={attempt}"
    headers = {}
    if signature == "sign":
        headers["X-Twilio-Signature"] = twilio_signature(url, form, TOKEN)
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    async with httpx.AsyncClient() as http:
        return await http.post(url, data=form, headers=headers)


def _form(sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "CallStatus": status, "AccountSid": "AC" + "0" * 32, **extra}


async def test_unsigned_or_forged_callbacks_are_refused(server, pool) -> None:
    aid, _, sid = await _attempt(pool)
    unsigned = await _twilio(server, _form(sid, "completed"), aid, signature=None)
    assert unsigned.status_code == 403 and "X-Twilio-Signature" in unsigned.json()["error"]
    forged = await _twilio(server, _form(sid, "completed"), aid, signature="bm9wZQ==")
    assert forged.status_code == 403 and "invalid" in forged.json()["error"]
    # signed for another URL (another attempt's): refused too
    url = f"{server.http}/webhooks/twilio/call-status?attempt={uuid.uuid4()}"
    moved = await _twilio(server, _form(sid, "completed"), aid,
                          signature=twilio_signature(url, _form(sid, "completed"), TOKEN))
    assert moved.status_code == 403
    assert await pool.fetchval("SELECT state FROM attempts WHERE id = $1", aid) == "dialing"


async def test_callbacks_in_order_replayed_and_reordered_end_the_same(server, pool) -> None:
    await quiesce(pool)
    aid, lead, sid = await _attempt(pool)
    for status in ("ringing", "ringing", "no-answer", "ringing", "no-answer"):
        response = await _twilio(server, _form(sid, status), aid)
        assert response.status_code == 200, response.text
    assert await pool.fetchval("SELECT state FROM attempts WHERE id = $1", aid) == "no_answer"
    row = await pool.fetchrow("SELECT state, next_at, attempts FROM leads WHERE id = $1", lead)
    assert row["state"] == "retry"
    ended = await pool.fetchval("SELECT ended_at FROM attempts WHERE id = $1", aid)
    # the no-answer rule's first delay (120 minutes by default)
    assert abs((row["next_at"] - ended) - dt.timedelta(minutes=120)) < dt.timedelta(seconds=1)
    changes = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject_type = 'attempt' AND subject_id = $1"
        " AND action = 'status_change'", str(aid))
    assert changes == 2  # dialing → ringing → no_answer, nothing for the repeats
    settles = await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE subject_type = 'lead' AND subject_id = $1",
        str(lead))
    assert settles == 1


async def test_reordered_terminal_first(server, pool) -> None:
    aid, lead, sid = await _attempt(pool)
    assert (await _twilio(server, _form(sid, "busy"), aid)).status_code == 200
    late = await _twilio(server, _form(sid, "ringing"), aid)
    assert late.status_code == 200 and late.json()["changed"] is False
    assert late.json()["state"] == "busy"
    assert await pool.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "retry"


async def test_unknown_call_is_404_with_a_reason(server, pool) -> None:
    response = await _twilio(server, _form("CA" + "f" * 32, "completed"))
    assert response.status_code == 404
    assert response.json()["error"] == "no dial attempt for this call"
    bad = await _twilio(server, _form("CA" + "f" * 32, "exploded"))
    assert bad.status_code == 400 and "CallStatus" in bad.json()["error"]


async def test_callback_before_the_dialer_stored_the_sid(server, pool) -> None:
    aid, _, _ = await _attempt(pool, sid="")
    sid = "CA" + uuid.uuid4().hex
    response = await _twilio(server, _form(sid, "ringing"), aid)
    assert response.status_code == 200 and response.json()["state"] == "ringing"
    assert await pool.fetchval("SELECT carrier_sid FROM attempts WHERE id = $1", aid) == sid
    # another call's SID for the same attempt is not this attempt's
    other = await _twilio(server, _form("CA" + uuid.uuid4().hex, "completed"), aid)
    assert other.status_code == 404


async def test_exotel_status_needs_the_secret(server, pool) -> None:
    aid, lead, sid = await _attempt(pool, carrier="exotel", sid=uuid.uuid4().hex)
    url = f"{server.http}/webhooks/exotel/call-status"
    form = {"CallSid": sid, "Status": "failed", "DateUpdated": "2026-12-02 01:00:00"}
    async with httpx.AsyncClient() as http:
        refused = await http.post(url, data=form)
        assert refused.status_code == 403 and "secret" in refused.json()["error"]
        wrong = await http.post(f"{url}?secret=nope", data=form)
        assert wrong.status_code == 403
        basic = base64.b64encode(f"exotel:{EXOTEL_SECRET}".encode()).decode()
        ok = await http.post(url, json={"CallSid": sid, "Status": "ringing"},
                             headers={"Authorization": f"Basic {basic}"})
        assert ok.status_code == 200 and ok.json()["state"] == "ringing"
        done = await http.post(f"{url}?secret={EXOTEL_SECRET}&attempt={aid}", data=form)
        assert done.status_code == 200 and done.json()["settled"] is True
        again = await http.post(f"{url}?secret={EXOTEL_SECRET}&attempt={aid}", data=form)
        assert again.json()["changed"] is False
    assert await pool.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "retry"


async def test_amd_machine_marks_the_attempt_voicemail(server, pool) -> None:
    aid, lead, sid = await _attempt(pool, state="in_progress")
    url = f"{server.http}/carriers/twilio/amd"
    form = {"CallSid": sid, "AnsweredBy": "machine_end_beep", "AccountSid": "AC" + "0" * 32}
    async with httpx.AsyncClient() as http:
        response = await http.post(url, data=form, headers={
            "X-Twilio-Signature": twilio_signature(url, form, TOKEN)})
    assert response.status_code == 200
    assert await pool.fetchval("SELECT state FROM attempts WHERE id = $1", aid) == "voicemail"
    assert await pool.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "retry"


async def test_completed_while_media_is_live_settles_at_the_call_end(server, pool) -> None:
    """The carrier's `completed` can beat the media session's end, when the outcome is being
    written: the lead settles when the call ends, with that outcome."""
    aid, lead, sid = await _attempt(pool, state="in_progress",
                                    webhook_url="http://127.0.0.1:9/hook")
    store = server.state.store
    call_id = await store.create_call("twilio", {}, "+14155550123", ("collections-default", "1.0"))
    await pool.execute("UPDATE attempts SET call_id = $2 WHERE id = $1", aid, uuid.UUID(call_id))
    await pool.execute("UPDATE calls SET status = 'in_progress' WHERE id = $1", uuid.UUID(call_id))
    first = await _twilio(server, _form(sid, "completed", CallDuration="42"), aid)
    assert first.json() == {"attempt_id": str(aid), "state": "completed", "changed": True,
                            "settled": False}
    assert await pool.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "dialing"
    await store.set_outcome(call_id, {"outcome": "promise_to_pay", "right_party": True,
                                      "ptp_amount": 100, "ptp_date": "2026-12-20"})
    await store.call_ended(call_id, "completed", None, 1000)
    row = await pool.fetchrow("SELECT state, conversation_at, last_outcome FROM leads WHERE id = $1",
                              lead)
    assert row["state"] == "done" and row["last_outcome"] == "promise_to_pay"
    assert row["conversation_at"] is not None
    events = await pool.fetch("SELECT event, idempotency_key FROM outbox WHERE campaign_id ="
                              " (SELECT campaign_id FROM attempts WHERE id = $1)", aid)
    assert [e["event"] for e in events] == ["promise_to_pay"]
    # the same end reported again changes nothing
    await store.call_ended(call_id, "completed", None, 1000)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE idempotency_key = $1",
                               events[0]["idempotency_key"]) == 1


async def test_opt_out_puts_the_number_on_both_lists(server, pool) -> None:
    aid, lead, _ = await _attempt(pool, state="in_progress")
    store = server.state.store
    call_id = await store.create_call("twilio", {}, "+14155550123", ("collections-default", "1.0"))
    await pool.execute("UPDATE attempts SET call_id = $2 WHERE id = $1", aid, uuid.UUID(call_id))
    await store.set_outcome(call_id, {"outcome": "opt_out", "opt_out": True,
                                      "opt_out_reason": "stop_request"})
    await store.call_ended(call_id, "completed", None, 1000)
    phone = await pool.fetchval("SELECT phone FROM leads WHERE id = $1", lead)
    assert await pool.fetchval("SELECT state FROM leads WHERE id = $1", lead) == "dnc"
    scopes = await pool.fetch("SELECT campaign_id FROM dnc WHERE phone = $1", phone)
    assert len(scopes) == 2 and any(r["campaign_id"] is None for r in scopes)
