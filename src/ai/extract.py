"""Pull amounts, dates, times and birth years out of spoken-style text (speech-recognition
output), and say amounts, dates and times back in a form a TTS reads well.

Pure functions; anything relative ("tomorrow", "next Friday") takes an explicit reference
date so results are reproducible.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import re

__all__ = [
    "normalize",
    "parse_amount",
    "parse_date",
    "parse_datetime",
    "parse_time",
    "parse_year",
    "spoken_date",
    "spoken_datetime",
    "spoken_money",
    "spoken_time",
    "words_to_digits",
]

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9,
}
_TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "thirteenth": 13,
    "fourteenth": 14, "fifteenth": 15, "sixteenth": 16, "seventeenth": 17, "eighteenth": 18,
    "nineteenth": 19, "twentieth": 20, "thirtieth": 30,
}
_MONTHS = {
    name.lower(): i for i, name in enumerate(calendar.month_name) if name
} | {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name} | {"sept": 9}
_WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_MONTH_RE = (
    r"(january|february|march|april|may|june|july|august|september|october|november|"
    r"december|jan|feb|mar|apr|jun|jul|aug|sept|sep|oct|nov|dec)"
)
_WEEKDAY_RE = r"(monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_CURRENCY_WORDS = r"(dollars?|bucks|usd|rupees?|rs|euros?|pounds?)"


def _suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return "th"
    return {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


@functools.lru_cache(maxsize=4096)  # pure; the same lines are read again and again
def normalize(text: str) -> str:
    """Lower-case, unify apostrophes, drop thousands separators and spell a.m./p.m. as am/pm."""
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)
    t = re.sub(r"\b([ap])\.\s?m\.?", r"\1m", t)
    t = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", t)  # twenty-five -> twenty five
    return re.sub(r"\s+", " ", t).strip()


@functools.lru_cache(maxsize=4096)
def words_to_digits(text: str) -> str:
    """Rewrite runs of number words as digits: "two hundred and fifty" -> "250",
    "the fifteenth" -> "the 15th", "nineteen eighty four" -> "19 84" (years stay split)."""
    tokens = re.findall(r"[a-z]+(?:'[a-z]+)?|\d+(?:\.\d+)?(?:st|nd|rd|th)?|[^\sa-z\d]", text)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        value, ordinal, used = _read_number(tokens, i)
        if used:
            out.append(f"{value}{_suffix(value)}" if ordinal else str(value))
            i += used
        else:
            out.append(tokens[i])
            i += 1
    joined = " ".join(out)
    # re-glue what tokenising split apart: "$ 200" -> "$200", "5 : 30" -> "5:30"
    joined = re.sub(r"\$ (?=\d)", "$", joined)
    joined = re.sub(r"(?<=\d) ([:/]) (?=\d)", r"\1", joined)
    joined = re.sub(r" (?=[,.!?;])", "", joined)
    return joined


def _read_number(tokens: list[str], start: int) -> tuple[int, bool, int]:
    """Read one spoken number starting at tokens[start]; returns (value, is_ordinal, used)."""
    total = current = 0
    last = ""  # kind of the previous word: unit, teen, tens, hundred, big
    used = 0
    i = start
    while i < len(tokens):
        w = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if w == "a" and not used and nxt in ("hundred", "thousand"):
            current, last, used, i = 1, "unit", used + 1, i + 1
            continue
        if w == "and" and last in ("hundred", "big") and (
            nxt in _UNITS or nxt in _TEENS or nxt in _TENS or nxt in _ORDINALS
        ):
            used, i = used + 1, i + 1
            continue
        if w in _ORDINALS:
            v = _ORDINALS[w]
            if (last == "tens" and current % 10 == 0 and v < 10) or last in ("", "hundred", "big"):
                return total + current + v, True, used + 1
            break
        if w in _UNITS:
            if last in ("", "hundred", "big") or (last == "tens" and current % 10 == 0):
                current += _UNITS[w]
                last = "unit"
            else:
                break
        elif w in _TEENS:
            if last in ("", "hundred", "big"):
                current += _TEENS[w]
                last = "teen"
            else:
                break
        elif w in _TENS:
            if last in ("", "hundred", "big"):
                current += _TENS[w]
                last = "tens"
            else:
                break
        elif w == "hundred" and last in ("unit", "teen", "tens"):
            current = current * 100
            last = "hundred"
        elif w in ("thousand", "million") and last in ("unit", "teen", "tens", "hundred"):
            total += current * _SCALES[w]
            current = 0
            last = "big"
        else:
            break
        used += 1
        i += 1
    # a trailing "and" that was consumed but not followed by a number is not part of it
    while used and tokens[start + used - 1] == "and":
        used -= 1
    if used == 1 and tokens[start] == "one" and start + 1 < len(tokens) and tokens[start + 1] in (
        "moment", "second", "minute", "sec",
    ):
        return 0, False, 0
    return total + current, False, used


def _prepare(text: str) -> str:
    return words_to_digits(normalize(text))


# ---- amounts -----------------------------------------------------------------------------

_NUM_RE = re.compile(
    r"(?P<cur>\$)?\s?(?P<num>\d+(?:\.\d+)?)(?P<ord>st|nd|rd|th)?"
    r"(?:\s?(?P<scale>k|grand|thousand|hundred)\b)?"
)


def parse_amount(text: str) -> float | None:
    """The money amount in `text` ("$200", "200 dollars", "two hundred and fifty",
    "1,250 dollars and 50 cents"), or None. Days, times, years and counts are skipped;
    an amount marked as money wins over a bare number."""
    t = _prepare(text)
    marked: list[float] = []
    bare: list[float] = []
    for m in _NUM_RE.finditer(t):
        if m.group("ord"):
            continue
        value = float(m.group("num"))
        scale = m.group("scale")
        if scale in ("k", "grand", "thousand"):
            value *= 1000
        elif scale == "hundred":
            value *= 100
        before = t[: m.start()].rstrip()
        after = t[m.end():].lstrip()
        if re.match(r"(:\d|am\b|pm\b|o'clock|oclock)", after):
            continue
        if re.match(rf"(days?|weeks?|months?|years?|hours?|minutes?|payments?|instal?lments?|times?|(of )?{_MONTH_RE})\b", after):
            continue
        if re.search(rf"\b{_MONTH_RE}$", before) or re.search(r"(/|\d/)$", before) or after.startswith("/"):
            continue
        if re.search(r"\b(at|around|about|by)$", before) and not m.group("cur") and value <= 12 and not re.match(_CURRENCY_WORDS, after):
            continue
        cents = re.match(rf"{_CURRENCY_WORDS}\s(and\s)?(?P<c>\d{{1,2}})\s(cents?|paise|pence)\b", after)
        if cents:
            value += int(cents.group("c")) / 100
        if m.group("cur") or re.match(_CURRENCY_WORDS, after):
            marked.append(value)
        elif 1900 <= value <= 2100 and value == int(value):
            continue  # a year, not an amount
        elif re.match(r"(cents?|paise|pence)\b", after):
            marked.append(value / 100)
        else:
            bare.append(value)
    for value in marked + bare:
        if value > 0:
            return round(value, 2)
    return None


# ---- years -------------------------------------------------------------------------------


def parse_year(text: str, today: dt.date | None = None) -> int | None:
    """A birth year: "1984", "nineteen eighty four", "two thousand one", "'84", "1 9 8 4"."""
    today = today or dt.date.today()
    t = _prepare(text)
    digits_only = re.sub(r"[\s.,-]", "", t)
    if re.fullmatch(r"\d{4}", digits_only):
        year = int(digits_only)
        return year if 1900 <= year <= today.year else None
    # a recogniser's "1900-88", "1900, 88" or "19 hundred 88" for "nineteen eighty-eight"
    m = re.search(r"\b(19|20)00 ?[-,.] ?(\d{2})\b", t) or re.search(
        r"\b(1[89]|20) hundred (?:and )?(\d{1,2})\b", t)
    if m and m.group(2) != "00":
        year = int(m.group(1)) * 100 + int(m.group(2))
        if 1900 <= year <= today.year:
            return year
    # "19 84" from "nineteen eighty four"; "19 oh 5" from "nineteen oh five"
    m = re.search(r"\b(1[89]|20) (\d{2}|(?:oh|o|0) \d)\b", t)
    if m:
        year = int(m.group(1)) * 100 + int(m.group(2)[-2:].replace(" ", "0"))
        if 1900 <= year <= today.year:
            return year
    for m in re.finditer(r"\b(\d{4})\b", t):
        year = int(m.group(1))
        if 1900 <= year <= today.year:
            return year
    m = re.search(r"(?:^|' ?|\bin )(\d{2})\b", t) if not re.search(r"\d{3}", t) else None
    if m:
        yy = int(m.group(1))
        return 2000 + yy if yy <= today.year % 100 else 1900 + yy
    return None


# ---- dates -------------------------------------------------------------------------------


def _add_months(d: dt.date, months: int, day: int | None = None) -> dt.date:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    last = calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(day or d.day, last))


def _month_end(d: dt.date) -> dt.date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _upcoming_month_day(today: dt.date, month: int, day: int) -> dt.date | None:
    d = _safe_date(today.year, month, day)
    if d is not None and d < today:
        d = _safe_date(today.year + 1, month, day)
    return d


_COUNT = r"(\d+|a|an|a couple of|couple of|a few|few)"


def _count(word: str) -> int:
    if word.isdigit():
        return int(word)
    return {"a": 1, "an": 1, "a couple of": 2, "couple of": 2, "a few": 3, "few": 3}[word]


def parse_date(text: str, today: dt.date) -> dt.date | None:
    """A calendar date relative to `today`: "tomorrow", "next Friday", "on the 15th",
    "December 1st", "the 1st of next month", "12/15", "in two weeks", "end of the month".
    Dates without a year are the next such date on or after `today`."""
    t = _prepare(text)
    # explicit month and day
    m = re.search(rf"\b{_MONTH_RE}\.? (the )?(\d{{1,2}})(st|nd|rd|th)?\b(,? (\d{{4}}))?", t)
    if m:
        month, day = _MONTHS[m.group(1)], int(m.group(3))
        if m.group(6):
            return _safe_date(int(m.group(6)), month, day)
        return _upcoming_month_day(today, month, day)
    m = re.search(rf"\b(\d{{1,2}})(st|nd|rd|th)? (of )?{_MONTH_RE}\b", t)
    if m:
        return _upcoming_month_day(today, _MONTHS[m.group(4)], int(m.group(1)))
    m = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2,4}))?\b", t)
    if m:
        month, day = int(m.group(1)), int(m.group(2))
        if m.group(3):
            year = int(m.group(3))
            return _safe_date(year + 2000 if year < 100 else year, month, day)
        return _upcoming_month_day(today, month, day)
    # relative to the month
    m = re.search(r"\b(the )?(\d{1,2})(st|nd|rd|th)? of (next|the next|the following) month\b", t)
    if m:
        return _add_months(today, 1, int(m.group(2)))
    m = re.search(r"\b(end|last day) of (the |this )?(next )?month\b", t)
    if m:
        return _month_end(_add_months(today.replace(day=1), 1 if m.group(3) else 0))
    if re.search(r"\b(beginning|start) of (the )?next month\b|\bnext month\b", t):
        return _add_months(today.replace(day=1), 1)
    # relative days and weeks
    if re.search(r"\bday after tomorrow\b", t):
        return today + dt.timedelta(days=2)
    if re.search(r"\btomorrow\b", t):
        return today + dt.timedelta(days=1)
    m = re.search(rf"\b(?:in|within) {_COUNT} (day|week|month)s?\b", t) or re.search(
        rf"\b{_COUNT} (day|week|month)s? from (?:now|today)\b", t
    )
    if m:
        n, unit = _count(m.group(1)), m.group(2)
        if unit == "day":
            return today + dt.timedelta(days=n)
        if unit == "week":
            return today + dt.timedelta(weeks=n)
        return _add_months(today, n)
    if re.search(r"\b(today|tonight|this (morning|afternoon|evening)|right now)\b", t):
        return today
    if re.search(r"\bnext week\b", t):
        return today + dt.timedelta(weeks=1)
    if re.search(r"\bend of (the|this) week\b", t):
        return today + dt.timedelta(days=(4 - today.weekday()) % 7)
    m = re.search(rf"\b(next|this|this coming|coming|on|by)? ?{_WEEKDAY_RE}\b", t)
    if m:
        target = _WEEKDAYS[m.group(2)]
        ahead = (target - today.weekday()) % 7 or 7
        if m.group(1) == "next":
            # "next Friday" is the Friday of next week (Monday-based weeks)
            next_monday = today + dt.timedelta(days=7 - today.weekday())
            return next_monday + dt.timedelta(days=target)
        return today + dt.timedelta(days=ahead)
    # a bare day of the month: "on the 15th"
    m = re.search(r"\b(?:the|on|by) (\d{1,2})(?:st|nd|rd|th)\b", t) or re.fullmatch(
        r"\W*(\d{1,2})(?:st|nd|rd|th)\W*", t
    )
    if m:
        day = int(m.group(1))
        if 1 <= day <= 31:
            d = _safe_date(today.year, today.month, day)
            if d is None or d < today:
                return _add_months(today.replace(day=1), 1, day)
            return d
    return None


# ---- times -------------------------------------------------------------------------------


def parse_time(text: str) -> dt.time | None:
    """A time of day: "5 pm", "5:30pm", "at 5" (1-7 read as afternoon), "17:00",
    "noon", "in the morning" (10:00), "afternoon" (14:00), "evening"/"tonight" (18:00)."""
    t = _prepare(text)
    m = re.search(r"\b(\d{1,2})(?:[:.](\d{2}))? ?(am|pm)\b", t)
    if m:
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        if not 1 <= hour <= 12 or minute > 59:
            return None
        hour = hour % 12 + (12 if m.group(3) == "pm" else 0)
        return dt.time(hour, minute)
    m = re.search(r"\b(\d{1,2}):(\d{2})\b", t) or re.search(
        r"\b(?:at|around|about|after|before) (\d{1,2})(?:\.(\d{2}))?\b(?! ?(?:dollars|bucks|%))", t
    ) or re.search(r"\b(\d{1,2}) o'?clock\b()", t)
    if m:
        hour, minute = int(m.group(1)), int(m.group(2) or 0)
        if hour > 23 or minute > 59:
            return None
        if 1 <= hour <= 7:
            hour += 12  # "at 5" on a business call means 5 in the afternoon
        return dt.time(hour, minute)
    if re.search(r"\b(noon|midday|lunch ?time|lunch)\b", t):
        return dt.time(12, 0)
    if re.search(r"\bmorning\b", t):
        return dt.time(10, 0)
    if re.search(r"\bafternoon\b", t):
        return dt.time(14, 0)
    if re.search(r"\b(evening|tonight)\b", t):
        return dt.time(18, 0)
    return None


def parse_datetime(text: str, now: dt.datetime) -> dt.datetime | None:
    """Date and time together ("tomorrow at 5 pm", "in two hours", "Monday morning").
    A date without a time gets 10:00; a time without a date is the next such time."""
    t = _prepare(text)
    m = re.search(r"\bin (\d+|an?|a couple of|a few) (hours?|minutes?|mins?)\b", t)
    if m:
        n = _count(m.group(1))
        delta = dt.timedelta(hours=n) if m.group(2).startswith("hour") else dt.timedelta(minutes=n)
        return (now + delta).replace(second=0, microsecond=0)
    d = parse_date(text, now.date())
    tm = parse_time(text)
    if d is None and tm is None:
        return None
    if d is None:
        assert tm is not None
        candidate = dt.datetime.combine(now.date(), tm)
        return candidate if candidate > now else candidate + dt.timedelta(days=1)
    return dt.datetime.combine(d, tm or dt.time(10, 0))


# ---- saying things back ------------------------------------------------------------------

_CURRENCY_NAMES = {
    "USD": ("dollar", "dollars", "cent", "cents"),
    "INR": ("rupee", "rupees", "paisa", "paise"),
    "EUR": ("euro", "euros", "cent", "cents"),
    "GBP": ("pound", "pounds", "penny", "pence"),
}


def spoken_money(amount: float, currency: str = "USD") -> str:
    """1250 -> "1,250 dollars"; 1250.5 -> "1,250 dollars and 50 cents" (no symbols)."""
    one, many, sub_one, sub_many = _CURRENCY_NAMES.get(
        currency.upper(), (currency, currency, "cent", "cents")
    )
    cents_total = round(amount * 100)
    whole, cents = divmod(cents_total, 100)
    parts = []
    if whole or not cents:
        parts.append(f"{whole:,} {one if whole == 1 else many}")
    if cents:
        parts.append(f"{cents} {sub_one if cents == 1 else sub_many}")
    return " and ".join(parts)


def spoken_date(d: dt.date, today: dt.date | None = None) -> str:
    """"Friday, November 27" (the year is added when it is not the current one)."""
    text = f"{d:%A}, {d:%B} {d.day}"
    if today is not None and d.year != today.year:
        text += f", {d.year}"
    return text


def spoken_time(t: dt.time) -> str:
    """"5 PM", "5:30 PM", "noon"."""
    if t.hour == 12 and t.minute == 0:
        return "noon"
    hour = t.hour % 12 or 12
    ampm = "AM" if t.hour < 12 else "PM"
    return f"{hour} {ampm}" if t.minute == 0 else f"{hour}:{t.minute:02d} {ampm}"


def spoken_datetime(when: dt.datetime, today: dt.date | None = None) -> str:
    """"Sunday, November 22 at 5 PM"."""
    return f"{spoken_date(when.date(), today)} at {spoken_time(when.time())}"
