"""What a driver tells the engine. Every event carries `t`, seconds on the call's clock
(the event loop's clock live, a virtual clock in simulations)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Started:
    """The call's media started; `answered_by` is the carrier's answering-machine verdict
    when the stream carried one."""

    t: float
    answered_by: str | None = None


@dataclass(slots=True, frozen=True)
class CallerVoice:
    """The caller's voice activity changed (from the VAD on 20 ms frames): the current
    stretch of speech began at `onset_t` and holds `voiced_ms` of speech; `in_speech` is
    False once the stretch has ended."""

    t: float
    onset_t: float | None
    voiced_ms: int
    in_speech: bool


@dataclass(slots=True, frozen=True)
class SpeechStarted:
    """The recogniser heard the caller start an utterance."""

    t: float


@dataclass(slots=True, frozen=True)
class Partial:
    """An interim transcript of the utterance under way."""

    t: float
    text: str


@dataclass(slots=True, frozen=True)
class Final:
    """The caller's utterance is over: its text and when the speech stopped."""

    t: float
    text: str
    speech_end_t: float
    stt_ms: float | None = None


@dataclass(slots=True, frozen=True)
class Digit:
    t: float
    digit: str


@dataclass(slots=True, frozen=True)
class SentenceStarted:
    """The first audio of a sentence reached the playhead; `audio_ms` is its length when
    synthesis has finished (else None), `tts_ttfb_ms` the synthesis time to first byte."""

    t: float
    reply_id: int
    index: int
    tts_ttfb_ms: float | None = None


@dataclass(slots=True, frozen=True)
class SentenceAudio:
    """Synthesis of a sentence finished: it lasts `audio_ms`."""

    t: float
    reply_id: int
    index: int
    audio_ms: float


@dataclass(slots=True, frozen=True)
class SentencePlayed:
    """The carrier confirmed the sentence was played (its mark came back)."""

    t: float
    reply_id: int
    index: int


@dataclass(slots=True, frozen=True)
class FillerStarted:
    """The greeting filler clip reached the playhead."""

    t: float


@dataclass(slots=True, frozen=True)
class ReplyFailed:
    """Speaking a reply failed (the policy or the speech synthesis raised)."""

    t: float
    reply_id: int
    error: str


@dataclass(slots=True, frozen=True)
class MachineVerdict:
    """The carrier's answering-machine verdict arrived mid-call (e.g. Twilio async AMD)."""

    t: float
    answered_by: str


@dataclass(slots=True, frozen=True)
class Tick:
    """Time passed (reprompts, DTMF timeout, maximum duration, greeting deadline)."""

    t: float


Input = (
    Started | CallerVoice | SpeechStarted | Partial | Final | Digit | SentenceStarted
    | SentenceAudio | SentencePlayed | FillerStarted | ReplyFailed | MachineVerdict | Tick
)
