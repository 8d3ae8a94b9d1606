"""The echo agent (playbook kind `echo`) over real sockets: the caller's audio comes back
byte for byte after the echo delay, paced through the normal outbound player, in the
carrier's chunk sizes (Twilio 160-byte µ-law frames, Exotel PCM16 100 ms chunks)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import statistics
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest_asyncio
import websockets

from ai.playbook import load_playbook
from dialkit.config import Settings
from dialkit.providers import build_providers
from dialkit.server import start_server
from media.exotel import MAX_CHUNK_BYTES, MIN_CHUNK_MS
from media.session_services import SessionConfig
from tests.carrier_client import call_detail, create_call
from tests.conftest import RunningServer

ROOT = Path(__file__).resolve().parents[1]
ECHO_PLAYBOOK = ROOT / "src" / "ai" / "playbooks" / "echo.yaml"
ECHO_DELAY_S = SessionConfig().echo_delay_ms / 1000
FRAME_S = 0.02


class CountingFactory:
    """Wraps the policy factory and counts how often a call asked it for a policy."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0

    def __call__(self, context: dict[str, Any], playbook: Any = None) -> Any:
        self.calls += 1
        return self.inner(context, playbook)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def echo_server(base_settings: Settings) -> AsyncIterator[RunningServer]:
    settings = base_settings.model_copy(update={"playbook": ECHO_PLAYBOOK})
    providers = await build_providers(settings, warmup=False)
    providers.policy_factory = CountingFactory(providers.policy_factory)
    runner, port = await start_server(settings, providers, port=0)
    yield RunningServer(runner, port, settings)
    await runner.cleanup()


def test_echo_playbook_loads() -> None:
    playbook = load_playbook(ECHO_PLAYBOOK)
    assert playbook.kind == "echo" and playbook.name == "echo"
    assert not playbook.states  # nothing scripted: the caller's audio is the reply


