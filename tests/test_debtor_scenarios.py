"""The scripted debtor against the real engine in text mode: every shipped scenario reaches
one of its expected outcomes under the default playbook, and under a reworded and a
reordered one (test fixtures: same states, paraphrased sentences / offers in another
order), so tuning cannot win by confusing the simulator; hard debtors stay hard; one seed
gives one transcript."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ai.playbook import load_playbook
from evaluation.debtor import make_debtor
from evaluation.debtor_scripted import ScriptedDebtor
from evaluation.library_data import (
    SCENARIO_SETS,
    LibraryDataError,
    load_personalities,
    load_scenario_set,
)
from evaluation.models import Scenario
from evaluation.text_call import run_text_simulation

PLAYBOOKS = Path(__file__).parent / "playbooks"
DEFAULT = load_playbook()
REWORDED = load_playbook(PLAYBOOKS / "collections-reworded.yaml")
REORDERED = load_playbook(PLAYBOOKS / "collections-reordered.yaml")
PERSONALITIES = load_personalities()
ALL = [s for name in SCENARIO_SETS for s in load_scenario_set(name)]


def test_shipped_sets_have_the_kinds_the_issue_names() -> None:
    default = load_scenario_set("default")
    heldout = load_scenario_set("default-heldout")
    assert len(default) >= 8 and len(heldout) >= 6
    kinds = {s.personality for s in default}
    assert {"cooperative", "hardship", "hostile", "wrong-person", "disputer", "already-paid",
            "callback", "opt-out"} <= kinds
    people = {s.backstory.debtor_name for s in default}
    assert not people & {s.backstory.debtor_name for s in heldout}
    assert not {s.name for s in default} & {s.name for s in heldout}
    for s in default + heldout:
        assert 1 <= s.weight <= 5 and s.personality in PERSONALITIES
        assert s.backstory.phone.startswith("+1202555") and 100 <= int(s.backstory.phone[-4:]) <= 199
    with pytest.raises(LibraryDataError, match="unknown 'nope'"):
        load_scenario_set("nope")


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
async def test_scenario_reaches_an_expected_outcome_under_every_wording(scenario: Scenario) -> None:
    outcomes = {}
    for label, playbook in (("default", DEFAULT), ("reworded", REWORDED), ("reordered", REORDERED)):
        call = await run_text_simulation(playbook, scenario, PERSONALITIES[scenario.personality], seed=7)
        transcript = [(t.speaker, t.text) for t in call.turns]
        assert call.outcome in scenario.expected_outcomes, (label, transcript)
        assert call.mode == "text" and call.scenario == scenario.name
        outcomes[label] = call.outcome
    assert len(set(outcomes.values())) == 1, outcomes


@pytest.mark.parametrize("name", ["hostile", "hardship", "grudging-payer"])
async def test_hard_debtors_do_not_pay_in_full(name: str) -> None:
    scenario = next(s for s in ALL if s.name == name)
    for seed in range(6):
        for playbook in (DEFAULT, REWORDED, REORDERED):
            call = await run_text_simulation(playbook, scenario, PERSONALITIES[scenario.personality], seed=seed)
            assert call.outcome_fields.get("ptp_plan") != "full", [t.text for t in call.turns]
            amount = call.outcome_fields.get("ptp_amount")
            limit = PERSONALITIES[scenario.personality].can_afford.limit(scenario.backstory.balance)
            assert amount is None or amount <= limit + 0.01


async def test_hardship_debtor_pays_only_what_they_can_and_not_before_they_can() -> None:
    scenario = next(s for s in ALL if s.name == "hardship")
    call = await run_text_simulation(DEFAULT, scenario, PERSONALITIES["hardship"], seed=3)
    assert call.outcome == "promise_to_pay"
    assert call.outcome_fields["ptp_amount"] == 150.0
    earliest = PERSONALITIES["hardship"].can_afford.earliest_days
    assert dt.date.fromisoformat(call.outcome_fields["ptp_date"]) >= call.started_at.date() + dt.timedelta(days=earliest)
    assert any(a.kind == "hardship" for a in call.actions)


async def test_the_same_seed_gives_the_same_transcript() -> None:
    runs = {}
    for seed in (1, 1, 2, 3, 4):
        scenario = next(s for s in ALL if s.name == "cooperative")
        call = await run_text_simulation(DEFAULT, scenario, PERSONALITIES["cooperative"], seed=seed)
        transcript = [(t.speaker, t.text, t.start_ms) for t in call.turns]
        runs.setdefault(seed, []).append(transcript)
    assert runs[1][0] == runs[1][1]
    assert len({str(v[0]) for v in runs.values()}) > 1  # other seeds phrase things otherwise


async def test_actions_carry_their_turn_and_the_call_its_start() -> None:
    scenario = next(s for s in ALL if s.name == "cooperative")
    started = dt.datetime(2026, 12, 1, 14, 30, tzinfo=dt.UTC)
    call = await run_text_simulation(DEFAULT, scenario, PERSONALITIES["cooperative"], seed=1,
                                     started_at=started)
    assert call.started_at == started
    verified = next(a for a in call.actions if a.kind == "right_party_verified")
    # after the greeting, the answer, the birth-year question and the answer
    assert verified.turn == 4 and call.turns[verified.turn - 1].text.strip(".").endswith("1984")
    ptp = next(a for a in call.actions if a.kind == "promise_to_pay")
    assert ptp.turn > verified.turn and ptp.data["date"] >= "2026-12-04"
    assert call.actions[-1].turn <= len(call.turns)


def test_make_debtor_refuses_a_personality_the_scenario_does_not_name() -> None:
    scenario = next(s for s in ALL if s.name == "cooperative")
    with pytest.raises(ValueError, match="personality: scenario 'cooperative' is played by"):
        make_debtor(scenario, PERSONALITIES["hostile"], seed=1)


def _debtor(name: str, seed: int = 1) -> ScriptedDebtor:
    scenario = next(s for s in ALL if s.name == name)
    return ScriptedDebtor(PERSONALITIES[scenario.personality], scenario.backstory, seed=seed,
                          today=dt.date(2026, 11, 20))


def test_scripted_debtor_reveals_facts_only_when_asked_and_checks_restatements() -> None:
    d = _debtor("cooperative")
    hello = d.answer("Hi, this is Sam from Acme Services. Am I talking to John Smith?")
    assert hello is not None and "1984" not in hello
    assert d.answer("What year were you born?") is not None and "1984" in (d.last_reply or "")
    assert d.answer("Could you pay the full 1,250 dollars in one go?") is not None and d.agreed == 1250.0
    date = d.answer("What date works for you?")
    assert date is not None and d.agreed_date is not None and d.agreed_date >= dt.date(2026, 11, 23)
    wrong = d.answer(f"So that's 1,000 dollars on {d.agreed_date:%B} {d.agreed_date.day}, right?")
    assert wrong is not None and wrong.startswith("No")
    right = d.answer(f"So that's 1,250 dollars on {d.agreed_date:%B} {d.agreed_date.day}, right?")
    assert right is not None and right.startswith("Yes")
    assert d.answer("Thanks, have a great day, bye.") is None and d.hung_up


def test_a_third_party_says_nothing_about_the_debtors_affairs() -> None:
    d = _debtor("relative-answers")
    said = [d.answer(t) for t in ("May I speak with Daniel Ortiz?", "What year was he born?",
                                  "It's about his Granite Auto Finance loan of 5,400 dollars.")]
    assert all(s is not None for s in said)
    assert not any("1993" in s or "5,400" in s for s in said if s)


def test_patience_runs_out_on_a_pushy_agent() -> None:
    d = _debtor("hostile")
    d.answer("Is this Dave Miller?")
    d.answer("What year were you born?")
    lines = [d.answer("You owe 890 dollars. Can you pay the full 890 dollars today?") for _ in range(4)]
    assert d.hung_up and d.anger > PERSONALITIES["hostile"].patience
    assert any(line and "call" in line.lower() for line in lines)  # asked to stop calling


@pytest.mark.parametrize("scenario", ALL, ids=lambda s: s.name)
async def test_the_default_playbook_stays_compliant_with_every_shipped_debtor(scenario: Scenario) -> None:
    from evaluation.judges import RubricJudge
    from evaluation.scoring import evaluate_call

    call = await run_text_simulation(DEFAULT, scenario, PERSONALITIES[scenario.personality], seed=2)
    score = await evaluate_call(call, scenario, DEFAULT, judge=RubricJudge(),
                                personality=PERSONALITIES[scenario.personality])
    assert score.compliance_passed, score.violations
