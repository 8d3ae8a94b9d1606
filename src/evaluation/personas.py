"""Simulated debtors: YAML personas (who they are, how they answer) and the `SimulatedDebtor`
that answers an agent's words by rule. Matching works on what a speech recogniser heard
(lower-cased, no punctuation, key words only), so it survives recognition errors.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ai.playbook import YamlLoader
from ai.vocabulary import Outcome, PlanKind

__all__ = [
    "PERSONA_DIR",
    "Persona",
    "PersonaDebtor",
    "PersonaError",
    "Rule",
    "SimulatedDebtor",
    "heard_text",
    "list_personas",
    "load_persona",
]

PERSONA_DIR = Path(__file__).with_name("personas")

_QUESTION = re.compile(
    r"\b(could you|would you|can you|are you|is that|is this|do you|did you|will you|"
    r"what|when|how|may i|which)\b"
)


class PersonaError(ValueError):
    """A persona that does not exist or does not validate."""


def heard_text(text: str) -> str:
    """What rules match against: lower case, digits and letters only, single spaces
    ("I'm calling about your account." -> "im calling about your account")."""
    t = text.lower().replace("\u2019", "'").replace("'", "")
    t = re.sub(r"(?<=\d),(?=\d)", "", t)
    t = re.sub(r"[^a-z0-9 ]+", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def _check_regex(pattern: str) -> str:
    try:
        re.compile(pattern)
    except re.error as e:
        raise ValueError(f"bad regex {pattern!r}: {e}") from e
    return pattern


class Rule(BaseModel):
    """When the agent's words match `match` (a regex over heard_text), say `reply`
    (None = stay silent); at most `max_uses` times; `hang_up` ends the call after."""

    model_config = ConfigDict(extra="forbid")

    match: str
    reply: str | None
    max_uses: int | None = Field(default=None, ge=1)
    hang_up: bool = False

    @field_validator("match")
    @classmethod
    def _valid_match(cls, v: str) -> str:
        return _check_regex(v)


class Persona(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    # the call context the server receives (debtor_name, birth_year, ...): demo values for
    # simulations, the only place they live
    identity: dict[str, Any]
    phone: str = "+12025550100"  # a fictional number (555-01xx)
    expected_outcome: Outcome
    expected_plan: PlanKind | None = None  # for promise_to_pay
    silent: bool = False
    interrupt_after_ms: int | None = Field(default=None, gt=0)
    interrupt_line: str | None = None
    interrupt_max: int = Field(default=2, ge=0)
    hang_up_on: str | None = r"\b(goodbye|good bye|bye)\b"
    rules: list[Rule] = Field(default_factory=list)
    default_reply: str | None = None

    @field_validator("hang_up_on")
    @classmethod
    def _valid_hang_up(cls, v: str | None) -> str | None:
        return v if v is None else _check_regex(v)

    @model_validator(mode="after")
    def _plan_needs_promise(self) -> Persona:
        if self.expected_plan is not None and self.expected_outcome != "promise_to_pay":
            raise ValueError("expected_plan goes only with expected_outcome promise_to_pay")
        return self

    def context(self) -> dict[str, Any]:
        """The call context to hand the server (a copy of `identity`)."""
        return dict(self.identity)


def list_personas() -> list[str]:
    """Names of the packaged personas, sorted."""
    return sorted(p.stem for p in PERSONA_DIR.glob("*.yaml"))


def load_persona(name: str | Path) -> Persona:
    """A packaged persona by name (e.g. "cooperative"), or any persona YAML by path."""
    path = Path(name)
    if path.suffix not in (".yaml", ".yml"):
        path = PERSONA_DIR / f"{name}.yaml"
    if not path.is_file():
        raise PersonaError(f"unknown persona {str(name)!r}; choose from: {', '.join(list_personas())}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=YamlLoader)
        return Persona.model_validate(data)
    except (yaml.YAMLError, ValidationError) as e:
        raise PersonaError(f"invalid persona {path}: {e}") from e


class SimulatedDebtor:
    """Plays one persona in one call. `reply(agent_text)` returns what the debtor says,
    or None to stay silent (a silent persona, a hang-up, or nothing to answer)."""

    def __init__(self, persona: Persona) -> None:
        self.persona = persona
        self.hung_up = False  # the debtor ended the call (or heard the goodbye)
        self.done = False  # nothing more will be said
        self.replies = 0
        self.interruptions = 0
        self._uses: dict[int, int] = {}

    def reply(self, agent_text: str) -> str | None:
        if self.done:
            return None
        heard = heard_text(agent_text)
        if self.persona.hang_up_on and re.search(self.persona.hang_up_on, heard):
            self.hung_up = self.done = True
            return None
        if self.persona.silent:
            return None
        rule = self._pick(agent_text)
        if rule is None:
            # only answer what sounds like a question; a recogniser may hand over half a turn
            looks_like_question = "?" in agent_text or _QUESTION.search(heard)
            text = self.persona.default_reply if looks_like_question else None
        else:
            text = rule.reply
            if rule.hang_up:
                self.hung_up = self.done = True
        if text:
            self.replies += 1
        return text

    def interruption(self, agent_text: str, words_per_minute: float = 160) -> str | None:
        """The line to barge in with if this agent utterance runs past the persona's
        `interrupt_after_ms` (at `words_per_minute`), at most `interrupt_max` times."""
        p = self.persona
        if self.done or not p.interrupt_after_ms or not p.interrupt_line:
            return None
        if self.interruptions >= p.interrupt_max:
            return None
        speaking_ms = len(agent_text.split()) * 60_000 / words_per_minute
        if speaking_ms <= p.interrupt_after_ms:
            return None
        self.interruptions += 1
        return p.interrupt_line

    def _pick(self, agent_text: str) -> Rule | None:
        # the question usually comes last: try the last sentence, then the whole turn
        sentences = [s for s in re.split(r"(?<=[.!?])\s+", agent_text.strip()) if s]
        candidates = [heard_text(sentences[-1])] if len(sentences) > 1 else []
        candidates.append(heard_text(agent_text))
        for text in candidates:
            for i, rule in enumerate(self.persona.rules):
                used = self._uses.get(i, 0)
                if rule.max_uses is not None and used >= rule.max_uses:
                    continue
                if re.search(rule.match, text):
                    self._uses[i] = used + 1
                    return rule
        return None


class PersonaDebtor:
    """A regex persona as a `evaluation.debtor.Debtor`, for the drivers that take one."""

    def __init__(self, persona: Persona) -> None:
        self.simulated = SimulatedDebtor(persona)
        self.name = persona.name
        self.words_per_minute = 170
        self.interrupt_after_ms = persona.interrupt_after_ms

    @property
    def hung_up(self) -> bool:
        return self.simulated.hung_up

    def opening(self) -> str | None:
        return None

    async def reply(self, agent_text: str) -> str | None:
        return self.simulated.reply(agent_text)

    def interruption(self, agent_text: str, words_per_minute: float) -> str | None:
        return self.simulated.interruption(agent_text, words_per_minute)
