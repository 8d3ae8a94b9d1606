"""Amounts, dates, times and years out of speech-recognition text, with a fixed reference
date (Saturday, 21 November 2026)."""

from __future__ import annotations

import datetime as dt

import pytest

from ai.extract import (
    parse_amount,
    parse_date,
    parse_datetime,
    parse_time,
    parse_year,
    spoken_date,
    spoken_datetime,
    spoken_money,
    words_to_digits,
)

TODAY = dt.date(2026, 11, 21)  # a Saturday
NOW = dt.datetime(2026, 11, 21, 9, 30)


@pytest.mark.parametrize(
    ("text", "amount"),
    [
        ("$200", 200.0),
        ("I can pay $1,250.50 today.", 1250.5),
        ("200 dollars", 200.0),
        ("Two hundred.", 200.0),
        ("two hundred and fifty dollars", 250.0),
        ("I could do a hundred bucks next Friday.", 100.0),
        ("fifteen hundred", 1500.0),
        ("1,250 dollars and 50 cents", 1250.5),
        ("Maybe 300 on the 15th.", 300.0),
        ("I can pay 75 a month", 75.0),
        ("in 2 weeks I can pay 400", 400.0),
        ("I can pay at 5 pm on December 3rd", None),
        ("I was born in 1984", None),
        ("One moment please", None),
        ("nothing right now", None),
    ],
)
def test_parse_amount(text: str, amount: float | None) -> None:
    assert parse_amount(text) == amount


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tomorrow", dt.date(2026, 11, 22)),
        ("The day after tomorrow.", dt.date(2026, 11, 23)),
        ("Next Friday.", dt.date(2026, 11, 27)),
        ("on Monday", dt.date(2026, 11, 23)),
        ("this Saturday", dt.date(2026, 11, 28)),
        ("On the 15th.", dt.date(2026, 12, 15)),  # the 15th has passed this month
        ("by the thirtieth", dt.date(2026, 11, 30)),
        ("December 1st", dt.date(2026, 12, 1)),
        ("the 3rd of January", dt.date(2027, 1, 3)),
        ("March 5, 2027", dt.date(2027, 3, 5)),
        ("12/15", dt.date(2026, 12, 15)),
        ("in two weeks", dt.date(2026, 12, 5)),
        ("in 3 days", dt.date(2026, 11, 24)),
        ("a week from today", dt.date(2026, 11, 28)),
        ("end of the month", dt.date(2026, 11, 30)),
        ("by the end of next month", dt.date(2026, 12, 31)),
        ("the first of next month", dt.date(2026, 12, 1)),
        ("next month", dt.date(2026, 12, 1)),
        ("today", TODAY),
        ("I don't know yet", None),
        ("wait a second", None),
    ],
)
def test_parse_date(text: str, expected: dt.date | None) -> None:
    assert parse_date(text, TODAY) == expected


def test_next_weekday_means_the_following_week() -> None:
    monday = dt.date(2026, 11, 23)
    assert parse_date("Friday", monday) == dt.date(2026, 11, 27)
    assert parse_date("next Friday", monday) == dt.date(2026, 12, 4)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5 pm", dt.time(17, 0)),
        ("at 5:30 p.m.", dt.time(17, 30)),
        ("10 a.m.", dt.time(10, 0)),
        ("at 3", dt.time(15, 0)),
        ("at 9", dt.time(9, 0)),
        ("17:00", dt.time(17, 0)),
        ("around noon", dt.time(12, 0)),
        ("in the morning", dt.time(10, 0)),
        ("tomorrow", None),
    ],
)
def test_parse_time(text: str, expected: dt.time | None) -> None:
    assert parse_time(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Can you call me back tomorrow at 5 pm?", dt.datetime(2026, 11, 22, 17, 0)),
        ("Monday morning", dt.datetime(2026, 11, 23, 10, 0)),
        ("at 3", dt.datetime(2026, 11, 21, 15, 0)),
        ("at 8 am", dt.datetime(2026, 11, 22, 8, 0)),  # 8 am has passed today
        ("in two hours", dt.datetime(2026, 11, 21, 11, 30)),
        ("call me later", None),
    ],
)
def test_parse_datetime(text: str, expected: dt.datetime | None) -> None:
    assert parse_datetime(text, NOW) == expected


@pytest.mark.parametrize(
    ("text", "year"),
    [
        ("1984", 1984),
        ("It's 1984.", 1984),
        ("Nineteen eighty-four.", 1984),
        ("nineteen oh five", 1905),
        ("two thousand one", 2001),
        ("1 9 8 4", 1984),
        ("'84", 1984),
        ("1900-88", 1988),  # faster-whisper tiny.en hearing Piper say "1988."
        ("1900, 88.", 1988),
        ("19 hundred eighty eight", 1988),
        ("19 hundred and 5", 1905),
        ("My birthday is March 3rd, 1990", 1990),
        ("2031", None),  # in the future
        ("I'd rather not say", None),
    ],
)
def test_parse_year(text: str, year: int | None) -> None:
    assert parse_year(text, TODAY) == year


def test_words_to_digits() -> None:
    assert words_to_digits("two hundred and fifty") == "250"
    assert words_to_digits("the twenty first") == "the 21st"
    assert words_to_digits("nineteen eighty four") == "19 84"


def test_spoken_forms() -> None:
    assert spoken_money(1250) == "1,250 dollars"
    assert spoken_money(1250.5) == "1,250 dollars and 50 cents"
    assert spoken_money(1) == "1 dollar"
    assert spoken_money(0.01) == "1 cent"
    assert spoken_money(300, "INR") == "300 rupees"
    assert spoken_date(dt.date(2026, 11, 27)) == "Friday, November 27"
    assert spoken_date(dt.date(2027, 1, 8), TODAY) == "Friday, January 8, 2027"
    assert spoken_datetime(dt.datetime(2026, 11, 22, 17, 0)) == "Sunday, November 22 at 5 PM"
    assert spoken_datetime(dt.datetime(2026, 11, 22, 9, 15)) == "Sunday, November 22 at 9:15 AM"
