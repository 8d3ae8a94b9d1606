"""The processes that check uploaded lead rows (phonenumbers costs about 30 µs a row, so
100,000 rows on one core take seconds). Started with the app, stopped with it.

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
from dataclasses import dataclass

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


def _warm() -> int:
    import campaigns.leads  # noqa: F401  (phonenumbers' metadata loads on first use)
    from campaigns.leads import LeadParser

    parser = LeadParser("US")
    parser.feed(b"name,phone,amount_due,currency,due_date,account_ref\n"
                b"A,+12025550101,1,USD,2026-01-01,A\n")
    return os.getpid()


@dataclass
class LeadWorkers:
    """`executor` for `loop.run_in_executor`; None (the loop's default threads) when off."""

    executor: Executor | None = None

    async def start(self, count: int) -> None:
        if count <= 0:
            return
        # spawn: the server process has threads (asyncpg, redis) that a fork would copy
        self.executor = ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_watch_parent, initargs=(os.getpid(),))
        loop = asyncio.get_running_loop()
        pids = await asyncio.gather(*(loop.run_in_executor(self.executor, _warm)
                                      for _ in range(count)))
        log.info("lead_workers_ready", processes=len(set(pids)))

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None


LEAD_WORKERS = web.AppKey("dialkit_lead_workers", LeadWorkers)


def install(app: web.Application) -> None:
    """Start the workers with `app`, stop them with it."""
    if LEAD_WORKERS in app:
        return
    workers = app[LEAD_WORKERS] = LeadWorkers()

    async def start(_: web.Application) -> None:
        await workers.start(worker_count())

    async def stop(_: web.Application) -> None:
        workers.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
