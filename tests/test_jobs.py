"""The job queue: procrastinate's schema applied by `db.migrate` once (under the migration
lock, whatever the number of nodes migrating at once), over the embedded server's
unix-socket URL too, a deferred dial running in the worker, and dial jobs routed to the
workers that have their carrier's credentials."""

from __future__ import annotations

import asyncio
import tempfile
import uuid

import asyncpg
import pgserver
import pytest
from pydantic import SecretStr

from ai.playbook import PlaybookRegistry
from dialkit import db
from dialkit.config import Settings
from dialkit.jobs import DIAL, Jobs, build_runtime, conninfo
from dialkit.live import MemoryRegistry
from dialkit.providers import carrier_controls
from dialkit.store import CallStore
from tests.conftest import private_database
from tests.sched_helpers import add_lead, make_campaign


async def test_migrate_applies_the_job_schema_once_even_in_parallel(database_url: str) -> None:
    pools = [await db.create_pool(database_url, max_size=1) for _ in range(3)]
    try:
        await asyncio.gather(*(db.migrate(p) for p in pools))
        again = await db.migrate(pools[0])
        assert db.JOB_SCHEMA not in again
        assert await pools[0].fetchval("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
    finally:
        for p in pools:
            await p.close()


@pytest.mark.slow
async def test_jobs_over_the_embedded_servers_unix_socket() -> None:
    tmp = tempfile.mkdtemp(prefix="dialkit-jobs-pg-")
    server = pgserver.get_server(tmp, cleanup_mode="delete")
    try:
        url = server.get_uri()
        assert "host=/" in url  # the unix-socket form
        pool = await db.create_pool(url, max_size=2)
        applied = await db.migrate(pool)
        assert db.JOB_SCHEMA in applied
        jobs = Jobs(Settings(database_url=url), url)
        ran: list[str] = []

        @jobs.app.task(name="test.noted", pass_context=False)
        async def noted(value: str) -> None:
            ran.append(value)

        await jobs.open()
        await jobs.app.configure_task("test.noted").defer_async(value="over the socket")
        await jobs.defer_dial("00000000-0000-0000-0000-000000000000", "twilio")
        await jobs.defer_dial("00000000-0000-0000-0000-000000000000", "twilio")  # one waits
        waiting = await pool.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = $1 AND status = 'todo'", DIAL)
        assert waiting == 1
        await jobs.app.run_worker_async(queues=None, wait=False, install_signal_handlers=False,
                                        listen_notify=False)
        assert ran == ["over the socket"]
        await jobs.app.close_async()
        await pool.close()
    finally:
        server.cleanup()


def test_conninfo_keeps_libpq_uris() -> None:
    assert conninfo("postgres://u@h/db") == "postgresql://u@h/db"
    sock = "postgresql://postgres:@/postgres?host=/tmp/x"
    assert conninfo(sock) == sock


TWILIO = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": SecretStr("t" * 32)}
EXOTEL = {"exotel_account_sid": "dialkit1", "exotel_api_key": SecretStr("k"),
          "exotel_api_token": SecretStr("t")}
NO_CARRIER = {name: None for name in (*TWILIO, *EXOTEL)}


async def _queued_attempt(pool: asyncpg.Pool, carrier: str) -> uuid.UUID:
    campaign = await make_campaign(pool, carrier=carrier)
    lead = await add_lead(pool, campaign)
    attempt: uuid.UUID = await pool.fetchval(
        "INSERT INTO attempts (campaign_id, lead_id, carrier, state) VALUES ($1, $2, $3, 'queued')"
        " RETURNING id", campaign, lead, carrier)
    return attempt


async def _work_once(settings: Settings, url: str, pool: asyncpg.Pool) -> None:
    """A worker of a process with these settings' carrier credentials (as `dialkit worker`
    builds it) takes what it can and stops."""
    playbooks = PlaybookRegistry.load(settings.playbook)
    controls = carrier_controls(settings)
    jobs = Jobs(settings, url)
    jobs.runtime = build_runtime(settings, pool, CallStore(pool, playbooks), controls,
                                 playbooks, MemoryRegistry())
    await jobs.open()
    try:
        await jobs.run_worker(wait=False, listen_notify=False)
    finally:
        await jobs.close()
        for control in controls.values():
            await control.aclose()


async def test_a_worker_without_exotel_credentials_never_takes_an_exotel_dial(
    admin_database_url: str, base_settings: Settings,
) -> None:
    async with private_database(admin_database_url, "dialkit_queues") as url:
        pool = await db.create_pool(url, max_size=4)
        try:
            await db.migrate(pool)
            # no public URL: a dial taken ends at once, failed and retried per its rule
            base = base_settings.model_copy(
                update={"database_url": url, "public_url": None, **NO_CARRIER})
            twilio_only = base.model_copy(update=TWILIO)
            assert set(carrier_controls(twilio_only)) == {"twilio"}
            on_twilio = await _queued_attempt(pool, "twilio")
            on_exotel = await _queued_attempt(pool, "exotel")
            deferring = Jobs(base, url)
            await deferring.open()
            await deferring.defer_dial(str(on_twilio), "twilio")
            await deferring.defer_dial(str(on_exotel), "exotel")
            await deferring.app.close_async()

            await _work_once(twilio_only, url, pool)
            state = "SELECT state FROM attempts WHERE id = $1"
            assert await pool.fetchval(state, on_twilio) == "failed"  # taken and dialled
            assert await pool.fetchval(state, on_exotel) == "queued"  # left alone
            waiting = await pool.fetch(
                "SELECT queue_name, args->>'attempt_id' AS attempt FROM procrastinate_jobs"
                " WHERE task_name = $1 AND status = 'todo'", DIAL)
            assert [(r["queue_name"], r["attempt"]) for r in waiting] == [
                ("dial-exotel", str(on_exotel))]

            # a worker with Exotel's credentials (and none of Twilio's) takes it
            await _work_once(base.model_copy(update=EXOTEL), url, pool)
            assert await pool.fetchval(state, on_exotel) == "failed"
            # its dial job is done (the periodic tick may have queued retries of the failed
            # attempts meanwhile: those are new attempts with jobs of their own)
            assert await pool.fetchval(
                "SELECT count(*) FROM procrastinate_jobs WHERE task_name = $1"
                " AND status = 'todo' AND args->>'attempt_id' = $2", DIAL, str(on_exotel)) == 0
        finally:
            await pool.close()
