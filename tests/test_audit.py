"""The audit log: append-only (UPDATE and DELETE refused), the retention purge removes
only expired rows, and the query helper filters and pages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import pytest_asyncio

from campaigns import audit
from dialkit import db
from dialkit.config import Settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(database_url, max_size=4)
    await db.migrate(pool)
    yield pool
    await pool.close()


def _subject() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


async def test_record_writes_a_row(pool: asyncpg.Pool) -> None:
    subject = _subject()
    await audit.record(pool, "key:ops", audit.DNC_ADD, "lead", subject, {"phone": "+1415***67"})
    row = await pool.fetchrow("SELECT * FROM audit_log WHERE subject_id = $1", subject)
    assert row is not None
    assert (row["actor"], row["action"], row["subject_type"]) == ("key:ops", "dnc_add", "lead")
    assert row["data"] == {"phone": "+1415***67"}
    assert row["at"] is not None


async def test_unknown_action_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="unknown audit action"):
        await audit.record(pool, "x", "dialled", "lead", "1")


async def test_record_rolls_back_with_its_transaction(pool: asyncpg.Pool) -> None:
    subject = _subject()
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await audit.record(conn, "local", audit.API_WRITE, "campaign", subject)
                raise RuntimeError("the change failed")
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE subject_id = $1", subject) == 0


async def test_update_is_refused_even_during_a_purge(pool: asyncpg.Pool) -> None:
    subject = _subject()
    await audit.record(pool, "local", audit.API_WRITE, "campaign", subject)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE audit_log SET actor = 'someone else' WHERE subject_id = $1", subject)
    async with pool.acquire() as conn:
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            async with conn.transaction():
                await conn.execute("SET LOCAL dialkit.audit_purge = 'on'")
                await conn.execute("UPDATE audit_log SET actor = 'x' WHERE subject_id = $1", subject)
    assert await pool.fetchval("SELECT actor FROM audit_log WHERE subject_id = $1", subject) == "local"


async def test_delete_is_refused_outside_the_purge(pool: asyncpg.Pool) -> None:
    subject = _subject()
    await audit.record(pool, "local", audit.API_WRITE, "campaign", subject)
    with pytest.raises(asyncpg.RaiseError, match="retention purge"):
        await pool.execute("DELETE FROM audit_log WHERE subject_id = $1", subject)
    # the purge's setting is local to its transaction: it does not leak to the next one
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SET LOCAL dialkit.audit_purge = 'on'")
        with pytest.raises(asyncpg.RaiseError, match="retention purge"):
            await conn.execute("DELETE FROM audit_log WHERE subject_id = $1", subject)
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE subject_id = $1", subject) == 1


async def test_purge_removes_only_expired_rows(pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    retention = timedelta(days=1095)
    subjects = {age: _subject() for age in (0, 1000, 1094, 1096, 2000)}
    for age, subject in subjects.items():
        await pool.execute(
            "INSERT INTO audit_log (at, actor, action, subject_type, subject_id)"
            " VALUES ($1, 'local', 'api_write', 'campaign', $2)",
            now - timedelta(days=age), subject,
        )
    removed = await audit.purge(pool, retention, now)
    assert removed >= 2
    left = {
        r["subject_id"]
        for r in await pool.fetch(
            "SELECT subject_id FROM audit_log WHERE subject_id = ANY($1::text[])", list(subjects.values())
        )
    }
    assert left == {subjects[0], subjects[1000], subjects[1094]}
    assert await audit.purge(pool, retention, now) == 0


async def test_purge_refuses_a_zero_retention(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError):
        await audit.purge(pool, timedelta(0), datetime.now(UTC))


async def test_purge_expired_reads_the_retention_setting(
    pool: asyncpg.Pool, base_settings: Settings
) -> None:
    assert Settings().audit_retention_days == 1095  # 3 years unless configured
    old, recent = _subject(), _subject()
    now = datetime.now(UTC)
    for subject, age in ((old, 11), (recent, 9)):
        await pool.execute(
            "INSERT INTO audit_log (at, actor, action, subject_type, subject_id)"
            " VALUES ($1, 'local', 'api_write', 'campaign', $2)",
            now - timedelta(days=age), subject,
        )
    # a 10-day retention: older test rows of this session may go as well, so count ours only
    await audit.purge_expired(pool, base_settings.model_copy(update={"audit_retention_days": 10}))
    left = await pool.fetch(
        "SELECT subject_id FROM audit_log WHERE subject_id = ANY($1::text[])", [old, recent]
    )
    assert [r["subject_id"] for r in left] == [recent]


async def test_query_filters_and_pages(pool: asyncpg.Pool) -> None:
    subject = _subject()
    t0 = datetime.now(UTC)
    for i in range(5):
        await audit.record(pool, "scheduler", audit.DIAL, "attempt", subject, {"i": i})
    await audit.record(pool, "carrier", audit.STATUS_CHANGE, "attempt", subject, {"i": 5})
    await audit.record(pool, "carrier", audit.DIAL, "attempt", _subject(), {"i": 6})

    rows, cursor = await audit.query(
        pool, audit.AuditQuery(subject_type="attempt", subject_id=subject, action="dial", limit=2)
    )
    assert [r["data"]["i"] for r in rows] == [4, 3]
    seen = [r["data"]["i"] for r in rows]
    while cursor is not None:
        rows, cursor = await audit.query(
            pool,
            audit.AuditQuery(subject_type="attempt", subject_id=subject, action="dial", limit=2, cursor=cursor),
        )
        seen += [r["data"]["i"] for r in rows]
    assert seen == [4, 3, 2, 1, 0]

    rows, _ = await audit.query(pool, audit.AuditQuery(subject_id=subject, actor="carrier"))
    assert [r["data"]["i"] for r in rows] == [5]
    rows, _ = await audit.query(pool, audit.AuditQuery(subject_id=subject, until=t0))
    assert rows == []
    rows, _ = await audit.query(pool, audit.AuditQuery(subject_id=subject, since=t0))
    assert len(rows) == 6


def test_a_foreign_cursor_is_refused() -> None:
    for bad in ("not-a-cursor", audit.encode_cursor(0), "%%%"):
        with pytest.raises(ValueError):
            audit.decode_cursor(bad)
    assert audit.decode_cursor(audit.encode_cursor(42)) == 42
