"""Durable background jobs on procrastinate, over the same PostgreSQL as everything else.

- `dialkit.dial` (attempt_id): one dial attempt (`campaigns.dialer.Dialer.dial`), on its
  carrier's queue (`dial-twilio`, `dial-exotel`);
- `dialkit.scheduler_tick`: every `DIALKIT_SCHEDULER_TICK_S` seconds (a procrastinate
  periodic task, deferred once per period whatever the number of workers), and at once
  when a campaign starts or resumes (`kick`); its queueing lock keeps one waiting at most;
- `dialkit.reconcile`: every `DIALKIT_RECONCILE_S` seconds and when a worker starts
  (`campaigns.reconcile`);
- `dialkit.outbox`: outcome-webhook deliveries (`campaigns.outbox.drain`), every 5 s;
- `dialkit.audit_purge`: audit rows past DIALKIT_AUDIT_RETENTION_DAYS, daily at 03:17 UTC;
- `dialkit.evaluation_call` (evaluation_id, idx): one simulated call of an evaluation run
  (`evaluation.runs.run_call`), on the `evaluation` queue;
- `dialkit.tuning_run` (tuning_id): a tuning run (`tuning.runs.run_tuning`), on the
  `evaluation` queue; it waits for its evaluation calls, so a worker taking it runs at
  least 2 jobs at once;
- with each reconciliation and when a worker starts (an evaluation-only one too), the
  tuning and evaluation jobs left in progress by a worker that stopped sending heartbeats
  (killed) are retried (`recover_stalled`): a tuning run resumes after its last recorded iteration,
  an evaluation call is played again; an unfinished tuning run with no job at all (its job
  aborted when a worker stopped) is deferred again.

procrastinate talks to PostgreSQL through psycopg 3 (its own driver, beside asyncpg): its
pool is kept small (`JOB_POOL_SIZE`) since a worker holds one connection to LISTEN and
borrows one briefly per job fetch and result; the jobs' own SQL runs on asyncpg. The job
tables are created by `dialkit.db.migrate`. `dialkit serve` runs a worker in-process once
it listens (unless DIALKIT_RUN_JOBS=false), so one process does everything; `dialkit
worker` runs more.

Queues: a worker listens on the general queue (`default`: every job but the dials and the
evaluation calls), on the `evaluation` queue and on the dial queue of each carrier it has
credentials for, so a dial job waits for a worker that can place it rather than failing on
one that cannot (a process without Exotel credentials never takes an Exotel dial). An
evaluation-only worker (`run_evaluation_worker`, what `dialkit eval` runs in-process) needs
no carrier, dialer or registry: only the pool and the evaluation services.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import procrastinate
import structlog
from procrastinate import exceptions as job_errors

from ai.playbook import PlaybookRegistry
from campaigns import reconcile, scheduler
from campaigns.dialer import Dialer
from campaigns.status import call_finished
from dialkit.config import Settings
from dialkit.live import Registry
from dialkit.store import CallStore
from evaluation import runs
from media.call_control import CallControl
from media.exotel_control import ExotelCallControl
from media.twilio_control import TwilioCallControl

log = structlog.get_logger("dialkit.jobs")

DIAL = "dialkit.dial"
TICK = "dialkit.scheduler_tick"
RECONCILE = "dialkit.reconcile"
OUTBOX = "dialkit.outbox"
AUDIT_PURGE = "dialkit.audit_purge"
EVALUATION_CALL = "dialkit.evaluation_call"
TUNING_RUN = "dialkit.tuning_run"
#: psycopg connections procrastinate may open per process (LISTEN + job bookkeeping)
JOB_POOL_SIZE = 4
#: procrastinate's default queue: every job but the dials
GENERAL_QUEUE = "default"
#: the evaluation runs' calls (CPU-bound simulations, kept off the general queue)
EVALUATION_QUEUE = "evaluation"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class JobRuntime:
    """What the jobs need, built by the process that runs them (server or worker)."""

    pool: asyncpg.Pool
    settings: Settings
    dialer: Dialer
    controls: dict[str, CallControl]
    #: ids of the calls live on any node (the registry), for the reconciliation
    live_calls: Callable[[], Awaitable[Collection[str]]]
    clock: Callable[[], dt.datetime] = field(default=_now)
    http: httpx.AsyncClient | None = None


@dataclass
class EvaluationRuntime:
    """What the evaluation calls need: the pool and the services (LLM judge, audio server)."""

    pool: asyncpg.Pool
    services: runs.EvaluationServices


def conninfo(database_url: str) -> str:
    """The database URL as psycopg's conninfo. libpq reads the same URIs asyncpg does,
    including the embedded server's unix-socket form (`postgresql://u:@/db?host=/dir`)."""
    if database_url.startswith("postgres://"):
        return "postgresql://" + database_url[len("postgres://"):]
    return database_url


