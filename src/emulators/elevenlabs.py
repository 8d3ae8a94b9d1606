"""ElevenLabs text-to-speech emulator: `POST /v1/text-to-speech/{voice_id}/stream` (and the
non-streaming `/v1/text-to-speech/{voice_id}`).

Speaks ElevenLabs' wire format: `xi-api-key` header (401 `invalid_api_key` otherwise),
`output_format` / `optimize_streaming_latency` query parameters, a JSON body with `text`
and `model_id` (422 with FastAPI-style `detail` when `text` is missing), and a chunked
audio body in the requested format: `ulaw_8000` (µ-law) or `pcm_<rate>` (16-bit LE mono).

The audio is a 440 Hz tone whose length follows the text (`seconds_per_char`), so tests can
check that all of a sentence was synthesised. Faults (per request, queued): HTTP status
(429/500), slow first byte, the socket dropped after N bytes, a malformed (non-audio) body.

The first byte is due `first_byte_delay_s` after the request arrived; how late the
emulator was against that (its own event loop lag) is kept in `lateness_s`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from aiohttp import web

from emulators import serve


@dataclass
class ElevenLabsFault:
    kind: Literal["status", "slow", "drop", "malformed"]
    status: int = 500
    delay_s: float = 0.0  # "slow": extra delay before the first byte
    after_bytes: int = 0  # "drop": bytes sent before the socket is cut


@dataclass
class TTSRequest:
    voice_id: str
    text: str
    model_id: str | None
    output_format: str
    optimize_streaming_latency: str | None
    streamed: bool


def encode_mulaw(pcm: np.ndarray) -> bytes:
    """G.711 µ-law encoding of int16 samples."""
    x = pcm.astype(np.int32)
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), 32635) + 0x84
    exponent = np.floor(np.log2(mag)).astype(np.int32) - 7
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes()


def tone(seconds: float, rate: int, freq: float = 440.0, amplitude: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


class ElevenLabsEmulator:
    def __init__(
        self,
        api_key: str = "test-elevenlabs-key",
        seconds_per_char: float = 0.06,
        first_byte_delay_s: float = 0.0,
        chunk_ms: int = 100,
        chunk_delay_s: float = 0.0,
    ) -> None:
        self.api_key = api_key
        self.seconds_per_char = seconds_per_char
        self.first_byte_delay_s = first_byte_delay_s
        self.chunk_ms = chunk_ms
        self.chunk_delay_s = chunk_delay_s
        self.faults: deque[ElevenLabsFault] = deque()
        self.requests: list[TTSRequest] = []
        self.lateness_s: list[float] = []  # per streamed reply: first byte sent − due
        self.in_flight = 0  # requests being answered now
        self.max_in_flight = 0
        self.base_url = ""  # http://127.0.0.1:PORT, set when running

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/text-to-speech/{voice_id}/stream", self._stream)
        app.router.add_post("/v1/text-to-speech/{voice_id}", self._convert)
        return app

    def audio_for(self, text: str, output_format: str) -> tuple[bytes, str, int]:
        """(audio bytes, content type, bytes per second) for `text`."""
        codec, _, rest = output_format.partition("_")
        rate = int(rest.split("_")[0])
        pcm = tone(max(0.2, len(text) * self.seconds_per_char), rate)
        if codec == "ulaw":
            return encode_mulaw(pcm), "audio/basic", rate
        return pcm.astype("<i2").tobytes(), "audio/pcm", rate * 2

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        return await self._synthesize(request, streamed=True)

    async def _convert(self, request: web.Request) -> web.StreamResponse:
        return await self._synthesize(request, streamed=False)

    async def _synthesize(self, request: web.Request, streamed: bool) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, streamed)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, streamed: bool) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        if request.headers.get("xi-api-key") != self.api_key:
            return _detail(401, "invalid_api_key", "Invalid API key")
        output_format = request.query.get("output_format", "mp3_44100_128")
        codec = output_format.split("_")[0]
        if codec not in ("ulaw", "pcm") or not output_format.split("_")[1].isdigit():
            return _detail(
                400, "invalid_output_format", f"Unsupported output_format {output_format}"
            )
        try:
            body = await request.json()
        except ValueError:
            return _detail(400, "invalid_json", "Body is not valid JSON")
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text.strip():
            return web.json_response(
                {"detail": [{"type": "missing", "loc": ["body", "text"], "msg": "Field required"}]},
                status=422,
            )
        self.requests.append(
            TTSRequest(
                voice_id=request.match_info["voice_id"],
                text=text,
                model_id=body.get("model_id"),
                output_format=output_format,
                optimize_streaming_latency=request.query.get("optimize_streaming_latency"),
                streamed=streamed,
            )
        )
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.kind == "status":
            if fault.status == 429:
                return _detail(429, "too_many_concurrent_requests", "Too many concurrent requests")
            return _detail(fault.status, "internal_error", "Injected failure")
        delay = self.first_byte_delay_s + (fault.delay_s if fault and fault.kind == "slow" else 0)
        if delay:
            await asyncio.sleep(max(0.0, arrived + delay - loop.time()))
        if fault is not None and fault.kind == "malformed":
            return web.json_response({"detail": {"status": "ok", "message": "not audio"}})
        audio, content_type, per_second = self.audio_for(text, output_format)
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        step = max(1, per_second * self.chunk_ms // 1000)
        for offset in range(0, len(audio), step):
            if offset == 0:
                self.lateness_s.append(loop.time() - (arrived + delay))
            if fault is not None and fault.kind == "drop" and offset >= fault.after_bytes:
                assert request.transport is not None
                request.transport.abort()
                return response
            if offset and self.chunk_delay_s:
                await asyncio.sleep(self.chunk_delay_s)
            await response.write(audio[offset : offset + step])
        await response.write_eof()
        return response


def _detail(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"detail": {"status": code, "message": message}}, status=status)


@asynccontextmanager
async def running_elevenlabs(**kwargs: Any) -> AsyncIterator[ElevenLabsEmulator]:
    """Run an ElevenLabs emulator on 127.0.0.1; `.base_url` is its http:// root."""
    emu = ElevenLabsEmulator(**kwargs)
    async with serve(emu.app()) as url:
        emu.base_url = url
        yield emu
