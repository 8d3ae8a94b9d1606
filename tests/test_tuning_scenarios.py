"""Offline tuning over the shipped scenario sets (default for training, default-heldout
held out), with the scripted debtors that react to what the agent means and the rubric
judge: the loop the issue asks for, on the evaluation pieces themselves. It runs once
those pieces are on the import path (evaluation.library_data and run_text_simulation),
and is skipped before."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from ai.playbook import PACKAGED_PLAYBOOKS, Playbook, load_playbook
from tuning.analysis import ScenarioResult
from tuning.critique import check_playbook
from tuning.loop import tune

library_data = pytest.importorskip("evaluation.library_data")
text_call = pytest.importorskip("evaluation.text_call")
if not hasattr(text_call, "run_text_simulation"):
    pytest.skip("the scenario debtors' text simulation is not here yet", allow_module_level=True)

from evaluation.judges import RubricJudge  # noqa: E402
from evaluation.runs import call_seed  # noqa: E402
from evaluation.scoring import evaluate_call, weighted_score  # noqa: E402

PERSONALITIES = library_data.load_personalities()


async def evaluate(playbook: Playbook, scenario_set: str) -> tuple[float, list[ScenarioResult]]:
    results = []
    for scenario in library_data.load_scenario_set(scenario_set):
        personality = PERSONALITIES[scenario.personality]
        call = await text_call.run_text_simulation(playbook, scenario, personality, seed=1)
        score = await evaluate_call(call, scenario, playbook, judge=RubricJudge(), personality=personality)
        results.append(ScenarioResult(scenario, call, score, personality))
    return weighted_score([(r.scenario.weight, r.score.score) for r in results]), results


async def test_tuning_the_weak_playbook_over_the_shipped_scenarios() -> None:
    weak = load_playbook(PACKAGED_PLAYBOOKS / "collections-weak.yaml")
    res = await tune(weak, evaluate, train="default", heldout="default-heldout", target=100,
                     max_iterations=5, seed=1)
    print(f"weak: train {res.initial.train_score} -> {res.final.train_score}, "
          f"held out {res.initial.heldout_score} -> {res.final.heldout_score}")
    assert res.final.train_score > res.initial.train_score
    assert res.final.heldout_score >= res.initial.heldout_score + 20
    assert all(check_playbook(c.playbook) == [] for c in res.pool)


async def test_tuning_the_default_never_lowers_the_heldout_score() -> None:
    res = await tune(load_playbook(), evaluate, train="default", heldout="default-heldout",
                     target=100, max_iterations=3, seed=1)
    assert res.final.heldout_score >= res.initial.heldout_score


def seeded_evaluate(seed: int, repeat: int) -> Callable[[Playbook, str], Awaitable[tuple[float, list[ScenarioResult]]]]:
    """`evaluate` with each call seeded as an evaluation run seeds it (evaluation.runs.call_seed)."""
    async def evaluate_seeded(playbook: Playbook, scenario_set: str) -> tuple[float, list[ScenarioResult]]:
        results = []
        for scenario in library_data.load_scenario_set(scenario_set):
            personality = PERSONALITIES[scenario.personality]
            for r in range(repeat):
                call = await text_call.run_text_simulation(playbook, scenario, personality,
                                                           seed=call_seed(seed, scenario.name, r))
                score = await evaluate_call(call, scenario, playbook, judge=RubricJudge(), personality=personality)
                results.append(ScenarioResult(scenario, call, score, personality))
        return weighted_score([(r.scenario.weight, r.score.score) for r in results]), results
    return evaluate_seeded


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
async def test_the_weak_playbook_gains_twenty_points_held_out_whatever_the_seed(seed: int) -> None:
    # three calls per scenario, seeded as a run with this seed seeds them: a debtor who did
    # not follow a question hears it again the clear way, so the held-out gain no longer
    # hangs on how the interrupter and the staller happen to answer
    weak = load_playbook(PACKAGED_PLAYBOOKS / "collections-weak.yaml")
    res = await tune(weak, seeded_evaluate(seed, 3), train="default", heldout="default-heldout",
                     target=100, max_iterations=5, seed=seed)
    print(f"seed {seed}: held out {res.initial.heldout_score} -> {res.final.heldout_score}")
    assert res.final.heldout_score >= res.initial.heldout_score + 20
    assert res.final.train_score > res.initial.train_score
    assert res.iterations[0].accepted  # no iteration lost to a misread failure
    assert all(check_playbook(c.playbook) == [] for c in res.pool)
