"""The offline tuning loop on the text driver with the packaged personas, each call scored by
the evaluator (tests/tuning_personas.py): the shipped weak playbook scores worse than the
default, and tuning raises its held-out score by at least
20 points within 5 iterations with every accepted version compliant; weak playbooks
written by hand (reordered, curt, badly worded) improve too; from the default the held-out score never
drops; every iteration is recorded with the writer's and the critique's texts."""

from __future__ import annotations

import pytest

from ai.playbook import PACKAGED_PLAYBOOKS, Playbook, load_playbook
from tests.tuning_personas import evaluate
from tests.tuning_variants import badly_worded, curt, reordered
from tuning.critique import check_playbook
from tuning.loop import Iteration, TuningResult, tune


@pytest.fixture(scope="module")
def weak() -> Playbook:
    return load_playbook(PACKAGED_PLAYBOOKS / "collections-weak.yaml")


@pytest.fixture(scope="module")
def default() -> Playbook:
    return load_playbook()


async def _tune(pb: Playbook, target: float = 95, seed: int = 1) -> tuple[TuningResult, list[Iteration]]:
    seen: list[Iteration] = []
    res = await tune(pb, evaluate, train="train", heldout="heldout", target=target,
                     max_iterations=5, seed=seed, on_iteration=seen.append)
    return res, seen


async def test_the_weak_playbook_scores_worse_than_the_default(weak: Playbook, default: Playbook) -> None:
    for scenario_set in ("train", "heldout"):
        weak_score, weak_results = await evaluate(weak, scenario_set)
        default_score, _ = await evaluate(default, scenario_set)
        assert weak_score + 5 < default_score, scenario_set
    outcomes = {r.scenario.name: r.call.outcome for r in weak_results}
    assert outcomes["cooperative-two"] != "promise_to_pay"


async def test_tuning_the_weak_playbook_raises_the_heldout_score(weak: Playbook) -> None:
    res, seen = await _tune(weak)
    assert res.final.heldout_score >= res.initial.heldout_score + 20
    assert len(res.iterations) <= 5 and seen == res.iterations
    accepted = [it for it in res.iterations if it.accepted]
    assert accepted and res.final.playbook.ref == accepted[-1].prompt_version
    for it in res.iterations:
        assert it.exchange.startswith("writer:") and "critique: approved" in it.exchange
        assert it.analysis and it.reason
    assert check_playbook(res.final.playbook) == []
    assert all(check_playbook(c.playbook) == [] for c in res.pool)
    assert res.final.playbook.ref.startswith("collections-weak@1+t")
    # the tuned playbook negotiates as the law and the debtors need
    pb = res.final.playbook
    assert pb.states["disclosure"].next == "offer_full"
    assert pb.routes.post_verification["hardship"] in ("hardship", "offer_instalments")


async def test_the_same_seed_gives_the_same_run(weak: Playbook) -> None:
    a, _ = await _tune(weak, seed=4)
    b, _ = await _tune(weak, seed=4)
    assert [(i.prompt_version, i.train_score, i.heldout_score, i.accepted) for i in a.iterations] == [
        (i.prompt_version, i.train_score, i.heldout_score, i.accepted) for i in b.iterations]
    assert a.final.playbook == b.final.playbook


@pytest.mark.parametrize("make", [reordered, curt, badly_worded], ids=["reordered", "curt", "badly_worded"])
async def test_a_weak_playbook_written_by_someone_else_improves(make: object) -> None:
    pb = make()  # type: ignore[operator]
    res, _ = await _tune(pb)
    assert res.final.heldout_score >= res.initial.heldout_score + 20
    assert check_playbook(res.final.playbook) == []


async def test_from_the_default_the_heldout_score_never_drops(default: Playbook) -> None:
    res, _ = await _tune(default, target=100)  # unreachable: it keeps trying
    assert res.final.heldout_score >= res.initial.heldout_score
    for it in res.iterations:
        if it.accepted:
            assert it.heldout_score >= res.initial.heldout_score
    assert res.status in ("max_iterations", "exhausted")


async def test_a_non_compliant_candidate_is_never_accepted_whatever_it_would_score(default: Playbook) -> None:
    """A writer that only offers edits breaking a rule, and an evaluation that would score
    them best: nothing is accepted, and the critique's reasons are recorded."""
    from tuning.analysis import FailureAnalysis
    from tuning.edits import Edit, SetRoute, SetTransition
    from tuning.writer import OfflineWriter, Proposal

    bad: list[Edit] = [SetTransition(state="greeting", on="yes", target="disclosure"),
           SetRoute(phase="post_verification", intent="stop", target="refused"),
           SetRoute(phase="pre_verification", intent="who", target="who_post"),
           SetTransition(state="verify", on="verified", target="offer_full")]

    class Reckless(OfflineWriter):
        async def propose(self, playbook: Playbook, analysis: FailureAnalysis,
                          feedback: list[str] | None = None, template: str | None = None) -> Proposal | None:
            return Proposal((bad[len(feedback or []) % len(bad)],), "test", "score at any price")

    evaluated: list[str] = []

    async def flattering(pb: Playbook, scenario_set: str) -> tuple[float, list]:  # type: ignore[type-arg]
        evaluated.append(pb.ref)
        score, results = await evaluate(pb, scenario_set)
        return (100.0 if pb is not default else score), results

    res = await tune(default, flattering, train="train", heldout="heldout", target=100,
                     max_iterations=2, writer=Reckless(0))
    assert res.final.playbook is default and not any(it.accepted for it in res.iterations)
    assert evaluated == [default.ref, default.ref]  # no rejected candidate was even evaluated
    text = res.iterations[0].exchange
    for rule in ("verification_before_debt", "opt_out", "disclosure"):
        assert f"[{rule}]" in text
    assert text.count("writer:") == 4  # one proposal and three revisions


async def test_iterations_name_their_parent(weak: Playbook) -> None:
    res, _ = await _tune(weak)
    parents = [it.parent for it in res.iterations]
    assert parents[0] == "collections-weak@1"
    accepted = [it.prompt_version for it in res.iterations if it.accepted]
    assert all(p in ["collections-weak@1", *accepted] for p in parents)
