"""Judges of a simulated call's task completion and conversation efficiency, each 0–100 with
a written analysis and the transcript words it rests on.

`RubricJudge` needs no LLM: it scores the outcome against the scenario's expected outcomes
(and a promise to pay against what the debtor can afford) and the conversation's turns,
reprompts, repeats, misunderstandings and time against a reference call. `LLMJudge`
(evaluation.judge_llm, kept apart for its size) asks an OpenAI-compatible model the same two questions with an
anchored rubric, several times. Compliance is not a judge's business: it is checked in code
(evaluation.compliance), and the combination lives in evaluation.scoring.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

from ai.playbook import Playbook, split_sentences
from evaluation.models import CriterionScore, Personality, Scenario, SimulatedCall

__all__ = [
    "EFFICIENCY",
    "REFERENCE_CALLS",
    "TASK_COMPLETION",
    "Judge",
    "JudgeError",
    "Judgement",
    "Promise",
    "RubricJudge",
    "affordability_problem",
    "conversation_counts",
    "promise_of",
]

TASK_COMPLETION = "task_completion"
EFFICIENCY = "efficiency"


class JudgeError(RuntimeError):
    """A judge could not score a call (an LLM that timed out, failed or kept answering with
    malformed JSON); the message says why, so a run can record it."""


@dataclass(frozen=True, slots=True)
class Judgement:
    """A judge's verdict on one call: the two criteria and, per sample, (task, efficiency)."""

    kind: Literal["rubric", "llm"]
    task_completion: CriterionScore
    efficiency: CriterionScore
    samples: list[tuple[float, float]] = field(default_factory=list)

    @property
    def criteria(self) -> list[CriterionScore]:
        return [self.task_completion, self.efficiency]


class Judge(Protocol):
    """Scores a call's task completion and efficiency (raises JudgeError when it cannot)."""

    kind: Literal["rubric", "llm"]

    async def judge(
        self, call: SimulatedCall, scenario: Scenario, playbook: Playbook, *,
        personality: Personality | None = None,
    ) -> Judgement: ...


# ---- what the call promised ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Promise:
    amount: float
    date: dt.date | None
    plan: str | None
    instalments: int | None


def promise_of(call: SimulatedCall) -> Promise | None:
    """The promise to pay the call recorded (its outcome fields, else the last such action)."""
    f: dict[str, Any] = dict(call.outcome_fields)
    if f.get("ptp_amount") is None:
        action = next((a for a in reversed(call.actions) if a.kind == "promise_to_pay"), None)
        if action is None:
            return None
        d = action.data
        f = {"ptp_amount": d.get("amount"), "ptp_date": d.get("date"), "ptp_plan": d.get("plan"),
             "ptp_instalments": d.get("instalments")}
    if f.get("ptp_amount") is None:
        return None
    raw = f.get("ptp_date")
    date = dt.date.fromisoformat(raw[:10]) if isinstance(raw, str) else raw
    n = f.get("ptp_instalments")
    return Promise(float(f["ptp_amount"]), date if isinstance(date, dt.date) else None,
                   f.get("ptp_plan"), int(n) if n is not None else None)


def _call_date(call: SimulatedCall, scenario: Scenario) -> dt.date:
    started = call.started_at if call.started_at.tzinfo else call.started_at.replace(tzinfo=dt.UTC)
    return started.astimezone(ZoneInfo(scenario.backstory.timezone)).date()


def affordability_problem(
    promise: Promise, call: SimulatedCall, scenario: Scenario, personality: Personality | None
) -> str | None:
    """Why this promise is beyond what the debtor can keep, or None when it is within it
    (or nothing is known about what they can afford)."""
    b = scenario.backstory
    plan = promise.plan or ""
    if plan and any(plan in term.lower() for term in b.will_not_agree):
        return f"the debtor agreed to a {plan} plan, which their backstory says they will not agree to"
    if personality is None:
        return None
    can = personality.can_afford
    limit = can.limit(b.balance)
    if plan == "instalment" and not can.instalments_ok:
        return "the debtor agreed to monthly instalments, which they cannot keep up"
    if promise.amount > limit + 0.005:
        return (f"the debtor promised {promise.amount:,.2f} {b.currency} but can afford at most "
                f"{limit:,.2f} {b.currency}")
    earliest = _call_date(call, scenario) + dt.timedelta(days=can.earliest_days)
    if promise.date is not None and promise.date < earliest:
        return (f"the debtor promised to pay on {promise.date.isoformat()}, before they can "
                f"(not before {earliest.isoformat()})")
    return None


