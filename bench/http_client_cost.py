"""Event-loop CPU per request of the ElevenLabs and OpenAI SDKs, with httpx's own transport
(httpcore on anyio) and with aiohttp's (httpx-aiohttp, openai[aiohttp]), which dialkit uses.

The emulators run in their own processes, so the CPU measured here (`time.process_time`)
is the client's alone: building the request, the HTTP exchange and reading the streamed
body (an ElevenLabs sentence of µ-law audio; an OpenAI streamed reply of ~15 chunks).
Requests go 20 at a time, as live calls overlap.

    python bench/http_client_cost.py --requests 400 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import httpx2
from httpx_aiohttp import HttpxAiohttpClient
from openai import AsyncOpenAI, DefaultAioHttpClient, DefaultAsyncHttpxClient

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from ai.events import UserTurn  # noqa: E402
from ai.llm_openai import OpenAIPolicy  # noqa: E402
from ai.tts_elevenlabs import ElevenLabsTTS  # noqa: E402
from ai.types import AudioSpec  # noqa: E402

KEY = "bench-key"
REPLY = "Thank you. Could you tell me a little more about that?"
CONCURRENCY = 20


async def _emulator(vendor: str) -> None:
    from emulators.elevenlabs import running_elevenlabs
    from emulators.openai_api import Reply, running_openai

    if vendor == "elevenlabs":
        async with running_elevenlabs(api_key=KEY, seconds_per_char=0.012) as emu:
            print(emu.base_url, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    else:
        async with running_openai(api_key=KEY, reply=lambda messages: Reply(REPLY)) as emu:
            print(emu.base_url, flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)


async def _cpu_per_request(one: Any, requests: int) -> dict[str, float]:
    for _ in range(CONCURRENCY):  # warm the pool and the code paths
        await one()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(requests // CONCURRENCY):
        await asyncio.gather(*(one() for _ in range(CONCURRENCY)))
    n = requests // CONCURRENCY * CONCURRENCY
    return {"cpu_ms_per_request": round((time.process_time() - cpu0) * 1000 / n, 3),
            "wall_ms_per_request": round((time.perf_counter() - wall0) * 1000 / n, 3)}


async def _elevenlabs(url: str, transport: str, requests: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    http: httpx.AsyncClient = (HttpxAiohttpClient(limits=limits) if transport == "aiohttp"
                               else httpx.AsyncClient(limits=limits))
    tts = ElevenLabsTTS(KEY, "voice", base_url=url, http_client=http)
    spec = AudioSpec("mulaw", 8000)

    async def one() -> None:
        async for _ in tts.synthesize("Thank you.", spec):
            pass

    try:
        return await _cpu_per_request(one, requests)
    finally:
        await http.aclose()


async def _openai(url: str, transport: str, requests: int) -> dict[str, float]:
    http: httpx2.AsyncClient = (DefaultAioHttpClient() if transport == "aiohttp"
                                else DefaultAsyncHttpxClient())
    client = AsyncOpenAI(api_key=KEY, base_url=url, http_client=http, max_retries=0)
    policy = OpenAIPolicy(client=client, system_prompt="Be brief.")

    async def one() -> None:
        async for _ in policy.respond([], UserTurn("Hello?")):
            pass

    try:
        return await _cpu_per_request(one, requests)
    finally:
        await client.close()


def _spawn_emulator(vendor: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, "--emulator", vendor], text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


async def run(requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {"requests": requests, "concurrency": CONCURRENCY}
    for vendor, measure in (("elevenlabs", _elevenlabs), ("openai", _openai)):
        emu = _spawn_emulator(vendor)
        assert emu.stdin is not None and emu.stdout is not None
        try:
            url = emu.stdout.readline().strip()
            out[vendor] = {t: await measure(url, t, requests) for t in ("httpx", "aiohttp")}
        finally:
            emu.stdin.write("\n")
            emu.stdin.close()
            emu.wait(10)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--emulator", choices=("elevenlabs", "openai"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.emulator:
        asyncio.run(_emulator(args.emulator))
        return
    result = asyncio.run(run(args.requests))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
