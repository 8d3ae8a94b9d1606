"""Concurrent echo calls: how many live calls one dialkit server process paces cleanly.

Starts `dialkit serve` in its own process with the echo playbook (null STT, tone TTS, log
level WARNING; DATABASE_URL from the environment or postgres on 127.0.0.1:5432, in a
scratch database dropped afterwards) unless --url is given. Creates N calls with
POST /api/calls, then client processes (aiohttp WebSockets) act as the carrier for every
call: 20 ms inbound frames on an absolute-deadline schedule (calls spread evenly over the
20 ms period) for S seconds, while receiving the server's paced echo. Every frame carries
its index in its first 4 bytes, so drops and reordering are counted exactly.

    .venv/bin/python bench/concurrent_calls.py --calls 200 --seconds 20 [--carrier exotel]
        [--url ws://host:port] [--client-procs 2] [--pin] [--profile out.txt] [--json]

Prints one JSON object. Definitions of every figure are in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import (
    FRAME_S,
    analyse_pacing,
    free_port,
    machine,
    percentile,
    profile_top,
    scratch_database,
)
from media.codec import PCM16_8K, pcm16_to_ulaw
from media.exotel import min_chunk_frames

ROOT = Path(__file__).resolve().parent.parent
ECHO_PLAYBOOK = ROOT / "src" / "ai" / "playbooks" / "echo.yaml"
ECHO_DELAY_S = 0.5  # media.session.SessionConfig.echo_delay_ms
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/postgres"


# ---- the carrier side (runs in client processes) ------------------------------------


class Leg:
    """One call's carrier WebSocket: sends numbered frames, records the echo."""

    def __init__(self, carrier: str, call: dict[str, Any], ws_base: str, index: int) -> None:
        self.carrier = carrier
        self.call = call
        self.url = f"{ws_base}/media/{carrier}"
        self.frame_bytes = 160 if carrier == "twilio" else 320
        self.sid = ("MZ" if carrier == "twilio" else "ex") + f"{index:032x}"
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.seq = 0
        self.sent = 0
        self.send_lag: list[float] = []
        self.arrivals: list[float] = []
        self.chunk_frames: list[int] = []
        self.chunk_sizes: set[int] = set()
        self.received = 0
        self.misordered = 0
        self.next_index = 0
        self.close_code: int | None = None
        self.error: str | None = None
        self.all_back = asyncio.Event()
        self.filler = _filler(carrier, self.frame_bytes)

    def _wrap(self, event: str, body: str) -> str:
        self.seq += 1
        if self.carrier == "twilio":
            return (f'{{"event":"{event}","sequenceNumber":"{self.seq}",'
                    f'"streamSid":"{self.sid}",{body}}}')
        return f'{{"event":"{event}","sequence_number":{self.seq},"stream_sid":"{self.sid}",{body}}}'

    def start_msg(self) -> str:
        params = {"call_id": self.call["call_id"], "token": self.call["token"]}
        if self.carrier == "twilio":
            start = {"accountSid": "AC" + "0" * 32, "streamSid": self.sid, "callSid": "CA" + self.sid,
                     "tracks": ["inbound"], "customParameters": params,
                     "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}
        else:
            start = {"stream_sid": self.sid, "call_sid": "c" + self.sid, "account_sid": "bench",
                     "custom_parameters": params,
                     "media_format": {"encoding": "audio/x-l16", "sample_rate": "8000",
                                      "bit_rate": "128kbps"}}
        return self._wrap("start", '"start":' + json.dumps(start))

    def media_msg(self, k: int) -> str:
        payload = base64.b64encode(k.to_bytes(4, "big") + self.filler).decode()
        if self.carrier == "twilio":
            body = (f'"media":{{"track":"inbound","chunk":"{k + 1}","timestamp":"{k * 20}",'
                    f'"payload":"{payload}"}}')
        else:
            body = f'"media":{{"chunk":{k + 1},"timestamp":"{k * 20}","payload":"{payload}"}}'
        return self._wrap("media", body)

    async def connect(self, session: aiohttp.ClientSession) -> None:
        self.ws = await session.ws_connect(self.url, max_msg_size=2**22, autoping=True,
                                           timeout=aiohttp.ClientWSTimeout(ws_close=10))
        await self.ws.send_str('{"event":"connected","protocol":"Call","version":"1.0.0"}')
        await self.ws.send_str(self.start_msg())

    async def receive(self) -> None:
        assert self.ws is not None
        clock = time.monotonic  # not loop.time(): uvloop's is cached per iteration, in ms
        fb = self.frame_bytes
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            t = clock()
            data = orjson.loads(msg.data)
            if data.get("event") != "media":
                continue
            payload = base64.b64decode(data["media"]["payload"])
            n = len(payload) // fb
            self.arrivals.append(t)
            self.chunk_frames.append(n)
            self.chunk_sizes.add(len(payload))
            for i in range(n):
                k = int.from_bytes(payload[i * fb : i * fb + 4], "big")
                if k != self.next_index:
                    self.misordered += 1
                self.next_index = k + 1
            self.received += n
            if self.sent and self.received >= self.sent:
                self.all_back.set()
        self.close_code = self.ws.close_code


def _filler(carrier: str, frame_bytes: int) -> bytes:
    """A quiet 440 Hz tone (after the 4 index bytes), so the echo is audio, not noise."""
    t = np.arange(frame_bytes) / 8000
    pcm = (np.sin(2 * np.pi * 440 * t) * 3000).astype("<i2")
    if carrier == "twilio":
        return pcm16_to_ulaw(pcm)[4:frame_bytes]
    return pcm.tobytes()[4:frame_bytes]


async def _drive(legs: list[Leg], t_start: float, seconds: float, offsets: list[float]) -> None:
    """Send every leg's frames on absolute deadlines: frame k at t_start + offset + k·20 ms."""
    clock = time.monotonic  # the parent's clock for t_start; uvloop's loop.time() is in ms
    frames = round(seconds / FRAME_S)
    order = sorted(range(len(legs)), key=lambda i: offsets[i])
    for k in range(frames):
        base = t_start + k * FRAME_S
        for i in order:
            leg = legs[i]
            if leg.ws is None or leg.ws.closed:
                continue
            due = base + offsets[i]
            now = clock()
            if due > now:
                await asyncio.sleep(due - now)
                now = clock()
            leg.send_lag.append(now - due)
            try:
                await leg.ws.send_str(leg.media_msg(k))
            except (ConnectionError, RuntimeError) as exc:
                leg.error = leg.error or f"send: {exc}"
                continue
            leg.sent += 1


async def _client(conn: Connection, carrier: str, calls: list[tuple[int, dict[str, Any]]],
                  ws_base: str, seconds: float, offsets: list[float]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        legs = [Leg(carrier, call, ws_base, idx) for idx, call in calls]
        gate = asyncio.Semaphore(64)

        async def connect(leg: Leg) -> None:
            async with gate:
                try:
                    await leg.connect(session)
                except Exception as exc:
                    leg.error = f"connect: {type(exc).__name__}: {exc}"

        t_connect = loop.time()
        await asyncio.gather(*(connect(leg) for leg in legs))
        connect_s = loop.time() - t_connect
        conn.send(("ready", os.getpid(), connect_s))
        t_start = await loop.run_in_executor(None, conn.recv)
        readers = [asyncio.ensure_future(leg.receive()) for leg in legs if leg.ws is not None]
        await _drive(legs, t_start, seconds, offsets)
        # the echo of the last frames arrives one echo delay later
        waits = [leg.all_back.wait() for leg in legs if leg.ws is not None and leg.sent]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*waits), ECHO_DELAY_S + 3.0)
        for leg in legs:
            if leg.ws is not None and not leg.ws.closed:
                with contextlib.suppress(Exception):
                    await leg.ws.send_str(leg._wrap("stop", '"stop":{}'))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*readers, return_exceptions=True), 30)
        for leg in legs:
            if leg.ws is not None and not leg.ws.closed:
                await leg.ws.close()
    return _summarise_legs(legs, carrier, connect_s)