# ---- rubric: task completion ---------------------------------------------------------------

_ACCEPTABLE_STEP = 20  # each place down the expected list costs this much
_ACCEPTABLE_FLOOR = 60
_BEYOND_MEANS = 15
_WRONG_AFTER_VERIFYING = 20
_WRONG = 5


def _outcome_quotes(call: SimulatedCall) -> list[str]:
    """The caller's words the outcome answered and the agent's words that recorded it (the
    turn after the ending action, else the last agent turn)."""
    end = next((a for a in reversed(call.actions) if a.kind in ("end_call", "transfer")), None)
    upto = end.turn if end is not None else len(call.turns)
    caller = [t.text for t in call.turns[:upto] if t.speaker == "caller" and t.text]
    agent = [t.text for t in call.turns[upto:] if t.speaker == "agent" and t.text] or [
        t.text for t in call.turns if t.speaker == "agent" and t.text][-1:]
    return [*caller[-1:], *agent[:1]]


def _task_completion(call: SimulatedCall, scenario: Scenario,
                     personality: Personality | None) -> CriterionScore:
    expected = list(scenario.expected_outcomes)
    wants = f"the scenario expects {expected[0]}" + (
        f" (acceptable: {', '.join(expected[1:])})" if len(expected) > 1 else "")
    evidence = _outcome_quotes(call)
    if call.status != "completed":
        return CriterionScore(name=TASK_COMPLETION, score=0, evidence=evidence,
                              analysis=f"The call failed ({call.failure_reason or call.status}); {wants}.")
    outcome = call.outcome or "none"
    promise = promise_of(call) if outcome == "promise_to_pay" else None
    problem = affordability_problem(promise, call, scenario, personality) if promise else None
    if outcome in expected:
        place = expected.index(outcome)
        score = 100 if place == 0 else max(_ACCEPTABLE_FLOOR, 100 - _ACCEPTABLE_STEP * place)
        what = "the best outcome" if place == 0 else f"acceptable outcome no. {place + 1}"
        analysis = f"The call ended in {outcome}, {what}; {wants}."
        if problem:
            score = _BEYOND_MEANS
            analysis = f"The call ended in {outcome}, but it is not a success: {problem}; {wants}."
    else:
        verified = any(a.kind == "right_party_verified" for a in call.actions)
        score = _WRONG_AFTER_VERIFYING if verified else _WRONG
        analysis = (f"The call ended in {outcome}, not an outcome this scenario should reach; "
                    f"{wants}." + (" The right party was verified." if verified else ""))
        if problem:
            analysis += f" The promise is beyond the debtor's means: {problem}."
    if promise is not None:
        analysis += (f" Promise: {promise.amount:,.2f} {scenario.backstory.currency}"
                     f"{' on ' + promise.date.isoformat() if promise.date else ''}"
                     f"{' (' + promise.plan + ')' if promise.plan else ''}.")
    return CriterionScore(name=TASK_COMPLETION, score=score, analysis=analysis, evidence=evidence)


# ---- rubric: efficiency --------------------------------------------------------------------

#: a reference call per outcome: (turns, seconds) a brisk call to that outcome takes
REFERENCE_CALLS: dict[str, tuple[int, float]] = {
    "promise_to_pay": (13, 100.0),
    **{o: (7, 60.0) for o in ("callback", "dispute", "already_paid", "opt_out", "refused",
                              "transferred", "abusive", "hung_up")},
    **{o: (4, 40.0) for o in ("wrong_party", "unverified", "voicemail", "no_response",
                              "no_contact")},
}
_DEFAULT_REFERENCE = (9, 75.0)
_LONG_TURN_WORDS = 80
_AGENT_SHARE = 0.93  # the disclosure alone is long: scripted calls run at 80-91 %

_NOT_UNDERSTOOD = re.compile(
    r"\b(didn't|did not) (catch|understand|get|hear) (that|you)\b|\bsay that again\b|"
    r"\bcould you (please )?repeat\b|\bnot sure i (understood|follow)\b|\bi('m| am) sorry\?", re.I)


