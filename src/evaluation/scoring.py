"""How a simulated call is scored, and how scores add up over a set of scenarios.

- `evaluate_call`: compliance in code (evaluation.compliance), the judge's task completion
  and efficiency, the caller's hostility; score = 0 when compliance fails, else
  0.7 · task + 0.3 · efficiency; the call passes when compliance holds and score ≥ 70.
- `hostility`: 0–10 from what the caller did (profanity, anger, stop requests, hanging up,
  interrupting, shouting, refusing again and again).
- `weighted_score`: the scenarios' scores weighted by their weights (1–5).
- `pass_k`: the share of scenarios whose k repeats all passed (pass^k).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ai.playbook import Playbook
from campaigns.compliance import ComplianceRules
from evaluation.compliance import PROFANITY, check_call, is_stop_request
from evaluation.judges import Judge
from evaluation.models import CallScore, Personality, Scenario, SimulatedCall

__all__ = [
    "EFFICIENCY_WEIGHT",
    "PASS_SCORE",
    "TASK_WEIGHT",
    "Hostility",
    "combined",
    "evaluate_call",
    "hostility",
    "pass_k",
    "weighted_score",
]

TASK_WEIGHT = 0.7
EFFICIENCY_WEIGHT = 0.3
PASS_SCORE = 70.0


def combined(task: float, efficiency: float) -> float:
    """A compliant call's score from its two criteria."""
    return round(TASK_WEIGHT * task + EFFICIENCY_WEIGHT * efficiency, 2)


# ---- hostility ---------------------------------------------------------------------------

_ANGER = re.compile(
    r"\b(angry|furious|ridiculous|harass\w*|sick (?:of|and tired)|fed up|scam\w*|liars?|"
    r"thie(?:f|ves)|bloodsucking|leeches|vultures?|get to the point|how dare|shut up|"
    r"who the hell|unbelievable|pathetic|are you deaf|i said|(?:are you|you're) kidding)\b", re.I)
_SHOUTED_WORD = re.compile(r"\b[A-Z]{3,}\b")
_REFUSAL = re.compile(
    r"^\W*(?:no|nope|nah)\b|\b(?:won't|will not|not paying|refuse|not going to pay|no way)\b", re.I)

# (points per caller turn showing the signal, most points from the signal)
_WEIGHTS: dict[str, tuple[float, float]] = {
    "profanity": (2.0, 4.0),
    "anger words": (1.0, 3.0),
    "stop requests": (1.5, 3.0),
    "shouting": (1.0, 2.0),
    "interruptions": (0.5, 1.5),
    "repeated refusals": (0.5, 2.0),
}
_HANG_UP = 2.0


@dataclass(frozen=True, slots=True)
class Hostility:
    score: float
    signals: dict[str, int] = field(default_factory=dict)  # signal -> how many times


def _shouted(text: str) -> bool:
    return len(_SHOUTED_WORD.findall(text)) >= 2 or "!!" in text or "[shouting]" in text.lower()


def hostility(call: SimulatedCall) -> Hostility:
    """How hostile the caller was, 0 (calm) to 10, with the signals counted. An answering
    machine is never hostile (its greeting talks over the agent's "Hello")."""
    if call.outcome == "voicemail":
        return Hostility(0.0)
    caller = [t.text for t in call.turns if t.speaker == "caller" and t.text]
    refusals = sum(1 for text in caller if _REFUSAL.search(text))
    counts = {
        "profanity": sum(1 for text in caller if PROFANITY.search(text)),
        "anger words": sum(1 for text in caller if _ANGER.search(text)),
        "stop requests": sum(1 for text in caller if is_stop_request(text)),
        "shouting": sum(1 for text in caller if _shouted(text)),
        "interruptions": max(call.barge_ins, sum(1 for t in call.turns
                                                 if t.speaker == "agent" and t.interrupted)),
        "repeated refusals": max(0, refusals - 1),
    }
    score = sum(min(cap, per * counts[name]) for name, (per, cap) in _WEIGHTS.items())
    agent_ended = any(a.kind in ("end_call", "transfer") for a in call.actions)
    hung_up = call.outcome == "hung_up" or (call.debtor_hung_up and not agent_ended)
    if hung_up:
        counts["hang-up"] = 1
        score += _HANG_UP
    return Hostility(round(min(10.0, score), 1), {k: v for k, v in counts.items() if v})


# ---- over a set ----------------------------------------------------------------------------


def weighted_score(results: Sequence[tuple[int, float]]) -> float:
    """Σ weight · score / Σ weight over (weight, score) pairs; 0 for none. Raises ValueError
    for a weight outside 1–5 or a score outside 0–100."""
    for weight, score in results:
        if isinstance(weight, bool) or not isinstance(weight, int) or not 1 <= weight <= 5:
            raise ValueError(f"weight: must be a whole number from 1 to 5, got {weight!r}")
        if not 0 <= score <= 100:
            raise ValueError(f"score: must be from 0 to 100, got {score!r}")
    total = sum(w for w, _ in results)
    if not total:
        return 0.0
    return round(sum(w * s for w, s in results) / total, 2)


def pass_k(groups: Mapping[str, Sequence[bool]]) -> float:
    """The share (0–1) of scenarios that passed^k: every one of their k repeats passed. A
    scenario with no finished repeat did not pass; no scenarios gives 0."""
    if not groups:
        return 0.0
    passed = sum(1 for repeats in groups.values() if repeats and all(repeats))
    return round(passed / len(groups), 4)


# ---- one call ------------------------------------------------------------------------------


async def evaluate_call(
    call: SimulatedCall,
    scenario: Scenario,
    playbook: Playbook,
    *,
    judge: Judge,
    personality: Personality | None = None,
    overrides: dict[str, ComplianceRules] | None = None,
) -> CallScore:
    """Score one call (see the module docstring). `personality` tells the judge what the
    debtor can afford; `overrides` are per-country calling rules. Raises JudgeError when the
    judge cannot score it, ContextError when the backstory does not fit the playbook."""
    violations = check_call(call, scenario, playbook, overrides=overrides)
    verdict = await judge.judge(call, scenario, playbook, personality=personality)
    samples = [combined(t, e) for t, e in verdict.samples] or [
        combined(verdict.task_completion.score, verdict.efficiency.score)]
    score = 0.0 if violations else combined(verdict.task_completion.score, verdict.efficiency.score)
    return CallScore(
        task_completion=verdict.task_completion.score,
        task_analysis=verdict.task_completion.analysis,
        efficiency=verdict.efficiency.score,
        efficiency_analysis=verdict.efficiency.analysis,
        compliance_passed=not violations,
        violations=violations,
        hostility=hostility(call).score,
        criteria=verdict.criteria,
        judge=verdict.kind,
        samples=samples,
        spread=round(max(samples) - min(samples), 2),
        score=score,
        passed=not violations and score >= PASS_SCORE,
    )
