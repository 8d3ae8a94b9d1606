"""The evaluator on real calls: every packaged persona plays the default playbook on the
engine (text mode) and every call is compliant and scored; a playbook with the debt planted
in its greeting, played by the scripted policy and by the LLM policy, scores 0 with the
violation named at turn 0. Then the rubric judge, hostility, and the set-level scores."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai.llm_openai import OpenAIPolicy
from ai.playbook import MINI_MIRANDA, Playbook, load_playbook
from emulators.openai_api import Reply, running_openai
from evaluation.compliance import RIGHT_PARTY_VERIFIED_FIRST, check_call
from evaluation.judges import RubricJudge, promise_of
from evaluation.models import (
    Affordability,
    Personality,
    RecordedAction,
    Scenario,
    SimulatedCall,
    SimulatedTurn,
)
from evaluation.personas import Rule, list_personas, load_persona
from evaluation.scoring import evaluate_call, hostility, pass_k, weighted_score
from tests import evaluator_calls
from tests.evaluator_calls import CLOCK, simulate

JUDGE = RubricJudge()


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


def planted(playbook: Playbook) -> Playbook:
    """The default playbook with the debt named in its greeting. The loader refuses such a
    playbook, so the line is put in after loading, as a bad LLM prompt or a hand edit
    reaching the engine would."""
    bad = playbook.model_copy(deep=True)
    bad.states["greeting"].say = [
        "Hello, this is {agent_name} calling from {caller_brand} about your {creditor} "
        "balance of {balance}."]
    return bad


@pytest.mark.parametrize("name", list_personas())
async def test_default_playbook_calls_are_compliant_and_pass(
    playbook: Playbook, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, scenario = await simulate(playbook, name, monkeypatch)
    assert check_call(call, scenario, playbook) == [], call.turns
    score = await evaluate_call(call, scenario, playbook, judge=JUDGE)
    assert score.compliance_passed and score.passed, score
    assert score.task_completion == 100  # each persona lands on its expected outcome
    assert score.score == pytest.approx(0.7 * score.task_completion + 0.3 * score.efficiency, abs=0.01)
    assert score.judge == "rubric" and score.samples == [score.score] and score.spread == 0
    assert {c.name for c in score.criteria} == {"task_completion", "efficiency"}
    assert all(c.evidence and c.analysis for c in score.criteria)


async def test_planted_debt_in_the_greeting_scores_zero(
    playbook: Playbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, scenario = await simulate(planted(playbook), "cooperative", monkeypatch)
    assert "Northwind Bank balance of 1,250 dollars" in call.turns[0].text
    score = await evaluate_call(call, scenario, playbook, judge=JUDGE)
    assert score.score == 0 and not score.passed and not score.compliance_passed
    first = score.violations[0]
    assert (first.rule, first.turn) == (RIGHT_PARTY_VERIFIED_FIRST.name, 0)
    assert first.evidence == ("Hello, this is Alex calling from Acme Services about your "
                              "Northwind Bank balance of 1,250 dollars.")
    assert score.task_completion == 100  # it still got the promise: compliance alone sinks it


async def test_planted_debt_on_the_llm_path_is_caught(
    playbook: Playbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The LLM policy (real SDK, emulated server) names the debt before verifying."""

    def agent(messages: list[dict[str, Any]]) -> Reply:
        users = sum(1 for m in messages if m["role"] == "user")
        if users == 0:
            return Reply("Hi, this is Alex from Acme Services about the Northwind Bank debt. "
                         "May I please speak with John Smith?")
        if users == 1:
            return Reply("Thank you. For your security, could you please tell me your year of birth?")
        return Reply(f"Thanks. {MINI_MIRANDA} Goodbye.")

    async with running_openai(reply=agent) as emu:
        llm = OpenAIPolicy(api_key="test-openai-key", base_url=emu.base_url, max_retries=0,
                           system_prompt="You are Alex from Acme Services.",
                           today=dt.date.fromisoformat(CLOCK["today"]))
        try:
            call, scenario = await simulate(playbook, "cooperative", monkeypatch, policy=llm)
        finally:
            await llm.client.close()
    score = await evaluate_call(call, scenario, playbook, judge=JUDGE)
    assert score.score == 0 and not score.passed
    assert (score.violations[0].rule, score.violations[0].turn) == (RIGHT_PARTY_VERIFIED_FIRST.name, 0)
    assert "Northwind Bank debt" in score.violations[0].evidence


# ---- task completion against what the debtor can afford ----------------------------------


def _personality(**can: Any) -> Personality:
    return Personality(name="hardship", can_afford=Affordability(**can), resistance=["hardship"])


