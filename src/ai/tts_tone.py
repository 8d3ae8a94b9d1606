"""A text-to-speech stand-in with no model: a quiet sine tone as long as the text would take.

For protocol tests and load benchmarks; the duration follows the text length so pacing,
marks and barge-in behave as with real speech.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import numpy as np

from ai.types import AudioChunk, AudioSpec

CHUNK_MS = 100


class ToneTTS:
    """The `TTS` provider "tone": PCM16 at the preferred rate (8 kHz if unusable)."""

    name = "tone"

    def __init__(self, ms_per_char: int = 60, freq_hz: float = 440.0, amplitude: int = 2000) -> None:
        if ms_per_char <= 0:
            raise ValueError("ms_per_char must be positive")
        self.ms_per_char = ms_per_char
        self.freq_hz = freq_hz
        self.amplitude = amplitude

    def duration_ms(self, text: str) -> int:
        return len(text.strip()) * self.ms_per_char

    async def synthesize(self, text: str, preferred: AudioSpec) -> AsyncGenerator[AudioChunk, None]:
        rate = preferred.rate if preferred.rate >= 8000 and preferred.rate % 10 == 0 else 8000
        spec = AudioSpec("pcm16", rate)
        total = rate * self.duration_ms(text) // 1000
        step = rate * CHUNK_MS // 1000
        for start in range(0, total, step):
            n = np.arange(start, min(start + step, total))
            wave = self.amplitude * np.sin(2 * np.pi * self.freq_hz * n / rate)
            yield AudioChunk(wave.astype("<i2").tobytes(), spec)
            await asyncio.sleep(0)  # let other calls run between chunks
