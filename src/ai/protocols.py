"""Provider protocols. Implementations live beside this module; the session and the
engine depend only on these shapes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ai.events import PolicyEvent
from ai.types import AudioChunk, AudioIn, AudioSpec, Message, PolicyOutput, STTEvent

if TYPE_CHECKING:
    from ai.playbook import Playbook


class VAD(Protocol):
    """Voice activity on 10/20/30 ms PCM16 frames."""

    def is_speech(self, pcm_frame: bytes, rate: int) -> bool: ...


class STTStream(Protocol):
    """One call's recognition stream. `send` never blocks on recognition."""

    async def send(self, audio: AudioIn) -> None: ...

    def events(self) -> AsyncIterator[STTEvent]: ...

    async def close(self) -> None: ...


class STT(Protocol):
    name: str

    async def open_stream(self, spec: AudioSpec, endpointing_ms: int) -> STTStream: ...


class TTS(Protocol):
    """Synthesises text, streamed. `preferred` is the carrier's format: a TTS that can
    produce it natively should (no transcoding); otherwise it yields its own format and
    media converts."""

    name: str

    def synthesize(self, text: str, preferred: AudioSpec) -> AsyncIterator[AudioChunk]: ...


class Policy(Protocol):
    """Decides what the agent says next. One instance per call (it may keep state)."""

    name: str

    def respond(self, history: list[Message], event: PolicyEvent) -> AsyncIterator[PolicyOutput]: ...


class PolicyFactory(Protocol):
    """Builds the policy for one call from the call's context (debtor, balance, …) and the
    playbook the call runs (None = the factory's default playbook)."""

    def __call__(self, context: Mapping[str, Any], playbook: Playbook | None = None) -> Policy: ...