def dial_queue(carrier: str) -> str:
    """The queue of a carrier's dial jobs."""
    return f"dial-{carrier}"


def worker_queues(carriers: Iterable[str]) -> list[str]:
    """What a worker able to dial `carriers` listens on: the general queue, the evaluation
    queue and the carriers' dial queues."""
    return [GENERAL_QUEUE, EVALUATION_QUEUE, *(dial_queue(c) for c in sorted(carriers))]


def _cron_every(seconds: int) -> str:
    # croniter's optional sixth field is seconds
    return f"* * * * * */{max(1, min(59, seconds))}"


class Jobs:
    """The procrastinate app with dialkit's tasks; `runtime` is set before a worker runs."""

    def __init__(self, settings: Settings, database_url: str) -> None:
        self.settings = settings
        if settings.log_level.upper() != "DEBUG":
            # two INFO lines per job, a tick every few seconds: they would bury the calls' logs
            logging.getLogger("procrastinate").setLevel(logging.WARNING)
        connector = procrastinate.PsycopgConnector(
            conninfo=conninfo(database_url), min_size=1, max_size=JOB_POOL_SIZE,
            kwargs={"application_name": "dialkit-jobs"},
        )
        self.app = procrastinate.App(connector=connector)
        self.runtime: JobRuntime | None = None
        #: the evaluation calls' runtime; by default taken from `runtime` (see _eval_rt)
        self.evaluation: EvaluationRuntime | None = None
        #: how often workers here tell the database they are alive, and how long without a
        #: heartbeat a worker's jobs are taken for stalled (recover_stalled)
        self.heartbeat_s = 10.0
        self.stalled_after_s = 30.0
        self._worker: asyncio.Task[None] | None = None
        self._extra_workers: list[asyncio.Task[None]] = []
        self._register()

    def _rt(self) -> JobRuntime:
        if self.runtime is None:
            raise RuntimeError("dialkit jobs run without a runtime")
        return self.runtime

    def _eval_rt(self) -> EvaluationRuntime:
        if self.evaluation is None:
            rt = self._rt()
            self.evaluation = EvaluationRuntime(rt.pool, runs.services_from_settings(rt.settings))
        return self.evaluation

    def _register(self) -> None:
        app, s = self.app, self.settings

        @app.task(name=DIAL, pass_context=False)
        async def dial(attempt_id: str) -> None:
            await self._rt().dialer.dial(attempt_id)

        @app.task(name=EVALUATION_CALL, queue=EVALUATION_QUEUE, pass_context=False)
        async def evaluation_call(evaluation_id: int, idx: int) -> None:
            ev = self._eval_rt()
            await runs.run_call(ev.pool, evaluation_id, idx, ev.services)

        @app.task(name=TUNING_RUN, queue=EVALUATION_QUEUE, pass_context=False)
        async def tuning_run(tuning_id: int) -> None:
            from tuning import runs as tuning_runs

            ev = self._eval_rt()
            await tuning_runs.run_tuning(ev.pool, tuning_id, self,
                                         llm=tuning_runs.llm_settings(self.settings))

        @app.periodic(cron=_cron_every(s.scheduler_tick_s), periodic_id="every")
        @app.task(name=TICK, queueing_lock=TICK, pass_context=False)
        async def scheduler_tick(timestamp: int | None = None) -> None:
            rt = self._rt()
            result = await scheduler.tick(rt.pool, now=rt.clock(),
                                          global_cap=rt.settings.max_concurrent_calls)
            for attempt_id, carrier in result.dials:
                await self.defer_dial(attempt_id, carrier)

        @app.periodic(cron=_cron_every(s.reconcile_s), periodic_id="every")
        @app.task(name=RECONCILE, queueing_lock=RECONCILE, pass_context=False)
        async def reconcile_job(timestamp: int | None = None) -> None:
            await self.reconcile()
            await self.recover_stalled()

        @app.periodic(cron=_cron_every(5), periodic_id="every")
        @app.task(name=OUTBOX, queueing_lock=OUTBOX, pass_context=False)
        async def outbox_job(timestamp: int | None = None) -> None:
            rt = self._rt()
            from campaigns import outbox

            if rt.http is None:
                rt.http = httpx.AsyncClient(follow_redirects=False)
            await outbox.drain(rt.pool, rt.http)

        @app.periodic(cron="17 3 * * *", periodic_id="daily")
        @app.task(name=AUDIT_PURGE, queueing_lock=AUDIT_PURGE, pass_context=False)
        async def audit_purge(timestamp: int | None = None) -> None:
            rt = self._rt()
            from campaigns import audit

            removed = await audit.purge_expired(rt.pool, rt.settings)
            log.info("audit_purged", rows=removed)

    # ---- deferring -----------------------------------------------------------------

    async def defer_dial(self, attempt_id: str, carrier: str) -> None:
        """A dial job for the attempt, on its carrier's queue; a job already waiting for it
        is enough."""
        task = self.app.configure_task(DIAL, queue=dial_queue(carrier),
                                       queueing_lock=f"dial:{attempt_id}")
        with contextlib.suppress(job_errors.AlreadyEnqueued):
            await task.defer_async(attempt_id=attempt_id)

    async def kick(self) -> None:
        """Tick the scheduler now (a campaign started or resumed)."""
        with contextlib.suppress(job_errors.AlreadyEnqueued):
            await self.app.configure_task(TICK, queueing_lock=TICK).defer_async()

    async def defer_evaluation(self, evaluation_id: int) -> int:
        """One `dialkit.evaluation_call` job per call of the run still PENDING; how many."""
        pool = self.evaluation.pool if self.evaluation is not None else self._rt().pool
        pending = await pool.fetch("SELECT idx FROM evaluation_calls WHERE evaluation_id = $1"
                                   " AND status = 'PENDING' ORDER BY idx", evaluation_id)
        if pending:
            task = self.app.configure_task(EVALUATION_CALL, queue=EVALUATION_QUEUE)
            await task.batch_defer_async(*({"evaluation_id": evaluation_id, "idx": r["idx"]}
                                           for r in pending))
        return len(pending)

    async def defer_tuning(self, tuning_id: int) -> None:
        """The `dialkit.tuning_run` job of a run (one waiting at most)."""
        # the lock keeps two deliveries of a run from working it at once
        task = self.app.configure_task(TUNING_RUN, queue=EVALUATION_QUEUE, lock=f"tuning:{tuning_id}",
                                       queueing_lock=f"tuning:{tuning_id}")
        with contextlib.suppress(job_errors.AlreadyEnqueued):
            await task.defer_async(tuning_id=tuning_id)

    async def recover_stalled(self) -> int:
        """Retry the tuning and evaluation jobs a dead worker left in progress (no heartbeat
        for `stalled_after_s`); how many."""
        manager = self.app.job_manager
        retried = 0
        for task_name in (TUNING_RUN, EVALUATION_CALL):
            for job in await manager.get_stalled_jobs(task_name=task_name,
                                                      seconds_since_heartbeat=self.stalled_after_s):
                await manager.retry_job(job)
                retried += 1
                log.warning("stalled_job_retried", task=task_name, job=job.id, args=job.task_kwargs)
        # a run left unfinished with no job to work it (its job aborted by a worker that
        # stopped, or never deferred) is deferred again
        pool = self._eval_rt().pool
        orphans = await pool.fetch(
            "SELECT t.id FROM tuning_runs t WHERE t.status IN ('PENDING', 'RUNNING')"
            " AND t.created_at < now() - interval '5 seconds' AND NOT EXISTS ("
            "  SELECT 1 FROM procrastinate_jobs j WHERE j.task_name = $1"
            "  AND j.status IN ('todo', 'doing') AND (j.args->>'tuning_id')::bigint = t.id)", TUNING_RUN)
        for row in orphans:
            await self.defer_tuning(row["id"])
            retried += 1
            log.warning("tuning_run_redeferred", tuning=row["id"])
        return retried

    async def _recover_at_start(self) -> None:
        try:
            await self.recover_stalled()
        except Exception as exc:  # the periodic sweep tries again
            log.warning("startup_recover_failed", error=type(exc).__name__)

    # ---- the work --------------------------------------------------------------------

    async def reconcile(self, startup: bool = False) -> reconcile.Reconciled:
        """One pass; at a worker's start every attempt in flight is checked at once (after a
        crash nothing in flight can be trusted; asking the carrier again is harmless)."""
        rt = self._rt()
        s = rt.settings
        return await reconcile.reconcile(
            rt.pool, now=rt.clock(), carrier_status=self._carrier_status,
            redefer=self.defer_dial, live_calls=await rt.live_calls(),
            orphan_after=dt.timedelta(seconds=s.orphan_call_after_s),
            lost_after=dt.timedelta(seconds=s.attempt_lost_after_s),
            stale_after=dt.timedelta(0 if startup else 60),
            queued_after=dt.timedelta(0 if startup else 30),
        )

    async def _carrier_status(self, carrier: str, sid: str) -> str | None:
        control = self._rt().controls.get(carrier)
        if isinstance(control, TwilioCallControl | ExotelCallControl):
            return await control.call_status(sid)
        raise LookupError(f"carrier {carrier} is not configured")

    # ---- the worker -----------------------------------------------------------------

    async def open(self) -> None:
        await self.app.open_async()

    def listening(self, node: str) -> None:
        """The server accepts connections: its worker may dial now (a call placed earlier
        would find neither the media endpoint nor the status webhooks), unless
        DIALKIT_RUN_JOBS=false."""
        if self.settings.run_jobs and self._worker is None:
            self.start_worker(name=f"dialkit-{node}")

    def start_worker(self, concurrency: int | None = None, name: str = "dialkit") -> None:
        """Run a worker in this process's event loop (stopped by `close`)."""
        self._worker = asyncio.create_task(self.run_worker(concurrency, name), name="dialkit-jobs")

    async def run_worker(self, concurrency: int | None = None, name: str = "dialkit",
                         **options: Any) -> None:
        """A worker on the general queue and the dial queues of the carriers this process
        can dial (`runtime.controls`)."""
        try:
            await self.reconcile(startup=True)
        except Exception as exc:  # the periodic reconciliation tries again
            log.warning("startup_reconcile_failed", error=type(exc).__name__)
        await self._recover_at_start()
        queues = worker_queues(self._rt().controls)
        log.info("job_worker_starting", worker=name, queues=",".join(queues))
        await self.app.run_worker_async(
            queues=queues, concurrency=concurrency or self.settings.job_concurrency, name=name,
            install_signal_handlers=False, delete_jobs="successful",
            shutdown_graceful_timeout=5.0, update_heartbeat_interval=self.heartbeat_s, **options,
        )

    async def run_evaluation_worker(self, concurrency: int | None = None,
                                    name: str = "dialkit-eval", **options: Any) -> None:
        """A worker on the evaluation queue only (`evaluation` must be set): no dialer,
        carrier or registry needed, so `dialkit eval` runs one with nothing else running."""
        if self.evaluation is None:
            raise RuntimeError("an evaluation worker runs without an evaluation runtime")
        await self._recover_at_start()
        await self.app.run_worker_async(
            queues=[EVALUATION_QUEUE], concurrency=concurrency or self.settings.job_concurrency,
            name=name, install_signal_handlers=False, delete_jobs="successful",
            shutdown_graceful_timeout=5.0, update_heartbeat_interval=self.heartbeat_s, **options,
        )

    def start_evaluation_worker(self, concurrency: int | None = None,
                                name: str = "dialkit-eval") -> asyncio.Task[None]:
        """`run_evaluation_worker` in this process's event loop (stopped by `close`)."""
        task = asyncio.create_task(self.run_evaluation_worker(concurrency, name), name=name)
        self._extra_workers.append(task)
        return task

    async def close(self) -> None:
        for extra in self._extra_workers:
            extra.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await extra
        self._extra_workers.clear()
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await worker
        rt = self.runtime
        if rt is not None and rt.http is not None:
            await rt.http.aclose()
        await self.app.close_async()


