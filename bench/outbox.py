"""Outcome-webhook delivery throughput: N queued deliveries, W deliverers (each its own
asyncpg pool, as separate worker processes would have) draining the outbox at once into
a local aiohttp receiver that verifies every signature.

Reports `rows`, `workers`, `seconds`, `deliveries_per_s`, `duplicates` (deliveries of a
key already received: must be 0 here, since every request succeeds) and `bad_signatures`
(must be 0). Everything runs in this process on 127.0.0.1, so the figure is the outbox's
cost (claim, sign, POST, mark) plus the receiver's, not a network's.

Needs PostgreSQL: DATABASE_URL, else one on 127.0.0.1:5432 (a scratch database is made
and dropped).

    python bench/outbox.py --rows 5000 --workers 4 --json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
from aiohttp import web

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from campaigns import outbox  # noqa: E402
from campaigns.signing import verify  # noqa: E402
from common import local_postgres_url, machine, scratch_database  # noqa: E402
from dialkit import db  # noqa: E402

SECRET = "bench-secret"


async def run(database_url: str, rows: int, workers: int) -> dict[str, object]:
    seen: collections.Counter[str] = collections.Counter()
    bad = 0

    async def hook(request: web.Request) -> web.Response:
        nonlocal bad
        body = await request.read()
        if not verify(SECRET, request.headers.get("X-Dialkit-Signature"), body):
            bad += 1
        seen[request.headers["Idempotency-Key"]] += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"  # type: ignore[union-attr]

    pool = await db.create_pool(database_url, max_size=4)
    await db.migrate(pool)
    campaign = await pool.fetchval(
        "INSERT INTO campaigns (name, playbook_name, playbook_version, carrier, caller_id,"
        " max_concurrent, max_attempts, webhook_url, webhook_secret)"
        " VALUES ('bench', 'collections-default', '1.0', 'twilio', '+14155550100', 1, 1, $1, $2)"
        " RETURNING id", url, SECRET)
    async with pool.acquire() as conn, conn.transaction():
        for i in range(rows):
            key = f"{uuid.uuid4()}:promise_to_pay"
            await outbox.enqueue(conn, campaign, "promise_to_pay", key,
                                 {"id": key, "event": "promise_to_pay", "n": i}, url)
    pools = [await db.create_pool(database_url, min_size=1, max_size=2) for _ in range(workers)]
    try:
        # one HTTP client per deliverer, as separate worker processes would have, with as
        # many connections as requests in flight (httpcore's pool rescans its connections
        # for every request: one client for all four was 3x slower)
        policy = outbox.DeliveryPolicy()
        clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=policy.concurrency))
                   for _ in pools]
        started = time.perf_counter()
        await asyncio.gather(*(outbox.drain(p, c, batch=100, max_batches=10_000, policy=policy)
                               for p, c in zip(pools, clients, strict=True)))
        seconds = time.perf_counter() - started
        for c in clients:
            await c.aclose()
        left = await pool.fetchval("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")
    finally:
        for p in pools:
            await p.close()
        await pool.close()
        await runner.cleanup()
    return {
        "rows": rows, "workers": workers, "seconds": round(seconds, 3),
        "deliveries_per_s": round(rows / seconds, 1),
        "duplicates": sum(n - 1 for n in seen.values()), "bad_signatures": bad,
        "undelivered": left, "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    admin = local_postgres_url()
    if admin is None:
        sys.exit("needs PostgreSQL: set DATABASE_URL or run one on 127.0.0.1:5432")
    with scratch_database(admin) as url:
        result = asyncio.run(run(url, args.rows, args.workers))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>18}: {v}")


if __name__ == "__main__":
    main()
