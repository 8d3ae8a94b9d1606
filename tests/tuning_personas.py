"""A first `evaluate(playbook, scenario_set)` for the tuning tests: the packaged personas
on the existing text driver (evaluation.text_call), scored by a plain rubric (task
completion from the outcome and plan reached, efficiency from the number of agent turns).
It stands in for the evaluator (evaluation.scoring / judges) until that lands; the
compliance of a candidate is the critique's job here, so every call counts as compliant.
"""

from __future__ import annotations

import datetime as dt

from ai.playbook import Playbook
from evaluation.models import (
    Backstory,
    CallScore,
    RecordedAction,
    Scenario,
    SimulatedCall,
    SimulatedTurn,
)
from evaluation.personas import Persona, load_persona
from evaluation.text_call import run_text_call
from tuning.analysis import ScenarioResult

CLOCK = {"today": "2026-11-21", "now": "2026-11-21T09:00:00"}
STARTED = dt.datetime(2026, 11, 21, 14, 0, tzinfo=dt.UTC)


def _variant(name: str, new: str, **identity: object) -> Persona:
    p = load_persona(name)
    return p.model_copy(update={"name": new, "identity": {**p.identity, **identity}})


def persona_sets() -> dict[str, list[tuple[Persona, int]]]:
    """Scenario sets of (persona, weight): training and held-out (other debtors, and the
    same kinds of debtor owing other amounts to other creditors; the persona rules answer
    with the persona's own name and birth year, so those stay)."""
    p = load_persona
    return {
        "train": [(p("cooperative"), 3), (p("hardship"), 3), (p("hostile"), 2), (p("disputer"), 2),
                  (p("callback"), 1), (p("already-paid"), 1), (p("wrong-person"), 2)],
        "heldout": [(p("interrupter"), 3), (p("silent"), 1),
                    (_variant("hardship", "hardship-two", balance=1800.0, creditor="Pine Card"), 3),
                    (_variant("cooperative", "cooperative-two", balance=640.0,
                              creditor="Harbor Medical Group"), 3)],
    }


def scenario_of(persona: Persona, weight: int) -> Scenario:
    i = persona.identity
    return Scenario(
        name=persona.name, personality=persona.name, weight=weight,
        expected_outcomes=[persona.expected_outcome],
        backstory=Backstory(debtor_name=i["debtor_name"], birth_year=i["birth_year"],
                            creditor=i["creditor"], balance=i["balance"],
                            first_contact=i.get("first_contact", True)),
    )


def rubric(persona: Persona, call: SimulatedCall) -> CallScore:
    plan = call.outcome_fields.get("ptp_plan")
    if call.outcome == persona.expected_outcome and (persona.expected_plan in (None, plan)):
        task, why = 100.0, "reached the expected outcome"
    elif call.outcome == "promise_to_pay" == persona.expected_outcome:
        task, why = 50.0, f"a promise under plan {plan}, not {persona.expected_plan}"
    else:
        task, why = 0.0, f"ended {call.outcome}, expected {persona.expected_outcome}"
    agent_turns = sum(1 for t in call.turns if t.speaker == "agent")
    efficiency = max(0.0, 100.0 - 5.0 * max(0, agent_turns - 6))
    score = round(0.7 * task + 0.3 * efficiency, 2)
    return CallScore(task_completion=task, task_analysis=why, efficiency=efficiency,
                     efficiency_analysis=f"{agent_turns} agent turns", compliance_passed=True,
                     hostility=0.0, judge="rubric", samples=[score], score=score, passed=score >= 70)


async def simulate(playbook: Playbook, persona: Persona, weight: int) -> ScenarioResult:
    r = await run_text_call(playbook, persona, context=CLOCK)
    call = SimulatedCall(
        call_id=r.call_id, mode="text", scenario=persona.name, outcome=r.outcome,
        outcome_fields=r.outcome_fields,
        turns=[SimulatedTurn(**t) for t in r.turns],
        actions=[RecordedAction(kind=a.kind, data=a.data, turn=0) for a in r.actions],
        stages=r.stages, barge_ins=r.barge_ins, seconds=r.seconds, started_at=STARTED,
    )
    return ScenarioResult(scenario_of(persona, weight), call, rubric(persona, call))


async def evaluate(playbook: Playbook, scenario_set: str) -> tuple[float, list[ScenarioResult]]:
    results = [await simulate(playbook, p, w) for p, w in persona_sets()[scenario_set]]
    total = sum(r.scenario.weight for r in results)
    return round(sum(r.scenario.weight * r.score.score for r in results) / total, 2), results
