"""Speech synthesis into the carrier's format: TTS chunks in whatever format the provider
produced (e.g. Piper's 22.05 kHz PCM) become carrier bytes, resampled and encoded as they
stream; a provider that already speaks the carrier's format passes straight through."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from ai.protocols import TTS
from ai.types import AudioSpec
from media.codec import AudioFormat, Resampler, decode, encode


async def synthesize_for_carrier(tts: TTS, text: str, fmt: AudioFormat) -> AsyncGenerator[bytes]:
    spec = AudioSpec(fmt.encoding, fmt.rate)
    resampler: Resampler | None = None
    chunks = tts.synthesize(text, spec)
    try:
        async for chunk in chunks:
            if chunk.spec == spec:
                yield chunk.data
                continue
            src = AudioFormat(chunk.spec.encoding, chunk.spec.rate)
            if resampler is None or resampler.in_rate != src.rate:
                resampler = Resampler(src.rate, fmt.rate)
            yield encode(resampler.process(decode(chunk.data, src)), fmt)
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:  # stop the provider's work now, not when collected
            await close()
    if resampler is not None:
        tail = resampler.flush()
        if len(tail):
            yield encode(tail, fmt)
