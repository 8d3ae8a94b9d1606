"""Scheduler race: N worker processes tick one large campaign at once over the real SQL, on a
fake clock that runs through the day (calling windows open and close in the leads' zones),
with a no-op dialer that ends every attempt at once (no-answer) and settles it, as a status
callback would. Afterwards every attempt is checked against the rules.

    python bench/scheduler.py --workers 4 --json

Reports `decisions_per_s` (leads examined by the ticks, all workers), `attempts`,
`double_dials` (an attempt created while another of the same lead was live),
`window_violations` (an attempt outside the calling window of any of its lead's zones),
`cap_violations` (over the attempts-per-period cap or max_concurrent). The last three must
be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import local_postgres_url, machine, scratch_database

ZONE_SETS = [
    ["America/New_York"], ["America/Chicago"], ["America/Denver"], ["America/Los_Angeles"],
    ["Pacific/Honolulu"], ["America/Chicago", "America/Denver"], ["Asia/Kolkata"],
]
T0 = dt.datetime(2026, 6, 3, 10, 0, tzinfo=dt.UTC)  # 06:00 in New York: windows open later
#: fake seconds per real second: a 20 s run covers about 14 hours of calling
SPEED = 2500.0


def fake_now(start: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=(time.time() - start) * SPEED)


async def _setup(url: str, leads: int, max_concurrent: int) -> str:
    from campaigns.models import CampaignSettings, RetryRule, RetryRules
    from dialkit import db

    pool = await db.create_pool(url, max_size=2)
    await db.migrate(pool)
    retry = RetryRules(no_answer=RetryRule(delay_minutes=30, max_retries=5, backoff=1.5))
    cid = await pool.fetchval(
        "INSERT INTO campaigns (name, playbook_name, playbook_version, carrier, caller_id, status,"
        " max_concurrent, max_attempts, webhook_secret, settings) VALUES ('bench',"
        " 'collections-default', '1.0', 'twilio', '+14155550100', 'running', $1, 20, 's', $2)"
        " RETURNING id", max_concurrent, CampaignSettings(retry=retry).model_dump(mode="json"))
    rng = random.Random(7)
    rows = []
    for i in range(leads):
        zones = rng.choice(ZONE_SETS)
        country = "IN" if zones == ["Asia/Kolkata"] else "US"
        rows.append((cid, f"B{i:07d}", "Bench Lead", f"+1415{i:07d}", country, zones,
                     100, "USD", dt.date(2026, 11, 1)))
    async with pool.acquire() as conn:
        await conn.copy_records_to_table(
            "leads", records=rows, columns=["campaign_id", "account_ref", "name", "phone",
                                            "country", "zones", "amount_due", "currency",
                                            "due_date"])
    await pool.close()
    return str(cid)


async def _work(url: str, cid: str, start: float, seconds: float, max_concurrent: int
                ) -> dict[str, int]:
    from campaigns import scheduler
    from campaigns.settle import settle
    from campaigns.status import end_attempt
    from dialkit import db

    pool = await db.create_pool(url, min_size=2, max_size=4)
    decisions = attempts = locked = 0
    over_cap = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = await scheduler.tick_campaign(pool, cid, now=fake_now(start), global_cap=None)
        decisions += result.decisions
        if result.stopped == "locked":
            locked += 1
            await asyncio.sleep(0.002)
            continue
        live = await pool.fetchval(
            "SELECT count(*) FROM attempts WHERE campaign_id = $1 AND state = ANY($2::text[])",
            cid, list(scheduler.LIVE_STATES))
        over_cap += int(live > max_concurrent)

        async def no_answer(attempt_id: str) -> None:  # the no-op dialer, settled at once
            at = fake_now(start)
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "SELECT id, state FROM attempts WHERE id = $1 FOR UPDATE", attempt_id)
                await end_attempt(conn, row, "no_answer", at, "bench")
                await settle(conn, attempt_id, at=at, actor="bench")

        await asyncio.gather(*(no_answer(a) for a in result.queued))
        attempts += len(result.queued)
        if not result.queued and result.decisions == 0:
            await asyncio.sleep(0.01)
    await pool.close()
    return {"decisions": decisions, "attempts": attempts, "locked": locked, "over_cap": over_cap}


def _worker(url: str, cid: str, start: float, seconds: float, max_concurrent: int,
            out: Any) -> None:
    out.put(asyncio.run(_work(url, cid, start, seconds, max_concurrent)))


async def _check(url: str, cid: str) -> dict[str, int]:
    import asyncpg

    from campaigns.compliance import in_window, rules_for

    conn = await asyncpg.connect(url)
    rows = await conn.fetch(
        "SELECT a.lead_id, a.created_at, a.ended_at, l.zones, l.country FROM attempts a"
        " JOIN leads l ON l.id = a.lead_id WHERE a.campaign_id = $1"
        " ORDER BY a.lead_id, a.created_at", cid)
    await conn.close()
    double = window = cap = 0
    by_lead: dict[int, list[Any]] = {}
    for r in rows:
        by_lead.setdefault(r["lead_id"], []).append(r)
    for attempts in by_lead.values():
        rules = rules_for(attempts[0]["country"])
        for i, a in enumerate(attempts):
            if not in_window(a["created_at"], list(a["zones"]), rules.window):
                window += 1
            if i and (attempts[i - 1]["ended_at"] is None
                      or attempts[i - 1]["ended_at"] > a["created_at"]):
                double += 1
            recent = [b for b in attempts[:i]
                      if a["created_at"] - b["created_at"] < rules.attempt_period]
            if len(recent) >= rules.max_attempts:
                cap += 1
    return {"attempts": len(rows), "double_dials": double, "window_violations": window,
            "cap_violations": cap}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--max-concurrent", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    admin = local_postgres_url()
    if admin is None:
        import tempfile

        import pgserver

        admin = pgserver.get_server(tempfile.mkdtemp(prefix="dialkit-bench-pg-"),
                                    cleanup_mode="delete").get_uri()
    with scratch_database(admin) as url:
        cid = asyncio.run(_setup(url, args.leads, args.max_concurrent))
        ctx = multiprocessing.get_context("spawn")
        out = ctx.Queue()
        start = time.time() + 1.0  # every worker's fake clock starts together
        procs = [ctx.Process(target=_worker, args=(url, cid, start, args.seconds,
                                                   args.max_concurrent, out))
                 for _ in range(args.workers)]
        for p in procs:
            p.start()
        results = [out.get() for _ in procs]
        for p in procs:
            p.join()
        checked = asyncio.run(_check(url, cid))
    decisions = sum(r["decisions"] for r in results)
    report = {
        "workers": args.workers, "leads": args.leads, "seconds": args.seconds,
        "decisions": decisions, "decisions_per_s": round(decisions / args.seconds, 1),
        "fake_hours": round(args.seconds * SPEED / 3600, 1),
        **checked,
        "cap_violations": checked["cap_violations"] + sum(r["over_cap"] for r in results),
        "locked_skips": sum(r["locked"] for r in results),
        "machine": machine(),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>18}: {value}")


if __name__ == "__main__":
    main()
