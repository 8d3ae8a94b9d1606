"""`FallbackSTT`: if a stream fails to open or dies mid-call, the next provider takes over
for the rest of the call; audio since the last finished utterance is replayed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog

from ai.metrics import count_error, error_kind
from ai.protocols import STT, STTStream
from ai.queues import iterate_queue
from ai.resilience.retry import CircuitBreaker, ProviderUnavailable
from ai.resilience.switch import provider_name, record_switch
from ai.types import (
    AudioIn,
    AudioSpec,
    STTEvent,
    UtteranceEnd,
)

log = structlog.get_logger(__name__)








class FallbackSTT:
    """An STT that opens its first healthy provider and moves a live call on to the next
    one when the current stream fails."""

    name = "fallback"

    def __init__(
        self,
        providers: Sequence[STT],
        replay_s: float = 15.0,
        breakers: Sequence[CircuitBreaker] | None = None,
    ) -> None:
        if not providers:
            raise ValueError("FallbackSTT needs at least one provider")
        self.providers = list(providers)
        self.replay_s = replay_s
        self.breakers = list(breakers) if breakers else [CircuitBreaker() for _ in providers]
        self.name = "+".join(provider_name(p) for p in self.providers)

    async def open_stream(self, spec: AudioSpec, endpointing_ms: int) -> STTStream:
        stream = _FallbackSTTStream(self, spec, endpointing_ms)
        await stream.start()
        return stream

    async def _open_from(
        self, start: int, spec: AudioSpec, endpointing_ms: int
    ) -> tuple[int, STTStream]:
        last_exc: BaseException | None = None
        for i in range(start, len(self.providers)):
            provider, breaker = self.providers[i], self.breakers[i]
            if not breaker.allow():
                log.info("provider_circuit_open", role="stt", provider=provider_name(provider))
                continue
            try:
                stream = await provider.open_stream(spec, endpointing_ms)
            except Exception as exc:
                breaker.record_failure()
                count_error("stt", provider_name(provider), error_kind(exc))
                log.warning(
                    "stt_open_failed", provider=provider_name(provider), error=error_kind(exc)
                )
                last_exc = exc
                continue
            breaker.record_success()
            return i, stream
        raise ProviderUnavailable("no STT provider could open a stream") from last_exc


class _FallbackSTTStream:
    def __init__(self, owner: FallbackSTT, spec: AudioSpec, endpointing_ms: int) -> None:
        self._owner = owner
        self._spec = spec
        self._endpointing_ms = endpointing_ms
        self._index = 0
        self._inner: STTStream | None = None
        # (seq, arrival time, seconds, raw, pcm): plain tuples of values the garbage
        # collector does not track, so up to `replay_s` of frames per call are not walked by
        # every young-generation collection (an AudioIn per frame would be).
        self._recent: deque[tuple[int, float, float, bytes, Any]] = deque()
        self._recent_s = 0.0  # seconds in _recent, kept as a running total (per-frame path)
        self._seq = 0
        self._sent_seq = 0  # highest seq delivered to the current inner stream
        self._switching = False
        self._closed = False
        self._queue: asyncio.Queue[STTEvent | BaseException | None] = asyncio.Queue()
        self._pump: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._index, self._inner = await self._owner._open_from(0, self._spec, self._endpointing_ms)
        self._pump = asyncio.create_task(self._run_pump(self._inner))

    async def send(self, audio: AudioIn) -> None:
        if self._closed:
            return
        self._seq += 1
        seconds = audio.spec.seconds(len(audio.raw))
        self._recent.append((self._seq, audio.t, seconds, audio.raw, audio.pcm))
        self._recent_s += seconds
        if self._recent_s > self._owner.replay_s:
            self._trim_recent()
        if self._switching or self._inner is None:
            return  # replayed once the next stream is open
        try:
            await self._inner.send(audio)
            self._sent_seq = self._seq
        except Exception as exc:
            await self._fail_over(self._inner, exc)

    def events(self) -> AsyncIterator[STTEvent]:
        return iterate_queue(self._queue)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        inner = self._inner
        if inner is not None:
            with contextlib.suppress(Exception):
                await inner.close()
        if self._pump is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._pump), timeout=3.0)
            except (TimeoutError, Exception):
                self._pump.cancel()
        self._recent.clear()  # freed now, not when the collector reaches the ended call
        self._recent_s = 0.0
        self._queue.put_nowait(None)

    def _trim_recent(self) -> None:
        while self._recent and self._recent_s > self._owner.replay_s:
            self._recent_s -= self._recent.popleft()[2]
        if not self._recent:
            self._recent_s = 0.0

    def _forget_before(self, t: float) -> None:
        """Drop audio that ended before the caller's last finished utterance (the buffer
        is in arrival order, so only its head can have ended before `t`)."""
        while self._recent and self._recent[0][1] + self._recent[0][2] <= t:
            self._recent_s -= self._recent.popleft()[2]
        if not self._recent:
            self._recent_s = 0.0

    async def _run_pump(self, inner: STTStream) -> None:
        try:
            async for ev in inner.events():
                if isinstance(ev, UtteranceEnd):
                    self._forget_before(ev.speech_end_t)
                self._queue.put_nowait(ev)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._closed:
                await self._fail_over(inner, exc)
            return
        if not self._closed and inner is self._inner:
            await self._fail_over(inner, ConnectionError("stream ended unexpectedly"))
        elif self._closed:
            self._queue.put_nowait(None)

    async def _fail_over(self, failed: STTStream, exc: BaseException) -> None:
        if self._switching or failed is not self._inner or self._closed:
            return
        self._switching = True
        old_provider = self._owner.providers[self._index]
        self._owner.breakers[self._index].record_failure()
        count_error("stt", provider_name(old_provider), error_kind(exc))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(failed.close(), timeout=1.0)
        try:
            index, stream = await self._owner._open_from(
                self._index + 1, self._spec, self._endpointing_ms
            )
        except ProviderUnavailable as unavailable:
            log.error("stt_chain_exhausted", provider=provider_name(old_provider))
            self._inner = None
            self._queue.put_nowait(unavailable)
            return
        record_switch("stt", old_provider, self._owner.providers[index], exc, "stream_failed")
        self._index, self._inner = index, stream
        self._sent_seq = 0
        # Replay what the caller said since the last finished utterance, including audio that
        # arrived while we were switching; send() resumes normal forwarding when caught up.
        try:
            while True:
                pending = [r for r in self._recent if r[0] > self._sent_seq]
                if not pending:
                    break
                for seq, t, _, raw, pcm in pending:
                    await stream.send(AudioIn(raw, self._spec, pcm, t))
                    self._sent_seq = seq
        except Exception as replay_exc:
            self._switching = False
            await self._fail_over(stream, replay_exc)
            return
        self._switching = False
        self._pump = asyncio.create_task(self._run_pump(stream))
