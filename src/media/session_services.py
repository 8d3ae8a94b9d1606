"""What a call session is given: its transport settings (`SessionConfig`) and the services
it uses (`SessionServices`: speech providers, the engine factory, the call store, the live
registry, the carrier's call control).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ai.conversation import Conversation
from ai.protocols import STT, TTS, VAD
from media.ports import CallInfo, CallRecorder, LiveRegistry

__all__ = ["EngineFactory", "SessionConfig", "SessionServices"]


@dataclass(slots=True)
class SessionConfig:
    """Transport settings of one call (the conversation's own rules come with its engine)."""

    kind: str = "collections"  # "collections" (engine-driven) or "echo"
    endpointing_ms: int = 700
    lead_frames: int = 3
    echo_delay_ms: int = 500
    inbound_idle_timeout_s: float = 10.0
    keep_pacing_errors: bool = False


#: builds the call's conversation engine on the given clock
EngineFactory = Callable[[CallInfo, Callable[[], float], SessionConfig], Conversation]


@dataclass(slots=True)
class SessionServices:
    stt: STT
    tts: TTS
    engine_for: EngineFactory
    vad_factory: Callable[[], VAD]
    recorder: CallRecorder
    registry: LiveRegistry
    authenticate: Callable[[str, Mapping[str, str], Mapping[str, str]], None]
    config_for: Callable[[CallInfo], SessionConfig] = lambda info: SessionConfig()
    #: the STT and TTS one call uses, when calls may choose their own (else `stt`, `tts`)
    speech_for: Callable[[CallInfo], tuple[STT, TTS]] | None = None
    hangup: Callable[[str, str], Awaitable[str]] | None = None
    transfer: Callable[[str, str, str], Awaitable[None]] | None = None
    #: a connection without a valid `start` this long after it opened is closed (1008)
    start_deadline_s: float = 10.0
    #: audio written but not taken by the carrier past this ends the call (1008)
    send_backlog_s: float = 5.0
    #: the line spoken when a call cannot start after its `start` was accepted
    apology_for: Callable[[CallInfo], str] | None = None
