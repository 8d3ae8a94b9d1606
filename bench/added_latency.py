"""The latency dialkit itself adds to a turn, with cloud providers of fixed, known delays.

Processes on this machine:
- the vendor emulators (Deepgram, OpenAI, ElevenLabs), one process each, with fixed delays: Deepgram sends
  every message `--deepgram-ms` late (so the final arrives that long after endpointing),
  OpenAI's first token comes `--openai-ms` after the request, ElevenLabs' first audio byte
  `--elevenlabs-ms` after the request;
- the dialkit server (`dialkit serve`, DIALKIT_STT=deepgram, DIALKIT_TTS=elevenlabs,
  DIALKIT_POLICY=openai, the packaged playbook with `--endpointing-ms`);
- N simulated Twilio phones on real WebSockets (this process): 20 ms µ-law frames in real
  time, outbound audio "played" in real time with marks echoed when reached. The phones'
  frames are spread over the 20 ms period (ten phases), as frames of calls that started at
  unrelated moments reach a server, rather than arriving as one burst from every call.

Each phone waits for the greeting, then for `--turns` turns speaks a tone burst (the
Deepgram emulator's energy detector hears it as speech) and waits for the agent's reply
to finish. For every agent reply:

    added = (first agent media message received − endpoint frame sent)
            − deepgram delay − openai delay − elevenlabs delay

where the endpoint frame is the silence frame that completes `--endpointing-ms` of
silence after the burst (the earliest moment any STT could end the turn). Timing from the
moment that frame is actually sent, rather than from the last speech frame plus a nominal
300 ms, keeps the phones' own scheduling lag out of dialkit's figure. The emulators send
on a fixed schedule relative to when they received the request or audio and report how
late they were against it (`emulator_late_ms`: their own event-loop lag, which is counted
in `added` but is not dialkit's). The phones speak Twilio's protocol without
permessage-deflate, as Twilio does (aiohttp's WebSocket client, whose C frame reader keeps
the load generator light).

Prints one JSON object (`--json`) or a short table.

    python bench/added_latency.py --calls 100 --json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import numpy as np
import orjson
import psutil
import uvloop

SRC = Path(__file__).resolve().parents[1] / "src"
sys.path.insert(0, str(SRC))

from ai.playbook import DEFAULT_PLAYBOOK  # noqa: E402
from common import free_port, local_postgres_url, with_database  # noqa: E402
from emulators.elevenlabs import encode_mulaw  # noqa: E402
from evaluation.personas import load_persona  # noqa: E402

DEMO_CONTEXT = load_persona("cooperative").context()

FRAME_S = 0.02
SLOTS = 10  # phases of the 20 ms frame period the phones are spread over
REPLY_DONE_S = 1.0
VENDORS = ("deepgram", "openai", "elevenlabs")
DG_KEY, OA_KEY, EL_KEY = "bench-deepgram", "bench-openai", "bench-elevenlabs"
REPLY = "Thank you. Could you tell me a little more about that?"


# ---- the emulators' process --------------------------------------------------------------


async def serve_emulators(deepgram_ms: int, openai_ms: int, elevenlabs_ms: int, only: str) -> None:
    """Run one emulator (`only`) until stdin closes; print its URL as one JSON line, then,
    at the end, how late it was. One process per vendor, so that a request never waits
    behind another vendor's traffic in a shared event loop."""
    from emulators.deepgram import running_deepgram
    from emulators.elevenlabs import running_elevenlabs
    from emulators.openai_api import Reply, running_openai

    async with contextlib.AsyncExitStack() as stack:
        if only == "deepgram":
            emu: Any = await stack.enter_async_context(running_deepgram(
                api_key=DG_KEY, unscripted_text="Yes, I can pay.", idle_timeout_s=60))
            emu.faults.processing_delay_s = deepgram_ms / 1000
            url = emu.url
        elif only == "openai":
            emu = await stack.enter_async_context(running_openai(
                api_key=OA_KEY, reply=lambda messages: Reply(REPLY),
                first_token_delay_s=openai_ms / 1000))
            url = emu.base_url
        else:
            emu = await stack.enter_async_context(running_elevenlabs(
                api_key=EL_KEY, seconds_per_char=0.012, first_byte_delay_s=elevenlabs_ms / 1000))
            url = emu.base_url
        print(json.dumps({only: url}), flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.readline)
        late = _late_stats(emu.lateness_s)
        if only == "elevenlabs":
            late["max_in_flight"] = emu.max_in_flight
        print(json.dumps({only: late}), flush=True)


