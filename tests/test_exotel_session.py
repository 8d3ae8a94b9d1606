"""The Exotel media endpoint end to end over real sockets: full Voicebot message sequences
at 8 kHz and 16 kHz PCM16 and µ-law, every outbound message checked against Exotel's
documented format, plus the `/media` endpoint that recognises either carrier."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import websockets

from ai.tts_tone import ToneTTS
from ai.types import AudioChunk, AudioSpec
from media.codec import AudioFormat, encode
from tests.carrier_client import TwilioClient, call_detail, create_call

MAX_CHUNK_BYTES = 100_000


def voiced_pcm(seconds: float, rate: int) -> np.ndarray:
    """A vowel-like harmonic signal that voice-activity detection takes for speech."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 12))
    return np.asarray(sig / np.max(np.abs(sig)) * 12000, dtype=np.int16)


class ExotelClient:
    """Plays Exotel's side of the Voicebot stream; checks every message it receives."""

    def __init__(self, ws: Any, fmt: AudioFormat, stream_sid: str = "b1c2d3e4f5a6") -> None:
        self.ws = ws
        self.fmt = fmt
        self.stream_sid = stream_sid
        self.call_sid = "c0ffee00c0ffee00c0ffee00c0ffee00"
        self.seq = 0
        self.chunk = 0
        self.received: list[dict[str, Any]] = []
        self.media_bytes = 0

    @classmethod
    async def connect(cls, url: str, fmt: AudioFormat) -> ExotelClient:
        return cls(await websockets.connect(url, max_size=2**22), fmt)

    async def send(self, event: str, **body: Any) -> None:
        self.seq += 1
        msg = {"event": event, "sequence_number": str(self.seq), "stream_sid": self.stream_sid}
        await self.ws.send(json.dumps({**msg, **body}))

    async def connected(self) -> None:
        await self.ws.send(json.dumps({"event": "connected"}))

    async def start(self, call_id: str, token: str, **params: str) -> None:
        encoding = "audio/x-mulaw" if self.fmt.encoding == "mulaw" else "audio/x-raw"
        bits = "8" if self.fmt.encoding == "mulaw" else "16"
        await self.send("start", start={
            "stream_sid": self.stream_sid, "call_sid": self.call_sid, "account_sid": "dialkit1",
            "from": "+919876543210", "to": "08047091234",
            "custom_parameters": {"call_id": call_id, "token": token, **params},
            "media_format": {"encoding": encoding, "sample_rate": str(self.fmt.rate),
                             "bit_rate": bits},
        })

    async def media(self, payload: bytes) -> None:
        self.chunk += 1
        await self.send("media", media={
            "chunk": str(self.chunk), "timestamp": str(self.chunk * 100),
            "payload": base64.b64encode(payload).decode(),
        })

    async def silence(self, ms: int = 100) -> None:
        await self.media(self.fmt.silence(ms))

    async def mark(self, name: str) -> None:
        await self.send("mark", mark={"name": name})

    async def dtmf(self, digit: str) -> None:
        await self.send("dtmf", dtmf={"digit": digit, "duration": "240"})

    async def stop(self) -> None:
        await self.send("stop", stop={"call_sid": self.call_sid, "reason": "callended"})

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        self.check(msg)
        self.received.append(msg)
        return msg

    def check(self, msg: dict[str, Any]) -> None:
        """Exotel's documented outbound shapes: snake_case, and media chunks that are a
        whole number of 20 ms frames of the stream's format, >= 100 ms and >= 3,200 B (both
        readings of Exotel's minimum), <= 100 KB."""
        event = msg.get("event")
        assert msg.get("stream_sid") == self.stream_sid, msg
        if event == "media":
            assert set(msg) == {"event", "stream_sid", "media"}
            assert set(msg["media"]) == {"payload"}
            size = len(base64.b64decode(msg["media"]["payload"], validate=True))
            frame = self.fmt.frame_bytes(20)
            assert size % frame == 0, f"{size} bytes is not a whole number of {frame}-byte frames"
            assert max(self.fmt.frame_bytes(100), 3200) <= size <= MAX_CHUNK_BYTES, size
            self.media_bytes += size
        elif event == "mark":
            assert set(msg) == {"event", "stream_sid", "mark"}
            assert set(msg["mark"]) == {"name"} and isinstance(msg["mark"]["name"], str)
        elif event == "clear":
            assert set(msg) == {"event", "stream_sid"}
        else:
            raise AssertionError(f"unexpected outbound event {msg!r}")

    async def play_until_marks(self, count: int, timeout: float = 15.0) -> list[str]:
        """Receive while sending 100 ms of inbound silence per 100 ms; echo marks."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        marks: list[str] = []
        while len(marks) < count:
            assert loop.time() < deadline, f"only {marks} after {timeout} s"
            try:
                msg = await self.recv(0.1)
            except TimeoutError:
                await self.silence()
                continue
            if msg["event"] == "mark":
                marks.append(msg["mark"]["name"])
                await self.mark(msg["mark"]["name"])
        return marks

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        try:
            while True:
                msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
                self.check(msg)
                self.received.append(msg)
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code if rcvd else None), (rcvd.reason if rcvd else "")


FORMATS = [
    pytest.param(AudioFormat("pcm16", 8000), "", id="pcm16-8k"),
    pytest.param(AudioFormat("pcm16", 16000), "?sample-rate=16000", id="pcm16-16k"),
    pytest.param(AudioFormat("mulaw", 8000), "", id="mulaw-8k"),
]


async def _exotel_call(server: Any, fmt: AudioFormat, query: str = "", path: str = "/media/exotel",
                       **ctx: Any) -> tuple[dict[str, Any], ExotelClient]:
    created = await create_call(server.http, carrier="exotel", **ctx)
    client = await ExotelClient.connect(f"{server.ws}{path}{query}", fmt)
    await client.connected()
    await client.start(created["call_id"], created["token"])
    return created, client


@pytest.mark.parametrize(("fmt", "query"), FORMATS)
async def test_full_sequence_greeting_marks_dtmf_stop(light_server, fmt, query) -> None:
    created, client = await _exotel_call(light_server, fmt, query, debtor_name="Asha Rao")
    marks = await client.play_until_marks(2)  # the greeting's two sentences, echoed
    assert marks == ["r1s1", "r1s2"]
    # 100 ms of greeting audio at this format is at least this much; tone TTS speaks ~4 s
    assert client.media_bytes >= fmt.frame_bytes(2000)
    await client.silence()
    await client.dtmf("1")
    await client.dtmf("#")
    await client.play_until_marks(1)  # the agent answers the keypad entry
    await client.stop()
    code, _ = await client.closed()
    assert code == 1000
    detail = await call_detail(light_server.http, created["call_id"])
    call = detail["call"]
    assert call["status"] == "completed" and call["carrier_call_id"] == client.call_sid
    assert call["stream_id"] == client.stream_sid
    greeting = detail["turns"][0]
    assert greeting["speaker"] == "agent" and not greeting["interrupted"]
    assert "Asha" in greeting["text"] and greeting["text"].endswith("?")
    assert any(t["text"] == "[keypad] 1#" for t in detail["turns"])
    kinds = [e["kind"] for e in detail["events"]]
    assert "greeting_audio" in kinds and kinds.count("dtmf") == 2
    assert {m["event"] for m in client.received} == {"media", "mark"}


@pytest.mark.parametrize(("fmt", "query"), FORMATS)
async def test_barge_in_sends_snake_case_clear(light_server, fmt, query) -> None:
    created, client = await _exotel_call(light_server, fmt, query, debtor_name="Ravi Kumar")
    while (await client.recv(5))["event"] != "media":
        pass
    speech = encode(voiced_pcm(1.5, fmt.rate), fmt)
    step = fmt.frame_bytes(20)
    cleared = False
    for i in range(0, len(speech) - step + 1, step):
        await client.media(speech[i : i + step])
        try:
            while not cleared:
                cleared = (await client.recv(0.001))["event"] == "clear"
        except TimeoutError:
            pass
        if cleared:
            break
        await asyncio.sleep(0.02)
    assert cleared, "no clear while the caller spoke over the agent"
    await client.stop()
    assert (await client.closed())[0] == 1000
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["turns"][0]["speaker"] == "agent" and detail["turns"][0]["interrupted"]
    assert [e["kind"] for e in detail["events"]].count("barge_in") == 1


async def test_stop_during_greeting_completes_and_keeps_it(light_server) -> None:
    fmt = AudioFormat("pcm16", 8000)
    created, client = await _exotel_call(light_server, fmt, debtor_name="Meera Iyer")
    got = 0
    while got < 5:  # about a second of greeting: 5 chunks of 200 ms (3,200 B)
        if (await client.recv(5))["event"] == "media":
            got += 1
            await client.silence()
    await client.stop()
    code, _ = await client.closed()
    assert code == 1000
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "completed"
    agent = [t for t in detail["turns"] if t["speaker"] == "agent"]
    assert len(agent) == 1 and agent[0]["interrupted"] is True
    assert agent[0]["text"].startswith("Hello")  # the part the callee heard
    kinds = [e["kind"] for e in detail["events"]]
    assert "greeting_audio" in kinds and "media_stats" in kinds
    assert detail["outcome"]["outcome"] == "no_contact"  # nobody said a word


@pytest.mark.parametrize(
    ("fmt", "payload", "code", "reason"),
    [
        # PCM16 is two bytes a sample: an odd chunk cannot be the announced format
        (AudioFormat("pcm16", 8000), b"\x00" * 321, 1007, "odd byte count"),
        # 1.2 s chunks of 16 kHz audio on a stream announced as 8 kHz: 2.4 s at 8 kHz
        (AudioFormat("pcm16", 8000), b"\x00\x00" * 19_200, 1008, "longer than"),
        # 2 s of 24 kHz audio: larger than the server's message limit (64 KiB)
        (AudioFormat("pcm16", 8000), b"\x00\x00" * 48_000, 1009, "larger than"),
        # µ-law chunk longer than a second at 8 kHz
        (AudioFormat("mulaw", 8000), b"\xff" * 9000, 1008, "longer than"),
    ],
)
async def test_chunks_not_matching_format_fail_call_keep_transcript(
    light_server, fmt, payload, code, reason
) -> None:
    created, client = await _exotel_call(light_server, fmt)
    await client.play_until_marks(1)
    await client.media(payload)
    got, _ = await client.closed()
    assert got == code
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "failed" and detail["call"]["close_code"] == code
    assert reason in detail["call"]["failure_reason"]
    assert detail["turns"] and detail["turns"][0]["speaker"] == "agent"


@pytest.mark.parametrize(
    "media_format",
    [
        {"encoding": "audio/x-raw", "sample_rate": "44100", "bit_rate": "16"},
        {"encoding": "audio/x-mulaw", "sample_rate": "16000"},
        {"encoding": "audio/opus", "sample_rate": "8000"},
    ],
)
async def test_unsupported_announced_format_refused_before_audio(light_server, media_format) -> None:
    created = await create_call(light_server.http, carrier="exotel")
    client = await ExotelClient.connect(f"{light_server.ws}/media/exotel", AudioFormat("pcm16", 8000))
    await client.send("start", start={
        "stream_sid": client.stream_sid, "call_sid": client.call_sid,
        "custom_parameters": {"call_id": created["call_id"], "token": created["token"]},
        "media_format": media_format,
    })
    code, reason = await client.closed()
    assert code == 1008 and "unsupported" in reason
    assert client.received == []  # nothing was played
    detail = await call_detail(light_server.http, created["call_id"], until_ended=False)
    assert detail["call"]["status"] == "created"


async def test_autodetect_endpoint_recognises_exotel(light_server) -> None:
    fmt = AudioFormat("pcm16", 16000)
    created, client = await _exotel_call(light_server, fmt, "?sample-rate=16000", path="/media")
    marks = await client.play_until_marks(1)
    assert marks == ["r1s1"]
    await client.stop()
    assert (await client.closed())[0] == 1000
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "completed"
    assert detail["call"]["carrier_call_id"] == client.call_sid


async def test_autodetect_endpoint_recognises_twilio(light_server) -> None:
    created = await create_call(light_server.http, carrier="twilio")
    client = await TwilioClient.connect(f"{light_server.ws}/media")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    msg = await client.recv_until("media", 10)
    assert set(msg) == {"event", "streamSid", "media"} and msg["streamSid"] == client.stream_sid
    assert len(base64.b64decode(msg["media"]["payload"])) == 160  # Twilio: 20 ms of µ-law
    await client.stop()
    assert (await client.closed())[0] == 1000
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "completed"


async def test_autodetect_refuses_an_unrecognisable_stream(light_server) -> None:
    client = await ExotelClient.connect(f"{light_server.ws}/media", AudioFormat("pcm16", 8000))
    await client.ws.send(json.dumps({"event": "connected"}))
    await client.ws.send(json.dumps({"event": "hello"}))
    code, reason = await client.closed()
    assert code == 1008 and "carrier" in reason


class SlowGreetingTTS:
    """Tone TTS whose sentences take `delay_s` to start, except the short filler clip."""

    name = "slow-tone"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.tone = ToneTTS()

    async def synthesize(self, text: str, preferred: AudioSpec) -> AsyncIterator[AudioChunk]:
        if text != "Hello?":
            await asyncio.sleep(self.delay_s)
        async for chunk in self.tone.synthesize(text, preferred):
            yield chunk


async def test_late_tts_greeting_filler_plays_before_deadline(base_settings) -> None:
    from tests.test_call_end_transfer import dialkit_server

    fmt = AudioFormat("pcm16", 8000)
    async with dialkit_server(base_settings, tts=SlowGreetingTTS(2.5)) as server:
        created, client = await _exotel_call(server, fmt, debtor_name="Neha Jain")
        first = await client.recv(10)
        assert first["event"] == "media"  # the filler clip, conformant like any audio
        marks = await client.play_until_marks(1)
        assert marks == ["r1s1"]  # the filler carries no mark; the greeting follows it
        await client.stop()
        await client.closed()
        detail = await call_detail(server.http, created["call_id"])
        greeting = [e["data"] for e in detail["events"] if e["kind"] == "greeting_audio"]
        assert len(greeting) == 1 and greeting[0]["audio"] == "filler"
        assert [e["data"] for e in detail["events"] if e["kind"] == "greeting_filler"] == [
            {"text": "Hello?"}
        ]
        assert detail["turns"][0]["text"].startswith("Hello, this is Alex")
