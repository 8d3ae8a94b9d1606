"""Outcome webhooks out, against a real local receiver and a real PostgreSQL: deliveries
are signed and verify; retries carry the same Idempotency-Key with growing back-off; a
receiver's 410 and the last attempt give up (kept, with the error); a deliverer killed
mid-request leaves its row to be delivered again; concurrent deliverers never send one
row twice at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
import pytest_asyncio

from campaigns import outbox
from campaigns.outcome_events import OutcomeEvent, idempotency_key, outcome_event
from campaigns.signing import sign, verify
from dialkit import db
from tests.outbox_receiver import Receiver, insert_campaign

SECRET = "whsec-test-1"
FAST = outbox.DeliveryPolicy(max_attempts=12, base_delay_s=10, max_delay_s=3600, timeout_s=2, lease_s=30)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=6)
    await db.migrate(pool)
    yield pool
    await pool.close()


@pytest_asyncio.fixture(autouse=True)
async def _nothing_due(pool: asyncpg.Pool) -> None:
    """Each test starts with no due deliveries left by an earlier test (their receivers are gone)."""
    await pool.execute("DELETE FROM outbox WHERE delivered_at IS NULL AND given_up_at IS NULL")


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(secret=SECRET).start()
    yield r
    await r.stop()


def _event(campaign_id: str, event: str = "promise_to_pay") -> OutcomeEvent:
    call_id = uuid.uuid4()
    return outcome_event(
        event=event, campaign_id=campaign_id, lead_id=7, account_ref="ACC-1001",
        phone="+14155550123", call_id=call_id, attempt_id=uuid.uuid4(),
        outcome={"outcome": event, "right_party": True, "ptp_amount": "120.50",
                 "ptp_date": dt.date(2026, 12, 15), "ptp_plan": "full", "hardship": False,
                 "opt_out": False, "updated_at": dt.datetime.now(dt.UTC)},
        occurred_at=dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC),
    )


async def _queue(pool: asyncpg.Pool, url: str, n: int = 1) -> tuple[str, list[OutcomeEvent]]:
    campaign = await insert_campaign(pool, webhook_url=url, secret=SECRET)
    events = [_event(campaign) for _ in range(n)]
    async with pool.acquire() as conn, conn.transaction():
        for e in events:
            assert await outbox.enqueue(conn, campaign, e.event, e.id, e, url)
    return campaign, events


async def _row(pool: asyncpg.Pool, key: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM outbox WHERE idempotency_key = $1", key)
    assert row is not None
    return row


def _later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_signature_round_trip_and_refusals() -> None:
    body = b'{"a":1}'
    header = sign("s3cret", body, timestamp=1_700_000_000)
    assert verify("s3cret", header, body, now=1_700_000_100)
    assert not verify("other", header, body, now=1_700_000_100)
    assert not verify("s3cret", header, body + b" ", now=1_700_000_100)
    assert not verify("s3cret", header, body, now=1_700_000_000 + 301)  # replayed later
    assert not verify("s3cret", None, body)
    assert not verify("s3cret", "v1=abc", body)
    assert not verify("s3cret", "t=1700000000", body, now=1_700_000_000)
    rotated = f"{header},v1={'0' * 64}"
    assert verify("s3cret", rotated, body, now=1_700_000_000)


async def test_a_delivery_is_signed_and_verifies(
    pool: asyncpg.Pool, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    _, [event] = await _queue(pool, receiver.url)
    report = await outbox.deliver_due(pool, client, now=_later(1), policy=FAST)
    row = await _row(pool, event.id)
    assert row["id"] in report.delivered
    [got] = receiver.received
    assert got.valid
    assert got.key == event.id == idempotency_key(event.call_id, "promise_to_pay")  # type: ignore[arg-type]
    assert got.event == "promise_to_pay"
    assert got.headers["Content-Type"] == "application/json"
    sent = OutcomeEvent.model_validate_json(got.body)
    assert sent == event
    assert sent.lead.phone_masked == "+1******0123"
    assert b"4155550123" not in got.body
    assert row["delivered_at"] is not None and row["attempts"] == 1 and row["last_status"] == 200
    # delivered rows are never sent again
    await outbox.deliver_due(pool, client, now=_later(10_000), policy=FAST)
    assert len(receiver.received) == 1


async def test_enqueue_is_idempotent_and_part_of_the_callers_transaction(
    pool: asyncpg.Pool, receiver: Receiver
) -> None:
    campaign = await insert_campaign(pool, webhook_url=receiver.url, secret=SECRET)
    event = _event(campaign)
    assert await outbox.enqueue(pool, campaign, event.event, event.id, event, receiver.url)
    assert not await outbox.enqueue(pool, campaign, event.event, event.id, event, receiver.url)
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE idempotency_key = $1", event.id) == 1

    other = _event(campaign)
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await outbox.enqueue(conn, campaign, other.event, other.id, other, receiver.url)
                raise RuntimeError("the outcome was not recorded")
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE idempotency_key = $1", other.id) == 0
    with pytest.raises(ValueError, match="http"):
        await outbox.enqueue(pool, campaign, event.event, "k", event, "ftp://example.com/x")


async def test_a_failing_receiver_gets_the_same_delivery_again_with_growing_backoff(
    pool: asyncpg.Pool, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [503, 500, 200]
    _, [event] = await _queue(pool, receiver.url)
    now = _later(1)
    delays = []
    for _ in range(2):
        report = await outbox.deliver_due(pool, client, now=now, policy=FAST)
        assert len(report.retrying) == 1
        row = await _row(pool, event.id)
        assert row["delivered_at"] is None and row["last_error"].startswith("HTTP 5")
        assert outbox.delivery_state(row) == "retrying"
        delays.append((row["next_at"] - now).total_seconds())
        # not due before its back-off is over
        assert (await outbox.deliver_due(pool, client, now=row["next_at"] - dt.timedelta(seconds=1),
                                         policy=FAST)).claimed == 0
        now = row["next_at"]
    report = await outbox.deliver_due(pool, client, now=now, policy=FAST)
    assert len(report.delivered) == 1
    # backoff_delay(0) ∈ [5, 10] s, backoff_delay(1) ∈ [10, 20] s
    assert 5 <= delays[0] <= 10 <= delays[1] <= 20
    assert [r.key for r in receiver.received] == [event.id] * 3
    assert len({r.body for r in receiver.received}) == 1
    assert all(r.valid for r in receiver.received)
    row = await _row(pool, event.id)
    assert (row["attempts"], row["last_status"], row["last_error"]) == (3, 200, None)
    assert outbox.delivery_state(row) == "delivered"


async def test_the_last_attempt_gives_up_and_keeps_the_error(
    pool: asyncpg.Pool, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [500] * 10
    policy = outbox.DeliveryPolicy(max_attempts=3, base_delay_s=1, max_delay_s=1, timeout_s=2, lease_s=5)
    campaign, [event] = await _queue(pool, receiver.url)
    now = _later(1)
    for _ in range(5):
        await outbox.deliver_due(pool, client, now=now, policy=policy)
        now += dt.timedelta(seconds=10)
    assert len(receiver.received) == 3
    row = await _row(pool, event.id)
    assert row["given_up_at"] is not None and row["delivered_at"] is None
    assert row["last_error"].startswith("HTTP 500") and row["last_status"] == 500
    [listed] = await outbox.list_deliveries(pool, campaign, state="given_up")
    assert listed["idempotency_key"] == event.id and listed["state"] == "given_up"
    audit_row = await pool.fetchrow(
        "SELECT * FROM audit_log WHERE action = 'webhook_given_up' AND subject_id = $1", campaign
    )
    assert audit_row is not None and audit_row["data"]["attempts"] == 3


async def test_410_gone_stops_at_once(
    pool: asyncpg.Pool, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.script = [410]
    _, [event] = await _queue(pool, receiver.url)
    report = await outbox.deliver_due(pool, client, now=_later(1), policy=FAST)
    assert len(report.given_up) == 1
    await outbox.deliver_due(pool, client, now=_later(100_000), policy=FAST)
    assert len(receiver.received) == 1
    assert (await _row(pool, event.id))["last_status"] == 410


async def test_timeouts_and_refused_connections_are_retried(
    pool: asyncpg.Pool, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.delay = 1.0
    policy = outbox.DeliveryPolicy(base_delay_s=10, timeout_s=0.2, lease_s=5)
    _, [slow] = await _queue(pool, receiver.url)
    with socket_closed() as dead_url:
        _, [refused] = await _queue(pool, dead_url)
        report = await outbox.deliver_due(pool, client, now=_later(1), policy=policy, limit=1000)
    assert len(report.retrying) >= 2
    assert (await _row(pool, slow.id))["last_error"].startswith("timeout")
    row = await _row(pool, refused.id)
    assert row["last_error"].startswith("ConnectError") and row["last_status"] is None


class socket_closed:
    """A URL on a port nothing listens on."""

    def __enter__(self) -> str:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        return f"http://127.0.0.1:{self.port}/hook"

    def __exit__(self, *exc: object) -> None:
        return None


_CRASHING_DELIVERER = textwrap.dedent("""
    import asyncio, sys, httpx
    from campaigns import outbox
    from dialkit import db

    async def main():
        pool = await db.create_pool(sys.argv[1])
        policy = outbox.DeliveryPolicy(timeout_s=20, lease_s=30)
        async with httpx.AsyncClient() as client:
            await outbox.deliver_due(pool, client, policy=policy, limit=1000)

    asyncio.run(main())
