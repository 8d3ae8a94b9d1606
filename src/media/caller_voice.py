"""Caller voice activity seen by the session itself (not the STT): the current stretch of
speech (its onset and voiced time) on 20 ms frames, which the session hands to the
conversation engine for silence timing and barge-in decisions."""

from __future__ import annotations

import numpy as np

from ai.protocols import VAD
from media.codec import FRAME_MS

#: unvoiced 20 ms frames tolerated inside one stretch of speech (short pauses, plosives)
MAX_GAP_FRAMES = 3


class VoiceActivity:
    def __init__(self, vad: VAD, rate: int) -> None:
        self.vad = vad
        self.rate = rate
        self.frame_samples = rate * FRAME_MS // 1000
        self.last_voice_t = 0.0
        self.onset_t: float | None = None  # start of the current stretch of speech
        self.voiced_ms = 0
        self._gap = 0

    def push(self, pcm: np.ndarray, now: float) -> None:
        data = pcm.tobytes()
        n = 2 * self.frame_samples
        for i in range(0, len(data) - n + 1, n):
            if self.vad.is_speech(data[i : i + n], self.rate):
                if self.voiced_ms == 0:
                    self.onset_t = now
                self.voiced_ms += FRAME_MS
                self._gap = 0
                self.last_voice_t = now
            else:
                self._gap += 1
                if self._gap > MAX_GAP_FRAMES:
                    self.voiced_ms = 0

    @property
    def in_speech(self) -> bool:
        """A stretch of speech is under way (it ends after MAX_GAP_FRAMES unvoiced frames)."""
        return self.voiced_ms > 0
