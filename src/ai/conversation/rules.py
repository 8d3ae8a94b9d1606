"""The knobs of a conversation and the lines the engine says on its own, both taken from
the call's playbook (`Rules.from_playbook`, `Lines.from_playbook`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ai.playbook import Playbook


@dataclass(slots=True, frozen=True)
class Rules:
    endpointing_ms: int = 700
    reprompt_after_ms: int = 7000
    max_call_seconds: int = 900
    barge_in: bool = True
    # caller speech over the agent that pauses it (carrier `clear`, audio kept); speech
    # that reaches barge_in_min_speech_ms cuts the agent off; a stretch that ends before
    # (a backchannel, a cough) lets it resume. pause 0 or >= min speech: cut only.
    barge_in_pause_ms: int = 100
    barge_in_min_speech_ms: int = 700
    # once the caller is quiet this long the paused agent resumes; speech before that
    # continues the same utterance (gaps between words are shorter)
    barge_in_resume_after_ms: int = 250
    greeting_deadline_ms: int = 2000
    greeting_filler_margin_ms: int = 500
    dtmf_timeout_ms: int = 3000
    dtmf_max_digits: int = 8
    # a carrier that never echoes a mark: the sentence counts as played this long after
    # its audio should have ended
    mark_grace_ms: int = 3000
    # audio sent ahead of the carrier's playhead (the first-frame hook fires this early)
    playback_lead_ms: int = 60
    # the voicemail classifier looks at caller utterances starting this soon after start
    machine_window_ms: int = 10_000

    @classmethod
    def from_playbook(cls, playbook: Playbook, **overrides: int | bool) -> Rules:
        s = playbook.settings
        values: dict[str, int | bool] = {
            "endpointing_ms": s.endpointing_ms,
            "reprompt_after_ms": s.reprompt_after_ms,
            "max_call_seconds": s.max_call_seconds,
            "barge_in_pause_ms": s.barge_in_pause_ms,
            "barge_in_min_speech_ms": s.barge_in_min_speech_ms,
            "barge_in_resume_after_ms": s.barge_in_resume_after_ms,
            "greeting_deadline_ms": s.greeting_deadline_ms,
            "dtmf_timeout_ms": s.dtmf_timeout_ms,
            "dtmf_max_digits": s.dtmf_max_digits,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower().replace("-", " ")))


@dataclass(slots=True, frozen=True)
class Lines:
    """The lines the engine says without asking the policy, already rendered for the call
    (they passed the playbook's compliance validation as pre-verification lines)."""

    recovery: str
    greeting_filler: str
    max_duration: str
    voicemail: str
    backchannels: frozenset[str]

    @classmethod
    def from_playbook(cls, playbook: Playbook, render: Callable[[str], str]) -> Lines:
        s = playbook.settings
        return cls(
            recovery=render(s.recovery_line),
            greeting_filler=render(s.greeting_filler),
            max_duration=render(s.max_duration_line),
            voicemail=render(s.voicemail_message),
            backchannels=backchannel_set(s.backchannels),
        )

    def is_backchannel(self, text: str) -> bool:
        """The whole utterance is a backchannel ("Mhm.", "okay", "uh-huh, right")."""
        words = _words(text)
        if not words:
            return True  # a cough or a breath the recogniser turned into punctuation
        if words in self.backchannels:
            return True
        parts = [p for p in re.split(r"[,.!?;]+", text.lower()) if p.strip()]
        return len(parts) > 1 and all(_words(p) in self.backchannels for p in parts)


def backchannel_set(phrases: Iterable[str]) -> frozenset[str]:
    return frozenset(_words(p) for p in phrases if _words(p))