async def test_a_promise_within_means_counts(playbook: Playbook, monkeypatch: pytest.MonkeyPatch) -> None:
    call, scenario = await simulate(playbook, "hardship", monkeypatch)
    promise = promise_of(call)
    assert promise is not None and promise.amount == 800 and promise.plan == "instalment"
    score = await evaluate_call(call, scenario, playbook, judge=JUDGE,
                                personality=_personality(amount=800, earliest_days=7))
    assert score.task_completion == 100 and score.passed


@pytest.mark.parametrize(("can", "why"), [
    ({"amount": 300}, "can afford at most 300.00 USD"),
    ({"amount": 900, "instalments_ok": False}, "instalments"),
    ({"amount": 900, "earliest_days": 30}, "before they can"),
])
async def test_a_promise_beyond_means_is_not_a_success(
    playbook: Playbook, monkeypatch: pytest.MonkeyPatch, can: dict[str, Any], why: str
) -> None:
    call, scenario = await simulate(playbook, "hardship", monkeypatch)
    score = await evaluate_call(call, scenario, playbook, judge=JUDGE, personality=_personality(**can))
    assert score.compliance_passed and not score.passed
    assert score.task_completion <= 20 and "not a success" in score.task_analysis and why in score.task_analysis


async def test_acceptable_and_wrong_outcomes_score_lower(
    playbook: Playbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    call, scenario = await simulate(playbook, "callback", monkeypatch)
    second = scenario.model_copy(update={"expected_outcomes": ["promise_to_pay", "callback"]})
    wrong = scenario.model_copy(update={"expected_outcomes": ["promise_to_pay"]})
    best = (await JUDGE.judge(call, scenario, playbook)).task_completion.score
    ok = (await JUDGE.judge(call, second, playbook)).task_completion.score
    bad = await JUDGE.judge(call, wrong, playbook)
    assert best == 100 > ok >= 60 > 20 >= bad.task_completion.score
    assert "not an outcome this scenario should reach" in bad.task_completion.analysis
    assert "Can you call me back tomorrow at 5 pm?" in bad.task_completion.evidence[0]


# ---- efficiency --------------------------------------------------------------------------


def _hand_call(turns: list[tuple[str, str]], **kw: Any) -> SimulatedCall:
    return SimulatedCall(
        call_id="c", mode="text", scenario="s", outcome=kw.pop("outcome", "promise_to_pay"),
        turns=[SimulatedTurn(speaker=s, text=t) for s, t in turns],  # type: ignore[arg-type]
        started_at=dt.datetime(2026, 11, 23, 17, tzinfo=dt.UTC), **kw)


async def test_reprompts_repeats_and_misunderstandings_cost_efficiency(
    playbook: Playbook, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean, scenario = await simulate(playbook, "cooperative", monkeypatch)
    ask = "Are you able to pay the full balance of 1,250 dollars?"
    messy = clean.model_copy(update={"turns": [
        *clean.turns[:5], SimulatedTurn(speaker="caller", text="Mm, the, uh."),
        SimulatedTurn(speaker="agent", text="Sorry, I didn't catch that."),
        SimulatedTurn(speaker="agent", text=f"Are you still there? {ask}"),
        SimulatedTurn(speaker="caller", text="What?"), SimulatedTurn(speaker="agent", text=ask),
        *clean.turns[5:]], "seconds": clean.seconds + 60})
    good = (await JUDGE.judge(clean, scenario, playbook)).efficiency
    worse = (await JUDGE.judge(messy, scenario, playbook)).efficiency
    assert worse.score < good.score - 20
    assert "1 reprompts, 1 repeated sentences, 1 not-understood lines" in worse.analysis
    assert ask in worse.evidence and "Sorry, I didn't catch that." in worse.evidence


# ---- hostility ---------------------------------------------------------------------------


async def test_hostility_of_real_calls(playbook: Playbook, monkeypatch: pytest.MonkeyPatch) -> None:
    hostile, _ = await simulate(playbook, "hostile", monkeypatch)
    calm, _ = await simulate(playbook, "cooperative", monkeypatch)
    h = hostility(hostile)
    assert h.score >= 6 and {"profanity", "anger words", "stop requests"} <= set(h.signals)
    assert hostility(calm).score == 0


def test_hostility_signals_add_up_to_at_most_10() -> None:
    rant = _hand_call([
        ("agent", "Hello?"), ("caller", "NO. I SAID NO!!"), ("agent", "I understand."),
        ("caller", "No way, you damn scammers, stop calling me."), ("agent", "Okay."),
        ("caller", "No. Shut up, this is bullshit."),
    ], outcome="hung_up", debtor_hung_up=True, barge_ins=3)
    h = hostility(rant)
    assert h.score == 10
    assert h.signals["hang-up"] == 1 and h.signals["shouting"] == 1
    assert h.signals["repeated refusals"] == 2 and h.signals["interruptions"] == 3
    polite_hang_up = _hand_call([("agent", "Goodbye."), ("caller", "Bye.")], debtor_hung_up=True,
                                actions=[RecordedAction(kind="end_call", turn=0)])
    assert hostility(polite_hang_up).score == 0  # hanging up after the agent's goodbye is not anger
    machine = _hand_call([("agent", "Hello, —"), ("caller", "You've reached Emily. Leave a message.")],
                         outcome="voicemail", barge_ins=1)
    assert hostility(machine).score == 0


@given(st.lists(st.text(max_size=60), max_size=12), st.integers(0, 20), st.booleans())
def test_hostility_is_between_0_and_10(lines: list[str], barge_ins: int, hung_up: bool) -> None:
    turns = [("caller" if i % 2 else "agent", text) for i, text in enumerate(lines)]
    assert 0 <= hostility(_hand_call(turns, barge_ins=barge_ins, debtor_hung_up=hung_up)).score <= 10


# ---- set-level scores --------------------------------------------------------------------


def test_weighted_score_examples_and_bad_input() -> None:
    assert weighted_score([(1, 100.0), (3, 0.0)]) == 25.0
    assert weighted_score([]) == 0.0
    for bad in ([(0, 50.0)], [(6, 50.0)], [(2, 101.0)], [(2, -1.0)]):
        with pytest.raises(ValueError):
            weighted_score(bad)


@given(st.lists(st.tuples(st.integers(1, 5), st.floats(0, 100)), min_size=1, max_size=20))
def test_weighted_score_lies_between_the_scores(results: list[tuple[int, float]]) -> None:
    ws = weighted_score(results)
    scores = [s for _, s in results]
    assert min(scores) - 0.01 <= ws <= max(scores) + 0.01
    assert weighted_score(results * 3) == pytest.approx(ws, abs=0.01)  # repeating the set changes nothing


def test_pass_k_examples() -> None:
    assert pass_k({"a": [True, True, True], "b": [True, False, True], "c": [True], "d": []}) == 0.5
    assert pass_k({}) == 0.0


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.lists(st.booleans(), min_size=1, max_size=5),
                       max_size=10))
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_pass_k_properties(groups: dict[str, list[bool]]) -> None:
    share = pass_k(groups)
    assert 0 <= share <= 1
    assert (share == 1) == (bool(groups) and all(all(r) for r in groups.values()))
    # one more failed repeat anywhere never raises pass^k
    for name in groups:
        assert pass_k({**groups, name: [*groups[name], False]}) <= share


