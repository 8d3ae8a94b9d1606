"""The failure analysis a writer works from: for each evaluated scenario, the outcome
reached against the ones expected, and the symptoms the transcript shows (a debtor in
hardship sent away without a plan, the full balance not offered first, no settlement or
instalments offered, a question the debtor did not understand, the agent giving up at the
first answer it did not follow (a debtor who said they did not follow the question is
an unclear question, not that), the agent cut off by barge-ins, a curt manner), each with
the scenario's weight and the words that show it.

It reads only what an evaluation leaves behind (evaluation.models: the SimulatedCall and
its CallScore) and the playbook's own intent patterns, so it works on any debtor and any
judge.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

from ai.playbook import Playbook
from evaluation.models import CallScore, Personality, Scenario, SimulatedCall, SimulatedTurn

__all__ = ["SYMPTOMS", "FailureAnalysis", "ScenarioResult", "Symptom", "analyse"]

#: the symptom kinds, in the order that breaks a tie in weight: a question the debtor did not
#: follow comes before the offers, since a debtor who did not follow never weighed them
SYMPTOMS: dict[str, str] = {
    "hardship_refused": "a debtor in hardship ended without a plan",
    "unclear_question": "the agent had to repeat the same question",
    "full_not_offered_first": "a debtor who could pay was not offered the full balance first",
    "no_settlement": "a debtor declined what was offered and no settlement was offered",
    "no_instalments": "a debtor declined what was offered and no instalments were offered",
    "callback_ignored": "a debtor asked to be called back and the call ended otherwise",
    "gave_up_early": "the agent ended the call at the first answer it did not follow",
    "cut_off": "the debtor's speech cut the agent off",
    "curt": "the debtor got angry, or the judge found the manner poor",
}

_NEGOTIATION = ("offer_full", "offer_settlement", "offer_instalments", "ask_amount")
_GAVE_UP = ("refused", "no_response", "unverified")
_LOW = 60.0  # a criterion scored below this is a weakness worth quoting


@dataclass
class ScenarioResult:
    """One evaluated call of a scenario (the evaluate callable's per-scenario result)."""

    scenario: Scenario
    call: SimulatedCall
    score: CallScore
    personality: Personality | None = None

    @property
    def outcome_ok(self) -> bool:
        return self.call.outcome in self.scenario.expected_outcomes

    @property
    def failed(self) -> bool:
        return not self.score.passed or not self.outcome_ok


@dataclass(frozen=True, slots=True)
class Symptom:
    kind: str
    scenario: str
    weight: int
    evidence: str


@dataclass
class FailureAnalysis:
    """What went wrong where, over a set of evaluated scenarios."""

    results: list[ScenarioResult]
    symptoms: list[Symptom] = field(default_factory=list)

    def weight_of(self, kind: str) -> int:
        """How much a symptom matters: the summed weight of the scenarios that show it."""
        return sum(s.weight for s in self.symptoms if s.kind == kind)

    def kinds(self) -> list[str]:
        """The symptom kinds shown, heaviest first (ties in SYMPTOMS order)."""
        order = list(SYMPTOMS)
        return sorted({s.kind for s in self.symptoms}, key=lambda k: (-self.weight_of(k), order.index(k)))

    def of(self, kind: str) -> list[Symptom]:
        return [s for s in self.symptoms if s.kind == kind]

    def text(self) -> str:
        """The analysis as the audit trail records it."""
        lines = []
        for r in self.results:
            mark = "FAIL" if r.failed else "ok"
            lines.append(f"{mark} {r.scenario.name} (weight {r.scenario.weight}): outcome "
                         f"{r.call.outcome}, expected {' or '.join(r.scenario.expected_outcomes)}, "
                         f"score {r.score.score:.0f}")
            for c in r.score.criteria:
                if c.score < _LOW:
                    quote = f" ({c.evidence[0]!r})" if c.evidence else ""
                    lines.append(f"  low {c.name} {c.score:.0f}: {c.analysis}{quote}")
        lines += [f"symptom {s.kind} in {s.scenario} (weight {s.weight}): {s.evidence}" for s in self.symptoms]
        return "\n".join(lines)


def _matches(playbook: Playbook, intent: str, text: str) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in playbook.intents.get(intent, []))


# a debtor who did not follow what the agent said
_PUZZLED = re.compile(r"\b(what do you mean|what does that mean|i don'?t (understand|follow)|"
                      r"(didn'?t|did not) (get|catch|follow) (that|you)|come again|pardon|"
                      r"(not sure|don'?t know) what you('re| are) (asking|saying|talking about)|what are you asking)\b|^\W*(sorry|what)\W*$",
                      re.IGNORECASE)