def _late_stats(seconds: list[float]) -> dict[str, float | int]:
    """Percentiles (ms) of how late an emulator was against its own schedule."""
    if not seconds:
        return {"n": 0}
    ms = np.asarray(seconds) * 1000
    return {"n": len(ms), "p50": round(float(np.percentile(ms, 50)), 1),
            "p95": round(float(np.percentile(ms, 95)), 1), "max": round(float(ms.max()), 1)}


# ---- the phones ---------------------------------------------------------------------------


def _frame_json(stream_sid: str, payload: bytes) -> str:
    b64 = base64.b64encode(payload).decode()
    return json.dumps({"event": "media", "streamSid": stream_sid,
                       "media": {"track": "inbound", "chunk": "1", "timestamp": "0",
                                 "payload": b64}})


SILENCE = b"\xff" * 160
_t = np.arange(160) / 8000
TONE = encode_mulaw((8000 * np.sin(2 * np.pi * 220 * _t)).astype(np.int16))


@dataclass
class Phone:
    call_id: str
    token: str
    ws: Any = None
    stream_sid: str = ""
    silence: str = ""
    tone: str = ""
    burst_left: int = 0
    silence_left: int = 0  # silence frames until the endpoint frame of the current turn
    turns_left: int = 0
    heard_agent: bool = False
    play_end: float = 0.0
    last_media_t: float = 0.0
    awaiting_since: float | None = None
    endpoint_sent_pc: float = 0.0  # time.perf_counter() at that send (uvloop's clock is in ms)
    marks: list[tuple[float, str]] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list)
    sample_t: list[float] = field(default_factory=list)  # when each sample's turn ended
    done: bool = False
    error: str | None = None


