"""One agent reply as it is spoken: its sentences, their marks, and what the caller heard.

The conversation must remember only what the caller actually heard: sentences whose mark
the carrier echoed, plus the share of a cut-off sentence that playback time says was played.
Time the agent spent paused (a short caller onset, see media.session) is not playback time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ai.types import Action
from ai.vocabulary import outcome_fields
from media.player import MarkState

__all__ = ["AgentReply", "Sentence", "outcome_fields"]


@dataclass(slots=True)
class Sentence:
    text: str
    bytes: int = 0
    first_frame_t: float | None = None
    mark: MarkState | None = None

    @property
    def confirmed(self) -> bool:
        return self.mark is not None and self.mark.played.done() and self.mark.played.result()


@dataclass(slots=True)
class AgentReply:
    id: int
    trigger_t: float | None  # caller speech end that triggered this reply
    stt_ms: float | None = None
    started_t: float = 0.0
    sentences: list[Sentence] = field(default_factory=list)
    first_frame_t: float | None = None
    llm_ttft_ms: float | None = None
    tts_ttfb_ms: float | None = None
    end_action: Action | None = None
    transfer_to: str | None = None
    recorded: bool = False
    seq: int | None = None  # turn number, taken when its audio starts (keeps turns in order)
    recovery: bool = False  # said because the previous reply failed (never recovered again)
    pauses: list[tuple[float, float | None]] = field(default_factory=list)  # (from, to)

    def pause(self, t: float) -> None:
        if not self.pauses or self.pauses[-1][1] is not None:
            self.pauses.append((t, None))

    def resume(self, t: float) -> None:
        if self.pauses and self.pauses[-1][1] is None:
            self.pauses[-1] = (self.pauses[-1][0], t)

    def paused_seconds(self, start: float, end: float) -> float:
        """How much of [start, end] the agent spent paused (an open pause lasts to `end`)."""
        total = 0.0
        for a, b in self.pauses:
            total += max(0.0, min(end, end if b is None else b) - max(start, a))
        return total

    def audio_seconds(self, bytes_per_second: int) -> float:
        return sum(s.bytes for s in self.sentences) / bytes_per_second

    def heard_text(self, interrupted: bool, now: float, lead_s: float, bytes_per_second: int) -> str:
        """All of it when played to the end; when cut off, the confirmed sentences and the
        words of the sentence in progress that had been played by `now`."""
        if not interrupted:
            return " ".join(s.text for s in self.sentences)
        heard: list[str] = []
        for s in self.sentences:
            if s.confirmed:
                heard.append(s.text)
                continue
            if s.first_frame_t is not None and s.bytes:
                duration = s.bytes / bytes_per_second
                played = now - s.first_frame_t - self.paused_seconds(s.first_frame_t, now)
                frac = min(1.0, max(0.0, (played - lead_s) / duration))
                words = s.text.split()
                cut = int(len(words) * frac)
                if cut:
                    heard.append(" ".join(words[:cut]) + " —")
            break
        return " ".join(heard)
