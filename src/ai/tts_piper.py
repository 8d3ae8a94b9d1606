"""Embedded text-to-speech: Piper with the "joe" US English voice (22050 Hz PCM16).

Piper runs on worker threads and produces one chunk per sentence; each chunk is handed to
the event loop as soon as it exists, so the first sentence plays while the rest is still
being synthesised. If the consumer stops (cancelled, or closes the generator), the worker
stops before the next sentence.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncGenerator
from typing import Any

from ai import models
from ai.types import AudioChunk, AudioSpec

log = logging.getLogger(__name__)

PIPER_RATE = 22050
PIPER_SPEC = AudioSpec("pcm16", PIPER_RATE)

_executor_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def piper_executor() -> concurrent.futures.ThreadPoolExecutor:
    """Threads for Piper, apart from the loop's default pool (they may wait on PIPER_LOCK)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="piper")
        return _executor


_END = object()


class _Failed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class PiperTTS:
    """The `TTS` provider "piper". Always yields PCM16 at 22050 Hz; media converts."""

    name = "piper"
    spec = PIPER_SPEC

    def warmup(self) -> None:
        """Load the voice and synthesise once so the first call is not slow."""
        for _ in self._sentences("Hello.", threading.Event()):
            pass

    def _sentences(self, text: str, stop: threading.Event) -> Any:
        voice = models.piper_voice()
        chunks = iter(voice.synthesize(text))
        while not stop.is_set():
            with models.PIPER_LOCK:
                chunk = next(chunks, None)
            if chunk is None:
                return
            yield chunk.audio_int16_bytes

    async def synthesize(self, text: str, preferred: AudioSpec) -> AsyncGenerator[AudioChunk, None]:
        if not any(ch.isalnum() for ch in text):
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def put(item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening
                stop.set()

        def work() -> None:
            try:
                for data in self._sentences(text, stop):
                    if data:
                        put(data)
            except BaseException as error:
                put(_Failed(error))
            finally:
                put(_END)

        loop.run_in_executor(piper_executor(), work)
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    raise RuntimeError("piper synthesis failed") from item.error
                yield AudioChunk(item, PIPER_SPEC)
        finally:
            stop.set()
