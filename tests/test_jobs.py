"""The job queue: procrastinate's schema applied by `db.migrate` once (under the migration
lock, whatever the number of nodes migrating at once), over the embedded server's
unix-socket URL too, and a deferred dial running in the worker."""

from __future__ import annotations

import asyncio
import tempfile

import pgserver
import pytest

from dialkit import db
from dialkit.config import Settings
from dialkit.jobs import DIAL, Jobs, conninfo


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
        await jobs.defer_dial("00000000-0000-0000-0000-000000000000")
        await jobs.defer_dial("00000000-0000-0000-0000-000000000000")  # one waits at most
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
