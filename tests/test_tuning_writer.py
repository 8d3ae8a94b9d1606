"""The offline writer picks the edit a failure analysis calls for: a hardship debtor sent
to a refusal gets the hardship route and empathy, a debtor able to pay who was not offered
the full balance first gets the offers reordered, an agent that gave up at the first answer
it did not follow gets more reprompts, barge-ins get longer speech thresholds; a seed gives
the same proposals, and a proposal sent back is followed by a different one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ai.playbook import PACKAGED_PLAYBOOKS, Playbook, load_playbook
from evaluation.models import (
    Backstory,
    CallScore,
    CriterionScore,
    RecordedAction,
    Scenario,
    SimulatedCall,
    SimulatedTurn,
)
from tuning.analysis import ScenarioResult, analyse
from tuning.edits import SetOfferOrder, SetRoute, SetThreshold, UseWording, apply_edits
from tuning.writer import OfflineWriter


@pytest.fixture(scope="module")
def weak() -> Playbook:
    return load_playbook(PACKAGED_PLAYBOOKS / "collections-weak.yaml")


def result(name: str, expected: str, outcome: str, turns: list[tuple[str, str]], *,
           stages: list[str], weight: int = 3, score: float = 20, barge_ins: int = 0,
           fields: dict[str, Any] | None = None, criteria: list[CriterionScore] | None = None,
           ) -> ScenarioResult:
    scenario = Scenario(name=name, personality=name, weight=weight, expected_outcomes=[expected],  # type: ignore[list-item]
                        backstory=Backstory(debtor_name="Sample Debtor", birth_year=1980,
                                            creditor="Sample Bank", balance=900.0))
    call = SimulatedCall(
        call_id=f"call-{name}", mode="text", scenario=name, outcome=outcome,
        outcome_fields=fields or {}, turns=[SimulatedTurn(speaker=s, text=t) for s, t in turns],  # type: ignore[arg-type]
        actions=[RecordedAction(kind="right_party_verified", turn=4)], stages=stages,
        barge_ins=barge_ins, started_at=dt.datetime(2026, 11, 21, 14, tzinfo=dt.UTC),
    )
    cs = CallScore(task_completion=0, task_analysis="", efficiency=50, efficiency_analysis="",
                   compliance_passed=True, hostility=2, judge="rubric", score=score,
                   passed=score >= 70, criteria=criteria or [])
    return ScenarioResult(scenario, call, cs)


VERIFIED = [("agent", "Is this Sample Debtor?"), ("caller", "Yes."), ("agent", "Year of birth?"),
            ("caller", "1980.")]


def hardship_refused() -> ScenarioResult:
    return result("hardship", "promise_to_pay", "refused",
                  [*VERIFIED, ("agent", "Are you able to pay the full balance of 900 dollars?"),
                   ("caller", "I lost my job last month. I can't afford all of that."),
                   ("agent", "Then we'll write to you. Goodbye.")],
                  stages=["greeting", "verify", "offer_full", "refused"])


def cooperative_not_offered_full() -> ScenarioResult:
    return result("cooperative", "promise_to_pay", "refused",
                  [*VERIFIED, ("agent", "How much will you pay today?"), ("caller", "Next Friday."),
                   ("agent", "Then we'll write to you. Goodbye.")],
                  stages=["greeting", "verify", "ask_amount", "refused"])


def test_hardship_ended_refused_routes_hardship_to_instalments_with_empathy(weak: Playbook) -> None:
    pb = apply_edits(weak, [SetOfferOrder(steps=["offer_full", "ask_amount", "offer_instalments"])])
    analysis = analyse([hardship_refused()], pb)
    assert analysis.kinds()[0] == "hardship_refused"
    proposal = OfflineWriter(seed=1).choose(pb, analysis)
    assert proposal is not None and proposal.symptom == "hardship_refused"
    assert proposal.edits[0] == SetRoute(phase="post_verification", intent="hardship", target="hardship")
    assert UseWording(state="offer_instalments", block="empathy_understand") in proposal.edits
    assert "I lost my job" in proposal.text
    tuned = apply_edits(pb, list(proposal.edits))
    assert tuned.states["hardship"].next == "offer_instalments"


def test_cooperative_not_offered_the_full_balance_first_reorders_offers(weak: Playbook) -> None:
    analysis = analyse([cooperative_not_offered_full()], weak)
    assert "full_not_offered_first" in analysis.kinds()
    proposal = OfflineWriter(seed=1).choose(weak, analysis)
    assert proposal is not None and proposal.symptom == "full_not_offered_first"
    order = proposal.edits[0]
    assert isinstance(order, SetOfferOrder) and order.steps[0] == "offer_full"
    # the steps the new order brings into the call ask the vetted questions
    assert UseWording(state="offer_full", block="clear_offer_full") in proposal.edits
    assert UseWording(state="ask_date", block="clear_ask_date") in proposal.edits


def test_giving_up_at_the_first_answer_not_understood_allows_reprompts(weak: Playbook) -> None:
    pb = apply_edits(weak, [SetOfferOrder(steps=["offer_full", "ask_amount", "offer_instalments"])])
    gave_up = result("callback", "callback", "refused",
                     [*VERIFIED, ("agent", "Are you able to pay the full balance of 900 dollars?"),
                      ("caller", "Hmm, let me look at my calendar."), ("agent", "Then we'll write to you.")],
                     stages=["greeting", "verify", "offer_full", "refused"], weight=2)
    analysis = analyse([gave_up], pb)
    assert analysis.kinds() == ["gave_up_early"]
    proposal = OfflineWriter(seed=3).choose(pb, analysis)
    assert proposal is not None and proposal.edits == (SetThreshold(name="max_reprompts", value=2),)


def test_barge_ins_lengthen_the_speech_thresholds(weak: Playbook) -> None:
    cut = result("interrupter", "promise_to_pay", "promise_to_pay",
                 [*VERIFIED, ("agent", "Are you able to pay the full balance of 900 dollars?"),
                  ("caller", "Yes.")], stages=["greeting", "verify", "offer_full", "ptp_done"],
                 barge_ins=3, score=65, fields={"ptp_plan": "full"})
    analysis = analyse([cut], weak)
    assert analysis.kinds() == ["cut_off"]
    proposal = OfflineWriter().choose(weak, analysis)
    assert proposal is not None
    assert proposal.edits == (SetThreshold(name="barge_in_min_speech_ms", value=700),
                              SetThreshold(name="endpointing_ms", value=700))


def test_a_poor_manner_adds_empathy(weak: Playbook) -> None:
    curt = result("hostile", "opt_out", "opt_out", [*VERIFIED], stages=["greeting", "verify"], score=60,
                  criteria=[CriterionScore(name="empathy", score=20, analysis="no acknowledgement",
                                           evidence=["Then we'll write to you."])])
    analysis = analyse([curt], weak)
    assert analysis.kinds() == ["curt"] and "low empathy 20" in analysis.text()
    proposal = OfflineWriter().choose(weak, analysis)
    assert proposal is not None and all(isinstance(e, UseWording) for e in proposal.edits)


def test_the_heaviest_symptom_goes_first(weak: Playbook) -> None:
    pb = apply_edits(weak, [SetOfferOrder(steps=["offer_full", "ask_amount", "offer_instalments"])])
    light = cooperative_not_offered_full()
    light.scenario.weight = 1
    analysis = analyse([light, hardship_refused()], pb)
    assert analysis.weight_of("hardship_refused") == 3
    proposal = OfflineWriter().choose(pb, analysis)
    assert proposal is not None and proposal.symptom == "hardship_refused"


def test_a_seed_gives_the_same_proposals_and_none_twice(weak: Playbook) -> None:
    analysis = analyse([cooperative_not_offered_full(), hardship_refused()], weak)
    a, b = OfflineWriter(seed=7), OfflineWriter(seed=7)
    seq_a = [a.choose(weak, analysis) for _ in range(5)]
    seq_b = [b.choose(weak, analysis) for _ in range(5)]
    assert [p.key for p in seq_a if p] == [p.key for p in seq_b if p]
    keys = [p.key for p in seq_a if p]
    assert len(keys) == len(set(keys)) >= 3  # a proposal sent back is followed by a different one


def test_a_remedy_that_changes_nothing_is_not_proposed() -> None:
    default = load_playbook()
    analysis = analyse([hardship_refused()], default)
    for p in OfflineWriter().candidates(default, analysis):
        assert apply_edits(default, list(p.edits)) != default


def test_a_refused_call_back_request_routes_it_to_the_call_back_step(weak: Playbook) -> None:
    asked = result("callback", "callback", "refused",
                   [*VERIFIED, ("agent", "How much will you pay today?"),
                    ("caller", "I'm at work right now. Can you call me back tomorrow at 5 pm?"),
                    ("agent", "Then we'll write to you. Goodbye.")],
                   stages=["greeting", "verify", "ask_amount", "refused"], weight=5)
    analysis = analyse([asked], weak)
    assert analysis.kinds()[0] == "callback_ignored"
    proposal = OfflineWriter().choose(weak, analysis)
    assert proposal is not None
    assert proposal.edits == (SetRoute(phase="post_verification", intent="callback", target="callback_ask"),)


def test_a_debtor_who_did_not_follow_a_question_gets_the_vetted_one(weak: Playbook) -> None:
    pb = apply_edits(weak, [SetOfferOrder(steps=["offer_full", "ask_amount", "offer_instalments"])])
    puzzled = result("cooperative", "promise_to_pay", "refused",
                     [*VERIFIED, ("agent", "You owe 900 dollars on your Sample Bank account. Pay 900 dollars. Yes or no?"),
                      ("caller", "Sorry, what do you mean?"), ("agent", "Then we'll write to you. Goodbye.")],
                     stages=["greeting", "verify", "offer_full", "refused"], weight=5)
    analysis = analyse([puzzled], pb)
    assert "unclear_question" in analysis.kinds()
    assert "the debtor said 'Sorry, what do you mean?'" in analysis.of("unclear_question")[0].evidence
    proposal = next(p for p in OfflineWriter().candidates(pb, analysis) if p.symptom == "unclear_question")
    assert proposal.edits[0] == UseWording(state="offer_full", block="clear_offer_full")
    assert UseWording(state="ask_date", block="clear_ask_date") in proposal.edits


@pytest.mark.parametrize("puzzled", ["Sorry, what do you mean?", "I'm not sure what you're asking."])
def test_a_puzzled_answer_that_ended_the_call_is_an_unclear_question_asked_again(
        weak: Playbook, puzzled: str) -> None:
    # the agent hung up on a debtor who did not follow its question: the question was
    # unclear (not the agent's patience at an answer it did not follow), and the remedy
    # asks it the vetted way and lets the debtor hear it again
    pb = apply_edits(weak, [SetOfferOrder(steps=["offer_full", "ask_amount", "offer_instalments"])])
    ended = result("cooperative", "promise_to_pay", "refused",
                   [*VERIFIED, ("agent", "You owe 900 dollars on your Sample Bank account. Pay 900 dollars. Yes or no?"),
                    ("caller", puzzled), ("agent", "Then we'll write to you. Goodbye.")],
                   stages=["greeting", "verify", "offer_full", "refused"], weight=5)
    analysis = analyse([ended], pb)
    assert analysis.kinds() == ["unclear_question"]
    assert analysis.of("unclear_question")[0].evidence.endswith(", call ended refused")
    proposal = OfflineWriter().choose(pb, analysis)
    assert proposal is not None and proposal.symptom == "unclear_question"
    assert proposal.edits[0] == UseWording(state="offer_full", block="clear_offer_full")
    assert proposal.edits[-1] == SetThreshold(name="max_reprompts", value=1)


def test_an_unclear_question_outweighs_the_offer_order_at_equal_weight(weak: Playbook) -> None:
    # a debtor who could not follow the question never got to weigh the offers
    puzzled = result("cooperative", "promise_to_pay", "refused",
                     [*VERIFIED, ("agent", "You owe 900 dollars on your Sample Bank account. How much will you pay today?"),
                      ("caller", "The most I could pay is 900 dollars."), ("agent", "Date?"),
                      ("caller", "Sorry, what do you mean?"), ("agent", "Then we'll write to you. Goodbye.")],
                     stages=["greeting", "verify", "ask_amount", "ask_date", "refused"], weight=5)
    analysis = analyse([puzzled], weak)
    assert analysis.kinds() == ["unclear_question", "full_not_offered_first"]
