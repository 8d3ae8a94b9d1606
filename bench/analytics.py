"""Campaign analytics over a large campaign: the time of one report
(campaigns.analytics.campaign_analytics, called as the API handler calls it, over one pooled
asyncpg connection; no HTTP) once the campaign has --attempts attempts.

Set-up, in a private database: leads over four US time zones (5 % in India, in INR), then
the calls of answered attempts with their agent turns (voice-to-voice times), greeting
events and outcomes, then the attempts themselves, already ended, spread evenly over --days
days, all with generate_series. The attempts go in after their calls' records, so each one's
insert trigger (sql/005_analytics.sql) computes its whole contribution in one pass: the
rollups are filled by the triggers, exactly as in production (only not through the
state-by-state updates, which the tests cover). Two small campaigns ride along so the
queries must pick theirs out.

Check: the rollups are compared with an aggregate computed straight from the raw rows
(attempts, leads, call_outcomes, call_events, turns) over one sample day: every counter and
the number of latency samples must be equal.

Timing: --runs reports (200 by default) alternating between the whole campaign and a 7-day
window that starts and ends mid-day (so both the daily and the hourly histograms are read),
first through the function, then (`http_*` figures) as GET /api/campaigns/{id}/analytics
over HTTP from the server's app (build_app with the analytics routes, API open on
loopback), with one keep-alive httpx client.

    python bench/analytics.py --attempts 1000000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from campaigns.analytics import campaign_analytics  # noqa: E402
from common import local_postgres_url, machine, percentile, scratch_database  # noqa: E402
from dialkit import api_analytics  # noqa: E402
from dialkit.config import Settings  # noqa: E402
from dialkit.db import create_pool, embedded_database_url, migrate  # noqa: E402
from dialkit.logs import setup_logging  # noqa: E402
from dialkit.openapi import INSTALLED  # noqa: E402
from dialkit.providers import build_providers  # noqa: E402
from dialkit.server import build_app  # noqa: E402

START = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
CAMPAIGN = "00000000-0000-4000-8000-00000000c001"
OTHERS = ("00000000-0000-4000-8000-00000000c002", "00000000-0000-4000-8000-00000000c003")
CHUNK = 100_000  # calls and their records per transaction
ATTEMPTS_PER_CALL = 20_000

# attempt i's fate, from a hash of i: 30 % completed, 8 % voicemail, 37 % no answer,
# 10 % busy, 10 % failed, 5 % canceled
_FATE = """CASE
    WHEN h < 30 THEN 'completed' WHEN h < 38 THEN 'voicemail' WHEN h < 75 THEN 'no_answer'
    WHEN h < 85 THEN 'busy' WHEN h < 95 THEN 'failed' ELSE 'canceled' END"""
_SERIES = """
    SELECT i, $1::uuid AS campaign_id, ('x' || substr(md5($1::text || i), 1, 8))::bit(32)::int AS r,
           abs(('x' || substr(md5($1::text || i), 9, 8))::bit(32)::int) % 100 AS h,
           $2::timestamptz + (i * $3::double precision / $4) * interval '1 second' AS at
    FROM generate_series($5::bigint, $6::bigint - 1) AS i"""


# Attempts lo..hi-1 as the status webhooks leave them: one transaction per attempt reaching
# its terminal state, in time order, so the rollups' rows are updated (and their old
# versions pruned) as in production. synchronous_commit is off for the bench session only.
_ATTEMPTS_PROC = f"""
CREATE OR REPLACE PROCEDURE bench_attempts(
    uuid, timestamptz, double precision, bigint, bigint, bigint, bigint, bigint)
LANGUAGE plpgsql AS $proc$
DECLARE
    n bigint;
