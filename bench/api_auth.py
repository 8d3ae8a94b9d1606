"""What authenticating an API request costs: GET /api/calls/live (answered from memory: no
Redis, no SQL of its own) over HTTP with one keep-alive httpx client, --requests times in
each mode:

- open: no DIALKIT_API_KEY and no stored key (each request asks the database whether a key
  exists, one indexed query);
- bootstrap: `Authorization: Bearer <DIALKIT_API_KEY>` (compared in memory);
- stored: `Authorization: Bearer dk_…` (a lookup by prefix, a SHA-256, and last_used_at
  refreshed at most once a minute).

In a private database on this machine's PostgreSQL (or the embedded one).

    python bench/api_auth.py --requests 2000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from pydantic import SecretStr

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import local_postgres_url, machine, percentile, scratch_database  # noqa: E402
from dialkit import apikeys  # noqa: E402
from dialkit.config import Settings  # noqa: E402
from dialkit.db import create_pool, embedded_database_url  # noqa: E402
from dialkit.logs import setup_logging  # noqa: E402
from dialkit.providers import build_providers  # noqa: E402
from dialkit.server import build_app  # noqa: E402

BOOTSTRAP = "bench-bootstrap-" + "k" * 32


async def _timed(base: str, key: str | None, requests: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    took: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers) as client:
        for _ in range(20):  # warm the connection and the pool
            assert (await client.get("/api/calls/live")).status_code == 200
        start = time.perf_counter()
        for _ in range(requests):
            t0 = time.perf_counter()
            got = await client.get("/api/calls/live")
            took.append((time.perf_counter() - t0) * 1000)
            assert got.status_code == 200, got.text
        wall = time.perf_counter() - start
    return {"p50_ms": round(percentile(took, 50), 3), "p95_ms": round(percentile(took, 95), 3),
            "requests_per_s": round(requests / wall, 1)}


async def _serve(settings: Settings, providers: Any) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(build_app(settings, providers), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def run(url: str, requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(database_url=url, data_dir=Path(tmp), stt="null", tts="tone", log_level="WARNING",
                            media_secret=SecretStr("bench-media-secret"))
        providers = await build_providers(settings, warmup=False)
        modes: dict[str, Any] = {}
        runner, base = await _serve(settings, providers)
        try:
            modes["open"] = await _timed(base, None, requests)
            pool = await create_pool(url, max_size=2)
            key, _ = await apikeys.create(pool, "bench", "read", actor="bench")
            await pool.close()
            modes["stored"] = await _timed(base, key, requests)
        finally:
            await runner.cleanup()
        runner, base = await _serve(settings.model_copy(update={"api_key": SecretStr(BOOTSTRAP)}), providers)
        try:
            modes["bootstrap"] = await _timed(base, BOOTSTRAP, requests)
        finally:
            await runner.cleanup()
        await providers.close()
    return {"requests": requests, "modes": modes, "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup_logging("WARNING")
    admin = local_postgres_url()
    if admin is None:
        admin = embedded_database_url(Path(tempfile.mkdtemp(prefix="dialkit-bench-")))
    with scratch_database(admin) as url:
        result = asyncio.run(run(url, args.requests))
    if args.json:
        print(json.dumps(result))
    else:
        for mode, figures in result["modes"].items():
            print(f"{mode:>9}: p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms, "
                  f"{figures['requests_per_s']} requests/s")


if __name__ == "__main__":
    main()
