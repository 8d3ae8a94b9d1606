"""Value types shared by providers and the engine."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

from ai.vocabulary import ActionKind

__all__ = [
    "Action", "ActionKind", "AudioChunk", "AudioIn", "AudioSpec", "Encoding", "Message",
    "PolicyOutput", "PromiseToPay", "STTEvent", "Say", "SpeechStarted", "Transcript",
    "UtteranceEnd",
]

Encoding = Literal["mulaw", "pcm16"]


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """Encoding and sample rate of a byte stream (mirrors media.codec.AudioFormat)."""

    encoding: Encoding
    rate: int

    def seconds(self, nbytes: int) -> float:
        """How long `nbytes` of audio in this format last."""
        return nbytes / ((1 if self.encoding == "mulaw" else 2) * self.rate)


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Synthesised audio in whatever format the TTS produced; media converts if needed."""

    data: bytes
    spec: AudioSpec


@dataclass(slots=True)
class AudioIn:
    """One chunk of caller audio: the carrier's raw bytes plus their PCM16 decoding."""

    raw: bytes
    spec: AudioSpec
    pcm: Any  # numpy int16 array at spec.rate
    t: float  # monotonic arrival time (loop.time())


# ---- STT events -------------------------------------------------------------------------


@dataclass(slots=True)
class SpeechStarted:
    t: float


@dataclass(slots=True)
class Transcript:
    """An interim or final transcript fragment (final = will not change)."""

    text: str
    is_final: bool
    t: float


@dataclass(slots=True)
class UtteranceEnd:
    """The caller finished a turn: the full text and when their speech stopped."""

    text: str
    speech_end_t: float
    t: float  # when the transcript became available
    confidence: float | None = None


STTEvent = SpeechStarted | Transcript | UtteranceEnd


# ---- policy output ----------------------------------------------------------------------


@dataclass(slots=True)
class Say:
    """A piece of agent text, ideally a sentence or clause, ready for TTS."""

    text: str




@dataclass(slots=True)
class Action:
    kind: ActionKind
    data: dict[str, Any] = field(default_factory=dict)


PolicyOutput = Say | Action


@dataclass(slots=True)
class PromiseToPay:
    amount: float
    date: dt.date


@dataclass(slots=True)
class Message:
    role: Literal["system", "user", "assistant", "tool"]
    content: str
    interrupted: bool = False
