"""The simulated debtor's shape (`Debtor`), shared by the scripted and the LLM debtor and
driven by both modes (text and audio), and `make_debtor` to build one for a scenario."""

from __future__ import annotations

import datetime as dt
from typing import Protocol
from zoneinfo import ZoneInfo

from ai.llm_text import LLMSettings
from evaluation.debtor_llm import LLMDebtor
from evaluation.debtor_scripted import ScriptedDebtor
from evaluation.models import Personality, Scenario

__all__ = ["DEFAULT_STARTED_AT", "Debtor", "call_day", "make_debtor"]

#: when a simulated call starts unless told otherwise: a Friday, 09:00 in Los Angeles and
#: 12:00 in New York (inside the calling window in every US time zone)
DEFAULT_STARTED_AT = dt.datetime(2026, 11, 20, 17, 0, tzinfo=dt.UTC)


class Debtor(Protocol):
    """A simulated person on the line. `reply` answers one whole agent turn (None: says
    nothing); `interruption` is what they barge in with on an agent turn that runs long
    (None: they let it play); `opening` is what they say on picking up (a voicemail
    greeting), before the agent speaks. `hung_up` turns true once they end the call."""

    @property
    def name(self) -> str: ...

    @property
    def hung_up(self) -> bool: ...

    @property
    def words_per_minute(self) -> int: ...

    @property
    def interrupt_after_ms(self) -> int | None: ...

    def opening(self) -> str | None: ...

    async def reply(self, agent_text: str) -> str | None: ...

    def interruption(self, agent_text: str, words_per_minute: float) -> str | None: ...


def call_day(scenario: Scenario, started_at: dt.datetime | None = None) -> dt.date:
    """The date in the debtor's time zone when the call starts."""
    when = started_at or DEFAULT_STARTED_AT
    return when.astimezone(ZoneInfo(scenario.backstory.timezone)).date()


def make_debtor(scenario: Scenario, personality: Personality, *, seed: int,
                llm: LLMSettings | None = None,
                started_at: dt.datetime | None = None) -> Debtor:
    """The scenario's debtor: played by the model in `llm` when given, else by rule."""
    if personality.name != scenario.personality:
        raise ValueError(f"personality: scenario {scenario.name!r} is played by "
                         f"{scenario.personality!r}, not {personality.name!r}")
    today = call_day(scenario, started_at)
    if llm is not None:
        return LLMDebtor(personality, scenario.backstory, llm, seed=seed, today=today)
    return ScriptedDebtor(personality, scenario.backstory, seed=seed, today=today)
