"""The evaluation vocabulary, defined once: who a simulated debtor is (`Personality`), what
their situation is (`Backstory`), a weighted `Scenario`, what one simulated call left behind
(`SimulatedCall`), and how it was scored (`CallScore`).

Personalities hold traits as parameters, so a scripted debtor and an LLM debtor play the
same person the same way, and a tuning loop cannot win by finding words the simulator
happens to like. Demo facts about people (names, balances, birth years) live only here,
in scenarios, never in a production default.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ai.vocabulary import Outcome

__all__ = [
    "ANSWERED_BY",
    "RESISTANCE",
    "TRIGGERS",
    "Affordability",
    "AnsweredBy",
    "Backstory",
    "CallScore",
    "CriterionScore",
    "Personality",
    "RecordedAction",
    "Resistance",
    "Scenario",
    "SimulatedCall",
    "SimulatedTurn",
    "Trigger",
    "Violation",
]

Resistance = Literal[
    "dispute", "anger", "stalling", "hardship", "hang_up", "wrong_person", "already_paid",
    "ask_human", "opt_out", "callback",
]
#: how a debtor resists, one line each
RESISTANCE: dict[str, str] = {
    "dispute": "says the debt is not theirs or not owed",
    "anger": "gets angry, may swear",
    "stalling": "avoids committing: 'I need to think', 'not now'",
    "hardship": "explains they cannot afford it (job loss, illness)",
    "hang_up": "ends the call when their patience runs out",
    "wrong_person": "is not the debtor (or says so)",
    "already_paid": "says they already paid",
    "ask_human": "asks for a real person",
    "opt_out": "asks not to be called again",
    "callback": "asks to be called back another time",
}

Trigger = Literal[
    "pressure", "repeated_question", "long_turn", "debt_named", "threat", "interrupted",
    "empathy", "payment_plan", "settlement_offer", "callback_offer", "clear_disclosure",
]
#: what the agent can do that moves a debtor's mood (anger_triggers / calm_triggers)
TRIGGERS: dict[str, str] = {
    "pressure": "the agent insists after a no, or asks for the full balance again",
    "repeated_question": "the agent asks what it already asked",
    "long_turn": "the agent talks for long without a question",
    "debt_named": "the agent names the debt or the balance",
    "threat": "the agent threatens consequences",
    "interrupted": "the agent talks over the debtor",
    "empathy": "the agent acknowledges the debtor's situation",
    "payment_plan": "the agent offers instalments",
    "settlement_offer": "the agent offers a reduced settlement",
    "callback_offer": "the agent offers to call back",
    "clear_disclosure": "the agent says who it is and why it calls",
}

AnsweredBy = Literal["debtor", "third_party", "voicemail"]
ANSWERED_BY: tuple[str, ...] = ("debtor", "third_party", "voicemail")


class Affordability(BaseModel):
    """What the debtor can pay: at most `amount` (or `share` of the balance when no amount
    is given), in one payment or, when `instalments_ok`, per month; not before
    `earliest_days` from the call."""

    model_config = ConfigDict(extra="forbid")

    amount: float | None = Field(default=None, ge=0)
    share: float | None = Field(default=None, ge=0, le=1)
    instalments_ok: bool = True
    earliest_days: int = Field(default=0, ge=0, le=365)

    def limit(self, balance: float) -> float:
        """The most the debtor can pay at once, in the debt's currency."""
        if self.amount is not None:
            return self.amount
        return round(balance * (self.share if self.share is not None else 1.0), 2)


