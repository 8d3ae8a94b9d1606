"""Real calls for the evaluator's tests: a packaged persona plays a whole text call against a
playbook on the engine (evaluation.text_call), and the result becomes the evaluation
vocabulary's `SimulatedCall` plus a `Scenario` built from the persona.

The text driver on main does not yet note how many turns were recorded before each action
(`RecordedAction.turn`); until it does, `simulate` runs it with a driver subclass that notes
it as each action is recorded.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from ai.conversation import commands as cmd
from ai.playbook import Playbook
from ai.protocols import Policy
from evaluation import text_call
from evaluation.models import (
    AnsweredBy,
    Backstory,
    RecordedAction,
    Scenario,
    SimulatedCall,
    SimulatedTurn,
)
from evaluation.personas import Persona, load_persona

CLOCK = {"today": "2026-11-21", "now": "2026-11-21T09:00:00"}  # a Saturday morning
STARTED_AT = dt.datetime(2026, 11, 21, 9, 0, tzinfo=ZoneInfo("America/New_York")).astimezone(dt.UTC)


class _NotingCall(text_call._TextCall):
    """The text driver, noting the number of turns recorded before each action."""

    last: _NotingCall | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action_turns: list[int] = []
        _NotingCall.last = self

    def execute(self, c: cmd.Command) -> None:
        if isinstance(c, cmd.RecordAction):
            self.action_turns.append(len(self.turns))
        super().execute(c)


def scenario_for(persona: Persona, **backstory: Any) -> Scenario:
    """The scenario a persona plays: its identity as the backstory, its outcome expected."""
    ident = persona.identity
    answered_by: AnsweredBy = "third_party" if persona.expected_outcome == "wrong_party" else "debtor"
    story = Backstory(
        debtor_name=ident["debtor_name"], birth_year=ident["birth_year"],
        creditor=ident["creditor"], balance=ident["balance"],
        currency=ident.get("currency", "USD"), callback_number=ident["callback_number"],
        timezone=ident["timezone"], phone=persona.phone,
        first_contact=ident.get("first_contact", True), answered_by=answered_by,
    ).model_copy(update=backstory)
    return Scenario(name=persona.name, personality=persona.name, backstory=story,
                    expected_outcomes=[persona.expected_outcome])


async def simulate(
    playbook: Playbook, persona_name: str, monkeypatch: pytest.MonkeyPatch, *,
    policy: Policy | None = None, context: dict[str, Any] | None = None,
) -> tuple[SimulatedCall, Scenario]:
    persona = load_persona(persona_name)
    scenario = scenario_for(persona)
    monkeypatch.setattr(text_call, "_TextCall", _NotingCall)
    result = await text_call.run_text_call(playbook, persona, policy=policy,
                                           context={**CLOCK, **(context or {})})
    noted = _NotingCall.last
    assert noted is not None and len(noted.action_turns) == len(result.actions)
    call = SimulatedCall(
        call_id=result.call_id, mode="text", scenario=scenario.name, outcome=result.outcome,
        outcome_fields=result.outcome_fields,
        turns=[SimulatedTurn(**t) for t in result.turns],
        actions=[RecordedAction(kind=a.kind, data=a.data, turn=n)
                 for a, n in zip(result.actions, noted.action_turns, strict=True)],
        stages=result.stages, barge_ins=result.barge_ins, seconds=result.seconds,
        started_at=STARTED_AT,
    )
    return call, scenario