def _summarise_legs(legs: list[Leg], carrier: str, connect_s: float) -> dict[str, Any]:
    # max(lead_frames, carrier chunk frames): Exotel's chunk is 10 frames of 8 kHz PCM16 (3,200 B)
    lead = 3 if carrier == "twilio" else max(3, min_chunk_frames(PCM16_8K))
    errors: list[float] = []
    late = gaps = 0
    gap_ms = 0.0
    sizes: set[int] = set()
    for leg in legs:
        if leg.arrivals:
            p = analyse_pacing(leg.arrivals, leg.chunk_frames, lead)
            errors += p.errors_ms
            late += p.late_frames
            gaps += p.gaps
            gap_ms += p.gap_ms
        sizes |= leg.chunk_sizes
    lags = np.concatenate([np.asarray(leg.send_lag) for leg in legs]) if legs else np.zeros(0)
    return {
        "errors_ms": np.asarray(errors, dtype=np.float32),
        "send_lag_ms": (lags * 1000).astype(np.float32),
        "late_frames": late,
        "gaps": gaps,
        "gap_ms": gap_ms,
        "sent": sum(leg.sent for leg in legs),
        "received": sum(leg.received for leg in legs),
        "dropped": sum(max(0, leg.sent - leg.received) for leg in legs),
        "misordered": sum(leg.misordered for leg in legs),
        "completed": sum(1 for leg in legs if leg.close_code == 1000 and not leg.error),
        "failed": sum(1 for leg in legs if leg.close_code != 1000 or leg.error),
        "errors": sorted({leg.error for leg in legs if leg.error})[:5],
        "chunk_sizes": sorted(sizes),
        "connect_s": connect_s,
    }


