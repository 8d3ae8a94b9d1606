"""Deepgram live streaming STT through the official SDK (`deepgram-sdk`, listen v1 socket).

The carrier's bytes go to Deepgram as they are (µ-law or linear16 at the carrier rate).
Deepgram's messages become dialkit STT events:

- `SpeechStarted` → `SpeechStarted`
- `Results` interim → `Transcript(is_final=False)`, final → `Transcript(is_final=True)`
  (finals are accumulated into the turn's text)
- `Results` with `speech_final`, or `UtteranceEnd` → `UtteranceEnd(turn text)`

If the socket drops, the stream reconnects with backoff and replays every chunk of audio
that Deepgram had not finalized yet, plus what arrived during the outage, so the caller's
current utterance is transcribed whole. When reconnecting fails, `events()` raises
`STTStreamFailed` (a fallback chain then moves on).

Per-call costs are kept off the event loop's hot path: one SDK client (and one TLS
context) serves every stream, the socket is opened without permessage-deflate (compressing
20 ms audio frames costs CPU and gains nothing), and the replay buffer keeps a running
total instead of re-summing itself on every frame.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import ssl
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
import structlog
from deepgram import AsyncDeepgramClient
from deepgram.environment import DeepgramClientEnvironment
from deepgram.listen.v1.socket_client import AsyncV1SocketClient
from websockets.asyncio.client import connect as ws_connect

from ai.metrics import count_error, error_kind
from ai.queues import iterate_queue
from ai.resilience import backoff_delay
from ai.types import AudioIn, AudioSpec, SpeechStarted, STTEvent, Transcript, UtteranceEnd

log = structlog.get_logger(__name__)


class STTStreamFailed(ConnectionError):
    """The Deepgram stream could not be kept open (reconnect attempts exhausted)."""


class _SocketClient(AsyncV1SocketClient):
    """The SDK's socket client (sending, keep-alive, close-stream) with messages received
    as plain JSON: the SDK builds a typed model per message by trying each member of a
    pydantic union, which cost ~8 % of the event loop at 100 calls (interim results
    included), while only a few fields are read."""

    async def recv(self) -> Any:
        data = await self._websocket.recv()
        return data if isinstance(data, bytes) else orjson.loads(data)


class DeepgramSTT:
    """Deepgram live transcription. `base_url` (e.g. ``ws://127.0.0.1:8765``) points the SDK
    at another endpoint such as the local emulator; the default is Deepgram's production."""

    name = "deepgram"

    def __init__(
        self,
        api_key: str,
        model: str = "nova-2-phonecall",
        base_url: str | None = None,
        keepalive_s: float = 5.0,
        reconnect_attempts: int = 3,
        language: str = "en-US",
        utterance_end_ms: int = 1000,
        max_buffer_s: float = 30.0,
        reconnect_base_delay_s: float = 0.25,
    ) -> None:
        self.api_key = api_key
        self.model = model
        self.base_url = base_url
        self.keepalive_s = keepalive_s
        self.reconnect_attempts = reconnect_attempts
        self.language = language
        self.utterance_end_ms = utterance_end_ms
        self.max_buffer_s = max_buffer_s
        self.reconnect_base_delay_s = reconnect_base_delay_s
        self._sdk: AsyncDeepgramClient | None = None
        self._ssl: ssl.SSLContext | None = None
        self._endpoint: tuple[str, dict[str, str]] | None = None  # listen URL, SDK headers

    def _client(self) -> AsyncDeepgramClient:
        """The SDK client shared by every stream. Building one loads the CA bundle into a
        new SSL context (~25 ms of CPU), which must not happen per call."""
        if self._sdk is not None:
            return self._sdk
        if self.base_url is None:
            self._sdk = AsyncDeepgramClient(api_key=self.api_key)
            return self._sdk
        ws = self.base_url.rstrip("/")
        parts = urlsplit(ws)
        http_scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
        http = urlunsplit((http_scheme, parts.netloc, parts.path, "", ""))
        env = DeepgramClientEnvironment(base=http, production=ws, agent=ws, agent_rest=http)
        self._sdk = AsyncDeepgramClient(api_key=self.api_key, environment=env)
        return self._sdk

    @asynccontextmanager
    async def connect(
        self, options: dict[str, Any], session_id: str | None = None
    ) -> AsyncIterator[_SocketClient]:
        """Open `/v1/listen` and wrap it in the SDK's socket client. The URL and headers come from the SDK client's configuration; the socket
        is opened here because the SDK's `listen.v1.connect` offers no way to turn off
        permessage-deflate or to reuse a TLS context (it would build one per socket).
        `session_id` (the SDK's `x-deepgram-session-id`) identifies one call's stream."""
        if self._endpoint is None:
            # The SDK builds its headers by reading its package metadata from disk (~1 ms of
            # CPU): once per server, not per call.
            wrapper = self._client()._client_wrapper
            base = wrapper.get_environment().production.rstrip("/") + "/v1/listen"
            self._endpoint = (base, dict(wrapper.get_headers()))
        base, sdk_headers = self._endpoint
        url = base + "?" + urlencode({k: v for k, v in options.items() if v is not None})
        headers = dict(sdk_headers)
        user_agent = headers.pop("User-Agent", None)
        if session_id is not None:
            headers["x-deepgram-session-id"] = session_id
        tls: ssl.SSLContext | None = None
        if url.startswith("wss:"):
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            tls = self._ssl
        async with ws_connect(
            url,
            additional_headers=headers,
            user_agent_header=user_agent,
            compression=None,
            ssl=tls,
            open_timeout=10,
        ) as websocket:
            yield _SocketClient(websocket=websocket)  # type: ignore[arg-type]

    def connect_options(self, spec: AudioSpec, endpointing_ms: int) -> dict[str, Any]:
        return {
            "model": self.model,
            "language": self.language,
            "encoding": "mulaw" if spec.encoding == "mulaw" else "linear16",
            "sample_rate": spec.rate,
            "channels": 1,
            "interim_results": "true",
            "endpointing": endpointing_ms,
            "utterance_end_ms": self.utterance_end_ms,
            "vad_events": "true",
            "smart_format": "true",
            "punctuate": "true",
        }

    async def open_stream(self, spec: AudioSpec, endpointing_ms: int) -> DeepgramStream:
        stream = DeepgramStream(self, spec, endpointing_ms)
        await stream.start()
        return stream


class DeepgramStream:
    """One call's Deepgram socket, reconnected as needed. `send` queues audio and sends it
    at once when nothing is queued before it; the send loop sends any backlog (replays after
    a reconnect, frames that came while a send was waiting)."""

    def __init__(self, stt: DeepgramSTT, spec: AudioSpec, endpointing_ms: int) -> None:
        self._stt = stt
        self._spec = spec
        self._options = stt.connect_options(spec, endpointing_ms)
        self._session_id = str(uuid.uuid4())
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[STTEvent | BaseException | None] = asyncio.Queue()
        # Audio not yet finalized by Deepgram, oldest first: (raw, arrival time, seconds).
        # Plain tuples of atomic values, which the garbage collector stops tracking: a
        # record object per 20 ms frame, kept for seconds, made young-generation
        # collections walk tens of thousands of objects at 100 calls.
        self._buf: deque[tuple[bytes, float, float]] = deque()
        # the start of each of _buf's first chunks that went out on the current connection,
        # on that connection's audio clock
        self._offsets: deque[float] = deque()
        self._buf_s = 0.0  # seconds of audio in _buf (kept, not re-summed per frame)
        self._wake = asyncio.Event()
        self._sock: Any = None  # the open socket, for sending inline from `send`
        self._inline = False  # an inline send is awaiting
        self._last_send = 0.0  # loop time of the last message sent on the current socket
        self._closing = False
        self._conn_offset = 0.0
        self._anchors: list[tuple[float, float]] = []  # (connection audio time, loop time)
        self._turn: list[str] = []
        self._turn_confidence: list[float] = []
        self._last_final_end_t: float | None = None
        self._opened: asyncio.Future[None] = self._loop.create_future()
        self._task: asyncio.Task[None] | None = None
        self.connections = 0  # sockets opened so far (observability and tests)

    @property
    def _sent(self) -> int:
        """How many of _buf went out on the current connection."""
        return len(self._offsets)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.shield(self._opened)

    # ---- STTStream ----------------------------------------------------------------------

    async def send(self, audio: AudioIn) -> None:
        if self._closing:
            return
        width = 1 if audio.spec.encoding == "mulaw" else 2
        seconds = len(audio.raw) / (width * audio.spec.rate)
        self._buf.append((audio.raw, audio.t, seconds))
        self._buf_s += seconds
        if self._buf_s > self._stt.max_buffer_s:
            self._bound_buffer()
        sock = self._sock
        if sock is not None and not self._inline and self._sent == len(self._buf) - 1:
            # Nothing else waits to go out: send now rather than wake the send loop, which
            # would cost a task switch per 20 ms frame. The frame is written before the first
            # await, so it stays in order with anything the send loop sends later.
            self._inline = True
            try:
                await self._send_next(sock)
            except Exception as exc:  # the receive loop sees the socket end and reconnects
                log.debug("deepgram_send_failed", error=error_kind(exc))
            finally:
                self._inline = False
            return
        self._wake.set()

    def events(self) -> AsyncIterator[STTEvent]:
        return iterate_queue(self._events)

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout=3.0)
            except (TimeoutError, Exception):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        # freed now, not when the collector reaches the ended call
        self._buf.clear()
        self._offsets.clear()
        self._buf_s = 0.0
        self._anchors = []
        self._events.put_nowait(None)

    # ---- connection management ----------------------------------------------------------

    def _bound_buffer(self) -> None:
        dropped = 0
        while self._buf and self._buf_s > self._stt.max_buffer_s:
            self._buf_s -= self._buf.popleft()[2]
            if self._offsets:
                self._offsets.popleft()
            dropped += 1
        if not self._buf:
            self._buf_s = 0.0  # no float drift once empty
        if dropped:
            log.warning("deepgram_buffer_overflow", dropped_chunks=dropped)

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                async with self._stt.connect(self._options, self._session_id) as sock:
                    self.connections += 1
                    failures = 0
                    if not self._opened.done():
                        self._opened.set_result(None)
                    await self._serve(sock)
                if self._closing:
                    break
                raise ConnectionError("Deepgram closed the stream")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._closing:
                    break
                count_error("stt", "deepgram", error_kind(exc))
                if not self._opened.done():
                    # The first connection failed: let open_stream raise so a fallback can act.
                    self._opened.set_exception(
                        STTStreamFailed(f"connect failed: {error_kind(exc)}")
                    )
                    self._events.put_nowait(None)
                    return
                failures += 1
                if failures > self._stt.reconnect_attempts:
                    log.error("deepgram_reconnect_exhausted", attempts=failures - 1)
                    self._events.put_nowait(STTStreamFailed("Deepgram reconnects exhausted"))
                    return
                delay = backoff_delay(failures - 1, self._stt.reconnect_base_delay_s)
                log.warning(
                    "deepgram_reconnecting",
                    attempt=failures,
                    delay_s=round(delay, 3),
                    error=error_kind(exc),
                    buffered_s=round(self._buf_s, 2),
                )
                await asyncio.sleep(delay)

    async def _serve(self, sock: Any) -> None:
        # Everything not finalized on the previous connection is replayed from offset 0.
        self._offsets.clear()
        self._conn_offset = 0.0
        self._anchors = []
        self._last_send = self._loop.time()
        sender = asyncio.create_task(self._send_loop(sock))
        keepalive = asyncio.create_task(self._keepalive_loop(sock))
        self._sock = sock
        try:
            await self._receive_loop(sock)
        finally:
            self._sock = None
            for task in (sender, keepalive):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if not self._closing and sender.done() and not sender.cancelled():
            exc = sender.exception()
            if exc is not None:
                raise exc

    async def _send_loop(self, sock: Any) -> None:
        # One wake-up per audio frame: no timeout here (a `wait_for` per frame would create
        # a task and a timer 50 times a second per call); keep-alives have their own task.
        while True:
            self._wake.clear()
            while self._sent < len(self._buf):
                await self._send_next(sock)
            if len(self._anchors) > 6000:
                del self._anchors[:3000]
            if self._closing:
                await sock.send_close_stream()
                return
            await self._wake.wait()

    async def _send_next(self, sock: Any) -> None:
        raw, t, seconds = self._buf[self._sent]
        self._offsets.append(self._conn_offset)
        self._anchors.append((self._conn_offset, t))
        self._conn_offset += seconds
        await sock.send_media(raw)
        self._last_send = self._loop.time()

    async def _keepalive_loop(self, sock: Any) -> None:
        """Send `KeepAlive` whenever no audio went out for `keepalive_s` (e.g. while the
        carrier sends nothing), so Deepgram does not close the idle socket."""
        period = self._stt.keepalive_s
        while not self._closing:
            idle = self._loop.time() - self._last_send
            if idle >= period:
                await sock.send_keep_alive()
                self._last_send = self._loop.time()
                idle = 0.0
            await asyncio.sleep(period - idle)

    async def _receive_loop(self, sock: Any) -> None:
        while True:
            try:
                msg = await sock.recv()
            except json.JSONDecodeError:
                count_error("stt", "deepgram", "malformed")
                log.warning("deepgram_malformed_message")
                continue
            try:
                self._handle(msg)
            except (AttributeError, TypeError, ValueError, KeyError, IndexError):
                count_error("stt", "deepgram", "malformed")
                log.warning("deepgram_malformed_message", type=_msg_type(msg))

    # ---- message mapping ----------------------------------------------------------------

    def _to_loop_time(self, audio_t: float) -> float:
        """Connection audio time → loop time, via the arrival time of the chunk holding it."""
        if not self._anchors:
            return self._loop.time()
        i = bisect.bisect_right(self._anchors, (audio_t, float("inf"))) - 1
        offset, t = self._anchors[max(i, 0)]
        return t + (audio_t - offset)

    def _handle(self, msg: Any) -> None:
        kind = _msg_type(msg)
        now = self._loop.time()
        if kind == "SpeechStarted":
            self._events.put_nowait(SpeechStarted(t=now))
        elif kind == "Results":
            alt = msg["channel"]["alternatives"][0]
            text = str(alt["transcript"]).strip()
            end = float(msg["start"]) + float(msg["duration"])
            if msg.get("is_final"):
                self._trim_finalized(end)
                if text:
                    self._turn.append(text)
                    self._turn_confidence.append(float(alt.get("confidence") or 0.0))
                    words = alt.get("words") or []
                    last_word_end = float(words[-1]["end"]) if words else end
                    self._last_final_end_t = self._to_loop_time(last_word_end)
                    self._events.put_nowait(Transcript(text=text, is_final=True, t=now))
                if msg.get("speech_final"):
                    self._end_turn(now, self._to_loop_time(end) if not text else None)
            elif text:
                self._events.put_nowait(Transcript(text=text, is_final=False, t=now))
        elif kind == "UtteranceEnd":
            self._end_turn(now, self._to_loop_time(float(msg["last_word_end"])))
        elif kind == "Error":
            count_error("stt", "deepgram", "server_error")
            log.warning("deepgram_error", variant=msg.get("variant"))
        # Metadata and anything newer are ignored.

    def _end_turn(self, now: float, speech_end_t: float | None) -> None:
        if not self._turn:
            return  # already ended by speech_final; UtteranceEnd repeats it
        end_t = self._last_final_end_t if self._last_final_end_t is not None else speech_end_t
        confidence = min(self._turn_confidence) if self._turn_confidence else None
        self._events.put_nowait(
            UtteranceEnd(
                text=" ".join(self._turn),
                speech_end_t=end_t if end_t is not None else now,
                t=now,
                confidence=confidence,
            )
        )
        self._turn = []
        self._turn_confidence = []
        self._last_final_end_t = None

    def _trim_finalized(self, end: float) -> None:
        """Forget audio Deepgram has finalized: it never needs replaying."""
        k = 0
        while k < self._sent and k < len(self._buf):
            if self._offsets[k] + self._buf[k][2] > end + 1e-6:
                break
            k += 1
        for _ in range(k):
            self._buf_s -= self._buf.popleft()[2]
            self._offsets.popleft()
        if k and not self._buf:
            self._buf_s = 0.0


def _msg_type(msg: Any) -> str | None:
    value = msg.get("type") if isinstance(msg, dict) else None
    return value if isinstance(value, str) else None
