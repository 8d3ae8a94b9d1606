"""A lead CSV uploaded over HTTP, validated and stored: the time from the first byte sent
to the report received, for a file of --rows leads (US and Indian numbers, a custom
column), into a fresh campaign of a server running in its own process on a scratch
database. The file is made before the clock starts; the server's lead workers are warm.

    python bench/lead_upload.py --rows 100000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from common import free_port, local_postgres_url, machine, scratch_database  # noqa: E402

HEADER = "name,phone,amount_due,currency,due_date,account_ref,birth_year,creditor,callback_number\n"
US_AREAS = ("202", "212", "213", "305", "312", "404", "415", "503", "617", "646", "702", "718")
CHUNK = 256 * 1024

# the app as `dialkit serve` builds it, plus the campaign routes until build_app has them
SERVER = """
import asyncio, signal, sys
from aiohttp import web
from dialkit.config import Settings
from dialkit.logs import setup_logging
from dialkit.server import build_app

async def main():
    settings = Settings(port=int(sys.argv[1]))
    setup_logging(settings.log_level, settings.log_json)
    app = build_app(settings)
    if not any(getattr(r, "canonical", None) == "/api/campaigns" for r in app.router.resources()):
        from dialkit import api_campaigns
        api_campaigns.install(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()

asyncio.run(main())
"""


def make_csv(rows: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    out = [HEADER]
    for i in range(rows):
        if i % 10 == 9:
            phone = f"+91 9{rnd.randint(100000000, 999999999)}"
            currency, amount = "INR", f"{rnd.randint(500, 90000)}"
        else:
            phone = f"+1 {rnd.choice(US_AREAS)} {rnd.randint(200, 999)} {rnd.randint(0, 9999):04d}"
            currency, amount = "USD", f"{rnd.randint(20, 9000)}.{rnd.randint(0, 99):02d}"
        out.append(f"Debtor {i},{phone},{amount},{currency},2026-12-{1 + i % 28:02d},ACC-{i},"
                   f"{1950 + i % 50},Acme Bank,+12025550111\n")
    return "".join(out).encode()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live children (the lead workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                pids += [int(c) for c in f.read().split()]
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _start_server(database_url: str, port: int, data_dir: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DIALKIT_REDIS_URL")}
    env.update({
        "DATABASE_URL": database_url, "DIALKIT_STT": "null", "DIALKIT_TTS": "tone",
        "DIALKIT_LOG_LEVEL": os.environ.get("DIALKIT_LOG_LEVEL", "WARNING"), "DIALKIT_DATA_DIR": data_dir,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    })
    # --verbose: the server's log (each upload's timings) on this terminal
    quiet = None if os.environ.get("DIALKIT_LOG_LEVEL") else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, cwd=ROOT,
                            stdout=quiet, stderr=quiet)


async def _wait_ready(client: httpx.AsyncClient, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} (DIALKIT_LOG_LEVEL=INFO shows why)")
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/health")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise SystemExit("server did not become healthy in 60 s")


async def _upload(client: httpx.AsyncClient, cid: str, data: bytes) -> tuple[float, dict[str, Any]]:
    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), CHUNK):
            yield data[i : i + CHUNK]

    t0 = time.perf_counter()
    r = await client.post(f"/api/campaigns/{cid}/leads", content=body(),
                          headers={"Content-Type": "text/csv"})
    seconds = time.perf_counter() - t0
    if r.status_code != 200:
        raise SystemExit(f"upload: {r.status_code} {r.text[:500]}")
    return seconds, r.json()


async def bench(http: str, rows: int, proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    data = make_csv(rows)
    headers = {"Authorization": f"Bearer {k}"} if (k := os.environ.get("DIALKIT_API_KEY")) else {}
    async with httpx.AsyncClient(base_url=http, headers=headers, timeout=600) as client:
        await _wait_ready(client, proc)

        async def campaign() -> str:
            r = await client.post("/api/campaigns", json={
                "name": "bench", "playbook": "collections-default", "caller_id": "+12025550100"})
            if r.status_code != 201:
                raise SystemExit(f"create campaign: {r.status_code} {r.text}")
            return str(r.json()["id"])

        await _upload(client, await campaign(), make_csv(200, seed=1))  # warm the code paths
        cid = await campaign()
        cpu0 = _cpu_seconds(proc.pid)
        seconds, report = await _upload(client, cid, data)
        server_cpu = _cpu_seconds(proc.pid) - cpu0
        if report["accepted"] + report["rejected"] != rows:
            raise SystemExit(f"the report does not add up: {report}")
    return {"rows": rows, "seconds": round(seconds, 3), "rows_per_s": round(rows / seconds),
            "accepted": report["accepted"], "rejected": report["rejected"],
            # the server's own CPU (its process and lead workers; PostgreSQL's not counted)
            # and the machine's load: on a shared machine `seconds` waits for CPU too
            "server_cpu_s": round(server_cpu, 2), "load_avg_1m": round(os.getloadavg()[0], 2),
            "megabytes": round(len(data) / 1e6, 1), "machine": machine()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--json", action="store_true", help="one-line JSON")
    ap.add_argument("--verbose", action="store_true", help="show the server's log")
    args = ap.parse_args()
    if args.verbose:
        os.environ.setdefault("DIALKIT_LOG_LEVEL", "INFO")
    admin = local_postgres_url()
    with contextlib.ExitStack() as stack:
        data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="dialkit-bench-"))
        if admin is None:
            from dialkit.db import embedded_database_url

            admin = embedded_database_url(Path(data_dir))
        database_url = stack.enter_context(scratch_database(admin))
        port = free_port()
        proc = _start_server(database_url, port, data_dir)
        try:
            result = asyncio.run(bench(f"http://127.0.0.1:{port}", args.rows, proc))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['rows']} leads ({result['megabytes']} MB) uploaded, validated and stored in "
              f"{result['seconds']} s: {result['rows_per_s']} rows/s")


if __name__ == "__main__":
    main()