def _client_main(conn: Connection, carrier: str, calls: list[tuple[int, dict[str, Any]]],
                 ws_base: str, seconds: float, offsets: list[float], cpu: int | None,
                 loop_name: str) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        coro = _client(conn, carrier, calls, ws_base, seconds, offsets)
        if loop_name == "uvloop":
            import uvloop

            conn.send(("done", uvloop.run(coro)))
        else:
            conn.send(("done", asyncio.run(coro)))
    except Exception as exc:  # report, don't hang the parent
        conn.send(("error", f"{type(exc).__name__}: {exc}"))


# ---- the server process ---------------------------------------------------------------


def _start_server(database_url: str, port: int, data_dir: str, cpu: int | None,
                  workers: int = 1) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DIALKIT_REDIS_URL")}
    env.update({
        "DIALKIT_PLAYBOOK": str(ECHO_PLAYBOOK),
        "DIALKIT_STT": "null",
        "DIALKIT_TTS": "tone",
        "DATABASE_URL": database_url,
        "DIALKIT_LOG_LEVEL": "WARNING",
        "DIALKIT_DATA_DIR": data_dir,
    })
    exe = shutil.which("dialkit", path=str(Path(sys.executable).parent)) or "dialkit"
    cmd = [exe, "serve", "--port", str(port), "--workers", str(workers)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu), *cmd]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def _wait_healthy(http: str, proc: subprocess.Popen[bytes] | None) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s:
        for _ in range(600):
            if proc is not None and proc.poll() is not None:
                err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                raise SystemExit(f"server exited with {proc.returncode}: {err}")
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(f"{http}/health") as r:
                    body: dict[str, Any] = await r.json()
                    return body
            await asyncio.sleep(0.1)
    raise SystemExit("server did not become healthy in 60 s")


async def _create_calls(http: str, n: int, carrier: str) -> list[dict[str, Any]]:
    headers = {}
    if key := os.environ.get("DIALKIT_API_KEY"):
        headers["Authorization"] = f"Bearer {key}"
    gate = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(headers=headers) as s:

        async def one(i: int) -> dict[str, Any]:
            async with gate, s.post(f"{http}/api/calls", json={"carrier": carrier,
                                                                "context": {"bench": i}}) as r:
                if r.status != 201:
                    raise SystemExit(f"POST /api/calls: {r.status} {await r.text()}")
                body: dict[str, Any] = await r.json()
                return body

        return list(await asyncio.gather(*(one(i) for i in range(n))))


