"""Deepgram live-transcription emulator: the `/v1/listen` WebSocket.

Speaks Deepgram's wire protocol: query parameters (model, encoding, sample_rate,
interim_results, endpointing, utterance_end_ms, vad_events, …), `Authorization: Token <key>`
(401 otherwise), binary audio in, JSON `Results` / `SpeechStarted` / `UtteranceEnd` /
`Metadata` out, `KeepAlive` / `Finalize` / `CloseStream` control messages, and the
NET-0001 close (1011) after `idle_timeout_s` without audio or KeepAlive. Served with aiohttp
(`aiohttp.web`, `WebSocketResponse`), whose frame reader is C-accelerated: under load the
receive path is most of the emulator's CPU.

Transcripts are deterministic: tests register a script of utterances; the emulator finds
speech in the audio by energy (µ-law or linear16 decoded) and, once the caller has been
silent for the `endpointing` time, emits the next scripted utterance as a final
`speech_final` result. All timestamps are in the stream's audio time, as Deepgram's are.

Faults: rejected handshakes (429/500), sockets dropped after N seconds of audio,
malformed frames, and a fixed processing delay: each message leaves that long after the
audio that produced it arrived (a constant latency, not a per-message pause that would
pile up behind earlier messages). How late the emulator itself was against that schedule
(its own event loop lag) is kept in `DeepgramEmulator.lateness_s`, so a benchmark can tell
the emulator's lag from the client's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import math
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiohttp import WSMsgType, web

from ai.audioop_compat import audioop
from emulators import serve

MODEL_UUID = "1dbdfb4d-85b2-4659-9c2d-8a0d6d3bd7b6"
MODEL_INFO = {"name": "2-phonecall-nova", "version": "2024-02-06.5894", "arch": "nova-2"}
FRAME_S = 0.01
MAX_MESSAGE_BYTES = 4 * 1024 * 1024


@dataclass
class DeepgramFaults:
    reject_statuses: deque[int] = field(default_factory=deque)  # next handshakes get these
    drop_after_audio_s: deque[float] = field(default_factory=deque)  # next sockets abort then
    malformed_frames: int = 0  # send this many broken JSON frames before the next message
    processing_delay_s: float = 0.0  # wall-clock delay before every message
    handshake_delay_s: float = 0.0


@dataclass
class ListenConnection:
    """What one `/v1/listen` socket received and sent."""

    params: dict[str, str]
    authorization: str
    audio_bytes: int = 0
    audio_s: float = 0.0
    control: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    segments: list[tuple[float, float]] = field(default_factory=list)  # speech (start, end)
    close_code: int | None = None
    dropped: bool = False


class DeepgramEmulator:
    def __init__(
        self,
        api_key: str = "test-deepgram-key",
        script: list[str] | None = None,
        energy_threshold: float = 500.0,
        idle_timeout_s: float = 10.0,
        interim_every_s: float = 0.4,
        silence_final_every_s: float = 1.0,
        unscripted_text: str = "",
    ) -> None:
        self.api_key = api_key
        self.script: deque[str] = deque(script or [])
        self.energy_threshold = energy_threshold
        self.idle_timeout_s = idle_timeout_s
        self.interim_every_s = interim_every_s
        self.silence_final_every_s = silence_final_every_s
        self.unscripted_text = unscripted_text
        self.faults = DeepgramFaults()
        self.connections: list[ListenConnection] = []
        self.rejected: list[int] = []
        self.lateness_s: list[float] = []  # per delayed message: sent − due (emulator lag)
        self.url = ""  # ws://127.0.0.1:PORT, set when running

    def add_script(self, *utterances: str) -> None:
        self.script.extend(utterances)

    def app(self) -> web.Application:
        app = web.Application()
        # Every path lands here so unknown ones get Deepgram's JSON 404, not aiohttp's.
        app.router.add_route("GET", "/{tail:.*}", self._listen)
        return app

    # ---- handshake ----------------------------------------------------------------------

    async def _reject(self, request: web.Request) -> web.Response | None:
        """The plain HTTP response that refuses this upgrade, or None to accept it."""
        if self.faults.handshake_delay_s:
            await asyncio.sleep(self.faults.handshake_delay_s)
        if urlsplit(request.raw_path).path != "/v1/listen":
            return _http_error(HTTPStatus.NOT_FOUND, "Not Found")
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() not in ("token", "bearer") or key != self.api_key:
            self.rejected.append(401)
            return _http_error(HTTPStatus.UNAUTHORIZED, "Invalid credentials.", "INVALID_AUTH")
        if self.faults.reject_statuses:
            status = self.faults.reject_statuses.popleft()
            self.rejected.append(status)
            return _http_error(HTTPStatus(status), "Injected failure.", "INJECTED")
        params = _query(request.raw_path)
        if "encoding" in params and "sample_rate" not in params:
            return _http_error(
                HTTPStatus.BAD_REQUEST, "sample_rate is required with encoding.", "Bad Request"
            )
        if params.get("encoding", "linear16") not in ("linear16", "mulaw"):
            return _http_error(HTTPStatus.BAD_REQUEST, "Unsupported encoding.")
        return None

    # ---- one socket ---------------------------------------------------------------------

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        rejection = await self._reject(request)
        if rejection is not None:
            return rejection
        ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, compress=False)
        await ws.prepare(request)
        conn = ListenConnection(
            _query(request.raw_path), request.headers.get("Authorization", "").split(" ")[0]
        )
        self.connections.append(conn)
        session = _Session(self, ws, conn)
        drop_after = (
            self.faults.drop_after_audio_s.popleft() if self.faults.drop_after_audio_s else None
        )
        sender = asyncio.create_task(session.send_loop())
        # The idle timeout is watched by one task per socket: a `wait_for` per message would
        # cost a task and a timer per 20 ms of audio.
        idle = _IdleWatch(asyncio.get_running_loop(), self.idle_timeout_s)
        watchdog = asyncio.create_task(self._close_when_idle(ws, session, conn, idle))
        try:
            while True:
                msg = await ws.receive()
                idle.last_in = idle.loop.time()
                if msg.type is WSMsgType.BINARY:
                    session.feed_audio(msg.data)
                    if drop_after is not None and conn.audio_s >= drop_after:
                        conn.dropped = True
                        assert request.transport is not None
                        request.transport.abort()  # no close frame: a dropped TCP connection
                        return ws
                    continue
                if msg.type is not WSMsgType.TEXT:
                    return ws  # CLOSE / CLOSING / CLOSED / ERROR: the socket is done
                message: str = msg.data
                try:
                    control = json.loads(message)
                    kind = control["type"]
                except (ValueError, KeyError, TypeError):
                    session.emit(
                        {
                            "type": "Error",
                            "variant": "SchemaError",
                            "description": "Could not parse the client message.",
                            "message": message,
                        }
                    )
                    continue
                conn.control.append(str(kind))
                if kind == "Finalize":
                    session.finalize(from_finalize=True)
                elif kind == "CloseStream":
                    session.finalize(from_finalize=False)
                    session.emit_metadata()
                    await session.drain()
                    conn.close_code = 1000
                    await ws.close(code=1000)
                    return ws
        finally:
            sender.cancel()
            if not idle.closing:
                watchdog.cancel()
            # A watchdog that is closing the socket is left to finish its close handshake.
            for task in (watchdog, sender):
                with contextlib.suppress(BaseException):
                    await task

    async def _close_when_idle(
        self,
        ws: web.WebSocketResponse,
        session: _Session,
        conn: ListenConnection,
        idle: _IdleWatch,
    ) -> None:
        """NET-0001: no audio or control message for `idle_timeout_s` closes with 1011."""
        while (left := idle.last_in + idle.timeout_s - idle.loop.time()) > 0:
            await asyncio.sleep(left)
        session.emit(
            {
                "type": "Error",
                "variant": "Timeout",
                "description": "Did not receive audio data or a text message within the timeout window. See https://dpgr.am/net0001",
            }
        )
        await session.drain()
        conn.close_code = 1011
        idle.closing = True
        await ws.close(code=1011, message=b"NET-0001")


@dataclass
class _IdleWatch:
    loop: asyncio.AbstractEventLoop
    timeout_s: float
    last_in: float = 0.0
    closing: bool = False  # the watchdog is closing the socket (NET-0001)

    def __post_init__(self) -> None:
        self.last_in = self.loop.time()


class _Session:
    """Speech detection and message generation for one socket (audio time, not wall time)."""

    def __init__(
        self, emu: DeepgramEmulator, ws: web.WebSocketResponse, conn: ListenConnection
    ) -> None:
        self.emu = emu
        self.ws = ws
        self.conn = conn
        p = conn.params
        self.encoding = p.get("encoding", "linear16")
        self.rate = int(p.get("sample_rate", "16000"))
        self.interim = p.get("interim_results", "false").lower() == "true"
        self.vad_events = p.get("vad_events", "false").lower() == "true"
        ep = p.get("endpointing", "10").lower()
        self.endpointing_s: float | None = None if ep == "false" else int(ep) / 1000
        ue = p.get("utterance_end_ms")
        self.utterance_end_s: float | None = int(ue) / 1000 if ue else None
        self.request_id = str(uuid.uuid4())
        self.pending = b""  # PCM16 short of a whole 10 ms frame
        self.frame = max(1, int(self.rate * FRAME_S))
        self.pos = 0.0  # audio time processed
        self.result_end = 0.0  # end of the last final result
        self.in_speech = False
        self.speech_start = 0.0
        self.voice_end = 0.0
        self.last_interim = 0.0
        self.last_word_end: float | None = None  # pending UtteranceEnd
        self.outbox: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self.sha = hashlib.sha256()

    # audio ------------------------------------------------------------------------------

    def feed_audio(self, data: bytes) -> None:
        self.conn.audio_bytes += len(data)
        self.sha.update(data)
        if self.encoding == "mulaw":
            pcm = audioop.ulaw2lin(data, 2)
        else:
            pcm = data[: len(data) - len(data) % 2]
        self.conn.audio_s += len(pcm) / 2 / self.rate
        if self.pending:
            pcm = self.pending + pcm
        step = 2 * self.frame
        whole = len(pcm) - len(pcm) % step
        self.pending = pcm[whole:]
        threshold = self.emu.energy_threshold
        for i in range(0, whole, step):
            self._step(audioop.rms(pcm[i : i + step], 2) >= threshold)

    def _step(self, voiced: bool) -> None:
        start, self.pos = self.pos, self.pos + self.frame / self.rate
        if voiced:
            if not self.in_speech:
                self.in_speech = True
                self.speech_start = start
                self.last_interim = start
                self.last_word_end = None
                if self.vad_events:
                    self.emit(
                        {"type": "SpeechStarted", "channel": [0], "timestamp": round(start, 3)}
                    )
            self.voice_end = self.pos
            if self.interim and self.pos - self.last_interim >= self.emu.interim_every_s:
                self.last_interim = self.pos
                self._emit_results(self._interim_text(), is_final=False, speech_final=False)
            return
        if self.in_speech:
            silent = self.pos - self.voice_end
            limit = self.endpointing_s if self.endpointing_s is not None else 0.5
            if silent >= limit:
                self.finalize(from_finalize=False, speech_final=self.endpointing_s is not None)
            return
        if self.last_word_end is not None and self.utterance_end_s is not None:
            if self.pos - self.last_word_end >= self.utterance_end_s:
                self.emit(
                    {
                        "type": "UtteranceEnd",
                        "channel": [0, 1],
                        "last_word_end": round(self.last_word_end, 3),
                    }
                )
                self.last_word_end = None
        if self.pos - self.result_end >= self.emu.silence_final_every_s:
            self._emit_results("", is_final=True, speech_final=False)

    def _next_text(self) -> str:
        return self.emu.script[0] if self.emu.script else self.emu.unscripted_text

    def _interim_text(self) -> str:
        words = self._next_text().split()
        heard = max(
            1,
            math.ceil(
                len(words) * min(1.0, (self.pos - self.speech_start) / max(0.3 * len(words), 0.3))
            ),
        )
        return " ".join(words[:heard])

    def finalize(self, from_finalize: bool, speech_final: bool = True) -> None:
        if not self.in_speech:
            if from_finalize:
                self._emit_results("", is_final=True, speech_final=False, from_finalize=True)
            return
        self.in_speech = False
        self.conn.segments.append((self.speech_start, self.voice_end))
        text = self.emu.script.popleft() if self.emu.script else self.emu.unscripted_text
        self._emit_results(
            text, is_final=True, speech_final=speech_final, from_finalize=from_finalize
        )
        self.last_word_end = self.voice_end if text else None

    def _emit_results(
        self, text: str, is_final: bool, speech_final: bool, from_finalize: bool = False
    ) -> None:
        start = self.result_end
        duration = max(0.0, self.pos - start)
        words = text.split()
        span_start = self.speech_start if self.in_speech or is_final else start
        span_end = self.voice_end if words else start
        step = (span_end - span_start) / len(words) if words else 0.0
        word_items = [
            {
                "word": w.strip(".,!?;:").lower(),
                "start": round(span_start + i * step, 3),
                "end": round(span_start + (i + 1) * step, 3),
                "confidence": 0.98,
                "punctuated_word": w,
            }
            for i, w in enumerate(words)
        ]
        msg: dict[str, Any] = {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(duration, 3),
            "start": round(start, 3),
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {
                "alternatives": [
                    {"transcript": text, "confidence": 0.98 if words else 0.0, "words": word_items}
                ]
            },
            "metadata": {
                "request_id": self.request_id,
                "model_info": MODEL_INFO,
                "model_uuid": MODEL_UUID,
            },
            "from_finalize": from_finalize,
        }
        if is_final:
            self.result_end = self.pos
        self.emit(msg)

    def emit_metadata(self) -> None:
        self.emit(
            {
                "type": "Metadata",
                "transaction_key": "deprecated",
                "request_id": self.request_id,
                "sha256": self.sha.hexdigest(),
                "created": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
                "duration": round(self.pos, 3),
                "channels": 1,
                "models": [MODEL_UUID],
                "model_info": {MODEL_UUID: MODEL_INFO},
            }
        )

    # output -----------------------------------------------------------------------------

    def emit(self, msg: dict[str, Any]) -> None:
        self.conn.sent.append(msg)
        self.outbox.put_nowait((self.loop.time() + self.emu.faults.processing_delay_s, msg))

    async def send_loop(self) -> None:
        while True:
            due, msg = await self.outbox.get()
            if self.emu.faults.processing_delay_s:
                wait = due - self.loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.emu.lateness_s.append(self.loop.time() - due)
            if self.emu.faults.malformed_frames > 0:
                self.emu.faults.malformed_frames -= 1
                await self.ws.send_str('{"type": "Results", "channel_index": [0, 1], "dur')
            await self.ws.send_str(json.dumps(msg))
            self.outbox.task_done()

    async def drain(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.outbox.join(), timeout=5.0)


def _query(path: str) -> dict[str, str]:
    return {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}


def _http_error(status: HTTPStatus, message: str, code: str = "Bad Request") -> web.Response:
    body = json.dumps({"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())})
    response = web.Response(
        status=status,
        body=body.encode(),
        headers={"Content-Type": "application/json", "dg-error": message},
    )
    response.force_close()  # a refused upgrade ends the connection, as Deepgram's does
    return response


@asynccontextmanager
async def running_deepgram(**kwargs: Any) -> AsyncIterator[DeepgramEmulator]:
    """Run a Deepgram emulator on 127.0.0.1 (ephemeral port); `.url` is its ws:// base."""
    emu = DeepgramEmulator(**kwargs)
    async with serve(emu.app()) as url:
        emu.url = "ws://" + url.removeprefix("http://")
        yield emu