def _puzzled(turns: list[SimulatedTurn], playbook: Playbook) -> tuple[str, str] | None:
    """(the agent's words, the debtor's answer) where the debtor first said they did not
    follow a question."""
    for before, turn in itertools.pairwise(turns):
        if before.speaker == "agent" and turn.speaker == "caller" and "?" in before.text and (
                _PUZZLED.search(turn.text) or _matches(playbook, "repeat", turn.text)):
            return before.text, turn.text
    return None


def _symptoms(r: ScenarioResult, playbook: Playbook) -> list[tuple[str, str]]:
    call, sc = r.call, r.scenario
    caller = [t.text for t in call.turns if t.speaker == "caller"]
    agent = [t.text for t in call.turns if t.speaker == "agent" and not t.interrupted]
    wants_plan = "promise_to_pay" in sc.expected_outcomes
    got_plan = call.outcome == "promise_to_pay"
    out: list[tuple[str, str]] = []
    hardship_line = next((line for line in caller if _matches(playbook, "hardship", line)), None)
    in_hardship = hardship_line is not None or any(a.kind == "hardship" for a in call.actions) or (
        r.personality is not None and "hardship" in r.personality.resistance)
    if in_hardship and wants_plan and not got_plan:
        out.append(("hardship_refused", f"said {hardship_line!r}, call ended {call.outcome}"
                    if hardship_line else f"call ended {call.outcome}"))
    if wants_plan:
        offered = [s for s in call.stages if s in _NEGOTIATION]
        plan = call.outcome_fields.get("ptp_plan")
        if offered[:1] != ["offer_full"] and (not got_plan or plan == "custom") and not in_hardship:
            out.append(("full_not_offered_first",
                        f"negotiation went {' -> '.join(offered) or 'nowhere'}, call ended {call.outcome}"))
        declined = any(_matches(playbook, i, line) for line in caller for i in ("no", "hardship"))
        if call.outcome in ("refused", "hung_up") and offered and declined:
            # a debtor in hardship is the hardship remedy's (instalments), not a settlement's
            if "offer_settlement" not in offered and not in_hardship:
                out.append(("no_settlement", f"offered only {', '.join(offered)}"))
            if "offer_instalments" not in offered:
                out.append(("no_instalments", f"offered only {', '.join(offered)}"))
        elif got_plan and plan == "custom" and "offer_instalments" not in offered and in_hardship:
            out.append(("no_instalments", "the debtor had to name an amount; instalments never offered"))
    if "callback" in sc.expected_outcomes and call.outcome != "callback" and not r.outcome_ok:
        asked = next((line for line in caller if _matches(playbook, "callback", line)), None)
        if asked:
            out.append(("callback_ignored", f"said {asked!r}, call ended {call.outcome}"))
    repeated = [(line, n) for line, n in Counter(agent).items() if n >= 3 and "?" in line]
    if repeated or call.outcome == "timed_out":
        line, n = max(repeated, key=lambda x: x[1]) if repeated else (agent[-1] if agent else "", 0)
        out.append(("unclear_question", f"asked {line!r} {n} times, call ended {call.outcome}"))
    puzzled = _puzzled(call.turns, playbook)
    if puzzled and not (repeated or call.outcome == "timed_out"):
        asked, said = puzzled
        ended = f", call ended {call.outcome}" if caller and caller[-1] == said and call.outcome in _GAVE_UP else ""
        out.append(("unclear_question", f"asked {asked!r}, the debtor said {said!r}{ended}"))
    if call.outcome in _GAVE_UP and caller and not r.outcome_ok:
        last = caller[-1]
        # a debtor puzzled by the last question was asked it unclearly (unclear_question);
        # the agent's patience is not what failed
        if not any(_matches(playbook, i, last) for i in ("no", "hardship", "stop", "abuse")) and (
                puzzled is None or puzzled[1] != last):
            out.append(("gave_up_early", f"ended {call.outcome} right after {last!r}"))
    if call.barge_ins >= 2:
        out.append(("cut_off", f"{call.barge_ins} barge-ins"))
    if r.score.hostility >= 6 or any(c.score < _LOW and re.search(r"empathy|courtesy|tone|manner", c.name)
                                     for c in r.score.criteria):
        out.append(("curt", f"hostility {r.score.hostility:.0f}/10"))
    return out


def analyse(results: list[ScenarioResult], playbook: Playbook) -> FailureAnalysis:
    """The failure analysis of `results`, evaluated under `playbook`: symptoms only from
    calls that failed (or passed short of the expected outcome)."""
    symptoms = [Symptom(kind, r.scenario.name, r.scenario.weight, evidence)
                for r in results if r.failed or r.score.score < 100
                for kind, evidence in _symptoms(r, playbook)]
    return FailureAnalysis(results, symptoms)