BEGIN
    FOR n IN $5..$6 - 1 LOOP
        INSERT INTO attempts (id, campaign_id, lead_id, call_id, carrier, state,
                              local_hour, created_at, dialed_at, answered_at, ended_at)
        SELECT md5('attempt' || s.campaign_id || i)::uuid, s.campaign_id, l.id,
               CASE WHEN h < 38 THEN md5('call' || s.campaign_id || i)::uuid END,
               'twilio', {_FATE}, extract(hour FROM at AT TIME ZONE l.zones[1]),
               at, at + interval '1 s',
               CASE WHEN h < 38 THEN at + interval '20 s' END,
               at + interval '20 s' + CASE WHEN h < 38
                   THEN (30 + abs(r) % 240) * interval '1 s' ELSE interval '0' END
        FROM ({_SERIES.replace("$5::bigint, $6::bigint - 1", "n, n")}) s
        JOIN leads l ON l.id = $7 + i % $8;
        COMMIT;
    END LOOP;
END;
$proc$"""


async def _setup_campaign(pool: Any, cid: str, attempts: int, days: int, progress: bool) -> None:
    leads = max(1, attempts // 5)
    span_s = days * 86400.0
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO campaigns (id, name, playbook_name, playbook_version, carrier, caller_id,"
            " max_concurrent, max_attempts, webhook_secret) VALUES ($1, $2, 'collections', '1',"
            " 'twilio', '+15550100000', 10, 7, 'secret')", cid, f"bench {cid[-4:]}")
        await conn.execute(
            """INSERT INTO leads (campaign_id, account_ref, name, phone, country, zones, amount_due,
                                  currency, due_date)
               SELECT $1, 'acct-' || i, 'Debtor ' || i, '+1555' || lpad(i::text, 7, '0'),
                      CASE WHEN i % 20 = 0 THEN 'IN' ELSE 'US' END,
                      ARRAY[CASE WHEN i % 20 = 0 THEN 'Asia/Kolkata'
                                 ELSE (ARRAY['America/New_York', 'America/Chicago',
                                             'America/Denver', 'America/Los_Angeles'])[1 + i % 4]
                            END],
                      100 + i % 900, CASE WHEN i % 20 = 0 THEN 'INR' ELSE 'USD' END, '2026-12-31'
               FROM generate_series(1, $2::bigint) AS i""", cid, leads)
        first_lead = await conn.fetchval("SELECT min(id) FROM leads WHERE campaign_id = $1", cid)
        for lo in range(0, attempts, CHUNK):
            hi = min(attempts, lo + CHUNK)
            args = (cid, START, span_s, attempts, lo, hi)
            async with conn.transaction():
                # the calls of answered attempts, and what their media sessions wrote
                await conn.execute(f"""
                    INSERT INTO calls (id, carrier, status, created_at, started_at, ended_at)
                    SELECT md5('call' || campaign_id || i)::uuid, 'twilio', 'completed', at,
                           at + interval '20 s', at + interval '20 s' + (30 + abs(r) % 240) * interval '1 s'
                    FROM ({_SERIES}) s WHERE h < 38""", *args)
                await conn.execute(f"""
                    INSERT INTO turns (call_id, seq, speaker, text, start_ms, end_ms, voice_to_voice_ms)
                    SELECT md5('call' || campaign_id || i)::uuid, k, 'agent', 'line', k * 4000,
                           k * 4000 + 2500, 450 + (abs(r) >> (k * 3)) % 1400
                    FROM ({_SERIES}) s, generate_series(1, 3) AS k WHERE h < 30""", *args)
                await conn.execute(f"""
                    INSERT INTO call_events (call_id, t_ms, kind, data)
                    SELECT md5('call' || campaign_id || i)::uuid, g, 'greeting_audio',
                           jsonb_build_object('latency_ms', g, 'audio', 'greeting')
                    FROM (SELECT *, 300 + (abs(r) >> 4) % 2100 AS g FROM ({_SERIES}) s0) s
                    WHERE h < 30""", *args)
                await conn.execute(f"""
                    INSERT INTO call_outcomes (call_id, outcome, right_party, ptp_amount, opt_out)
                    SELECT md5('call' || campaign_id || i)::uuid,
                           CASE WHEN abs(r) % 10 < 6 AND abs(r) % 4 = 0 THEN 'promise_to_pay'
                                WHEN abs(r) % 50 = 7 THEN 'opt_out' ELSE 'refused' END,
                           abs(r) % 10 < 6,
                           CASE WHEN abs(r) % 10 < 6 AND abs(r) % 4 = 0
                                THEN (50 + abs(r) % 500)::numeric END,
                           abs(r) % 50 = 7
                    FROM ({_SERIES}) s WHERE h < 30""", *args)
        await conn.execute(_ATTEMPTS_PROC)
        await conn.execute("SET synchronous_commit = off")
        for lo in range(0, attempts, ATTEMPTS_PER_CALL):
            hi = min(attempts, lo + ATTEMPTS_PER_CALL)
            # the simple query protocol: a procedure that commits must be called on its own
            await conn.execute(
                f"CALL bench_attempts('{uuid.UUID(cid)}', '{START.isoformat()}', {span_s},"
                f" {attempts}, {lo}, {hi}, {int(first_lead)}, {leads})")
            if progress:
                print(f"  {hi:,} attempts", file=sys.stderr, flush=True)


_RAW_DAY = """
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE a.state = 'completed') AS completed,
       count(*) FILTER (WHERE a.state = 'voicemail') AS voicemail,
       count(*) FILTER (WHERE a.state = 'no_answer') AS no_answer,
       count(*) FILTER (WHERE a.state = 'busy') AS busy,
       count(*) FILTER (WHERE a.state = 'failed') AS failed,
       count(*) FILTER (WHERE a.state = 'canceled') AS canceled,
       count(*) FILTER (WHERE o.right_party) AS right_party,
       count(*) FILTER (WHERE o.ptp_amount IS NOT NULL) AS promises,
       coalesce(sum(o.ptp_amount), 0) AS ptp_amount,
       count(*) FILTER (WHERE o.opt_out) AS opt_outs,
       count(*) FILTER (WHERE a.state = 'completed' AND (g.ms IS NULL OR g.ms > 2000)) AS abandoned,
       count(g.ms) FILTER (WHERE a.state = 'completed') AS greeted,
       coalesce(sum(v.n), 0) AS v2v_samples
