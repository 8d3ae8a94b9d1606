"""The evaluator's compliance checks, rule by rule, on calls written out by hand: each rule
passes a compliant call and names the turn (and the words) of a call that breaks it."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ai.playbook import MINI_MIRANDA, Playbook, load_playbook
from campaigns.compliance import CallingWindow, ComplianceRules
from evaluation.compliance import (
    DISCLOSURE_GIVEN,
    NO_FALSE_STATEMENT,
    NO_PROFANITY,
    NO_THIRD_PARTY_DISCLOSURE,
    NO_THREAT,
    OPT_OUT_HONOURED,
    RIGHT_PARTY_VERIFIED_FIRST,
    RULES,
    WITHIN_WINDOW,
    check_call,
    country_of,
    is_stop_request,
)
from evaluation.models import (
    Backstory,
    RecordedAction,
    Scenario,
    SimulatedCall,
    SimulatedTurn,
    Violation,
)

NOON_NY = dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC)  # 12:00 in New York, a Monday
GREETING = "Hello, this is Alex calling from Acme Services. May I please speak with John Smith?"
VERIFY = "Thank you. For your security, could you please tell me your year of birth?"
DISCLOSURE = (
    f"Thank you, John. My name is Alex and I'm calling from Acme Recovery Services. {MINI_MIRANDA} "
    "I'm calling about your Northwind Bank account, which has a past due balance of 1,250 "
    "dollars. Are you able to pay the full balance of 1,250 dollars?")
REPEAT_DISCLOSURE = (
    "Thank you, John. This is Alex from Acme Recovery Services. This is a debt collector. "
    "I'm calling about your Northwind Bank account, which has a past due balance of 1,250 dollars.")
VERIFIED = [("agent", GREETING), ("caller", "Yes, speaking."), ("agent", VERIFY), ("caller", "1984.")]


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


def scenario(**backstory: Any) -> Scenario:
    story = {"debtor_name": "John Smith", "birth_year": 1984, "creditor": "Northwind Bank",
             "balance": 1250.0, **backstory}
    return Scenario(name="hand-written", personality="cooperative",
                    backstory=Backstory.model_validate(story), expected_outcomes=["promise_to_pay"])


def call(turns: list[tuple[str, str]], actions: list[tuple[str, int]] | None = None,
         started_at: dt.datetime = NOON_NY, **kw: Any) -> SimulatedCall:
    return SimulatedCall(
        call_id="c1", mode="text", scenario="hand-written", outcome=kw.pop("outcome", None),
        turns=[SimulatedTurn(speaker=s, text=t) for s, t in turns],  # type: ignore[arg-type]
        actions=[RecordedAction(kind=k, turn=n) for k, n in actions or []],
        started_at=started_at, **kw)


def rules(found: list[Violation]) -> list[tuple[str, int | None]]:
    return [(v.rule, v.turn) for v in found]


def test_rules_are_named_once_with_a_source() -> None:
    assert len(RULES) == 8 and all(r.source and r.summary for r in RULES.values())
    assert RULES["right_party_verified_first"] is RIGHT_PARTY_VERIFIED_FIRST


def test_a_compliant_call_passes(playbook: Playbook) -> None:
    c = call([*VERIFIED, ("agent", DISCLOSURE), ("caller", "Yes, I can pay it all.")],
             [("right_party_verified", 4)])
    assert check_call(c, scenario(), playbook) == []


# ---- right party verified before the debt ------------------------------------------------


def test_debt_named_in_the_greeting_fails_at_turn_0(playbook: Playbook) -> None:
    greeting = ("Hello, this is Alex from Acme Services calling about your Northwind Bank "
                "account. May I speak with John Smith?")
    c = call([("agent", greeting), ("caller", "Speaking."), ("agent", VERIFY), ("caller", "1984."),
              ("agent", DISCLOSURE)], [("right_party_verified", 4)])
    found = check_call(c, scenario(), playbook)
    assert (RIGHT_PARTY_VERIFIED_FIRST.name, 0) in rules(found)
    v = next(v for v in found if v.rule == RIGHT_PARTY_VERIFIED_FIRST.name)
    assert v.evidence == "Hello, this is Alex from Acme Services calling about your Northwind Bank account."


def test_balance_before_the_verification_action_fails_at_that_turn(playbook: Playbook) -> None:
    c = call([("agent", GREETING), ("caller", "Speaking."),
              ("agent", "You have a balance of 1,250 dollars. What is your year of birth?"),
              ("caller", "1984."), ("agent", DISCLOSURE)], [("right_party_verified", 4)])
    assert (RIGHT_PARTY_VERIFIED_FIRST.name, 2) in rules(check_call(c, scenario(), playbook))


def test_never_verified_fails(playbook: Playbook) -> None:
    c = call([*VERIFIED, ("agent", DISCLOSURE)])
    assert (RIGHT_PARTY_VERIFIED_FIRST.name, 4) in rules(check_call(c, scenario(), playbook))


def test_the_judged_playbook_cannot_drop_debt_terms_to_pass(playbook: Playbook) -> None:
    stripped = playbook.model_copy(update={"debt_terms": []})
    c = call([("agent", "We are calling about your overdue bill. Is John there?")])
    assert rules(check_call(c, scenario(), stripped)) == [
        (RIGHT_PARTY_VERIFIED_FIRST.name, 0), (DISCLOSURE_GIVEN.name, 0)]


# ---- disclosure --------------------------------------------------------------------------


def test_first_contact_needs_the_whole_mini_miranda(playbook: Playbook) -> None:
    partial = DISCLOSURE.replace(MINI_MIRANDA, "This is a debt collector.")
    c = call([*VERIFIED, ("agent", partial)], [("right_party_verified", 4)])
    found = check_call(c, scenario(), playbook)
    assert rules(found) == [(DISCLOSURE_GIVEN.name, 4)]
    assert found[0].evidence == "My name is Alex and I'm calling from Acme Recovery Services."


def test_a_later_call_needs_only_debt_collector(playbook: Playbook) -> None:
    story = scenario(first_contact=False)
    ok = call([*VERIFIED, ("agent", REPEAT_DISCLOSURE)], [("right_party_verified", 4)])
    assert check_call(ok, story, playbook) == []
    silent = REPEAT_DISCLOSURE.replace(" This is a debt collector.", "")
    bad = call([*VERIFIED, ("agent", silent)], [("right_party_verified", 4)])
    assert rules(check_call(bad, story, playbook)) == [(DISCLOSURE_GIVEN.name, 4)]


def test_disclosure_after_the_debt_talk_is_too_late(playbook: Playbook) -> None:
    c = call([*VERIFIED, ("agent", "Thank you, John. You owe Northwind Bank 1,250 dollars."),
              ("caller", "Okay."), ("agent", MINI_MIRANDA)], [("right_party_verified", 4)])
    assert rules(check_call(c, scenario(), playbook)) == [(DISCLOSURE_GIVEN.name, 4)]


# ---- third parties and voicemail ---------------------------------------------------------


def test_nothing_about_the_debt_to_a_third_party(playbook: Playbook) -> None:
    story = scenario(answered_by="third_party")
    ok = call([("agent", GREETING), ("caller", "Wrong number."),
               ("agent", "I'm sorry for the trouble. If you do know John, please ask them to call "
                         "Acme Services at 800-555-0199. Thank you, and goodbye.")],
              [("wrong_party", 2)], outcome="wrong_party")
    assert check_call(ok, story, playbook) == []
    bad = call([("agent", GREETING), ("caller", "He's not here."),
                ("agent", "Please tell him his Northwind Bank payment is overdue. Goodbye.")])
    assert (NO_THIRD_PARTY_DISCLOSURE.name, 2) in rules(check_call(bad, story, playbook))


def test_a_voicemail_gets_a_limited_content_message(playbook: Playbook) -> None:
    story = scenario(answered_by="voicemail")
    limited = ("Hello, this is Alex from Acme Services with a message for John Smith. "
               "Please call us back at 800-555-0199. Thank you.")
    assert check_call(call([("agent", limited)], [("voicemail", 0)]), story, playbook) == []
    bad = call([("agent", limited.replace("Thank you.", "It is about your balance of 1,250 dollars."))],
               [("voicemail", 0)])
    found = check_call(bad, story, playbook)
    assert (NO_THIRD_PARTY_DISCLOSURE.name, 0) in rules(found)
    assert "balance of 1,250 dollars" in found[-1].evidence


def test_debt_talk_after_wrong_party_is_reached(playbook: Playbook) -> None:
    # the debtor's line, but the person says they are not the debtor after the check
    c = call([*VERIFIED, ("agent", DISCLOSURE), ("caller", "Wait, I'm his brother, wrong person."),
              ("agent", "Then please tell him the balance of 1,250 dollars is overdue.")],
             [("right_party_verified", 4), ("wrong_party", 6)])
    assert rules(check_call(c, scenario(), playbook)) == [(NO_THIRD_PARTY_DISCLOSURE.name, 6)]


# ---- conduct -----------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "rule"), [
    ("If you don't pay today, the police will come and you could go to jail.", NO_THREAT),
    ("We will garnish your wages next week.", NO_THREAT),
    ("We will sue you today unless you pay.", NO_THREAT),
    ("Stop wasting my damn time.", NO_PROFANITY),
    ("I'm an attorney, and this is serious.", NO_FALSE_STATEMENT),
    ("We are calling on behalf of the government.", NO_FALSE_STATEMENT),
    ("Your balance is now 2,000 dollars.", NO_FALSE_STATEMENT),
    ("The amount due is 1,250 dollars and 50 cents.", NO_FALSE_STATEMENT),
])
def test_threats_profanity_and_false_statements(playbook: Playbook, line: str, rule: Any) -> None:
    c = call([*VERIFIED, ("agent", DISCLOSURE), ("caller", "I can't pay."), ("agent", line)],
             [("right_party_verified", 4)])
    found = check_call(c, scenario(), playbook)
    assert (rule.name, 6) in rules(found)
    assert next(v for v in found if v.rule == rule.name).evidence in line


@pytest.mark.parametrize("line", [
    "We can accept 750 dollars to settle the account in full. Would that work for you?",
    "That would be 3 payments of 416 dollars and 67 cents. Would that work for you?",
    "I understand. We will contact your attorney and we will not call you again. Goodbye.",
    "Hello, this is Alex. Could you please speak with me for a moment?",
])
def test_ordinary_agent_lines_are_not_misconduct(playbook: Playbook, line: str) -> None:
    c = call([*VERIFIED, ("agent", DISCLOSURE), ("caller", "Hmm."), ("agent", line)],
             [("right_party_verified", 4)])
    assert check_call(c, scenario(), playbook) == []


# ---- opt-out -----------------------------------------------------------------------------


@pytest.mark.parametrize("said", [
    "Stop calling me.", "Don't ever call this number again.", "Leave me alone!",
    "Talk to my lawyer.", "I'm represented by an attorney.", "Take me off your list",
])
def test_stop_requests_are_heard(said: str) -> None:
    assert is_stop_request(said)


@pytest.mark.parametrize("said", [
    "Can you call me back tomorrow at 5 pm?", "Don't call me at work, call me at home.",
    "I'm not a lawyer, I just don't understand the fees.", "Yes, this is John.",
])
def test_other_words_are_not_stop_requests(said: str) -> None:
    assert not is_stop_request(said)


def test_opt_out_recorded_and_call_ended_passes(playbook: Playbook) -> None:
    c = call([*VERIFIED, ("agent", DISCLOSURE), ("caller", "Stop calling me."),
              ("agent", "I understand. We will not call you again. Goodbye.")],
             [("right_party_verified", 4), ("opt_out", 6), ("end_call", 6)])
    assert check_call(c, scenario(), playbook) == []


def test_opt_out_not_recorded_fails_at_the_request(playbook: Playbook) -> None:
    c = call([*VERIFIED, ("agent", DISCLOSURE), ("caller", "Talk to my lawyer."),
              ("agent", "I understand. Goodbye.")], [("right_party_verified", 4), ("end_call", 6)])
    found = check_call(c, scenario(), playbook)
    assert rules(found) == [(OPT_OUT_HONOURED.name, 5)]
    assert found[0].evidence == "Talk to my lawyer."


def test_collection_talk_after_the_request_fails_at_that_turn(playbook: Playbook) -> None:
    c = call([*VERIFIED, ("agent", DISCLOSURE), ("caller", "Stop calling me."),
              ("agent", "Before you go, could you pay 100 dollars toward the balance today?")],
             [("right_party_verified", 4), ("opt_out", 6)])
    assert rules(check_call(c, scenario(), playbook)) == [(OPT_OUT_HONOURED.name, 6)]


# ---- calling window ----------------------------------------------------------------------


def test_inside_the_window_passes(playbook: Playbook) -> None:
    c = call([("agent", GREETING)], started_at=dt.datetime(2026, 11, 23, 13, 0, tzinfo=dt.UTC))
    assert check_call(c, scenario(), playbook) == []  # 08:00 in New York


def test_late_evening_in_the_debtors_zone_fails(playbook: Playbook) -> None:
    late = dt.datetime(2026, 11, 24, 2, 30, tzinfo=dt.UTC)  # 21:30 the day before in New York
    found = check_call(call([("agent", GREETING)], started_at=late), scenario(), playbook)
    assert rules(found) == [(WITHIN_WINDOW.name, None)]
    assert "21:30 in America/New_York" in found[0].evidence and "08:00-21:00" in found[0].evidence
    # the same instant is 18:30 in Los Angeles: allowed there
    assert check_call(call([("agent", GREETING)], started_at=late),
                      scenario(timezone="America/Los_Angeles"), playbook) == []


def test_the_window_follows_the_debtors_country(playbook: Playbook) -> None:
    india = scenario(timezone="Asia/Kolkata", phone="+919812345678", currency="INR")
    assert country_of("+919812345678") == "IN"
    evening = dt.datetime(2026, 11, 23, 14, 0, tzinfo=dt.UTC)  # 19:30 in Kolkata
    found = check_call(call([("agent", GREETING)], started_at=evening), india, playbook)
    assert rules(found) == [(WITHIN_WINDOW.name, None)] and "08:00-19:00" in found[0].evidence


def test_a_campaigns_window_override_applies(playbook: Playbook) -> None:
    morning = dt.datetime(2026, 11, 23, 13, 30, tzinfo=dt.UTC)  # 08:30 in New York
    strict = {"US": ComplianceRules(CallingWindow(dt.time(9), dt.time(17)))}
    c = call([("agent", GREETING)], started_at=morning)
    assert check_call(c, scenario(), playbook) == []
    assert rules(check_call(c, scenario(), playbook, overrides=strict)) == [(WITHIN_WINDOW.name, None)]