def known_signal(n_frames: int, frame_bytes: int, seed: int) -> list[bytes]:
    """Pseudo-random bytes, so a dropped, repeated or reordered frame cannot go unseen."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, n_frames * frame_bytes, dtype=np.uint8).tobytes()
    return [data[i : i + frame_bytes] for i in range(0, len(data), frame_bytes)]


def carrier_playout(arrivals: list[tuple[float, int]], bytes_per_s: int) -> list[tuple[float, int]]:
    """When a carrier plays each received chunk: on arrival, or when the one before ends."""
    out: list[tuple[float, int]] = []
    free_at = 0.0
    for t, size in arrivals:
        start = max(t, free_at)
        out.append((start, size))
        free_at = start + size / bytes_per_s
    return out


async def echo_call(
    server: RunningServer, carrier: str, frames: list[bytes], bytes_per_s: int
) -> tuple[list[float], list[tuple[float, bytes]], dict[str, Any]]:
    """Send `frames` in real time on absolute deadlines, collect the echo, hang up.

    Returns the send times, the (arrival time, payload) of every outbound media message
    and the stored call detail."""
    created = await create_call(server.http, carrier)
    ws = await websockets.connect(f"{server.ws}/media/{carrier}", max_size=2**22)
    loop = asyncio.get_running_loop()
    sid_key = "streamSid" if carrier == "twilio" else "stream_sid"
    sid = ("MZ" if carrier == "twilio" else "ex") + "5" * 32
    params = {"call_id": created["call_id"], "token": created["token"]}
    if carrier == "twilio":
        start: dict[str, Any] = {
            "accountSid": "AC" + "1" * 32, "streamSid": sid, "callSid": "CA" + "2" * 32,
            "tracks": ["inbound"], "customParameters": params,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
    else:
        start = {
            "stream_sid": sid, "call_sid": "ex-call", "account_sid": "ex-acct",
            "custom_parameters": params,
            "media_format": {"encoding": "audio/x-l16", "sample_rate": "8000", "bit_rate": "128kbps"},
        }
    await ws.send(json.dumps({"event": "connected"}))
    await ws.send(json.dumps({"event": "start", sid_key: sid, "start": start}))
    received: list[tuple[float, bytes]] = []
    total = sum(len(f) for f in frames)
    got_all = asyncio.Event()

    async def receive() -> None:
        async for raw in ws:
            msg = json.loads(raw)
            assert msg[sid_key] == sid
            if msg["event"] == "media":
                assert set(msg) == {"event", sid_key, "media"} and set(msg["media"]) == {"payload"}
                received.append((loop.time(), base64.b64decode(msg["media"]["payload"])))
                if sum(len(p) for _, p in received) >= total:
                    got_all.set()

    reader = asyncio.ensure_future(receive())
    sent_t: list[float] = []
    t0 = loop.time() + 0.05
    for i, frame in enumerate(frames):
        await asyncio.sleep(max(0.0, t0 + i * FRAME_S - loop.time()))
        media: dict[str, Any] = {"chunk": str(i + 1), "timestamp": str(i * 20),
                                 "payload": base64.b64encode(frame).decode()}
        if carrier == "twilio":
            media["track"] = "inbound"
        sent_t.append(loop.time())
        await ws.send(json.dumps({"event": "media", sid_key: sid, "media": media}))
    await asyncio.wait_for(got_all.wait(), ECHO_DELAY_S + 5)
    await ws.send(json.dumps({"event": "stop", sid_key: sid, "stop": {}}))
    await asyncio.wait_for(reader, 5)
    assert ws.close_code == 1000
    detail = await call_detail(server.http, created["call_id"])
    return sent_t, received, detail


def check_delay(sent_t: list[float], received: list[tuple[float, bytes]], frame_bytes: int,
                bytes_per_s: int) -> None:
    """Each sent frame is heard about the echo delay after it was sent, never before."""
    played = carrier_playout([(t, len(p)) for t, p in received], bytes_per_s)
    frame_play_t: list[float] = []
    for start, size in played:
        frame_play_t += [start + k * FRAME_S for k in range(size // frame_bytes)]
    delays = [p - s for p, s in zip(frame_play_t, sent_t, strict=True)]
    assert min(delays) >= ECHO_DELAY_S - FRAME_S
    # a functional check that the configured delay is the one used, not a speed target
    assert abs(statistics.median(delays) - ECHO_DELAY_S) < 0.25


async def test_twilio_echo_is_byte_exact_paced_and_delayed(echo_server) -> None:
    frames = known_signal(100, 160, seed=1)  # 2 s of µ-law
    sent_t, received, detail = await echo_call(echo_server, "twilio", frames, 8000)
    assert [len(p) for _, p in received] == [160] * len(frames)  # one 20 ms frame per message
    assert b"".join(p for _, p in received) == b"".join(frames)
    check_delay(sent_t, received, 160, 8000)
    # paced, not burst: the last frame leaves about 2 s after the first (lead of 3 frames)
    assert received[-1][0] - received[0][0] >= (len(frames) - 1 - 3 - 5) * FRAME_S
    assert detail["call"]["status"] == "completed"
    assert not detail["turns"]  # nothing transcribed, nothing said by a policy
    stats = next(e["data"] for e in detail["events"] if e["kind"] == "media_stats")
    assert stats["frames_in"] == len(frames) and stats["chunks_out"] == len(frames)
    assert _factory(echo_server).calls == 0


async def test_exotel_echo_chunks_are_whole_frames_of_at_least_3200_bytes(echo_server) -> None:
    frames = known_signal(100, 320, seed=2)  # 2 s of PCM16 at 8 kHz
    sent_t, received, detail = await echo_call(echo_server, "exotel", frames, 16000)
    sizes = [len(p) for _, p in received]
    min_bytes = max(16000 * MIN_CHUNK_MS // 1000, 3200)  # 200 ms of 8 kHz PCM16
    assert all(s % 320 == 0 and min_bytes <= s <= MAX_CHUNK_BYTES for s in sizes), sizes
    assert b"".join(p for _, p in received) == b"".join(frames)
    check_delay(sent_t, received, 320, 16000)
    # one talk spurt, heard without a gap: each chunk is there before the one before it ends
    # (the queue empties early with 200 ms chunks, and the audio is still playing then)
    played = carrier_playout([(t, len(p)) for t, p in received], 16000)
    ends = [start + size / 16000 for start, size in played]
    gaps = [t - end for (t, _), end in zip(received[1:], ends, strict=False) if t > end + 0.06]
    assert not gaps, gaps
    assert detail["call"]["status"] == "completed"
    assert _factory(echo_server).calls == 0


def _factory(server: RunningServer) -> CountingFactory:
    factory = server.state.providers.policy_factory
    assert isinstance(factory, CountingFactory)
    return factory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_dialkit_serve_with_the_echo_playbook(base_settings: Settings, tmp_path: Path) -> None:
    """`dialkit serve` in its own process, selected by DIALKIT_PLAYBOOK, echoes a call."""
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": str(base_settings.database_url),
        "DIALKIT_PLAYBOOK": str(ECHO_PLAYBOOK),
        "DIALKIT_STT": "null",
        "DIALKIT_TTS": "tone",
        "DIALKIT_DATA_DIR": str(tmp_path),
        "DIALKIT_LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("dialkit")), "serve", "--port", str(port),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        health: dict[str, Any] = {}
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(300):
                if proc.returncode is not None:
                    break
                try:
                    health = (await client.get("/health")).json()
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        if proc.returncode is not None:
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"dialkit serve exited: {err.decode()[-2000:]}")
        assert health["providers"]["playbook"] == "echo@1.0"
        server = RunningServer(None, port, base_settings)
        frames = known_signal(25, 160, seed=3)  # 0.5 s
        _, received, detail = await echo_call(server, "twilio", frames, 8000)
        assert b"".join(p for _, p in received) == b"".join(frames)
        assert detail["call"]["status"] == "completed"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)
