"""Barge-in reaction: caller speech onset → `clear` received at the phone.

Starts dialkit in-process (Piper TTS, null STT, the real session VAD: webrtcvad on 20 ms
frames) and plays a Twilio phone against it. In each trial the agent greets; at a random
point of its first sentence the caller starts speaking real speech (Piper, 8 kHz µ-law,
leading silence trimmed so the first frame sent is speech), one 20 ms frame every 20 ms,
then a second of silence. Reaction = the first `clear` arriving at the phone minus the
first speech frame being sent (with the pause stage on, that `clear` is the pause).

Runs once per `--runs` pair PAUSE:MIN (the playbook's `barge_in_pause_ms` and
`barge_in_min_speech_ms`; PAUSE 0 = no pause stage), and also plays a backchannel
("Mhm.") and a cough-like noise burst over the agent, counting per setting the trials
that paused the agent, that cut it off (`barge_in` event: a false barge-in) and that
resumed it (`barge_in_resumed`), with how long the resumed agent stayed paused.

    .venv/bin/python bench/barge_in.py [--json] [--trials 20] [--runs 100:300 0:300 0:120]

Needs PostgreSQL: DATABASE_URL, else one on 127.0.0.1:5432, else the embedded one.
Prints one JSON object; its top-level figures are for the first --runs pair.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ai.types import AudioSpec
from common import LOCAL_POSTGRES, machine, port_open
from dialkit.config import Settings
from dialkit.logs import setup_logging
from dialkit.providers import Providers, build_providers
from dialkit.server import start_server
from evaluation.personas import load_persona
from media.codec import AudioFormat, Resampler, decode, pcm16_to_ulaw

FRAME = 160  # 20 ms of 8 kHz µ-law
INTERRUPTION = "Sorry, can I stop you there for a second?"
BACKCHANNEL = "Mhm."


async def synth_ulaw(providers: Providers, text: str) -> bytes:
    """Text → 8 kHz µ-law, leading and trailing silence trimmed to whole 20 ms frames."""
    parts: list[np.ndarray] = []
    resampler: Resampler | None = None
    async for chunk in providers.tts.synthesize(text, AudioSpec("pcm16", 8000)):
        src = AudioFormat(chunk.spec.encoding, chunk.spec.rate)
        resampler = resampler or Resampler(src.rate, 8000)
        parts.append(resampler.process(decode(chunk.data, src)))
    if resampler is not None:
        parts.append(resampler.flush())
    pcm = np.concatenate(parts).astype(np.int16)
    n = len(pcm) // FRAME
    frames = pcm[: n * FRAME].reshape(n, FRAME).astype(np.float32)
    loud = np.flatnonzero(np.sqrt((frames**2).mean(axis=1)) > 500)  # about -36 dBFS
    pcm = pcm[loud[0] * FRAME : (loud[-1] + 1) * FRAME]
    return pcm16_to_ulaw(pcm)


def cough_ulaw(ms: int = 160, seed: int = 7) -> bytes:
    """A cough-like burst: band-limited noise with a fast attack and decay."""
    rng = np.random.default_rng(seed)
    n = 8000 * ms // 1000
    noise = np.convolve(rng.standard_normal(n + 8), np.ones(8) / 8, "valid")[:n]
    env = np.minimum(1, np.arange(n) / 80) * np.exp(-np.arange(n) / (n / 3))
    return pcm16_to_ulaw((noise / np.abs(noise).max() * env * 14000).astype(np.int16))


class Phone:
    """A Twilio media stream: 20 ms inbound frames in real time, marks echoed."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.sid = "MZ" + uuid.uuid4().hex
        self.clear_t: float | None = None
        self.first_media_t: float | None = None
        self.resumed_t: float | None = None  # first agent audio after the first `clear`
        self.clears = 0
        self._rx: asyncio.Task[None] | None = None

    async def start(self, call_id: str, token: str) -> None:
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await self.ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": self.sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": self.sid,
                      "callSid": "CA" + uuid.uuid4().hex, "tracks": ["inbound"],
                      "customParameters": {"call_id": call_id, "token": token},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}))
        self._rx = asyncio.ensure_future(self._receive())

    async def _receive(self) -> None:
        loop = asyncio.get_running_loop()
        async for raw in self.ws:
            msg = json.loads(raw)
            if msg["event"] == "media":
                if self.first_media_t is None:
                    self.first_media_t = loop.time()
                elif self.clear_t is not None and self.resumed_t is None:
                    self.resumed_t = loop.time()
            elif msg["event"] == "clear":
                self.clears += 1
                if self.clear_t is None:
                    self.clear_t = loop.time()
            elif msg["event"] == "mark":
                await self.ws.send(json.dumps({"event": "mark", "streamSid": self.sid,
                                               "mark": msg["mark"]}))

    async def frame(self, payload: bytes) -> None:
        await self.ws.send(json.dumps({"event": "media", "streamSid": self.sid, "media": {
            "track": "inbound", "payload": base64.b64encode(payload).decode()}}))

    async def stop(self) -> None:
        await self.ws.send(json.dumps({"event": "stop", "streamSid": self.sid, "stop": {}}))
        if self._rx is not None:
            try:
                await asyncio.wait_for(self._rx, 5)
            except (TimeoutError, websockets.ConnectionClosed):
                pass
        await self.ws.close()


