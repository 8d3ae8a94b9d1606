"""Voice activity: webrtcvad on PCM16 frames, and a segmenter that cuts utterances.

`WebRtcVad` implements `ai.protocols.VAD`. `SpeechSegmenter` turns a stream of PCM16
chunks of any size into "speech started" and "utterance ended" events; the embedded STT
uses it to cut utterances and the media session uses it for barge-in.

Timestamps: a chunk pushed with time `t` is taken to have finished arriving at `t`
(carrier semantics: the arrival time of a chunk is when its last sample was heard). Each
20 ms frame is stamped with the time its last sample arrived.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import soxr
import webrtcvad

from ai.audioop_compat import audioop

FRAME_MS = 20
WEBRTC_RATES = (8000, 16000, 32000, 48000)


class WebRtcVad:
    """webrtcvad (aggressiveness `mode` 0–3) behind the `VAD` protocol.

    Frames must be 10, 20 or 30 ms of PCM16 LE mono. Rates webrtcvad lacks (22050, 24000,
    …) are resampled to 16 kHz first. Frames quieter than `min_dbfs` are never speech:
    webrtcvad alone calls faint line noise speech while it adapts.
    """

    def __init__(self, mode: int = 2, min_dbfs: float | None = -50.0) -> None:
        if mode not in (0, 1, 2, 3):
            raise ValueError(f"webrtcvad mode must be 0..3, got {mode}")
        self.mode = mode
        self._vad = webrtcvad.Vad(mode)
        self._min_rms = None if min_dbfs is None else 32768.0 * 10 ** (min_dbfs / 20)

    def is_speech(self, pcm_frame: bytes, rate: int) -> bool:
        if rate not in WEBRTC_RATES:
            samples = _to_16k_frame(np.frombuffer(pcm_frame, dtype="<i2"), rate)
            rate = 16000
            pcm_frame = samples.tobytes()
        elif len(pcm_frame) * 500 not in (rate * 10, rate * 20, rate * 30):
            raise ValueError(f"{len(pcm_frame) // 2} samples at {rate} Hz is not a 10/20/30 ms frame")
        voiced = bool(self._vad.is_speech(pcm_frame, rate))
        if voiced and self._min_rms is not None:
            voiced = audioop.rms(pcm_frame, 2) >= self._min_rms
        return voiced


def _to_16k_frame(samples: np.ndarray, rate: int) -> np.ndarray:
    ms = len(samples) * 1000 / rate
    target_ms = min((10, 20, 30), key=lambda m: abs(m - ms))
    if abs(target_ms - ms) > 1:
        raise ValueError(f"{len(samples)} samples at {rate} Hz is not a 10/20/30 ms frame")
    out = np.asarray(soxr.resample(samples.astype(np.int16), rate, 16000), dtype="<i2")
    want = 16 * target_ms
    if len(out) < want:
        out = np.concatenate([out, np.zeros(want - len(out), dtype="<i2")])
    return out[:want]


# ---- segmentation ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SegmenterConfig:
    start_ms: int = 60  # voiced time within `start_window_ms` that declares speech
    start_window_ms: int = 120
    endpoint_ms: int = 600  # trailing non-speech that ends an utterance
    preroll_ms: int = 200  # audio kept before the first voiced frame
    tail_ms: int = 200  # audio kept after the last voiced frame (at most endpoint_ms)
    max_utterance_ms: int = 30000  # longer speech is cut into several utterances
    settle_ms: int = 100  # VAD decisions ignored at stream start (webrtcvad adapting)

    def __post_init__(self) -> None:
        for name in ("start_ms", "start_window_ms", "endpoint_ms", "max_utterance_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.start_ms > self.start_window_ms:
            raise ValueError("start_ms cannot exceed start_window_ms")


@dataclass(frozen=True, slots=True)
class SegmentStarted:
    """Speech began; `t` is the time of the first voiced frame."""

    t: float


@dataclass(frozen=True, slots=True)
class SegmentEnded:
    """An utterance ended (endpoint reached, max length, or flush)."""

    audio: np.ndarray  # int16 at `rate`, preroll included
    rate: int
    start_t: float  # first voiced frame
    speech_end_t: float  # last voiced frame
    truncated: bool = False  # cut at max_utterance_ms while speech went on


SegmentEvent = SegmentStarted | SegmentEnded


@dataclass(slots=True)
class _Frame:
    pcm: np.ndarray
    t: float
    voiced: bool


class SpeechSegmenter:
    """Cuts a PCM16 stream into utterances with a VAD over 20 ms frames.

    `push` accepts chunks of any length; leftovers wait for the next chunk. Events come
    in pairs: every `SegmentStarted` is followed by exactly one `SegmentEnded`.
    After a cut at `max_utterance_ms` the segmenter re-detects speech from scratch.
    """

    def __init__(
        self, rate: int, config: SegmenterConfig | None = None, vad: WebRtcVad | None = None
    ) -> None:
        if (rate * FRAME_MS) % 1000:
            raise ValueError(f"{rate} Hz has no whole-sample 20 ms frame")
        self.rate = rate
        self.config = config or SegmenterConfig()
        self.vad = vad or WebRtcVad()
        self.frame_samples = rate * FRAME_MS // 1000
        c = self.config
        self._window = max(1, c.start_window_ms // FRAME_MS)
        self._start_frames = max(1, -(-c.start_ms // FRAME_MS))
        self._preroll = c.preroll_ms // FRAME_MS
        self._tail = min(c.tail_ms, c.endpoint_ms) // FRAME_MS
        self._endpoint = max(1, -(-c.endpoint_ms // FRAME_MS))
        self._max_frames = max(1, c.max_utterance_ms // FRAME_MS)
        self._settle = c.settle_ms // FRAME_MS
        self._pending = np.zeros(0, dtype=np.int16)
        self._history: deque[_Frame] = deque(maxlen=self._preroll + self._window)
        self._utt: list[_Frame] = []
        self._in_speech = False
        self._last_voiced = -1  # index in _utt
        self._frames_seen = 0
        self._start_t = 0.0

    @property
    def in_speech(self) -> bool:
        return self._in_speech

    def push(self, pcm: np.ndarray | bytes, t: float) -> list[SegmentEvent]:
        """Feed samples that finished arriving at `t`; returns the events they caused."""
        chunk = np.frombuffer(pcm, dtype="<i2") if isinstance(pcm, bytes | bytearray) else pcm
        chunk = np.asarray(chunk, dtype=np.int16)
        buf = np.concatenate([self._pending, chunk]) if len(self._pending) else chunk
        n = self.frame_samples
        whole = len(buf) // n * n
        events: list[SegmentEvent] = []
        for end in range(n, whole + 1, n):
            frame = buf[end - n : end]
            frame_t = t - (len(buf) - end) / self.rate
            events.extend(self._frame(frame, frame_t))
        self._pending = buf[whole:].copy()
        return events

    def flush(self) -> list[SegmentEvent]:
        """End the utterance in progress, if any (the stream is closing)."""
        self._pending = np.zeros(0, dtype=np.int16)
        if not self._in_speech:
            return []
        return [self._end(truncated=False)]

    def _frame(self, pcm: np.ndarray, t: float) -> list[SegmentEvent]:
        voiced = self.vad.is_speech(pcm.tobytes(), self.rate)
        self._frames_seen += 1
        if self._frames_seen <= self._settle:
            voiced = False
        frame = _Frame(pcm.copy(), t, voiced)
        if not self._in_speech:
            self._history.append(frame)
            recent = list(self._history)[-self._window :]
            if sum(f.voiced for f in recent) < self._start_frames:
                return []
            history = list(self._history)
            first = next(
                i for i in range(len(history) - len(recent), len(history)) if history[i].voiced
            )
            self._utt = history[max(0, first - self._preroll) :]
            self._history.clear()
            self._in_speech = True
            self._last_voiced = len(self._utt) - 1  # the frame that completed the start
            self._start_t = history[first].t
            return [SegmentStarted(self._start_t)]
        self._utt.append(frame)
        if voiced:
            self._last_voiced = len(self._utt) - 1
        if len(self._utt) >= self._max_frames:
            return [self._end(truncated=True)]
        if len(self._utt) - 1 - self._last_voiced >= self._endpoint:
            return [self._end(truncated=False)]
        return []

    def _end(self, truncated: bool) -> SegmentEnded:
        utt = self._utt
        keep = len(utt) if truncated else min(len(utt), self._last_voiced + 1 + self._tail)
        audio = np.concatenate([f.pcm for f in utt[:keep]])
        event = SegmentEnded(
            audio=audio,
            rate=self.rate,
            start_t=self._start_t,
            speech_end_t=utt[self._last_voiced].t,
            truncated=truncated,
        )
        self._in_speech = False
        self._utt = []
        self._history.clear()
        if not truncated:
            # Trailing audio may serve as the next utterance's preroll, never as its speech.
            for f in utt[-self._history.maxlen :] if self._history.maxlen else []:
                self._history.append(_Frame(f.pcm, f.t, False))
        return event
