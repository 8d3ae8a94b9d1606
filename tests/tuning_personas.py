"""A first `evaluate(playbook, scenario_set)` for the tuning tests: the packaged personas
(and two held-out ones in tests/tuning_data) play whole calls on the existing text driver
(the evaluator's test calls, tests/evaluator_calls.py), scored by the evaluator itself
(evaluation.scoring.evaluate_call with the rubric judge). A persona's expected plan (full,
instalment) also counts: a promise under another plan scores only the share of the task
the rubric gives it, halved, so the writer has a reason to offer what the debtor needs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ai.playbook import Playbook
from evaluation.judges import RubricJudge
from evaluation.personas import load_persona
from evaluation.scoring import evaluate_call, weighted_score
from tests.evaluator_calls import simulate
from tuning.analysis import ScenarioResult

DATA = Path(__file__).with_name("tuning_data")

#: scenario sets of (persona, weight): training, and held out (other debtors, and the same
#: kinds of debtor with other names, facts and words)
PERSONA_SETS: dict[str, list[tuple[str, int]]] = {
    "train": [("cooperative", 3), ("hardship", 3), ("hostile", 2), ("disputer", 2),
              ("callback", 1), ("already-paid", 1), ("wrong-person", 2), ("silent", 1)],
    "heldout": [("interrupter", 3), (str(DATA / "hardship-two.yaml"), 3),
                (str(DATA / "cooperative-two.yaml"), 3)],
}


async def scenario_result(playbook: Playbook, persona_ref: str, weight: int) -> ScenarioResult:
    persona = load_persona(persona_ref)
    with pytest.MonkeyPatch.context() as mp:
        call, scenario = await simulate(playbook, persona_ref, mp)
    scenario = scenario.model_copy(update={"weight": weight})
    score = await evaluate_call(call, scenario, playbook, judge=RubricJudge())
    plan = call.outcome_fields.get("ptp_plan")
    if persona.expected_plan is not None and plan is not None and plan != persona.expected_plan:
        score = score.model_copy(update={"score": round(score.score / 2, 2), "passed": False})
    return ScenarioResult(scenario, call, score)


async def evaluate(playbook: Playbook, scenario_set: str) -> tuple[float, list[ScenarioResult]]:
    results = [await scenario_result(playbook, ref, w) for ref, w in PERSONA_SETS[scenario_set]]
    return weighted_score([(r.scenario.weight, r.score.score) for r in results]), results