async def trial(http: str, ws_url: str, audio: bytes, at_s: float) -> dict[str, Any]:
    """One call; the caller plays `audio` `at_s` seconds into the greeting, then a second
    of silence. Returns the reaction in ms (None: no `clear`), whether the agent was cut
    off or resumed (from the call's events), and how long a resumed agent was paused."""
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=http) as api:
        created = (await api.post("/api/calls", json={"carrier": "twilio",
                   "context": load_persona("cooperative").context()})).json()
    phone = Phone(await websockets.connect(f"{ws_url}/media/twilio"))
    await phone.start(created["call_id"], created["token"])
    silence = b"\xff" * FRAME
    frames = [audio[i : i + FRAME] for i in range(0, len(audio) - FRAME + 1, FRAME)]
    frames += [silence] * 50
    t = loop.time()
    onset: float | None = None
    sent = 0
    while sent < len(frames):
        speaking = phone.first_media_t is not None and t >= phone.first_media_t + at_s
        if speaking:
            if onset is None:
                onset = loop.time()
            await phone.frame(frames[sent])
            sent += 1
        else:
            await phone.frame(silence)
        t += 0.02
        await asyncio.sleep(max(0.0, t - loop.time()))
    await phone.stop()
    events = await _events(http, created["call_id"])
    resumed = [e["data"] for e in events if e["kind"] == "barge_in_resumed"]
    reaction = None
    if phone.clear_t is not None and onset is not None:
        reaction = (phone.clear_t - onset) * 1000
    return {
        "reaction_ms": reaction,
        "cut": any(e["kind"] == "barge_in" for e in events),
        "resumed": bool(resumed),
        "paused_ms": resumed[0]["paused_ms"] if resumed else None,
        "clears": phone.clears,
    }