async def _server_media_stats(database_url: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT data FROM call_events WHERE kind = 'media_stats'")
    finally:
        await conn.close()
    stats = [json.loads(r["data"]) if isinstance(r["data"], str) else r["data"] for r in rows]
    return {
        "server_calls_recorded": len(stats),
        "server_late_chunks": sum(int(s.get("late_chunks", 0)) for s in stats),
        "server_max_late_ms": max((float(s.get("max_late_ms", 0)) for s in stats), default=0.0),
    }


def _process_tree(pid: int | None) -> list[psutil.Process]:
    """The server and its worker processes (`dialkit serve --workers N`)."""
    if not pid:
        return []
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _rss(procs: list[psutil.Process]) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def _cpu_s(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def _busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


def _profile(pid: int, seconds: float, out: str) -> subprocess.Popen[bytes] | None:
    exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if exe is None:
        print("py-spy not found: .venv/bin/pip install py-spy", file=sys.stderr)
        return None
    return subprocess.Popen(
        [exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", "200",
         "-f", "raw", "-o", out, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


# ---- the run ----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    server: subprocess.Popen[bytes] | None = None
    server_pid = args.server_pid
    with contextlib.ExitStack() as stack:
        if args.url:
            http = args.url.replace("wss://", "https://").replace("ws://", "http://").rstrip("/")
            database_url = None
        else:
            admin = os.environ.get("DATABASE_URL") or DEFAULT_DB
            database_url = stack.enter_context(scratch_database(admin))
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="dialkit-bench-"))
            port = free_port()
            server = _start_server(database_url, port, data_dir, 0 if args.pin else None, args.workers)
            server_pid = server.pid
            http = f"http://127.0.0.1:{port}"
            stack.callback(_stop_server, server)
        health = asyncio.run(_wait_healthy(http, server))
        ws_base = http.replace("https://", "wss://").replace("http://", "ws://")
        calls = asyncio.run(_create_calls(http, args.calls, args.carrier))
        result = _run_clients(args, calls, ws_base, server_pid)
        result["server"] = {"providers": health.get("providers", {}), "pid": server_pid}
        if server is not None:
            result["server_event_loop"] = _server_loop()
        if args.profile and os.path.exists(args.profile):
            result["profile_top"] = profile_top(args.profile, 12)
        if server is not None:
            _stop_server(server)
            if database_url is not None:
                result.update(asyncio.run(_server_media_stats(database_url)))
    return result


def _run_clients(args: argparse.Namespace, calls: list[dict[str, Any]], ws_base: str,
                 server_pid: int | None) -> dict[str, Any]:
    n = len(calls)
    procs = max(1, min(args.client_procs, n))
    ctx = mp.get_context("spawn")
    offsets_all = [FRAME_S * i / n for i in range(n)]
    workers: list[tuple[Any, Connection]] = []
    server_procs = _process_tree(server_pid)
    rss0 = _rss(server_procs)
    for w in range(procs):
        mine = list(range(w, n, procs))
        parent, child = ctx.Pipe()
        cpu = 1 if args.pin else None
        p = ctx.Process(
            target=_client_main,
            args=(child, args.carrier, [(i, calls[i]) for i in mine], ws_base, args.seconds,
                  [offsets_all[i] for i in mine], cpu, args.client_loop),
            daemon=True,
        )
        p.start()
        workers.append((p, parent))
    ready = [conn.recv() for _, conn in workers]
    for msg in ready:
        if msg[0] != "ready":
            raise SystemExit(f"client process failed: {msg[1]}")
    connect_s = max(m[2] for m in ready)
    client_procs = [psutil.Process(m[1]) for m in ready]
    t_start = time.monotonic() + 0.5
    for _, conn in workers:
        conn.send(t_start)
    # steady state: every call sending and its echo flowing
    win_start = t_start + ECHO_DELAY_S + 1.0
    win_end = t_start + args.seconds - 0.25
    profiler = None
    time.sleep(max(0.0, win_start - time.monotonic()))
    cpu0 = _cpu_s(server_procs)
    ccpu0 = _cpu_s(client_procs)
    psutil.cpu_percent(percpu=True)
    busy0 = _busy_s()
    w0 = time.monotonic()
    if args.profile and server_pid:
        profiler = _profile(server_pid, win_end - w0, args.profile)
    time.sleep(max(0.0, win_end - time.monotonic()))
    wall = time.monotonic() - w0
    cpu1 = _cpu_s(server_procs)
    ccpu1 = _cpu_s(client_procs)
    per_core = psutil.cpu_percent(percpu=True)
    busy1 = _busy_s()
    rss1 = _rss(server_procs)
    results = []
    for p, conn in workers:
        msg = conn.recv()
        if msg[0] != "done":
            raise SystemExit(f"client process failed: {msg[1]}")
        results.append(msg[1])
        p.join(10)
    if profiler is not None:
        profiler.wait(60)
    errors = np.concatenate([r["errors_ms"] for r in results])
    lags = np.concatenate([r["send_lag_ms"] for r in results])
    sent = sum(r["sent"] for r in results)
    steady_wall = wall if wall > 0 else float("nan")
    out: dict[str, Any] = {
        "calls": n,
        "seconds": args.seconds,
        "carrier": args.carrier,
        "p50_pacing_ms": round(percentile(errors, 50), 2),
        "p99_pacing_ms": round(percentile(errors, 99), 2),
        "max_pacing_ms": round(float(errors.max()) if errors.size else 0.0, 1),
        "late_frames": sum(r["late_frames"] for r in results),
        "gaps": sum(r["gaps"] for r in results),
        "gap_ms_total": round(sum(r["gap_ms"] for r in results), 1),
        "dropped_frames": sum(r["dropped"] for r in results),
        "misordered_frames": sum(r["misordered"] for r in results),
        "frames_sent": sent,
        "frames_echoed": sum(r["received"] for r in results),
        "inbound_frames_per_s": round(sent / args.seconds, 1),
        "server_cpu_pct": round((cpu1 - cpu0) / steady_wall * 100, 1) if server_procs else None,
        "rss_per_call_kb": round((rss1 - rss0) / n / 1024, 1) if server_procs else None,
        "server_rss_mb": round(rss1 / 2**20, 1) if server_procs else None,
        "client_cpu_pct": round((ccpu1 - ccpu0) / steady_wall * 100, 1),
        "client_procs": procs,
        "client_event_loop": args.client_loop,
        "client_send_lag_p99_ms": round(percentile(lags, 99), 2),
        "per_core_cpu_pct": per_core,
        # everything else on the machine (other benchmarks, postgres, the kernel's softirqs)
        "other_cpu_pct": round(((busy1 - busy0) - (cpu1 - cpu0) - (ccpu1 - ccpu0))
                               / steady_wall * 100, 1),
        "pinned": bool(args.pin),
        "completed_calls": sum(r["completed"] for r in results),
        "failed_calls": sum(r["failed"] for r in results),
        "client_errors": sorted({e for r in results for e in r["errors"]})[:5],
        "chunk_sizes": sorted({s for r in results for s in r["chunk_sizes"]}),
        "connect_s": round(connect_s, 2),
        "steady_window_s": round(wall, 2),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    return out


def _server_loop() -> str:
    """`dialkit serve` runs on uvloop when it can import it (dialkit.cli._run)."""
    probe = subprocess.run([sys.executable, "-c", "import uvloop"], capture_output=True, check=False)
    return "uvloop" if probe.returncode == 0 else "asyncio"


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--carrier", choices=("twilio", "exotel"), default="twilio")
    ap.add_argument("--url", help="an already running server (ws:// or http://); no CPU/RSS then "
                                  "unless --server-pid is given")
    ap.add_argument("--server-pid", type=int, help="pid of the server given by --url")
    ap.add_argument("--client-procs", type=int, default=0,
                    help="load-generator processes (default: 1 per 250 calls, at least 1)")
    ap.add_argument("--pin", action="store_true",
                    help="pin the server to CPU 0 and the load generator to CPU 1")
    ap.add_argument("--client-loop", choices=("asyncio", "uvloop"), default="asyncio",
                    help="event loop of the load generator")
    ap.add_argument("--profile", help="py-spy raw (collapsed) profile of the server's steady state")
    ap.add_argument("--workers", type=int, default=1, help="server processes (dialkit serve --workers)")
    ap.add_argument("--json", action="store_true", help="one-line JSON")
    args = ap.parse_args()
    if args.seconds < 3:
        ap.error("--seconds must be at least 3 (the steady-state window starts after 1.5 s)")
    if args.client_procs <= 0:
        args.client_procs = max(1, math.ceil(args.calls / 250))
    result = run(args)
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