# ---- property: whatever the debtor says, the default playbook stays compliant ------------

SAYINGS = [
    "Yes, this is John.", "No.", "1984.", "1990.", "Stop calling me.", "I have a lawyer.",
    "Wrong number.", "He's not here.", "I already paid.", "That's not my debt.",
    "I lost my job, I can't afford that.", "Call me back tomorrow at 5 pm.", "Yes.",
    "Next Friday.", "I can pay 200 dollars on December 1.", "Who is this?",
    "What is this about?", "Can I speak to a real person?", "Sorry, say that again?",
    "Uh huh.", "You idiot.", "Maybe.", "Okay, fine.",
]


def _random_call(playbook: Playbook, replies: list[str]) -> tuple[SimulatedCall, Scenario]:
    base = load_persona("cooperative")
    persona = base.model_copy(update={
        "name": "random", "default_reply": None,
        "rules": [Rule(match="", reply=r, max_uses=1) for r in replies]})
    loop = asyncio.new_event_loop()  # a loop of its own: hypothesis runs this test synchronously
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(evaluator_calls, "load_persona", lambda _name: persona)
            return loop.run_until_complete(simulate(playbook, "random", mp))
    finally:
        loop.close()


@given(st.booleans(),
       st.lists(st.sampled_from(SAYINGS) | st.text(alphabet="abcdefghij 0123456789", max_size=20),
                min_size=1, max_size=12))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_call_of_the_default_playbook_is_compliant(verified: bool, replies: list[str]) -> None:
    playbook = load_playbook()
    opening = ["Yes, this is John.", "1984."] if verified else []  # most calls get past the check
    call, scenario = _random_call(playbook, [*opening, *replies])
    assert check_call(call, scenario, playbook) == [], [(t.speaker, t.text) for t in call.turns]