async def _events(http: str, call_id: str) -> list[dict[str, Any]]:
    """The call's events once it has ended (they are written in order at the end)."""
    async with httpx.AsyncClient(base_url=http) as api:
        for _ in range(100):
            detail = (await api.get(f"/api/calls/{call_id}")).json()
            if detail["call"]["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.05)
    return list(detail["events"])


async def false_barge_ins(http: str, ws_url: str, audio: bytes, rng: random.Random,
                          n: int = 5) -> dict[str, Any]:
    results = [await trial(http, ws_url, audio, rng.uniform(0.3, 2.0)) for _ in range(n)]
    paused = [r["paused_ms"] for r in results if r["paused_ms"] is not None]
    return {
        "paused": f"{sum(r['reaction_ms'] is not None for r in results)}/{n}",
        "cut": f"{sum(r['cut'] for r in results)}/{n}",
        "resumed": f"{sum(r['resumed'] for r in results)}/{n}",
        "paused_ms_max": max(paused) if paused else None,
        "paused_ms_mean": round(statistics.fmean(paused), 1) if paused else None,
    }


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


async def run(trials: int, configs: list[tuple[int, int]], seed: int) -> dict[str, Any]:
    database_url = os.environ.get("DATABASE_URL")
    if not database_url and port_open(5432):
        database_url = await _scratch_database(LOCAL_POSTGRES)
    data_dir = Path(tempfile.mkdtemp(prefix="dialkit-bench-"))
    settings = Settings(database_url=database_url, data_dir=data_dir, stt="null", tts="piper",
                        media_secret="bench-secret")  # type: ignore[arg-type]
    providers = await build_providers(settings)
    runner, port = await start_server(settings, providers, port=0)
    http, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    rng = random.Random(seed)
    speech = await synth_ulaw(providers, INTERRUPTION)
    mhm = await synth_ulaw(providers, BACKCHANNEL)
    cough = cough_ulaw()
    pb = providers.playbook.settings
    defaults = (pb.barge_in_pause_ms, pb.barge_in_min_speech_ms)
    load_at_start = os.getloadavg()[0]
    runs = []
    try:
        for pause_ms, min_ms in configs:
            pb.barge_in_pause_ms, pb.barge_in_min_speech_ms = pause_ms, min_ms
            reactions: list[float] = []
            missed = cut = resumed = 0
            for _ in range(trials):
                r = await trial(http, ws_url, speech, rng.uniform(0.3, 2.0))
                if r["reaction_ms"] is None:
                    missed += 1
                else:
                    reactions.append(r["reaction_ms"])
                cut += r["cut"]
                resumed += r["resumed"]
            runs.append({
                "pause_ms": pause_ms, "min_speech_ms": min_ms,
                "samples": len(reactions), "missed": missed,
                "p50_ms": pct(reactions, 50), "p95_ms": pct(reactions, 95),
                "min_ms": pct(reactions, 0), "max_ms": pct(reactions, 100),
                "mean_ms": round(statistics.fmean(reactions), 1) if reactions else None,
                "interruptions_cut": f"{cut}/{trials}", "interruptions_resumed": f"{resumed}/{trials}",
                "mhm": await false_barge_ins(http, ws_url, mhm, rng),
                "cough": await false_barge_ins(http, ws_url, cough, rng),
            })
    finally:
        pb.barge_in_pause_ms, pb.barge_in_min_speech_ms = defaults
        await runner.cleanup()
    return {
        "benchmark": "barge_in",
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpu, {platform.processor() or machine()['cpu']}",
        "python": platform.python_version(),
        "tts": "piper", "vad": "webrtcvad mode 2 (session)", "carrier": "twilio µ-law 8 kHz",
        "speech": {"interruption": INTERRUPTION, "interruption_ms": len(speech) // 8,
                   "mhm_ms": len(mhm) // 8, "cough_ms": len(cough) // 8},
        "playbook_default": {"pause_ms": defaults[0], "min_speech_ms": defaults[1]},
        "load_avg_1m": {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)},
        **{k: runs[0][k] for k in ("samples", "p50_ms", "p95_ms", "pause_ms", "min_speech_ms",
                                   "missed")},
        "runs": runs,
    }


async def _scratch_database(admin_url: str) -> str:
    import asyncpg

    name = "dialkit_bench"
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--runs", nargs="+", default=["100:300", "0:300", "0:120"],
                        help="PAUSE:MIN pairs, barge_in_pause_ms:barge_in_min_speech_ms "
                             "(first = headline; PAUSE 0 = cut only)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    setup_logging("WARNING", False)  # stdout carries the JSON only
    configs = [(int(a), int(b)) for a, b in (r.split(":") for r in args.runs)]
    result = asyncio.run(run(args.trials, configs, args.seed))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