def build_runtime(
    settings: Settings,
    pool: asyncpg.Pool,
    store: CallStore,
    controls: dict[str, CallControl],
    playbooks: PlaybookRegistry,
    registry: Registry,
) -> JobRuntime:
    """The jobs' runtime for a process holding these parts (server or `dialkit worker`)."""
    exotel_secret = settings.exotel_webhook_secret
    dialer = Dialer(
        pool=pool, controls=controls, create_call=store.create_call,
        find_playbook=playbooks.get, media_secret=settings.resolved_media_secret(),
        token_ttl_s=settings.media_token_ttl_s, public_url=settings.public_url,
        exotel_webhook_secret=exotel_secret.get_secret_value() if exotel_secret else None,
    )

    async def live_calls() -> Collection[str]:
        return {str(entry["call_id"]) for entry in await registry.live()}

    return JobRuntime(pool=pool, settings=settings, dialer=dialer, controls=controls,
                      live_calls=live_calls)


def settle_on_call_end(pool: asyncpg.Pool) -> Callable[[str, str, str | None], Awaitable[None]]:
    """CallStore's call-end hook: the call's dial attempt (if any) ends and settles now,
    whether or not the carrier's final status callback has come (whichever is last acts)."""

    async def on_ended(call_id: str, status: str, reason: str | None) -> None:
        try:
            async with pool.acquire() as conn:
                await call_finished(conn, call_id, _now(),
                                    failed=reason if status == "failed" else None)
        except (asyncpg.PostgresError, OSError) as exc:  # the reconciliation catches up
            log.warning("attempt_not_settled", call_id=call_id, error=type(exc).__name__)

    return on_ended


async def start_for_server(
    settings: Settings,
    database_url: str,
    pool: asyncpg.Pool,
    store: CallStore,
    controls: dict[str, CallControl],
    playbooks: PlaybookRegistry,
    registry: Registry,
) -> Jobs:
    """The server's jobs: opened (so handlers can defer) and the call-end hook installed;
    the in-process worker starts when the server listens (`listening`)."""
    jobs = Jobs(settings, database_url)
    jobs.runtime = build_runtime(settings, pool, store, controls, playbooks, registry)
    store.on_ended = settle_on_call_end(pool)
    await jobs.open()
    return jobs