FROM attempts a
LEFT JOIN call_outcomes o ON o.call_id = a.call_id
LEFT JOIN LATERAL (SELECT (data ->> 'latency_ms')::float AS ms FROM call_events e
                   WHERE e.call_id = a.call_id AND e.kind = 'greeting_audio' LIMIT 1) g ON true
LEFT JOIN LATERAL (SELECT count(*) AS n FROM turns t WHERE t.call_id = a.call_id
                   AND t.speaker = 'agent' AND t.voice_to_voice_ms IS NOT NULL) v ON true
WHERE a.campaign_id = $1 AND a.created_at >= $2 AND a.created_at < $3
"""


async def _verify(pool: Any, day: dt.datetime) -> dict[str, Any]:
    """Raw aggregate over one day against the report for that day."""
    async with pool.acquire() as conn:
        raw = dict(await conn.fetchrow(_RAW_DAY, CAMPAIGN, day, day + dt.timedelta(days=1)))
        rep = await campaign_analytics(conn, CAMPAIGN, day, day + dt.timedelta(days=1))
    assert rep is not None
    m = rep.metrics
    got = {"attempts": m.attempts, "completed": m.connected, "voicemail": m.voicemail,
           "no_answer": m.no_answer, "busy": m.busy, "failed": m.failed, "canceled": m.canceled,
           "right_party": m.right_party_contacts, "promises": m.promises,
           "ptp_amount": sum((p.amount for p in m.promised), start=raw["ptp_amount"] * 0),
           "opt_outs": m.opt_outs, "abandoned": m.abandoned, "greeted": m.greeting.samples,
           "v2v_samples": m.voice_to_voice.samples}
    mismatched = {k: (raw[k], got[k]) for k in raw if raw[k] != got[k]}
    return {"day": day.date().isoformat(), "attempts": raw["attempts"], "equal": not mismatched,
            "mismatched": mismatched}


async def _time_http(url: str, windows: list[tuple[Any, Any]], runs: int) -> list[float]:
    """The same reports as GET requests to the server's app."""
    settings = Settings(database_url=url, media_secret="bench-media-secret",  # type: ignore[arg-type]
                        stt="null", tts="tone", data_dir=Path(tempfile.mkdtemp(prefix="dialkit-bench-")))
    app = build_app(settings, await build_providers(settings, warmup=False))
    if not any(r.path == "/api/analytics/overview" for r in (app[INSTALLED].routes if INSTALLED in app else [])):
        api_analytics.routes.install(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    path = f"/api/campaigns/{CAMPAIGN}/analytics"
    params = [{} if since is None else {"from": since.isoformat(), "to": until.isoformat()}
              for since, until in windows]
    times: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{runner.addresses[0][1]}") as http:
            for i in range(10):
                (await http.get(path, params=params[i % 2])).raise_for_status()
            for i in range(runs):
                t = time.perf_counter()
                r = await http.get(path, params=params[i % 2])
                r.json()
                times.append((time.perf_counter() - t) * 1000)
                r.raise_for_status()
    finally:
        await runner.cleanup()
    return times


async def run(url: str, attempts: int, days: int, runs: int, progress: bool) -> dict[str, Any]:
    pool = await create_pool(url, max_size=4)
    try:
        await migrate(pool)
        t0 = time.perf_counter()
        await _setup_campaign(pool, CAMPAIGN, attempts, days, progress)
        for other in OTHERS:
            await _setup_campaign(pool, other, max(10, attempts // 100), days, False)
        setup_s = time.perf_counter() - t0
        async with pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE")
        check = await _verify(pool, START + dt.timedelta(days=days // 2))
        windows = [(None, None),
                   (START + dt.timedelta(days=3, hours=7, minutes=30),
                    START + dt.timedelta(days=10, hours=16, minutes=5))]
        times: list[float] = []
        async with pool.acquire() as conn:
            for i in range(10):  # warm the plans and the cache
                await campaign_analytics(conn, CAMPAIGN, *windows[i % 2])
            for i in range(runs):
                t = time.perf_counter()
                report = await campaign_analytics(conn, CAMPAIGN, *windows[i % 2])
                times.append((time.perf_counter() - t) * 1000)
                assert report is not None
            whole = await campaign_analytics(conn, CAMPAIGN)
            rollup_rows = await conn.fetchval(
                "SELECT (SELECT count(*) FROM analytics_hourly WHERE campaign_id = $1)"
                " + (SELECT count(*) FROM analytics_daily WHERE campaign_id = $1)"
                " + (SELECT count(*) FROM analytics_latency WHERE campaign_id = $1)"
                " + (SELECT count(*) FROM analytics_daily_latency WHERE campaign_id = $1)", CAMPAIGN)
        assert whole is not None
        http_times = await _time_http(url, windows, runs)
        return {
            "attempts": whole.metrics.attempts,
            "p50_ms": round(percentile(times, 50), 2),
            "p95_ms": round(percentile(times, 95), 2),
            "max_ms": round(max(times), 2),
            "runs": runs,
            "timed": "campaigns.analytics.campaign_analytics over one asyncpg connection",
            "http_p50_ms": round(percentile(http_times, 50), 2),
            "http_p95_ms": round(percentile(http_times, 95), 2),
            "http_timed": "GET /api/campaigns/{id}/analytics, one keep-alive client",
            "days": days,
            "setup_s": round(setup_s, 1),
            "rollup_rows": rollup_rows,
            "verified_day": check,
            "machine": machine(),
        }
    finally:
        await pool.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=30, help="the campaign's attempts span these days")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    setup_logging("WARNING", stream=sys.stderr)
    admin = local_postgres_url()
    if admin is None:
        import tempfile

        admin = embedded_database_url(Path(tempfile.mkdtemp(prefix="dialkit-bench-")))
    with scratch_database(admin) as url:
        result = asyncio.run(run(url, args.attempts, args.days, args.runs, not args.json))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    if not result["verified_day"]["equal"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
