"""What the engine asks a driver to do, in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ai.types import Action


@dataclass(slots=True, frozen=True)
class StartReply:
    """Run `Conversation.reply(reply_id)` and speak what it yields. A reply still running
    is abandoned first (the engine has already said `Clear` when it was audible)."""

    reply_id: int


@dataclass(slots=True, frozen=True)
class Speak:
    """Synthesise and play one sentence, with a mark after it."""

    reply_id: int
    index: int
    text: str


@dataclass(slots=True, frozen=True)
class PlayFiller:
    """Play the short clip that shows the line is live ("Hello?")."""

    text: str


@dataclass(slots=True, frozen=True)
class Pause:
    """Stop the caller hearing the agent at once (carrier `clear`), keeping the audio."""


@dataclass(slots=True, frozen=True)
class Resume:
    """Play the held audio from where the caller stopped hearing it."""


@dataclass(slots=True, frozen=True)
class Clear:
    """Drop every queued and held agent audio (carrier `clear`) and abandon the running
    reply."""


@dataclass(slots=True, frozen=True)
class HangUp:
    """End the call through the carrier (the goodbye has been played)."""

    outcome: str


@dataclass(slots=True, frozen=True)
class Transfer:
    number: str


@dataclass(slots=True, frozen=True)
class RecordTurn:
    """One turn of the transcript, times in ms from the start of the call (what the store
    keeps)."""

    seq: int
    speaker: str  # "agent" | "caller"
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool = False
    stt_ms: float | None = None
    llm_ttft_ms: float | None = None
    tts_ttfb_ms: float | None = None
    voice_to_voice_ms: float | None = None


@dataclass(slots=True, frozen=True)
class RecordAction:
    """An agent action (promise to pay, opt-out, end of call, …) to persist."""

    action: Action


@dataclass(slots=True, frozen=True)
class RecordEvent:
    kind: str
    t: float
    data: dict[str, Any] = field(default_factory=dict)


Command = (
    StartReply | Speak | PlayFiller | Pause | Resume | Clear | HangUp | Transfer | RecordTurn
    | RecordAction | RecordEvent
)
