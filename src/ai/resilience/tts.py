"""`FallbackTTS`: no first byte in time, or an error mid-stream, and the next provider
synthesises what is left of the text (estimated from the audio already produced).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

import structlog

from ai.metrics import count_error, error_kind
from ai.protocols import TTS
from ai.resilience.retry import CircuitBreaker, ProviderUnavailable
from ai.resilience.switch import provider_name, record_switch
from ai.types import (
    AudioChunk,
    AudioSpec,
)

log = structlog.get_logger(__name__)


class FallbackTTS:
    """A TTS that moves to the next provider when the first byte is late or a stream
    breaks, resynthesising only the text not yet spoken."""

    name = "fallback"

    def __init__(
        self,
        providers: Sequence[TTS],
        first_byte_timeout_s: float = 2.0,
        stall_timeout_s: float = 3.0,
        chars_per_second: float = 15.0,
        breakers: Sequence[CircuitBreaker] | None = None,
        last_resort_timeout_s: float = 15.0,
    ) -> None:
        if not providers:
            raise ValueError("FallbackTTS needs at least one provider")
        self.last_resort_timeout_s = last_resort_timeout_s
        self.providers = list(providers)
        self.first_byte_timeout_s = first_byte_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.chars_per_second = chars_per_second
        self.breakers = list(breakers) if breakers else [CircuitBreaker() for _ in providers]
        self.name = "+".join(provider_name(p) for p in self.providers)

    async def synthesize(self, text: str, preferred: AudioSpec) -> AsyncIterator[AudioChunk]:
        remaining = text
        last_exc: BaseException | None = None
        previous: TTS | None = None
        for i, provider in enumerate(self.providers):
            breaker = self.breakers[i]
            last_resort = i == len(self.providers) - 1
            # The last provider is tried even with its breaker open, and given time: timing
            # it out would only leave the caller in silence.
            if not breaker.allow() and not last_resort:
                continue
            if previous is not None:
                record_switch("tts", previous, provider, last_exc, "synthesis_failed")
            previous = provider
            spoken_s = 0.0
            stream = provider.synthesize(remaining, preferred)
            try:
                first = True
                while True:
                    timeout = self.first_byte_timeout_s if first else self.stall_timeout_s
                    if last_resort:
                        timeout = max(timeout, self.last_resort_timeout_s)
                    try:
                        # asyncio.timeout, not wait_for: no extra task per audio chunk
                        async with asyncio.timeout(timeout):
                            chunk = await anext(stream)
                    except StopAsyncIteration:
                        break
                    first = False
                    spoken_s += chunk.spec.seconds(len(chunk.data))
                    yield chunk
            except Exception as exc:
                breaker.record_failure()
                count_error("tts", provider_name(provider), error_kind(exc))
                last_exc = exc
                remaining = _unspoken_text(remaining, spoken_s, self.chars_per_second)
                if not remaining:
                    return
                continue
            finally:
                with contextlib.suppress(Exception):
                    await stream.aclose()  # type: ignore[attr-defined]
            breaker.record_success()
            return
        raise ProviderUnavailable("no TTS provider could synthesise the text") from last_exc




def _unspoken_text(text: str, spoken_s: float, chars_per_second: float) -> str:
    """The part of `text` not yet covered by `spoken_s` of audio, cut back to the start of
    the word in progress so no word is lost (a repeated word beats a missing one)."""
    if spoken_s <= 0:
        return text
    pos = int(spoken_s * chars_per_second)
    if pos >= len(text):
        return ""
    while pos > 0 and not text[pos - 1].isspace():
        pos -= 1
    return text[pos:].strip()