class Personality(BaseModel):
    """A kind of debtor, as parameters. `patience` is how many pushes, repeats or long
    turns they take before their anger shows (and, with `hang_up` among the resistance
    tactics, before they hang up). `resistance` is tried in order."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = Field(default="", max_length=2000)
    willingness_to_pay: float = Field(default=0.5, ge=0, le=1)
    can_afford: Affordability = Field(default_factory=Affordability)
    patience: int = Field(default=5, ge=0, le=10)
    anger_triggers: list[Trigger] = Field(default_factory=list)
    calm_triggers: list[Trigger] = Field(default_factory=list)
    resistance: list[Resistance] = Field(default_factory=list)
    speaking_wpm: int = Field(default=170, ge=80, le=260)
    interrupts: bool = False
    interrupt_after_ms: int = Field(default=2500, ge=200, le=20_000)
    silent: bool = False  # never says anything (a dead line, a pocket dial)


class Backstory(BaseModel):
    """The debtor's situation: the facts the agent's call context holds (name, birth year,
    creditor, balance) and the ones only the debtor knows (income, life events, what they
    will and will not agree to). A simulated debtor reveals a fact only when asked and never
    says anything beyond it."""

    model_config = ConfigDict(extra="forbid")

    debtor_name: str = Field(min_length=1, max_length=200)
    birth_year: int = Field(ge=1900, le=2010)
    creditor: str = Field(min_length=1, max_length=200)
    balance: float = Field(gt=0, lt=1_000_000_000)
    currency: str = Field(default="USD", pattern=r"^[A-Z]{3}$")
    due_date: dt.date | None = None
    callback_number: str = "800-555-0199"  # fictional (555-01xx)
    timezone: str = "America/New_York"
    phone: str = "+12025550100"  # fictional (555-01xx)
    first_contact: bool = True
    answered_by: AnsweredBy = "debtor"
    answerer_name: str | None = None  # who answers when it is not the debtor
    monthly_income: float | None = Field(default=None, ge=0)
    life_events: list[str] = Field(default_factory=list)
    will_agree: list[str] = Field(default_factory=list)
    will_not_agree: list[str] = Field(default_factory=list)
    paid_on: dt.date | None = None  # for "already paid": when they say they paid

    def call_context(self) -> dict[str, Any]:
        """The call context the agent is given (what a lead row would carry)."""
        return {
            "debtor_name": self.debtor_name, "birth_year": self.birth_year,
            "balance": self.balance, "creditor": self.creditor,
            "callback_number": self.callback_number, "currency": self.currency,
            "first_contact": self.first_contact, "timezone": self.timezone,
        }


class Scenario(BaseModel):
    """A personality in a situation, weighted 1–5 in a set. `expected_outcomes` are the
    outcomes a good agent reaches with this debtor (the first is the best one)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = Field(default="", max_length=2000)
    personality: str = Field(min_length=1, max_length=100)
    backstory: Backstory
    weight: int = Field(default=1, ge=1, le=5)
    expected_outcomes: list[Outcome] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)

    @field_validator("expected_outcomes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("expected_outcomes lists an outcome twice")
        return v


class SimulatedTurn(BaseModel):
    """One turn of a simulated call, as the transcript store holds it."""

    speaker: Literal["agent", "caller"]
    text: str
    start_ms: float | None = None
    end_ms: float | None = None
    interrupted: bool = False
    voice_to_voice_ms: float | None = None


class RecordedAction(BaseModel):
    """An agent action, with the number of turns recorded before it (so `turn` = 3 means
    it came after the first three turns)."""

    kind: str
    data: dict[str, Any] = Field(default_factory=dict)
    turn: int = Field(ge=0)


class SimulatedCall(BaseModel):
    """What one simulated call left behind, in text or audio mode alike."""

    call_id: str
    mode: Literal["text", "audio"]
    scenario: str
    outcome: str | None
    outcome_fields: dict[str, Any] = Field(default_factory=dict)
    turns: list[SimulatedTurn]
    actions: list[RecordedAction] = Field(default_factory=list)
    stages: list[str] = Field(default_factory=list)
    barge_ins: int = 0
    seconds: float = 0.0
    # the wall-clock moment the call started, in UTC (for the calling-window check)
    started_at: dt.datetime
    debtor_hung_up: bool = False
    status: str = "completed"
    failure_reason: str | None = None


class Violation(BaseModel):
    """A compliance rule a call broke: which (`rule`, one of evaluation.compliance's names),
    at which turn (index into `turns`, None for the whole call), and the words that show it."""

    rule: str
    turn: int | None
    evidence: str


class CriterionScore(BaseModel):
    """One rubric criterion: a 0–100 score, why, and the transcript words it rests on."""

    name: str
    score: float = Field(ge=0, le=100)
    analysis: str
    evidence: list[str] = Field(default_factory=list)


class CallScore(BaseModel):
    """How one simulated call was scored. `score` is 0 when compliance failed; otherwise the
    judge's combination of task completion and efficiency. `samples` holds each LLM judge
    sample's overall score (one entry for the rubric judge); `spread` is their max − min."""

    task_completion: float = Field(ge=0, le=100)
    task_analysis: str
    efficiency: float = Field(ge=0, le=100)
    efficiency_analysis: str
    compliance_passed: bool
    violations: list[Violation] = Field(default_factory=list)
    hostility: float = Field(ge=0, le=10)
    criteria: list[CriterionScore] = Field(default_factory=list)
    judge: Literal["rubric", "llm"]
    samples: list[float] = Field(default_factory=list)
    spread: float = 0.0
    score: float = Field(ge=0, le=100)
    passed: bool
