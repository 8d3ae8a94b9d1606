"""What an agent utterance means to the simulated debtor, over paraphrases and over what a
speech recogniser hands over (lower case, no punctuation, numbers spelled out)."""

from __future__ import annotations

import datetime as dt

import pytest

from evaluation.understanding import Facts, amounts_in, heard, understand

FACTS = Facts(debtor_name="John Smith", balance=1250.0, creditor="Northwind Bank",
              today=dt.date(2026, 11, 20))


def acts(text: str) -> set[str]:
    return understand(text, FACTS).acts


@pytest.mark.parametrize("text", [
    "May I please speak with John Smith?",
    "Hi, am I talking to John Smith?",
    "i'm trying to reach mr smith",
    "Is this John?",
    "hello is john smith there",
    "Could I have a word with John Smith, please?",
])
def test_identity_requests(text: str) -> None:
    assert "identity_request" in acts(text)


@pytest.mark.parametrize("text", ["Thank you, John.", "Thanks John, I appreciate it."])
def test_thanking_by_name_is_not_asking_for_them(text: str) -> None:
    assert "identity_request" not in acts(text)


@pytest.mark.parametrize("text", [
    "For your security, could you please tell me your year of birth?",
    "Before we go on, what year were you born?",
    "can you confirm your date of birth",
    "to make sure i'm speaking with the right person could you verify your identity",
    "what is your birth year",
])
def test_verification_questions(text: str) -> None:
    assert "verification" in acts(text)


@pytest.mark.parametrize("text", [
    "This is an attempt to collect a debt by a debt collector.",
    "we are a collection agency and any information obtained will be used for that purpose",
    "I'm calling from a debt collector attempting to collect a debt.",
])
def test_disclosure(text: str) -> None:
    assert "disclosure" in acts(text)


@pytest.mark.parametrize("text", [
    "Your Northwind Bank account shows 1,250 dollars overdue.",
    "you owe one thousand two hundred fifty dollars",
    "I'm calling about your past due balance.",
    "it's about the northwind bank card",
])
def test_the_debt_named(text: str) -> None:
    assert "debt_named" in acts(text)


def test_a_greeting_names_no_debt() -> None:
    assert "debt_named" not in acts("Hello, this is Alex calling from Acme Services. May I speak with John Smith?")


@pytest.mark.parametrize("text", [
    "Are you able to pay the full balance of $1,250?",
    "Could you clear the whole 1,250 dollars in one payment?",
    "can you pay one thousand two hundred and fifty dollars today",
    "Would you be able to pay it off in full?",
])
def test_full_payment_offers(text: str) -> None:
    m = understand(text, FACTS)
    assert m.offer == "full" and m.amount == 1250.0


@pytest.mark.parametrize("text", [
    "Acme Recovery Services can accept 750 dollars to settle the account in full. Would that work for you?",
    "We could close the account for a reduced sum of 750 dollars. Is that something you can do?",
    "we can offer you a discount you would only pay seven hundred fifty dollars",
    "If you pay $750, we'll consider the account resolved. How does that sound?",
])
def test_settlement_offers(text: str) -> None:
    m = understand(text, FACTS)
    assert m.offer == "settlement" and m.amount == 750.0


@pytest.mark.parametrize(("text", "count", "amount"), [
    ("We can also split the balance into 3 monthly payments. That would be 3 payments of 416 dollars and 67 cents.", 3, 416.67),
    ("Another option is spreading it over five months. You'd pay 250 dollars each month. Could you manage that?", None, 250.0),
    ("how about a payment plan of two hundred fifty dollars a month", None, 250.0),
    ("we could break it up into 5 payments", 5, 250.0),
])
def test_instalment_offers(text: str, count: int | None, amount: float) -> None:
    m = understand(text, FACTS)
    assert m.offer == "instalments" and m.amount == amount
    if count is not None:
        assert m.count == count


@pytest.mark.parametrize("text", [
    "How much could you pay, and on what date?",
    "What amount could you manage?",
    "what could you afford each month",
    "Let's find an amount that works for you.",
])
def test_asking_what_they_can_pay(text: str) -> None:
    m = understand(text, FACTS)
    assert "ask_amount" in m.acts and m.offer is None


@pytest.mark.parametrize("text", [
    "On what date will you make that payment?", "Which day can you make that payment?",
    "when could you pay that", "What date works for you?",
])
def test_date_questions(text: str) -> None:
    assert "date_question" in acts(text)


@pytest.mark.parametrize(("text", "amount", "date"), [
    ("Just to confirm, you will pay 1,250 dollars on Friday, November 27. Is that correct?", 1250.0, dt.date(2026, 11, 27)),
    ("Let me read that back. 150 dollars on December 3rd, right?", 150.0, dt.date(2026, 12, 3)),
    ("so that is three monthly payments of four hundred dollars the first on the first of december correct", 400.0, dt.date(2026, 12, 1)),
])
def test_restatements_to_confirm(text: str, amount: float, date: dt.date) -> None:
    m = understand(text, FACTS)
    assert "confirmation" in m.acts and m.offer is None
    assert m.amount == amount and m.date == date


@pytest.mark.parametrize(("text", "act"), [
    ("I'm sorry to hear that, and thank you for telling me.", "empathy"),
    ("That sounds really hard, thanks for explaining.", "empathy"),
    ("When would be a good time to call you back?", "callback_question"),
    ("What day and time suits you for us to ring you back?", "callback_question"),
    ("I can call you back another time if that's better.", "callback_offer"),
    ("Please hold while I transfer you.", "transfer"),
    ("If you don't pay we will take legal action and garnish your wages.", "threat"),
    ("Have a good day, goodbye.", "goodbye"),
    ("Take care, bye.", "goodbye"),
    ("Are you still there?", "still_there"),
    ("Hello, can you hear me?", "still_there"),
    ("Sorry, I didn't catch that.", "not_understood"),
    ("We will not call you again.", "opt_out_ack"),
    ("You won't get any more calls from us.", "opt_out_ack"),
])
def test_other_acts(text: str, act: str) -> None:
    assert act in acts(text)


def test_questions_and_statements() -> None:
    assert "question" in acts("would that work for you")
    assert "question" not in acts("I've recorded your payment.")


def test_amounts_skip_counts_dates_years_and_phone_numbers() -> None:
    assert amounts_in(heard("3 payments of 416 dollars and 67 cents on December 5th, 2026")) == [416.67]
    assert amounts_in(heard("born in 1984")) == []
    assert amounts_in(heard("call us at 800-555-0199")) == []
    assert amounts_in(heard("one thousand two hundred fifty dollars")) == [1250.0]
