"""ElevenLabs streaming TTS through the official SDK (`text_to_speech.stream`).

Audio is requested in the carrier's own format where ElevenLabs has it: `ulaw_8000` for
µ-law 8 kHz carriers (Twilio) and `pcm_<rate>` for PCM carriers (Exotel), so media never
transcodes; other rates get `pcm_16000` and media resamples.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import structlog
from elevenlabs.client import AsyncElevenLabs
from httpx_aiohttp import HttpxAiohttpClient

from ai.metrics import count_error, error_kind
from ai.types import AudioChunk, AudioSpec

log = structlog.get_logger(__name__)

PCM_RATES = (8000, 16000, 22050, 24000, 44100)


class TTSProtocolError(ValueError):
    """The TTS answered with something that is not the audio that was asked for."""

    kind = "malformed"


def output_format_for(preferred: AudioSpec) -> tuple[str, AudioSpec]:
    """The ElevenLabs `output_format` to request for a carrier format, and what it yields."""
    if preferred.encoding == "mulaw" and preferred.rate == 8000:
        return "ulaw_8000", AudioSpec("mulaw", 8000)
    if preferred.encoding == "pcm16" and preferred.rate in PCM_RATES:
        return f"pcm_{preferred.rate}", AudioSpec("pcm16", preferred.rate)
    return "pcm_16000", AudioSpec("pcm16", 16000)


class ElevenLabsTTS:
    """Streaming synthesis; chunks are yielded as the HTTP body arrives."""

    name = "elevenlabs"

    def __init__(
        self,
        api_key: str,
        voice_id: str,
        model_id: str = "eleven_flash_v2_5",
        base_url: str | None = None,
        optimize_streaming_latency: int | None = None,
        timeout_s: float = 20.0,
        chunk_size: int = 800,
        max_connections: int = 1000,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.voice_id = voice_id
        self.model_id = model_id
        self.optimize_streaming_latency = optimize_streaming_latency
        self.chunk_size = chunk_size
        # Every live call may be mid-sentence at once: the SDK's default pool (20 kept-alive
        # connections) would make most of them reconnect, or queue, at each sentence. The
        # SDK's httpx client runs over aiohttp's transport: httpx's own (httpcore on anyio)
        # cost 2.6 ms of event-loop CPU per sentence, aiohttp's 0.7 ms
        # (bench/http_client_cost.py).
        http = http_client or HttpxAiohttpClient(
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )
        kwargs: dict[str, Any] = {"api_key": api_key, "timeout": timeout_s, "httpx_client": http}
        if base_url is not None:
            kwargs["base_url"] = base_url.rstrip("/")
        self._http = http
        self._client = AsyncElevenLabs(**kwargs)

    async def aclose(self) -> None:
        """Close the pooled connections (at server shutdown)."""
        await self._http.aclose()

    async def synthesize(self, text: str, preferred: AudioSpec) -> AsyncIterator[AudioChunk]:
        output_format, spec = output_format_for(preferred)
        try:
            async with self._client.text_to_speech.with_raw_response.stream(
                self.voice_id,
                text=text,
                model_id=self.model_id,
                output_format=output_format,
                optimize_streaming_latency=self.optimize_streaming_latency,
                request_options={"chunk_size": self.chunk_size},
            ) as response:
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith(("audio/", "application/octet-stream")):
                    raise TTSProtocolError(f"expected audio, got {content_type or 'no type'}")
                carry = b""
                async for data in response.data:
                    if spec.encoding == "pcm16":
                        # keep 16-bit samples whole across HTTP chunk boundaries
                        data = carry + data
                        cut = len(data) - (len(data) % 2)
                        data, carry = data[:cut], data[cut:]
                    if data:
                        yield AudioChunk(data=data, spec=spec)
                if carry:
                    raise TTSProtocolError("PCM stream ended mid-sample")
        except Exception as exc:
            count_error("tts", self.name, error_kind(exc))
            log.warning("elevenlabs_failed", error=error_kind(exc), output_format=output_format)
            raise
