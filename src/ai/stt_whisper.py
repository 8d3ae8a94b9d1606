"""Embedded speech-to-text: VAD-cut utterances recognised by faster-whisper tiny.en.

`send` only runs the VAD segmenter; each finished utterance is resampled to 16 kHz and
recognised on one process-wide worker thread under `models.WHISPER_LOCK`, so all calls
and the simulator share one model and one recognition runs at a time.

Event grammar per stream: every `SpeechStarted` is followed, once recognition finishes,
by exactly one `UtteranceEnd` (its text is "" when only noise or a hallucination was
heard). `SpeechStarted` is emitted at once (barge-in needs it), so the next utterance's
`SpeechStarted` may precede the previous `UtteranceEnd`; `UtteranceEnd`s keep utterance order.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import soxr

from ai import models
from ai.audioop_compat import audioop
from ai.types import AudioIn, AudioSpec, SpeechStarted, STTEvent, UtteranceEnd
from ai.vad import SegmentEnded, SegmenterConfig, SegmentStarted, SpeechSegmenter, WebRtcVad

log = logging.getLogger(__name__)

WHISPER_RATE = 16000

_executor_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def whisper_executor() -> concurrent.futures.ThreadPoolExecutor:
    """The one worker thread that runs Whisper for the event loops of this process."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="whisper")
        return _executor


@dataclass(frozen=True, slots=True)
class Recognition:
    text: str
    confidence: float | None  # exp(mean avg_logprob) of the kept segments


def _is_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def _decode_pcm(audio: AudioIn) -> np.ndarray:
    if audio.pcm is not None:
        return np.asarray(audio.pcm, dtype=np.int16)
    if audio.spec.encoding == "mulaw":
        return np.frombuffer(audioop.ulaw2lin(audio.raw, 2), dtype=np.int16)
    return np.frombuffer(audio.raw, dtype="<i2")


class WhisperSTT:
    """The `STT` provider "whisper". Thresholds drop hallucinated segments."""

    name = "whisper"

    def __init__(
        self,
        threads: int = 2,
        *,
        vad_mode: int = 2,
        no_speech_threshold: float = 0.6,
        min_avg_logprob: float = -1.0,
        segmenter: SegmenterConfig | None = None,
        close_timeout: float = 10.0,
    ) -> None:
        self.threads = threads
        self.vad_mode = vad_mode
        self.no_speech_threshold = no_speech_threshold
        self.min_avg_logprob = min_avg_logprob
        self.segmenter = segmenter or SegmenterConfig()
        self.close_timeout = close_timeout

    async def open_stream(self, spec: AudioSpec, endpointing_ms: int) -> WhisperStream:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(whisper_executor(), models.whisper_model, self.threads)
        return WhisperStream(self, spec, endpointing_ms)

    def warmup(self) -> None:
        """Load the model and run one recognition so the first call is not slow."""
        t = np.arange(WHISPER_RATE) / WHISPER_RATE
        self.recognize(np.asarray(np.sin(2 * np.pi * 220 * t) * 3000, dtype=np.int16), WHISPER_RATE)

    def transcribe_pcm16(self, pcm: np.ndarray, rate: int) -> str:
        """Recognise one whole utterance (int16 samples at `rate`); blocking."""
        return self.recognize(pcm, rate).text

    def recognize(self, pcm: np.ndarray, rate: int) -> Recognition:
        """Like `transcribe_pcm16`, with a confidence; blocking, thread-safe."""
        audio = np.asarray(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        if rate != WHISPER_RATE:
            audio = np.asarray(soxr.resample(audio, rate, WHISPER_RATE), dtype=np.float32)
        if len(audio) < WHISPER_RATE // 10:
            return Recognition("", None)
        model = models.whisper_model(self.threads)
        with models.WHISPER_LOCK:
            segments, _info = model.transcribe(
                audio,
                language="en",
                beam_size=1,
                condition_on_previous_text=False,
                vad_filter=False,
            )
            segments = list(segments)  # decoding happens while iterating
        return self._keep(segments)

    def _keep(self, segments: list[Any]) -> Recognition:
        texts: list[str] = []
        logprobs: list[float] = []
        weights: list[float] = []
        for seg in segments:
            text = seg.text.strip()
            if not _is_words(text):
                continue
            if seg.no_speech_prob > self.no_speech_threshold or seg.avg_logprob < self.min_avg_logprob:
                log.debug("dropped segment %r (no_speech=%.2f, logprob=%.2f)",
                          text, seg.no_speech_prob, seg.avg_logprob)
                continue
            texts.append(text)
            logprobs.append(seg.avg_logprob)
            weights.append(max(seg.end - seg.start, 0.01))
        if not texts:
            return Recognition("", None)
        mean = sum(lp * w for lp, w in zip(logprobs, weights, strict=True)) / sum(weights)
        return Recognition(" ".join(texts), round(math.exp(mean), 3))


_END = object()


class WhisperStream:
    """One call's recognition stream (implements `ai.protocols.STTStream`)."""

    def __init__(self, stt: WhisperSTT, spec: AudioSpec, endpointing_ms: int) -> None:
        self._stt = stt
        self.spec = spec
        config = SegmenterConfig(
            start_ms=stt.segmenter.start_ms,
            start_window_ms=stt.segmenter.start_window_ms,
            endpoint_ms=endpointing_ms,
            preroll_ms=stt.segmenter.preroll_ms,
            tail_ms=stt.segmenter.tail_ms,
            max_utterance_ms=stt.segmenter.max_utterance_ms,
            settle_ms=stt.segmenter.settle_ms,
        )
        self._segmenter = SpeechSegmenter(spec.rate, config, WebRtcVad(stt.vad_mode))
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._pending: list[asyncio.Task[None]] = []
        self._last: asyncio.Task[None] | None = None
        self._closed = False

    async def send(self, audio: AudioIn) -> None:
        if self._closed:
            return
        self._handle(self._segmenter.push(_decode_pcm(audio), audio.t))

    def events(self) -> AsyncIterator[STTEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[STTEvent]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # later iterators end too
                return
            yield item

    async def close(self) -> None:
        """Recognise the utterance in progress and what is queued (up to `close_timeout`
        seconds), then end `events()`."""
        if self._closed:
            return
        self._closed = True
        self._handle(self._segmenter.flush())
        pending = [t for t in self._pending if not t.done()]
        if pending:
            _done, late = await asyncio.wait(pending, timeout=self._stt.close_timeout)
            for task in late:
                log.warning("whisper recognition still running at close; dropped")
                task.cancel()
        self._queue.put_nowait(_END)

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, SegmentStarted):
                self._queue.put_nowait(SpeechStarted(event.t))
            elif isinstance(event, SegmentEnded):
                self._recognize(event)

    def _recognize(self, seg: SegmentEnded) -> None:
        future = self._loop.run_in_executor(
            whisper_executor(), self._stt.recognize, seg.audio, seg.rate
        )
        task = self._loop.create_task(self._emit(future, self._last, seg.speech_end_t))
        self._last = task
        self._pending = [t for t in self._pending if not t.done()]
        self._pending.append(task)

    async def _emit(
        self, future: asyncio.Future[Recognition], previous: asyncio.Task[None] | None,
        speech_end_t: float,
    ) -> None:
        try:
            result = await future
        except Exception:
            log.exception("whisper recognition failed")
            result = Recognition("", None)
        if previous is not None:
            await asyncio.wait([previous])  # keep utterance order, whatever became of it
        self._queue.put_nowait(
            UtteranceEnd(result.text, speech_end_t, self._loop.time(), result.confidence)
        )
