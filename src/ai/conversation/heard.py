"""What the caller heard of an agent reply: the sentences whose mark came back, plus the
words of a cut-off sentence that playback time says were played. Time the agent spent
paused is not playback time."""

from __future__ import annotations

from dataclasses import dataclass, field

#: speaking rate assumed when a cut sentence's audio length is not known yet
WORDS_PER_MINUTE = 160


@dataclass(slots=True)
class SpokenSentence:
    text: str
    started_t: float | None = None
    audio_ms: float | None = None
    played: bool = False

    def length_ms(self) -> float:
        if self.audio_ms is not None:
            return self.audio_ms
        return len(self.text.split()) * 60_000 / WORDS_PER_MINUTE


@dataclass(slots=True)
class Pauses:
    spans: list[tuple[float, float | None]] = field(default_factory=list)

    def begin(self, t: float) -> None:
        if not self.spans or self.spans[-1][1] is not None:
            self.spans.append((t, None))

    def end(self, t: float) -> None:
        if self.spans and self.spans[-1][1] is None:
            self.spans[-1] = (self.spans[-1][0], t)

    def within(self, start: float, end: float) -> float:
        """Seconds of [start, end] spent paused (an open pause lasts to `end`)."""
        total = 0.0
        for a, b in self.spans:
            total += max(0.0, min(end, end if b is None else b) - max(start, a))
        return total


def heard_text(
    sentences: list[SpokenSentence], pauses: Pauses, now: float, lead_s: float,
    complete: bool,
) -> str:
    """All of it when played to the end; when cut off, the confirmed sentences and the
    words of the sentence in progress that had been played by `now`."""
    if complete:
        return " ".join(s.text for s in sentences)
    heard: list[str] = []
    for s in sentences:
        if s.played:
            heard.append(s.text)
            continue
        if s.started_t is not None:
            played = now - s.started_t - pauses.within(s.started_t, now)
            frac = min(1.0, max(0.0, (played - lead_s) * 1000 / max(1.0, s.length_ms())))
            words = s.text.split()
            cut = int(len(words) * frac)
            if cut:
                heard.append(" ".join(words[:cut]) + " —")
        break
    return " ".join(heard)
