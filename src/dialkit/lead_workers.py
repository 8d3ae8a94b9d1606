"""The processes that check uploaded lead rows (phonenumbers costs about 30 µs a row, so
100,000 rows on one core take seconds). Started by the first upload (a server that never
takes one never pays for them), stopped with the app.

DIALKIT_LEAD_WORKERS: how many processes (default: the CPUs this process may use, at most
4); 0 checks rows in a thread of the server process instead.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

import structlog
from aiohttp import web

__all__ = ["LEAD_WORKERS", "LeadWorkers", "install", "worker_count"]

log = structlog.get_logger("dialkit.lead_workers")


def worker_count() -> int:
    raw = os.environ.get("DIALKIT_LEAD_WORKERS")
    if raw is not None and raw.strip():
        try:
            return max(0, int(raw))
        except ValueError:
            raise ValueError(f"DIALKIT_LEAD_WORKERS must be a whole number, got {raw!r}") from None
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _watch_parent(parent: int) -> None:
    """A worker ends when the server process is gone (even killed with SIGKILL, when no
    shutdown reaches the pool)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _warm() -> None:
    """Import the checking code and load phonenumbers' metadata before the first block."""
    import uuid

    from campaigns.lead_import import check_block
    from campaigns.leads import LeadParser

    parser = LeadParser("US")
    blocks = parser.split(b"name,phone,amount_due,currency,due_date,account_ref\n"
                          b"A,+12025550101,1,USD,2026-01-01,A\n")
    for block in blocks:
        check_block(parser.checker, block, uuid.UUID(int=0))


@dataclass
class LeadWorkers:
    """The pool of one app: `await executor()` for `loop.run_in_executor`; None (the loop's
    default threads) when DIALKIT_LEAD_WORKERS is 0."""

    count: int
    _pool: ProcessPoolExecutor | None = None
    _starting: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def executor(self) -> Executor | None:
        if self.count <= 0:
            return None
        async with self._starting:
            if self._pool is None:
                # spawn: the server process has threads (asyncpg, redis) a fork would copy
                pool = ProcessPoolExecutor(
                    self.count, mp_context=multiprocessing.get_context("spawn"),
                    initializer=_watch_parent, initargs=(os.getpid(),))
                loop = asyncio.get_running_loop()
                await asyncio.gather(*(loop.run_in_executor(pool, _warm) for _ in range(self.count)))
                self._pool = pool
                log.info("lead_workers_ready", processes=self.count)
        return self._pool

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


LEAD_WORKERS = web.AppKey("dialkit_lead_workers", LeadWorkers)


def install(app: web.Application) -> None:
    """Give `app` a pool of lead workers, stopped with it."""
    if LEAD_WORKERS in app:
        return
    workers = app[LEAD_WORKERS] = LeadWorkers(worker_count())

    async def stop(_: web.Application) -> None:
        workers.stop()

    app.on_cleanup.append(stop)
