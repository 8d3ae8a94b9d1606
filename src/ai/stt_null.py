"""A speech-to-text provider that hears nothing: accepts audio, never emits (load tests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ai.types import AudioIn, AudioSpec, STTEvent


class NullStream:
    """Counts what it is sent; `events()` ends when the stream is closed."""

    def __init__(self, spec: AudioSpec) -> None:
        self.spec = spec
        self.chunks = 0
        self.samples = 0
        self._closed = asyncio.Event()

    async def send(self, audio: AudioIn) -> None:
        self.chunks += 1
        self.samples += len(audio.pcm) if audio.pcm is not None else 0

    def events(self) -> AsyncIterator[STTEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[STTEvent]:
        await self._closed.wait()
        return
        yield  # an async generator that yields nothing

    async def close(self) -> None:
        self._closed.set()


class NullSTT:
    name = "null"

    async def open_stream(self, spec: AudioSpec, endpointing_ms: int) -> NullStream:
        return NullStream(spec)