@dataclass
class _Counts:
    turns: int = 0
    reprompts: list[str] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)
    not_understood: list[str] = field(default_factory=list)
    long_turns: list[str] = field(default_factory=list)
    agent_share: float | None = None  # None when the caller never spoke


def _norm(sentence: str) -> str:
    return re.sub(r"[^a-z0-9 ]+", "", sentence.lower()).strip()


def _talk_ms(text: str, start: float | None, end: float | None) -> float:
    if start is not None and end is not None and end > start:
        return end - start
    return len(text.split()) * 60_000 / 160


def conversation_counts(call: SimulatedCall) -> _Counts:
    """Turns, reprompts (the agent speaking again with no answer), repeated sentences,
    "not understood" lines, long agent turns, and the agent's share of talk time."""
    c = _Counts(turns=len(call.turns))
    said: set[str] = set()
    agent_ms = caller_ms = 0.0
    previous = None
    for t in call.turns:
        ms = _talk_ms(t.text, t.start_ms, t.end_ms)
        if t.speaker == "caller":
            caller_ms += ms
            previous = "caller"
            continue
        agent_ms += ms
        reprompt = previous == "agent"
        previous = "agent"
        if reprompt:
            c.reprompts.append(t.text)
        if len(t.text.split()) > _LONG_TURN_WORDS:
            c.long_turns.append(t.text)
        for s in split_sentences(t.text):
            if _NOT_UNDERSTOOD.search(s):
                c.not_understood.append(s)
            key = _norm(s)
            if len(key.split()) >= 4 and key in said and not reprompt:
                c.repeats.append(s)
            said.add(key)
    if caller_ms > 0:
        c.agent_share = agent_ms / (agent_ms + caller_ms)
    return c


def _efficiency(call: SimulatedCall) -> CriterionScore:
    ref_turns, ref_seconds = REFERENCE_CALLS.get(call.outcome or "", _DEFAULT_REFERENCE)
    c = conversation_counts(call)
    penalties = {
        "turns over the reference": min(30.0, 4.0 * max(0, c.turns - ref_turns)),
        "seconds over the reference": min(20.0, 0.5 * max(0.0, call.seconds - ref_seconds)),
        "reprompts": min(20.0, 5.0 * len(c.reprompts)),
        "repeated sentences": min(20.0, 5.0 * len(c.repeats)),
        "not-understood lines": min(20.0, 5.0 * len(c.not_understood)),
        "long agent turns": min(10.0, 5.0 * len(c.long_turns)),
        "agent talk share": 10.0 if (c.agent_share or 0.0) > _AGENT_SHARE else 0.0,
    }
    score = max(0.0, 100.0 - sum(penalties.values()))
    lost = [f"{name} -{p:.1f}" for name, p in penalties.items() if p]
    share = ("the caller never spoke" if c.agent_share is None
             else f"the agent spoke {c.agent_share:.0%} of the time")
    analysis = (
        f"{c.turns} turns (reference {ref_turns} for {call.outcome}), {call.seconds:.0f} s "
        f"(reference {ref_seconds:.0f} s); {len(c.reprompts)} reprompts, {len(c.repeats)} "
        f"repeated sentences, {len(c.not_understood)} not-understood lines, "
        f"{len(c.long_turns)} agent turns over {_LONG_TURN_WORDS} words; {share}. "
        + ("Lost: " + ", ".join(lost) + "." if lost else "No wasted turns."))
    evidence = list(dict.fromkeys([*c.reprompts, *c.repeats, *c.not_understood]))[:5]
    if not evidence and call.turns:
        evidence = [next((t.text for t in call.turns if t.speaker == "agent"), call.turns[0].text)]
    return CriterionScore(name=EFFICIENCY, score=score, analysis=analysis, evidence=evidence)


class RubricJudge:
    """The judge that needs no LLM: the same call always gets the same scores."""

    kind: Literal["rubric", "llm"] = "rubric"

    async def judge(
        self, call: SimulatedCall, scenario: Scenario, playbook: Playbook, *,
        personality: Personality | None = None,
    ) -> Judgement:
        task = _task_completion(call, scenario, personality)
        eff = _efficiency(call)
        return Judgement("rubric", task, eff, [(task.score, eff.score)])
