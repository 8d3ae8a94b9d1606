"""A simulated carrier leg: dials a dialkit media endpoint over a real WebSocket and
behaves like Twilio or Exotel would — continuous 20 ms inbound media, outbound audio
played back in real time, marks echoed when playback reaches them, `clear` honoured.

It records both directions on one timeline so the call can be written as a WAV.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

from media.codec import FRAME_MS, AudioFormat, decode, encode

FRAME_S = FRAME_MS / 1000


@dataclass
class PhoneStats:
    frames_sent: int = 0
    media_received: int = 0
    marks_received: int = 0
    marks_echoed: int = 0
    clears: int = 0
    bad_chunks: int = 0
    chunk_sizes: set[int] = field(default_factory=set)


class SimulatedPhone:
    """One call's carrier side. `on_played(pcm_frame, t)` receives what the caller hears."""

    def __init__(
        self,
        url: str,
        carrier: str,
        call_id: str,
        token: str,
        fmt: AudioFormat,
        on_played: Callable[[np.ndarray, float], None] | None = None,
        record: bool = False,
        *,
        call_sid: str | None = None,
        custom_parameters: dict[str, str] | None = None,
        account_sid: str | None = None,
        from_: str = "+10000000000",
        to: str = "+10000000001",
    ) -> None:
        self.url = url
        self.carrier = carrier
        self.call_id = call_id
        self.token = token
        self.fmt = fmt
        self.on_played = on_played
        self.record = record
        self.stream_sid = ("MZ" if carrier == "twilio" else "") + uuid.uuid4().hex
        # a carrier emulator passes its own call SID, custom parameters and numbers; a bare
        # simulation makes them up and sends the call id and token
        self.call_sid = call_sid or ("CA" if carrier == "twilio" else "") + uuid.uuid4().hex
        self.custom_parameters = custom_parameters
        self.account_sid = account_sid or ("AC" + "0" * 32 if carrier == "twilio" else "dialkit-sim")
        self.from_ = from_
        self.to = to
        self.stats = PhoneStats()
        self._outgoing: deque[bytes] = deque()  # caller speech frames (carrier format)
        self._playback: deque[bytes | str] = deque()  # agent frames and mark names
        self._ws: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.caller_track: list[np.ndarray] = []
        self.agent_track: list[np.ndarray] = []
        self.last_caller_speech_t: float | None = None
        self.agent_audio_started: list[float] = []
        self._agent_audible = False
        self._seq = 0
        self._chunk = 0
        self._silence = fmt.silence()

    # ---- speaking --------------------------------------------------------------------

    def speak(self, pcm: np.ndarray) -> None:
        """Queue caller speech (PCM16 at the carrier rate) to send in real time."""
        data = encode(pcm, self.fmt)
        n = self.fmt.frame_bytes()
        for i in range(0, len(data), n):
            frame = data[i : i + n]
            if len(frame) < n:
                frame += self._silence[: n - len(frame)]
            self._outgoing.append(frame)

    @property
    def speaking(self) -> bool:
        return bool(self._outgoing)

    def agent_playing(self) -> bool:
        return any(isinstance(x, bytes) for x in self._playback)

    # ---- protocol --------------------------------------------------------------------

    def _msg(self, event: str, **body: Any) -> str:
        self._seq += 1
        if self.carrier == "twilio":
            return json.dumps({"event": event, "sequenceNumber": str(self._seq),
                               "streamSid": self.stream_sid, **body})
        return json.dumps({"event": event, "sequence_number": self._seq,
                           "stream_sid": self.stream_sid, **body})

    def _start_msg(self) -> str:
        params = self.custom_parameters
        if params is None:
            params = {"call_id": self.call_id, "token": self.token}
        if self.carrier == "twilio":
            return self._msg("start", start={
                "accountSid": self.account_sid, "streamSid": self.stream_sid, "callSid": self.call_sid,
                "tracks": ["inbound"], "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            })
        encoding = "audio/x-mulaw" if self.fmt.encoding == "mulaw" else "audio/x-l16"
        return self._msg("start", start={
            "stream_sid": self.stream_sid, "call_sid": self.call_sid, "account_sid": self.account_sid,
            "from": self.from_, "to": self.to, "custom_parameters": params,
            "media_format": {"encoding": encoding, "sample_rate": str(self.fmt.rate),
                             "bit_rate": "128kbps"},
        })

    def _media_msg(self, payload: bytes, t_ms: int) -> str:
        self._chunk += 1
        b64 = base64.b64encode(payload).decode()
        if self.carrier == "twilio":
            return self._msg("media", media={"track": "inbound", "chunk": str(self._chunk),
                                             "timestamp": str(t_ms), "payload": b64})
        return self._msg("media", media={"chunk": self._chunk, "timestamp": str(t_ms), "payload": b64})

    def _mark_msg(self, name: str) -> str:
        return self._msg("mark", mark={"name": name})

    def dtmf_msg(self, digit: str) -> str:
        if self.carrier == "twilio":
            return self._msg("dtmf", dtmf={"track": "inbound_track", "digit": digit})
        return self._msg("dtmf", dtmf={"digit": digit, "duration": "200"})

    async def send_dtmf(self, digits: str) -> None:
        for d in digits:
            await self._ws.send(self.dtmf_msg(d))

    # ---- lifecycle -------------------------------------------------------------------

    async def connect(self) -> None:
        self._ws = await websockets.connect(self.url, max_size=2**20, open_timeout=10)
        if self.carrier == "twilio":
            await self._ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        else:
            await self._ws.send(json.dumps({"event": "connected"}))
        await self._ws.send(self._start_msg())
        loop = asyncio.get_running_loop()
        self._t0 = loop.time()
        self._tasks = [asyncio.ensure_future(self._clock()), asyncio.ensure_future(self._receive())]

    async def hangup(self) -> None:
        """The caller hangs up: a stop event, then the socket closes."""
        with contextlib.suppress(Exception):
            await self._ws.send(
                self._msg("stop", stop={"accountSid": self.account_sid, "callSid": self.call_sid})
            )
        await self.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self.closed.set()

    async def _receive(self) -> None:
        try:
            async for raw in self._ws:
                msg = json.loads(raw)
                event = msg.get("event")
                if event == "media":
                    payload = base64.b64decode(msg["media"]["payload"])
                    self.stats.media_received += 1
                    self.stats.chunk_sizes.add(len(payload))
                    n = self.fmt.frame_bytes()
                    if len(payload) % n:
                        self.stats.bad_chunks += 1
                    for i in range(0, len(payload) - n + 1, n):
                        self._playback.append(payload[i : i + n])
                elif event == "mark":
                    self.stats.marks_received += 1
                    self._playback.append(msg["mark"]["name"])
                elif event == "clear":
                    self.stats.clears += 1
                    pending = [x for x in self._playback if isinstance(x, str)]
                    self._playback.clear()
                    for name in pending:
                        await self._echo_mark(name)
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.close_reason = self._ws.close_reason or ""
            self.closed.set()

    async def _echo_mark(self, name: str) -> None:
        self.stats.marks_echoed += 1
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(self._mark_msg(name))

    async def _clock(self) -> None:
        """Every 20 ms: send one inbound frame, play one outbound frame."""
        loop = asyncio.get_running_loop()
        tick = 0
        silence_pcm = np.zeros(self.fmt.rate * FRAME_MS // 1000, dtype=np.int16)
        while not self.closed.is_set():
            due = self._t0 + tick * FRAME_S
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            tick += 1
            # inbound (caller → server)
            if self._outgoing:
                frame = self._outgoing.popleft()
                if not self._outgoing:
                    self.last_caller_speech_t = now
            else:
                frame = self._silence
            try:
                await self._ws.send(self._media_msg(frame, int((now - self._t0) * 1000)))
            except websockets.ConnectionClosed:
                return
            self.stats.frames_sent += 1
            # outbound playback (server → caller's ear)
            played = silence_pcm
            while self._playback and isinstance(self._playback[0], str):
                await self._echo_mark(str(self._playback.popleft()))
            if self._playback:
                played = decode(bytes(self._playback.popleft()), self.fmt)  # type: ignore[arg-type]
                if not self._agent_audible:
                    self._agent_audible = True
                    self.agent_audio_started.append(now)
            else:
                self._agent_audible = False
            while self._playback and isinstance(self._playback[0], str):
                await self._echo_mark(str(self._playback.popleft()))
            if self.record:
                self.caller_track.append(decode(frame, self.fmt))
                self.agent_track.append(played)
            if self.on_played is not None:
                self.on_played(played, now)

    def write_wav(self, path: Path) -> None:
        """Mix both directions (caller left, agent right) into a stereo WAV."""
        caller = np.concatenate(self.caller_track) if self.caller_track else np.zeros(0, np.int16)
        agent = np.concatenate(self.agent_track) if self.agent_track else np.zeros(0, np.int16)
        n = min(len(caller), len(agent))
        stereo = np.stack([caller[:n], agent[:n]], axis=1).astype("<i2")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(self.fmt.rate)
            w.writeframes(stereo.tobytes())
