"""`dialkit worker`: a job worker without the HTTP server (dials, scheduler ticks, the
reconciliation, outcome webhooks), for more dialing capacity beside `dialkit serve`.
Any number may run, on any machine with the same DATABASE_URL (and REDIS_URL when the
servers use it, so the reconciliation sees every node's live calls). A worker takes the
dial jobs only of the carriers whose credentials it has (`dialkit.jobs.worker_queues`)."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated

import typer

from dialkit.config import Settings
from dialkit.logs import setup_logging


def worker(
    concurrency: Annotated[
        int | None, typer.Option(help="jobs run at once (default DIALKIT_JOB_CONCURRENCY)")
    ] = None,
) -> None:
    """Run a job worker until SIGINT / SIGTERM."""
    from dialkit.cli import _run

    settings = Settings()
    setup_logging(settings.log_level, settings.log_json)
    _run(_work(settings, concurrency))


async def _work(settings: Settings, concurrency: int | None) -> None:
    from ai.playbook import PlaybookRegistry
    from dialkit import db
    from dialkit.jobs import Jobs, build_runtime
    from dialkit.live import MemoryRegistry, RedisRegistry, Registry
    from dialkit.providers import carrier_controls
    from dialkit.store import CallStore

    url = settings.database_url
    if url is None:
        url = await asyncio.to_thread(db.embedded_database_url, settings.data_dir)
    pool = await db.create_pool(url, max_size=(concurrency or settings.job_concurrency) + 2)
    await db.migrate(pool)
    playbooks = PlaybookRegistry.load(settings.playbook)
    registry: Registry = (RedisRegistry.from_url(settings.redis_url, settings.redis_prefix)
                          if settings.redis_url else MemoryRegistry())
    controls = carrier_controls(settings)
    store = CallStore(pool, playbooks)
    jobs = Jobs(settings, url)
    jobs.runtime = build_runtime(settings, pool, store, controls, playbooks, registry)
    await jobs.open()
    jobs.start_worker(concurrency, name=f"dialkit-worker-{registry.node}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    typer.echo("dialkit worker running (Ctrl-C to stop)", err=True)
    await stop.wait()
    await jobs.close()
    for control in controls.values():
        await control.aclose()
    await registry.close()
    await pool.close()