class PhoneBank:
    """All phones, driven by one clock (one task instead of one per call)."""

    def __init__(self, session: aiohttp.ClientSession, ws_url: str, turns: int, burst_s: float,
                 endpoint_frames: int) -> None:
        self.session = session
        self.ws_url = ws_url
        self.turns = turns
        self.burst_frames = round(burst_s / FRAME_S)
        self.endpoint_frames = endpoint_frames
        self.phones: list[Phone] = []
        self.loop = asyncio.get_running_loop()
        self.max_tick_late_ms = 0.0
        self.t0 = 0.0
        self.expected = 0
        self._closers: set[asyncio.Task[bool]] = set()

    async def dial(self, api: httpx.AsyncClient, index: int) -> None:
        resp = await api.post("/api/calls", json={"carrier": "twilio",
                                                   "context": DEMO_CONTEXT})
        resp.raise_for_status()
        body = resp.json()
        p = Phone(body["call_id"], body["token"], turns_left=self.turns)
        p.stream_sid = f"MZ{index:032x}"
        p.silence, p.tone = _frame_json(p.stream_sid, SILENCE), _frame_json(p.stream_sid, TONE)
        p.ws = await self.session.ws_connect(f"{self.ws_url}/media/twilio", max_msg_size=2**22,
                                             compress=0)
        await p.ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await p.ws.send_str(json.dumps({"event": "start", "sequenceNumber": "1",
                                    "streamSid": p.stream_sid, "start": {
            "accountSid": "AC" + "0" * 32, "streamSid": p.stream_sid, "callSid": f"CA{index:032x}",
            "tracks": ["inbound"], "customParameters": {"call_id": p.call_id, "token": p.token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        self.phones.append(p)
        self.loop.create_task(self._receive(p))

    async def _receive(self, p: Phone) -> None:
        try:
            async for message in p.ws:
                now = self.loop.time()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    continue
                msg = orjson.loads(message.data)
                event = msg.get("event")
                if event == "media":
                    if p.awaiting_since is not None:
                        p.samples_ms.append((time.perf_counter() - p.endpoint_sent_pc) * 1000)
                        p.sample_t.append(p.awaiting_since)
                        p.awaiting_since = None
                    p.heard_agent = True
                    frames = max(1, round(len(msg["media"]["payload"]) * 3 / 4 / 160))
                    p.play_end = max(p.play_end, now) + frames * FRAME_S
                    p.last_media_t = now
                elif event == "mark":
                    p.marks.append((max(p.play_end, now), msg["mark"]["name"]))
                elif event == "clear":
                    p.play_end = now
                    p.marks = [(now, name) for _, name in p.marks]
        finally:
            p.done = True

    def _mark_msg(self, p: Phone, name: str) -> str:
        return json.dumps({"event": "mark", "streamSid": p.stream_sid, "mark": {"name": name}})

    async def _tick_one(self, p: Phone, now: float) -> None:
        if p.burst_left:
            p.burst_left -= 1
            await p.ws.send_str(p.tone)
            if not p.burst_left:
                p.silence_left = self.endpoint_frames
        else:
            await p.ws.send_str(p.silence)
            if p.silence_left:
                p.silence_left -= 1
                if not p.silence_left:
                    p.endpoint_sent_pc = time.perf_counter()
                    p.awaiting_since = self.loop.time()
        if p.marks:
            due = [m for m in p.marks if m[0] <= now]
            if due:
                p.marks = [m for m in p.marks if m[0] > now]
                for _, name in due:
                    await p.ws.send_str(self._mark_msg(p, name))
        # The agent's reply may pause between sentences while the next one is synthesised:
        # wait a second of silence before speaking, or the phone barges in on the reply.
        quiet = p.heard_agent and now > p.play_end + REPLY_DONE_S and p.awaiting_since is None
        if quiet and not p.burst_left and not p.silence_left and not p.marks:
            if p.turns_left:
                p.turns_left -= 1
                p.heard_agent = False
                p.burst_left = self.burst_frames
            else:
                p.done = True
                stop = {"event": "stop", "streamSid": p.stream_sid,
                        "stop": {"accountSid": "AC", "callSid": "CA"}}
                await p.ws.send_str(json.dumps(stop))
                # closing waits for the server's close frame: not on the shared clock
                closer = self.loop.create_task(p.ws.close())
                self._closers.add(closer)
                closer.add_done_callback(self._closers.discard)

    async def clock(self, deadline: float) -> None:
        """Each phone sends every 20 ms, at its own phase: phone i in slot i % SLOTS of the
        20 ms period. Real calls start at unrelated moments, so their frames reach a server
        spread over the period, not as one burst from every call at once."""
        t0 = self.t0 = self.loop.time()
        tick = 0
        slot_s = FRAME_S / SLOTS
        while self.loop.time() < deadline:
            due = t0 + tick * slot_s
            late = self.loop.time() - due
            if late < 0:
                await asyncio.sleep(-late)
            else:
                self.max_tick_late_ms = max(self.max_tick_late_ms, late * 1000)
            slot = tick % SLOTS
            tick += 1
            now = self.loop.time()
            if slot == 0:
                live = [p for p in self.phones if not p.done]
                if self.phones and not live and len(self.phones) == self.expected:
                    return
            for p in self.phones[slot::SLOTS]:
                if p.done:
                    continue
                try:
                    await self._tick_one(p, now)
                except ConnectionResetError:  # the server closed the socket
                    p.done = True
                except Exception as exc:
                    p.error, p.done = f"{type(exc).__name__}: {exc}", True


# ---- the run --------------------------------------------------------------------------------


def _spawn(cmd: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(cmd, env=env, text=True, **kwargs)


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (the server's workers)."""
    root = psutil.Process(pid)
    return sum(_own_cpu_s(p) for p in [root, *root.children(recursive=True)])


def _own_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds (user + system) a process has used so far."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return round(t.user + t.system, 1)


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    load_at_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="dialkit-bench-"))
    pg = None
    admin_url = local_postgres_url()
    if not admin_url:
        import pgserver

        pg = pgserver.get_server(str(tmp / "pgdata"), cleanup_mode="delete")
        admin_url = str(pg.get_uri())
    db_name = f"dialkit_bench_{os.getpid()}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{db_name}"')
    await admin.close()
    database_url = with_database(admin_url, db_name)
    emus = [
        _spawn(
            [sys.executable, __file__, "--emulators", vendor, "--deepgram-ms", str(args.deepgram_ms),
             "--openai-ms", str(args.openai_ms), "--elevenlabs-ms", str(args.elevenlabs_ms)],
            {**os.environ, "PYTHONPATH": str(SRC)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        for vendor in VENDORS
    ]
    server = None
    server_view: dict[str, float] = {}
    log_path = tmp / "server.log"
    try:
        urls: dict[str, str] = {}
        for emu in emus:
            assert emu.stdout is not None
            urls.update(json.loads(emu.stdout.readline()))
        playbook = tmp / "playbook.yaml"
        text = DEFAULT_PLAYBOOK.read_text(encoding="utf-8")
        playbook.write_text(text.replace("endpointing_ms: 700",
                                         f"endpointing_ms: {args.endpointing_ms}"))
        port = free_port()
        env = {
            **os.environ, "PYTHONPATH": str(SRC), "DATABASE_URL": database_url,
            "DIALKIT_DATA_DIR": str(tmp), "DIALKIT_MEDIA_SECRET": "bench",
            "DIALKIT_LOG_LEVEL": args.log_level,
            "DIALKIT_STT": "deepgram", "DEEPGRAM_API_KEY": DG_KEY,
            "DIALKIT_DEEPGRAM_URL": urls["deepgram"],
            "DIALKIT_POLICY": "openai", "OPENAI_API_KEY": OA_KEY,
            "OPENAI_BASE_URL": urls["openai"],
            "DIALKIT_TTS": "elevenlabs", "ELEVENLABS_API_KEY": EL_KEY,
            "DIALKIT_ELEVENLABS_BASE_URL": urls["elevenlabs"],
            "DIALKIT_PLAYBOOK": str(playbook),
        }
        env.pop("REDIS_URL", None)
        with log_path.open("w") as log_file:
            server = _spawn(
                [sys.executable, "-c", "from dialkit.cli import main; main()", "serve",
                 "--port", str(port), "--workers", str(args.workers)], env, stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        http = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=http, timeout=30) as api:
            for _ in range(600):
                with contextlib.suppress(httpx.HTTPError):
                    if (await api.get("/health")).status_code == 200:
                        break
                if server.poll() is not None:
                    raise RuntimeError(f"server exited; see {log_path}")
                await asyncio.sleep(0.1)
            # Silence reaches the STT in whole 20 ms carrier frames: this many after the burst
            # complete the endpointing time.
            endpoint_frames = -(-args.endpointing_ms // 20)
            server_cpu_at_start = _cpu_s(server.pid)
            # aiohttp's client for the phones: its C frame reader keeps the load generator,
            # which shares this machine's cores with the server, light.
            phones_http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            bank = PhoneBank(phones_http, f"ws://127.0.0.1:{port}", args.turns,
                             args.burst_ms / 1000, endpoint_frames)
            bank.expected = args.calls
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            clock = loop.create_task(bank.clock(loop.time() + args.max_seconds))
            gap = args.ramp_s / max(1, args.calls)
            dial_errors: list[str] = []
            for i in range(args.calls):
                try:
                    await bank.dial(api, i)
                except (httpx.HTTPError, OSError, aiohttp.ClientError) as exc:
                    dial_errors.append(type(exc).__name__)
                    bank.expected -= 1
                await asyncio.sleep(gap)
            await clock
            elapsed = time.monotonic() - started
            for p in bank.phones:
                with contextlib.suppress(Exception):
                    await p.ws.close()
            await phones_http.close()
            metrics = (await api.get("/metrics")).text
            cpu = {"server": _cpu_s(server.pid),
                   "server_during_calls": round(_cpu_s(server.pid) - server_cpu_at_start, 1),
                   "emulators": round(sum(_cpu_s(e.pid) for e in emus), 1),
                   **{vendor: _cpu_s(e.pid) for vendor, e in zip(VENDORS, emus, strict=True)}}
            cpu["phones"] = _own_cpu_s(psutil.Process(os.getpid()))
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
        emulator_late: dict[str, Any] = {}
        for emu in emus:
            if emu.poll() is not None:
                continue
            assert emu.stdin is not None and emu.stdout is not None
            with contextlib.suppress(OSError, ValueError):
                emu.stdin.write("\n")
                emu.stdin.flush()
                emulator_late.update(json.loads(emu.stdout.readline()))
            emu.stdin.close()
            try:
                emu.wait(10)
            except subprocess.TimeoutExpired:
                emu.kill()
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(database_url)
            row = await conn.fetchrow(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY stt_ms) AS stt,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY llm_ttft_ms) AS llm,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY tts_ttfb_ms) AS tts,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY voice_to_voice_ms) AS v2v"
                " FROM turns WHERE speaker = 'agent' AND voice_to_voice_ms IS NOT NULL")
            await conn.close()
            server_view.update({k: round(float(v), 1) for k, v in dict(row).items()
                                if v is not None})
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        await admin.close()
        if pg is not None:
            pg.cleanup()
        if args.keep_logs or sys.exc_info()[0] is not None:  # kept when the run failed
            print(f"server log: {log_path}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    silence_ms = -(-args.endpointing_ms // 20) * 20
    provider_ms = args.deepgram_ms + args.openai_ms + args.elevenlabs_ms
    v2v = [s for p in bank.phones for s in p.samples_ms]
    added = [s - provider_ms for s in v2v]
    windows: dict[int, list[float]] = {}
    for p in bank.phones:
        for t, ms in zip(p.sample_t, p.samples_ms, strict=True):
            windows.setdefault(int((t - bank.t0) // args.window_s), []).append(ms - provider_ms)
    by_window = [
        {"from_s": k * args.window_s, "turns": len(v), "p50": round(_percentile(v, 50), 1),
         "p95": round(_percentile(v, 95), 1), "max": round(max(v), 1)}
        for k, v in sorted(windows.items())
    ]
    complete = sum(1 for p in bank.phones if p.turns_left == 0 and len(p.samples_ms) == args.turns)
    fallbacks = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
        if line.startswith("dialkit_provider_fallbacks_total{")
    )
    return {
        "calls": args.calls,
        "turns_per_call": args.turns,
        "agent_turns_measured": len(added),
        "calls_connected": len(bank.phones),
        "dial_errors": {e: dial_errors.count(e) for e in sorted(set(dial_errors))},
        "calls_complete": complete,
        "p50_added_ms": round(_percentile(added, 50), 1),
        "p95_added_ms": round(_percentile(added, 95), 1),
        "p99_added_ms": round(_percentile(added, 99), 1),
        "max_added_ms": round(max(added), 1) if added else None,
        "mean_added_ms": round(statistics.fmean(added), 1) if added else None,
        "added_by_window": by_window,
        "p50_voice_to_voice_ms": round(_percentile(v2v, 50), 1),
        "emulated_delays_ms": {"deepgram_final_after_endpointing": args.deepgram_ms,
                               "openai_first_token": args.openai_ms,
                               "elevenlabs_first_byte": args.elevenlabs_ms},
        "endpointing_ms": args.endpointing_ms,
        "endpointing_silence_in_frames_ms": silence_ms,
        "measured_from": "send of the silence frame completing endpointing",
        "subtracted_ms": provider_ms,
        "emulator_late_ms": emulator_late,
        "provider_fallbacks": fallbacks,
        "server_p50_ms": server_view,
        "phone_clock_max_late_ms": round(bank.max_tick_late_ms, 1),
        "phone_errors": sorted({p.error for p in bank.phones if p.error}),
        "wall_s": round(elapsed, 1),
        "cpu_s": cpu,
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in load_at_start],
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1)
    ap.add_argument("--turns", type=int, default=4, help="caller turns per call")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--deepgram-ms", type=int, default=150)
    ap.add_argument("--openai-ms", type=int, default=200)
    ap.add_argument("--elevenlabs-ms", type=int, default=100)
    # 290, not 300: the emulator detects silence on 10 ms sub-frames with a float clock, so at
    # exactly 300 it sometimes needs one more sub-frame (the next 20 ms carrier frame); at 290
    # it always fires on the 15th silence frame (300 ms of silence), the frame timed from.
    ap.add_argument("--endpointing-ms", type=int, default=290)
    ap.add_argument("--burst-ms", type=int, default=800, help="length of each caller turn")
    ap.add_argument("--ramp-s", type=float, default=5.0, help="spread call starts over this")
    ap.add_argument("--window-s", type=float, default=2.0,
                    help="width of the time windows in `added_by_window`")
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--keep-logs", action="store_true",
                    help="keep the run's folder (server log, playbook) and print its path")
    ap.add_argument("--log-level", default="INFO", help="the server's DIALKIT_LOG_LEVEL")
    ap.add_argument("--workers", type=int, default=1, help="server processes (dialkit serve --workers)")
    ap.add_argument("--phones-loop", choices=("uvloop", "asyncio"), default="uvloop",
                    help="event loop of the simulated phones")
    ap.add_argument("--emulators", choices=VENDORS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.emulators:
        # asyncio's loop: its clock is exact, so the emulated delays are (uvloop's clock
        # counts in milliseconds and is read once per loop iteration)
        asyncio.run(serve_emulators(args.deepgram_ms, args.openai_ms, args.elevenlabs_ms,
                                    args.emulators))
        return
    # The phones stand in for a carrier's machines: uvloop keeps their share of this
    # machine's cores small; their timings use time.perf_counter, not the loop's clock.
    # (The server picks its own loop: DIALKIT_EVENT_LOOP.)
    result = (asyncio.run if args.phones_loop == "asyncio" else uvloop.run)(run(args))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
