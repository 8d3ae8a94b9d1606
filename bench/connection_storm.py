"""Connection storm: does the server give back what 20,000+ rejected media connections took?

Starts `dialkit serve` in its own process (null STT, tone TTS, no Redis, log level WARNING,
a scratch database on DATABASE_URL or postgres on 127.0.0.1:5432, dropped afterwards), then
runs two storms of rejected media WebSockets, each connection refused in one of three ways:
a `start` with a forged token, a message that is not JSON, or media before `start`. The
server's RSS and open file descriptors (psutil) are sampled before, after storm 1 and after
storm 2 (each after a 2 s settle).

    .venv/bin/python bench/connection_storm.py [--per-storm 12000] [--concurrency 64]
        [--env MALLOC_ARENA_MAX=2 ...] [--tracemalloc out-prefix]

--env sets variables for the server process only (e.g. to compare glibc malloc settings).
--tracemalloc runs the server under tracemalloc and writes the top allocation sites that
grew over each storm to <out-prefix>-storm{1,2}.txt. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import free_port, local_postgres_url, machine, scratch_database

ROOT = Path(__file__).resolve().parent.parent
SETTLE_S = 2.0

#: runs the CLI under tracemalloc; SIGUSR1 takes a snapshot and writes what grew since the last
_TRACED_SERVER = """
import gc, signal, sys, tracemalloc
prefix = sys.argv[1]
tracemalloc.start(12)
snaps = [tracemalloc.take_snapshot()]
def dump(_sig, _frame):
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snap.compare_to(snaps[-1], "traceback")
    snaps.append(snap)
    with open(f"{prefix}-storm{len(snaps) - 1}.txt", "w") as f:
        total = sum(s.size_diff for s in stats)
        now = tracemalloc.get_traced_memory()[0] / 1e6
        found = gc.collect()  # is the growth garbage awaiting a full collection?
        f.write(f"traced growth {total / 1e6:.1f} MB; traced now {now:.1f} MB; a full "
                f"collection found {found} unreachable objects and left "
                f"{tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB\\n")
        for s in stats[:15]:
            f.write(f"{s.size_diff / 1e3:+.0f} kB in {s.count_diff:+d} blocks\\n")
            f.write("\\n".join("    " + line for line in s.traceback.format()[-8:]) + "\\n")
signal.signal(signal.SIGUSR1, dump)
sys.argv = ["dialkit", *sys.argv[2:]]
from dialkit.cli import main
main()
"""


def _start_server(database_url: str, port: int, data_dir: str, extra_env: dict[str, str],
                  trace_prefix: str | None) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DIALKIT_REDIS_URL")}
    env.update({
        "DIALKIT_STT": "null",
        "DIALKIT_TTS": "tone",
        "DATABASE_URL": database_url,
        "DIALKIT_LOG_LEVEL": "WARNING",
        "DIALKIT_DATA_DIR": data_dir,
        **extra_env,
    })
    args = ["serve", "--port", str(port)]
    if trace_prefix:
        cmd = [sys.executable, "-c", _TRACED_SERVER, trace_prefix, *args]
    else:
        cmd = [str(Path(sys.executable).parent / "dialkit"), *args]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


async def _wait_healthy(http: str, proc: subprocess.Popen[bytes]) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(f"{http}/health") as r:
                    await r.read()
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("server did not become healthy in 60 s")


def _rejections() -> list[str]:
    call_id = str(uuid.uuid4())
    forged = json.dumps({"event": "start", "streamSid": "MZ" + "1" * 32, "start": {
        "streamSid": "MZ" + "1" * 32, "callSid": "CA" + "2" * 32,
        "customParameters": {"call_id": call_id, "token": "AAAA.BBBB"}}})
    media = json.dumps({"event": "media", "streamSid": "MZ1", "media": {
        "track": "inbound", "payload": base64.b64encode(b"\xff" * 160).decode()}})
    return [forged, "{not json", media]


async def storm(ws_url: str, n: int, concurrency: int) -> dict[str, Any]:
    """n connections, each refused; returns their close codes and the wall time."""
    messages = _rejections()
    codes: dict[str, int] = {}
    gate = asyncio.Semaphore(concurrency)
    t0 = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def one(i: int) -> None:
            async with gate:
                try:
                    async with s.ws_connect(ws_url, autoping=True) as ws:
                        await ws.send_str(messages[i % len(messages)])
                        async for _ in ws:
                            pass
                        key = str(ws.close_code)
                except (aiohttp.ClientError, OSError) as exc:
                    key = type(exc).__name__
                codes[key] = codes.get(key, 0) + 1

        await asyncio.gather(*(one(i) for i in range(n)))
    return {"connections": n, "seconds": round(time.perf_counter() - t0, 1), "close_codes": codes}


def _sample(proc: psutil.Process) -> dict[str, float]:
    return {"rss_mb": round(proc.memory_info().rss / 2**20, 1), "fds": proc.num_fds()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-storm", type=int, default=12_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--tracemalloc", metavar="OUT_PREFIX")
    args = ap.parse_args()
    extra_env = dict(item.split("=", 1) for item in args.env)
    admin = local_postgres_url()
    if admin is None:
        raise SystemExit("needs PostgreSQL: set DATABASE_URL or run one on 127.0.0.1:5432")
    port = free_port()
    result: dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d"),
                              "server_env": extra_env, "per_storm": args.per_storm,
                              "concurrency": args.concurrency}
    with scratch_database(admin) as db_url, tempfile.TemporaryDirectory() as data_dir:
        server = _start_server(db_url, port, data_dir, extra_env, args.tracemalloc)
        try:
            asyncio.run(_wait_healthy(f"http://127.0.0.1:{port}", server))
            proc = psutil.Process(server.pid)
            ws_url = f"ws://127.0.0.1:{port}/media/twilio"
            asyncio.run(storm(ws_url, 200, args.concurrency))  # warm-up: code paths, pools
            time.sleep(SETTLE_S)
            samples = {"before": _sample(proc)}
            for name in ("storm1", "storm2"):
                result[name] = asyncio.run(storm(ws_url, args.per_storm, args.concurrency))
                time.sleep(SETTLE_S)
                samples[f"after_{name}"] = _sample(proc)
                if args.tracemalloc:
                    os.kill(server.pid, signal.SIGUSR1)
                    time.sleep(3)
        finally:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(30)
                except subprocess.TimeoutExpired:
                    server.kill()
    result["samples"] = samples
    rss1, rss2 = samples["after_storm1"]["rss_mb"], samples["after_storm2"]["rss_mb"]
    result["storm2_rss_growth_pct"] = round(100 * (rss2 - rss1) / rss1, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