""")


async def test_a_deliverer_killed_mid_request_leaves_the_row_to_be_redelivered(
    database_url: str, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    receiver.delay = lambda n: 60.0 if n == 0 else 0.0  # the first request hangs
    _, [event] = await _queue(pool, receiver.url)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _CRASHING_DELIVERER, database_url, env=env)
    try:
        for _ in range(300):
            if receiver.received:
                break
            await asyncio.sleep(0.05)
        assert receiver.received, "the deliverer never sent"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await asyncio.wait_for(proc.wait(), 10)

    # a new process (a new pool): the row survived, leased, then due again
    fresh = await db.create_pool(database_url, max_size=2)
    try:
        row = await _row(fresh, event.id)
        assert row["delivered_at"] is None and row["attempts"] == 1
        async with httpx.AsyncClient() as client:
            assert (await outbox.deliver_due(fresh, client, policy=FAST)).claimed == 0
            report = await outbox.deliver_due(fresh, client, now=_later(31), policy=FAST)
        assert report.delivered == [row["id"]]
    finally:
        await fresh.close()
    assert receiver.keys() == [event.id, event.id]
    assert receiver.received[0].body == receiver.received[1].body


async def test_concurrent_deliverers_never_send_one_row_twice_at_once(
    database_url: str, pool: asyncpg.Pool, receiver: Receiver
) -> None:
    receiver.delay = lambda n: 0.002 * (n % 5)
    receiver.script = [503 if n % 7 == 0 else 200 for n in range(400)]
    _, events = await _queue(pool, receiver.url, n=150)
    keys = {e.id for e in events}
    pools = [await db.create_pool(database_url, max_size=2) for _ in range(4)]
    policy = outbox.DeliveryPolicy(base_delay_s=0.01, max_delay_s=0.02, timeout_s=2, lease_s=30)
    try:
        async with httpx.AsyncClient() as client:

            async def worker(p: asyncpg.Pool) -> None:
                for _ in range(200):
                    pending = await p.fetchval(
                        "SELECT count(*) FROM outbox WHERE idempotency_key = ANY($1::text[])"
                        " AND delivered_at IS NULL", list(keys))
                    if not pending:
                        return
                    await outbox.deliver_due(p, client, now=_later(1), limit=10, policy=policy)

            await asyncio.gather(*(worker(p) for p in pools))
    finally:
        for p in pools:
            await p.close()
    ours = [r for r in receiver.received if r.key in keys]
    assert receiver.overlaps == []
    delivered = await pool.fetch(
        "SELECT idempotency_key, attempts FROM outbox WHERE idempotency_key = ANY($1::text[])"
        " AND delivered_at IS NOT NULL", list(keys))
    assert {r["idempotency_key"] for r in delivered} == keys
    # every send was an attempt counted on its row: no row was sent by two deliverers
    assert len(ours) == sum(r["attempts"] for r in delivered)
    assert all(json.loads(r.body)["id"] == r.key for r in ours)


async def test_an_event_built_from_stored_rows(pool: asyncpg.Pool) -> None:
    """The payload schema takes a `call_outcomes` row as asyncpg returns it."""
    from dialkit.store import CallStore

    store = CallStore(pool)
    call_id = await store.create_call("twilio", {}, to_number="+14155550123")
    await store.set_outcome(call_id, {"outcome": "promise_to_pay", "right_party": True, "ptp_amount": 99.5,
                                      "ptp_date": "2026-12-20", "ptp_plan": "instalment", "ptp_instalments": 3})
    row = dict(await pool.fetchrow("SELECT * FROM call_outcomes WHERE call_id = $1", uuid.UUID(call_id)))
    event = outcome_event(event="promise_to_pay", campaign_id=uuid.uuid4(), lead_id=1, account_ref="A-1",
                          phone="+14155550123", call_id=call_id, outcome=row, occurred_at=row["updated_at"])
    body = event.model_dump(mode="json")
    assert body["outcome"]["ptp_amount"] == "99.50" and body["outcome"]["ptp_date"] == "2026-12-20"
    assert body["outcome"]["ptp_instalments"] == 3 and body["outcome"]["hardship"] is False
    assert body["lead"] == {"id": 1, "account_ref": "A-1", "phone_masked": "+1******0123"}
    assert body["id"] == f"{call_id}:promise_to_pay"
    with pytest.raises(ValueError, match="event"):
        outcome_event(event="voicemail", campaign_id=uuid.uuid4(), lead_id=1, account_ref="A-1",
                      phone="+14155550123", call_id=call_id, outcome=row, occurred_at=row["updated_at"])


async def test_a_deliverer_whose_lease_ran_out_does_not_overwrite_the_next_ones_result(
    pool: asyncpg.Pool, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    """A stalled deliverer (its lease over by the second one's clock) answers last with a
    failure: the row keeps the second deliverer's success."""
    receiver.script = [503, 200]
    receiver.delay = lambda n: 0.5 if n == 0 else 0.0
    _, [event] = await _queue(pool, receiver.url)
    t0 = _later(1)
    stalled = asyncio.create_task(outbox.deliver_due(pool, client, now=t0, policy=FAST))
    while not receiver.received:
        await asyncio.sleep(0.01)
    second = await outbox.deliver_due(pool, client, now=t0 + dt.timedelta(seconds=FAST.lease_s + 1),
                                      policy=FAST)
    first = await stalled
    row = await _row(pool, event.id)
    assert second.delivered == [row["id"]] and first.claimed == 0
    assert row["delivered_at"] is not None
    assert (row["attempts"], row["last_status"], row["last_error"]) == (2, 200, None)
