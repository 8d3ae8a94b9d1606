"""Keeping a call alive when a provider fails: retries, circuit breakers and per-call
fallback chains that implement the same protocols as the providers they wrap.

- `FallbackSTT`: if a stream fails to open or dies mid-call, the next provider takes over
  for the rest of the call; audio since the last finished utterance is replayed to it.
- `FallbackTTS`: no first byte in time, or an error mid-stream, and the next provider
  synthesises what is left of the text (estimated from the audio already produced).
- `FallbackPolicy`: an LLM timeout or error hands the call to the next policy (usually the
  scripted playbook) for the rest of the call; a filler line covers a slow first reply.

Every switch is logged (provider names only) and counted in `ai.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import structlog

from ai.events import PolicyEvent
from ai.metrics import count_error, count_fallback, error_kind
from ai.protocols import STT, TTS, Policy, PolicyFactory, STTStream
from ai.queues import iterate_queue
from ai.types import (
    AudioChunk,
    AudioIn,
    AudioSpec,
    Message,
    PolicyOutput,
    Say,
    STTEvent,
    UtteranceEnd,
)

if TYPE_CHECKING:
    from ai.playbook import Playbook

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ProviderUnavailable(RuntimeError):
    """Every provider in a fallback chain failed (or its circuit is open)."""


# ---- retries and circuit breaking -----------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, timeouts, dropped connections."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 429) or status >= 500
    return error_kind(exc) in ("timeout", "connection", "rate_limited", "server_error")


def backoff_delay(attempt: int, base_delay: float, max_delay: float = 5.0) -> float:
    """Exponential backoff with jitter in [50 %, 100 %] of the step (attempt counts from 0)."""
    step = min(max_delay, base_delay * (2**attempt))
    return step * (0.5 + random.random() / 2)


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    attempts: int = 3,
    base_delay: float = 0.2,
    retry_on: Callable[[BaseException], bool] | tuple[type[BaseException], ...] = is_transient,
    max_delay: float = 5.0,
) -> T:
    """Call `fn` up to `attempts` times, sleeping a jittered exponential backoff between
    tries; `retry_on` is an exception-type tuple or a predicate. The last error is raised."""
    for attempt in range(attempts):
        try:
            return await fn()
        except Exception as exc:
            retryable = isinstance(exc, retry_on) if isinstance(retry_on, tuple) else retry_on(exc)
            if not retryable or attempt == attempts - 1:
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.info(
                "retrying", attempt=attempt + 1, delay_s=round(delay, 3), error=error_kind(exc)
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures; after
    `reset_timeout_s` one trial is let through (half-open); success closes it again."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_out = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_out = False
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()


def _provider_name(provider: Any) -> str:
    return str(getattr(provider, "name", type(provider).__name__))


def _switch(role: str, old: Any, new: Any, exc: BaseException | None, reason: str) -> None:
    from_name, to_name = _provider_name(old), _provider_name(new)
    count_fallback(role, from_name, to_name)
    log.warning(
        "provider_fallback",
        role=role,
        from_provider=from_name,
        to_provider=to_name,
        reason=reason,
        error=None if exc is None else error_kind(exc),
    )


def _chunk_seconds(data: bytes, spec: AudioSpec) -> float:
    width = 1 if spec.encoding == "mulaw" else 2
    return len(data) / (width * spec.rate)


# ---- STT ------------------------------------------------------------------------------


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
        self.name = "+".join(_provider_name(p) for p in self.providers)

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
                log.info("provider_circuit_open", role="stt", provider=_provider_name(provider))
                continue
            try:
                stream = await provider.open_stream(spec, endpointing_ms)
            except Exception as exc:
                breaker.record_failure()
                count_error("stt", _provider_name(provider), error_kind(exc))
                log.warning(
                    "stt_open_failed", provider=_provider_name(provider), error=error_kind(exc)
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
        seconds = _chunk_seconds(audio.raw, audio.spec)
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
        count_error("stt", _provider_name(old_provider), error_kind(exc))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(failed.close(), timeout=1.0)
        try:
            index, stream = await self._owner._open_from(
                self._index + 1, self._spec, self._endpointing_ms
            )
        except ProviderUnavailable as unavailable:
            log.error("stt_chain_exhausted", provider=_provider_name(old_provider))
            self._inner = None
            self._queue.put_nowait(unavailable)
            return
        _switch("stt", old_provider, self._owner.providers[index], exc, "stream_failed")
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


# ---- TTS ------------------------------------------------------------------------------


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
        self.name = "+".join(_provider_name(p) for p in self.providers)

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
                _switch("tts", previous, provider, last_exc, "synthesis_failed")
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
                    spoken_s += _chunk_seconds(chunk.data, chunk.spec)
                    yield chunk
            except Exception as exc:
                breaker.record_failure()
                count_error("tts", _provider_name(provider), error_kind(exc))
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


# ---- policy ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Done:
    pass


class FallbackPolicy:
    """Runs the first policy; on an error or a reply that does not start within
    `timeout_s`, hands this and every later turn of the call to the next policy.
    If no Say has arrived after `filler_after_ms`, one filler line is said."""

    def __init__(
        self,
        policies: Sequence[Policy],
        filler_after_ms: int = 900,
        filler_lines: Sequence[str] = ("One moment.", "Just a second.", "Let me check."),
        timeout_s: float = 6.0,
    ) -> None:
        if not policies:
            raise ValueError("FallbackPolicy needs at least one policy")
        self.policies = list(policies)
        self.filler_after_ms = filler_after_ms
        self.filler_lines = list(filler_lines)
        self.timeout_s = timeout_s
        self.index = 0
        self._fillers_used = 0
        self.name = "+".join(_provider_name(p) for p in self.policies)

    @property
    def current(self) -> Policy:
        return self.policies[self.index]

    @property
    def stage(self) -> str | None:
        stage = getattr(self.current, "stage", None)
        return stage if isinstance(stage, str) else None

    async def respond(
        self, history: list[Message], event: PolicyEvent
    ) -> AsyncIterator[PolicyOutput]:
        filler_said = False
        while True:
            policy = self.current
            is_last = self.index == len(self.policies) - 1
            queue: asyncio.Queue[PolicyOutput | BaseException | _Done] = asyncio.Queue()
            task = asyncio.create_task(_pump_policy(policy, history, event, queue))
            loop = asyncio.get_running_loop()
            started = loop.time()
            said_anything = False
            failure: BaseException | None = None
            try:
                while True:
                    wait: float | None
                    if said_anything:
                        wait = None if is_last else self.timeout_s
                    elif not filler_said and self.filler_lines:
                        wait = self.filler_after_ms / 1000 - (loop.time() - started)
                    else:
                        wait = None if is_last else self.timeout_s - (loop.time() - started)
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=wait)
                    except TimeoutError:
                        if not said_anything and not filler_said and self.filler_lines:
                            filler_said = True
                            yield Say(self._next_filler())
                            continue
                        failure = TimeoutError("policy reply timed out")
                        break
                    if isinstance(item, _Done):
                        return
                    if isinstance(item, BaseException):
                        failure = item
                        break
                    said_anything = said_anything or isinstance(item, Say)
                    yield item
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            assert failure is not None
            count_error("llm", _provider_name(policy), error_kind(failure))
            if is_last:
                raise failure
            self.index += 1
            _switch("llm", policy, self.current, failure, "policy_failed")
            take_over = getattr(self.current, "take_over", None)
            if take_over is not None:
                take_over(history)  # carry on from the stage the call reached

    def _next_filler(self) -> str:
        line = self.filler_lines[self._fillers_used % len(self.filler_lines)]
        self._fillers_used += 1
        return line


async def _pump_policy(
    policy: Policy,
    history: list[Message],
    event: PolicyEvent,
    queue: asyncio.Queue[PolicyOutput | BaseException | _Done],
) -> None:
    try:
        async for out in policy.respond(history, event):
            queue.put_nowait(out)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        queue.put_nowait(exc)
        return
    queue.put_nowait(_Done())


class FallbackPolicyFactory:
    """Builds a `FallbackPolicy` per call from one factory per tier (e.g. OpenAI, then the
    scripted playbook)."""

    def __init__(
        self,
        factories: Sequence[PolicyFactory],
        filler_after_ms: int = 900,
        filler_lines: Sequence[str] = ("One moment.", "Just a second.", "Let me check."),
        timeout_s: float = 6.0,
    ) -> None:
        self.factories = list(factories)
        self.filler_after_ms = filler_after_ms
        self.filler_lines = list(filler_lines)
        self.timeout_s = timeout_s

    def __call__(
        self, context: Mapping[str, Any], playbook: Playbook | None = None
    ) -> FallbackPolicy:
        return FallbackPolicy(
            [f(context, playbook) for f in self.factories],
            filler_after_ms=self.filler_after_ms,
            filler_lines=playbook.settings.filler_lines if playbook is not None else self.filler_lines,
            timeout_s=self.timeout_s,
        )
