"""When a person may be called: the rules, as configuration with legal defaults.

- Calling window in the consumer's local time: US 08:00–21:00 (12 CFR 1006.6(b)(1)(i));
  India 08:00–19:00 (RBI recovery-agent guidelines, 2022). When the time zone is ambiguous
  (a number whose region spans several zones), the time must be allowed in every
  candidate zone.
- Frequency: at most 7 call attempts in 7 days per person per debt, and none for 7 days
  after a telephone conversation (12 CFR 1006.14(b)(2)).
- Do-not-call: a request to stop calling, or notice of an attorney, ends calls to that
  person (12 CFR 1006.6(b)–(c), 1006.14(h)); the scheduler passes the verdict in.

`decide(now, zones, history, rules)` is pure (the clock is an argument): it says whether a
call may be placed at `now` and, when not, the earliest time it could be (None when never).
All times are aware datetimes; windows are evaluated with `zoneinfo`, so daylight-saving
changes are honoured.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_RULES",
    "CallingWindow",
    "ComplianceRules",
    "ContactHistory",
    "Decision",
    "allowed_intervals",
    "decide",
    "in_window",
    "rules_for",
]

Reason = Literal["allowed", "do_not_call", "outside_window", "attempt_cap", "after_conversation",
                 "no_time_zone"]


@dataclass(frozen=True, slots=True)
class CallingWindow:
    """Local hours a call may start in: [start, end)."""

    start: dt.time
    end: dt.time

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError(f"calling window start {self.start} must be before end {self.end}")


@dataclass(frozen=True, slots=True)
class ComplianceRules:
    window: CallingWindow
    max_attempts: int = 7  # in `attempt_period`
    attempt_period: dt.timedelta = dt.timedelta(days=7)
    quiet_after_conversation: dt.timedelta = dt.timedelta(days=7)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


DEFAULT_RULES: dict[str, ComplianceRules] = {
    "US": ComplianceRules(CallingWindow(dt.time(8), dt.time(21))),
    "IN": ComplianceRules(CallingWindow(dt.time(8), dt.time(19))),
}


def rules_for(country: str, overrides: dict[str, ComplianceRules] | None = None) -> ComplianceRules:
    """The rules for an ISO country code: a campaign's overrides, else the defaults; a
    country with neither gets the strictest default window and caps (US 08–21 ∩ IN 08–19)."""
    table = {**DEFAULT_RULES, **(overrides or {})}
    if country.upper() in table:
        return table[country.upper()]
    return ComplianceRules(CallingWindow(dt.time(8), dt.time(19)))


@dataclass(frozen=True, slots=True)
class ContactHistory:
    """What was done to this person for this debt: when attempts started (every dial
    counts, answered or not) and when the last conversation took place."""

    attempts: Sequence[dt.datetime] = field(default_factory=tuple)
    last_conversation: dt.datetime | None = None
    do_not_call: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    not_before: dt.datetime | None = None  # earliest time it could be allowed; None = never


def _zones(names: Iterable[str]) -> list[ZoneInfo]:
    zones: list[ZoneInfo] = []
    for name in names:
        try:
            zones.append(ZoneInfo(name))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {name!r}") from exc
    return zones


def _aware(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("times must be aware datetimes")
    return t


def _zone_intervals(
    zone: ZoneInfo, window: CallingWindow, start: dt.datetime, days: int
) -> list[tuple[dt.datetime, dt.datetime]]:
    """The window's UTC intervals in `zone` for the local days around `start`. A local
    time that does not exist (skipped by a DST change) is taken as zoneinfo resolves it
    (fold 0), and the interval is clipped so it is still inside the window."""
    first = start.astimezone(zone).date() - dt.timedelta(days=1)
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for i in range(days + 2):
        day = first + dt.timedelta(days=i)
        a = dt.datetime.combine(day, window.start, zone).astimezone(dt.UTC)
        b = dt.datetime.combine(day, window.end, zone).astimezone(dt.UTC)
        # clip to instants whose local wall time really is inside the window
        while a < b and not _local_in(a, zone, window):
            a += dt.timedelta(minutes=1)
        while b > a and not _local_in(b - dt.timedelta(microseconds=1), zone, window):
            b -= dt.timedelta(minutes=1)
        if a < b:
            out.append((a, b))
    return out


def _local_in(t: dt.datetime, zone: ZoneInfo, window: CallingWindow) -> bool:
    local = t.astimezone(zone).time()
    return window.start <= local < window.end


def in_window(now: dt.datetime, zones: Sequence[str], window: CallingWindow) -> bool:
    """`now` falls inside the window in every one of `zones` (at least one zone)."""
    now = _aware(now)
    parsed = _zones(zones)
    return bool(parsed) and all(_local_in(now, z, window) for z in parsed)


def allowed_intervals(
    start: dt.datetime, zones: Sequence[str], window: CallingWindow, days: int = 3
) -> list[tuple[dt.datetime, dt.datetime]]:
    """UTC intervals from `start` on (for about `days` days) in which the window is open
    in every zone: the intersection of each zone's intervals."""
    start = _aware(start).astimezone(dt.UTC)
    common: list[tuple[dt.datetime, dt.datetime]] | None = None
    for zone in _zones(zones):
        mine = _zone_intervals(zone, window, start, days)
        if common is None:
            common = mine
            continue
        common = [(max(a, c), min(b, d)) for a, b in common for c, d in mine
                  if max(a, c) < min(b, d)]
    return sorted((max(a, start), b) for a, b in (common or []) if b > start)


def _next_open(now: dt.datetime, zones: Sequence[str], window: CallingWindow) -> dt.datetime | None:
    for days in (3, 14):
        for a, _ in allowed_intervals(now, zones, window, days):
            return a
    return None  # the zones' windows never overlap (e.g. opposite sides of the world)


def decide(
    now: dt.datetime,
    zones: Sequence[str],
    history: ContactHistory,
    rules: ComplianceRules,
) -> Decision:
    """May this person be called at `now`? If not, why, and from when (re-check then: the
    earliest time also satisfies the other rules as far as the history goes)."""
    now = _aware(now).astimezone(dt.UTC)
    if history.do_not_call:
        return Decision(False, "do_not_call")
    if not zones:
        return Decision(False, "no_time_zone")
    # frequency: the earliest time both caps allow, from the history alone
    earliest = now
    reason: Reason = "allowed"
    if history.last_conversation is not None:
        quiet_until = _aware(history.last_conversation) + rules.quiet_after_conversation
        if quiet_until > earliest:
            earliest, reason = quiet_until, "after_conversation"
    recent = sorted(_aware(a) for a in history.attempts)
    if len(recent) >= rules.max_attempts:
        # the call may start once the oldest of the last `max_attempts` attempts is out of
        # the period: then at most max_attempts - 1 remain in it
        frees = recent[-rules.max_attempts] + rules.attempt_period
        if frees > earliest:
            earliest, reason = frees, "attempt_cap"
    if reason != "allowed":
        opens = _next_open(earliest, zones, rules.window)
        return Decision(False, reason, opens)
    if in_window(now, zones, rules.window):
        return Decision(True, "allowed")
    return Decision(False, "outside_window", _next_open(now, zones, rules.window))
