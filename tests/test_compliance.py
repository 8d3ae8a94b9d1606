"""The calling rules as properties: over random time zones (ambiguous sets included),
clocks, windows and contact histories, `decide` never allows a call outside the window in
any candidate zone, over the attempt cap, inside the quiet period after a conversation, or
to a do-not-call number; and when it refuses, the time it names is allowed and is the
earliest such minute."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.compliance import (
    DEFAULT_RULES,
    CallingWindow,
    ComplianceRules,
    ContactHistory,
    decide,
    in_window,
    rules_for,
)

# zones with odd offsets and DST rules, and the ambiguous sets a number can map to
AWKWARD = ["America/New_York", "America/Chicago", "America/Denver", "America/Phoenix",
           "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "Asia/Kolkata",
           "Asia/Kathmandu", "Australia/Lord_Howe", "Pacific/Chatham", "Europe/London",
           "America/St_Johns", "Asia/Tehran", "Pacific/Kiritimati", "Pacific/Pago_Pago"]
ALL_ZONES = sorted(zoneinfo.available_timezones() - {"Factory", "localtime"})
zone_names = st.one_of(st.sampled_from(AWKWARD), st.sampled_from(ALL_ZONES))
zone_sets = st.lists(zone_names, min_size=1, max_size=3, unique=True)
instants = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2028, 12, 31),
                        timezones=st.just(dt.UTC))


@st.composite
def windows(draw: st.DrawFn) -> CallingWindow:
    start = draw(st.integers(0, 22))
    end = draw(st.integers(start + 1, 23))
    return CallingWindow(dt.time(start, draw(st.sampled_from([0, 30]))), dt.time(end, 59))


@st.composite
def histories(draw: st.DrawFn, now: dt.datetime) -> ContactHistory:
    ago = st.integers(0, 10 * 24 * 60)
    attempts = [now - dt.timedelta(minutes=m) for m in draw(st.lists(ago, max_size=10))]
    talked = draw(st.one_of(st.none(), ago))
    return ContactHistory(
        attempts=tuple(attempts),
        last_conversation=None if talked is None else now - dt.timedelta(minutes=talked),
        do_not_call=draw(st.integers(0, 9)) == 0,
    )


def rules_hold(t: dt.datetime, zones: list[str], h: ContactHistory, r: ComplianceRules) -> bool:
    """The rules checked from first principles, independently of `decide`."""
    if h.do_not_call:
        return False
    for name in zones:
        local = t.astimezone(zoneinfo.ZoneInfo(name)).time()
        if not r.window.start <= local < r.window.end:
            return False
    if h.last_conversation is not None and t < h.last_conversation + r.quiet_after_conversation:
        return False
    in_period = [a for a in h.attempts if t - r.attempt_period < a <= t]
    return len(in_period) < r.max_attempts


@settings(max_examples=400, deadline=None)
@given(data=st.data(), now=instants, zones=zone_sets, window=windows())
def test_decide_never_breaks_a_rule_and_names_the_earliest_allowed_minute(
    data: st.DataObject, now: dt.datetime, zones: list[str], window: CallingWindow
) -> None:
    rules = ComplianceRules(window)
    history = data.draw(histories(now))
    d = decide(now, zones, history, rules)
    assert d.allowed == rules_hold(now, zones, history, rules), d
    if d.allowed:
        return
    if history.do_not_call:
        assert d.reason == "do_not_call" and d.not_before is None
        return
    if d.not_before is None:
        # never: the zones' windows do not overlap in the next fortnight
        for hours in range(0, 14 * 24, 1):
            assert not rules_hold(now + dt.timedelta(hours=hours), zones, history, rules)
        return
    assert d.not_before > now
    assert rules_hold(d.not_before, zones, history, rules), d
    assert not rules_hold(d.not_before - dt.timedelta(minutes=1), zones, history, rules), d


def test_us_window_in_every_candidate_zone() -> None:
    us = DEFAULT_RULES["US"]
    # 13:30 UTC in July: 09:30 in New York, 06:30 in Los Angeles
    t = dt.datetime(2026, 7, 1, 13, 30, tzinfo=dt.UTC)
    assert in_window(t, ["America/New_York"], us.window)
    assert not in_window(t, ["America/New_York", "America/Los_Angeles"], us.window)
    d = decide(t, ["America/New_York", "America/Los_Angeles"], ContactHistory(), us)
    assert d.reason == "outside_window"
    assert d.not_before == dt.datetime(2026, 7, 1, 15, 0, tzinfo=dt.UTC)  # 08:00 in LA


def test_india_window_and_the_fallback_for_other_countries() -> None:
    india = rules_for("in")
    assert (india.window.start, india.window.end) == (dt.time(8), dt.time(19))
    t = dt.datetime(2026, 7, 1, 13, 45, tzinfo=dt.UTC)  # 19:15 in Kolkata
    d = decide(t, ["Asia/Kolkata"], ContactHistory(), india)
    assert d.reason == "outside_window"
    assert d.not_before == dt.datetime(2026, 7, 2, 2, 30, tzinfo=dt.UTC)  # 08:00 next day
    assert rules_for("BR").window.end == dt.time(19)


def test_seven_attempts_in_seven_days_and_the_quiet_week_after_a_conversation() -> None:
    us = DEFAULT_RULES["US"]
    now = dt.datetime(2026, 7, 8, 14, 0, tzinfo=dt.UTC)  # 10:00 in New York
    attempts = tuple(dt.datetime(2026, 7, d, 15, 0, tzinfo=dt.UTC) for d in range(1, 8))
    d = decide(now, ["America/New_York"], ContactHistory(attempts=attempts), us)
    assert d.reason == "attempt_cap"
    # the first attempt leaves the 7-day period at 15:00 UTC on the 8th
    assert d.not_before == dt.datetime(2026, 7, 8, 15, 0, tzinfo=dt.UTC)
    assert decide(d.not_before, ["America/New_York"], ContactHistory(attempts=attempts), us).allowed
    talked = ContactHistory(last_conversation=dt.datetime(2026, 7, 6, 16, 0, tzinfo=dt.UTC))
    d = decide(now, ["America/New_York"], talked, us)
    assert d.reason == "after_conversation"
    assert d.not_before == dt.datetime(2026, 7, 13, 16, 0, tzinfo=dt.UTC)


def test_bad_inputs_are_refused() -> None:
    us = DEFAULT_RULES["US"]
    with pytest.raises(ValueError, match="aware"):
        decide(dt.datetime(2026, 7, 1, 12), ["America/New_York"], ContactHistory(), us)
    with pytest.raises(ValueError, match="unknown time zone"):
        decide(dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC), ["Mars/Olympus"], ContactHistory(), us)
    with pytest.raises(ValueError, match="before end"):
        CallingWindow(dt.time(21), dt.time(8))
    assert decide(dt.datetime(2026, 7, 1, 12, tzinfo=dt.UTC), [], ContactHistory(), us).reason == (
        "no_time_zone")
