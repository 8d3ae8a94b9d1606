"""Gauges read from PostgreSQL when /metrics is scraped: each running or paused
campaign's leads per state and live attempts, and the job queue's depth (procrastinate's
jobs waiting or running, per queue and task). Two grouped counts per scrape; a gauge's
series of a campaign that stopped are dropped at the next scrape."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog
from prometheus_client import Gauge

log = structlog.get_logger("dialkit.ops_metrics")

CAMPAIGN_LEADS = Gauge("dialkit_campaign_leads", "Leads of a running or paused campaign, per state",
                       ["campaign_id", "campaign", "status", "state"])
CAMPAIGN_LIVE = Gauge("dialkit_campaign_live_attempts",
                      "Attempts queued, dialing, ringing or in progress, per running or paused campaign",
                      ["campaign_id", "campaign", "status"])
JOB_QUEUE = Gauge("dialkit_job_queue_jobs", "Jobs waiting (todo) or running (doing), per queue and task",
                  ["queue", "task", "status"])
SCRAPE_ERRORS = Gauge("dialkit_metrics_database_errors",
                      "1 when the last scrape could not read the database gauges")

_LEADS = """
SELECT c.id::text AS id, c.name, c.status, l.state, count(l.id) AS n,
       (SELECT count(*) FROM attempts a WHERE a.campaign_id = c.id
          AND a.state IN ('queued', 'dialing', 'ringing', 'in_progress')) AS live
FROM campaigns c LEFT JOIN leads l ON l.campaign_id = c.id
WHERE c.status IN ('running', 'paused')
GROUP BY c.id, c.name, c.status, l.state
"""
_JOBS = """
SELECT queue_name, task_name, status::text AS status, count(*) AS n FROM procrastinate_jobs
WHERE status IN ('todo', 'doing') GROUP BY 1, 2, 3
"""


async def refresh(pool: asyncpg.Pool | None, timeout_s: float = 2.0) -> None:
    """Set the gauges from the database; on failure they keep nothing and the error gauge is 1."""
    if pool is None:
        return
    try:
        async with asyncio.timeout(timeout_s), pool.acquire() as conn:
            leads = await conn.fetch(_LEADS)
            has_jobs = await conn.fetchval("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            jobs = await conn.fetch(_JOBS) if has_jobs else []
    except (TimeoutError, asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
        log.warning("metrics_database_unavailable", error=type(exc).__name__)
        for gauge in (CAMPAIGN_LEADS, CAMPAIGN_LIVE, JOB_QUEUE):
            gauge.clear()
        SCRAPE_ERRORS.set(1)
        return
    SCRAPE_ERRORS.set(0)
    CAMPAIGN_LEADS.clear()
    CAMPAIGN_LIVE.clear()
    for r in leads:
        CAMPAIGN_LIVE.labels(r["id"], r["name"], r["status"]).set(r["live"])
        if r["state"] is not None:
            CAMPAIGN_LEADS.labels(r["id"], r["name"], r["status"], r["state"]).set(r["n"])
    JOB_QUEUE.clear()
    for r in jobs:
        JOB_QUEUE.labels(r["queue_name"], r["task_name"], r["status"]).set(r["n"])
