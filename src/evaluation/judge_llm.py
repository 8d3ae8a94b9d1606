"""The LLM judge: an OpenAI-compatible model scores a call's task completion and efficiency
against an anchored rubric (what a 0, 25, 50, 75 and 100 look like), answering in JSON with a
score, an analysis and exact quotes from the transcript per criterion.

It samples the model `samples` times (temperature > 0) and reports each criterion's mean,
with every sample kept so the spread (max − min) shows how much to trust it. A reply that is
not the JSON asked for (or quotes words the transcript does not hold) is asked for once
more, then the judge fails; a timeout or an API error fails at once. Failures raise
`JudgeError` with the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Literal

from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from ai.llm_text import LLMRequestError, LLMSettings, open_client, stream_completion
from ai.playbook import Playbook
from evaluation.judges import (
    EFFICIENCY,
    TASK_COMPLETION,
    JudgeError,
    Judgement,
    affordability_problem,
    promise_of,
)
from evaluation.models import CriterionScore, Personality, Scenario, SimulatedCall

__all__ = ["ANCHORS", "LLMJudge", "parse_verdict", "render_call"]

#: the rubric: per criterion, what each anchor score means
ANCHORS: dict[str, dict[int, str]] = {
    TASK_COMPLETION: {
        0: "a harmful or wrong ending: a promise the debtor cannot keep, a fight, the debtor "
           "lost, or nothing an expected outcome needs",
        25: "little progress: the right person was reached but the call ended far from any "
            "expected outcome",
        50: "partial: an acceptable but not the best expected outcome, or the best one left "
            "vague (no amount or no date)",
        75: "an expected outcome, reached with a minor flaw (a detail not confirmed)",
        100: "the best expected outcome, within what the debtor can afford, clearly confirmed",
    },
    EFFICIENCY: {
        0: "the call went in circles: repeated questions, misunderstandings, far too long",
        25: "several repeats or reprompts; much longer than the outcome needed",
        50: "some wasted turns or a long monologue",
        75: "brisk, with one or two wasted turns",
        100: "no wasted turn: as short as the outcome allows",
    },
}

_SYSTEM = """You judge a simulated debt-collection phone call between an agent and a debtor.
Score each criterion from 0 to 100 using these anchors (scores between anchors are allowed):

{rubric}

Quote the transcript exactly: every evidence item must be words copied from one turn.
Answer with one JSON object and nothing else:
{{"task_completion": {{"score": <0-100>, "analysis": "<why>", "evidence": ["<quote>", ...]}},
 "efficiency": {{"score": <0-100>, "analysis": "<why>", "evidence": ["<quote>", ...]}}}}"""


def _rubric() -> str:
    return "\n\n".join(
        f"{name}:\n" + "\n".join(f"  {score}: {text}" for score, text in anchors.items())
        for name, anchors in ANCHORS.items())


def render_call(call: SimulatedCall, scenario: Scenario, personality: Personality | None) -> str:
    """The facts and the transcript, as the judge model reads them."""
    b = scenario.backstory
    lines = [
        f"Scenario: {scenario.name}. {scenario.description}".strip(),
        f"Expected outcomes, best first: {', '.join(scenario.expected_outcomes)}.",
        f"Balance {b.balance:,.2f} {b.currency}; answered by: {b.answered_by}.",
    ]
    if personality is not None:
        can = personality.can_afford
        lines.append(f"The debtor can afford at most {can.limit(b.balance):,.2f} {b.currency} at "
                     f"once, not before {can.earliest_days} days from the call; instalments "
                     f"{'possible' if can.instalments_ok else 'not possible'}.")
    if b.will_not_agree:
        lines.append(f"The debtor will not agree to: {'; '.join(b.will_not_agree)}.")
    lines.append(f"Outcome recorded: {call.outcome}; call length {call.seconds:.0f} s.")
    promise = promise_of(call)
    if promise is not None:
        lines.append(f"Promise to pay: {promise.amount:,.2f} on {promise.date} ({promise.plan}).")
        problem = affordability_problem(promise, call, scenario, personality)
        if problem:
            lines.append(f"Beyond the debtor's means: {problem}.")
    lines.append("Transcript:")
    by_turn: dict[int, list[str]] = {}
    for a in call.actions:
        by_turn.setdefault(a.turn, []).append(f"    (agent action: {a.kind} {json.dumps(a.data, default=str)})")
    for i, t in enumerate(call.turns):
        lines += by_turn.get(i, [])
        lines.append(f"[{i}] {t.speaker}: {t.text}" + (" [interrupted]" if t.interrupted else ""))
    lines += by_turn.get(len(call.turns), [])
    return "\n".join(lines)


def _squash(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)


def parse_verdict(text: str, call: SimulatedCall) -> dict[str, CriterionScore]:
    """The two criteria from a model's reply; raises ValueError saying what is wrong."""
    m = _FENCE.match(text)
    try:
        data = json.loads(m.group(1) if m else text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON ({e.msg} at {e.pos}): {text[:80]!r}") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    spoken = [_squash(t.text) for t in call.turns]
    out: dict[str, CriterionScore] = {}
    for name in (TASK_COMPLETION, EFFICIENCY):
        item = data.get(name)
        if not isinstance(item, dict):
            raise ValueError(f"{name}: missing")
        score = item.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 100:
            raise ValueError(f"{name}.score: must be a number from 0 to 100, got {score!r}")
        analysis = item.get("analysis")
        if not isinstance(analysis, str) or not analysis.strip():
            raise ValueError(f"{name}.analysis: must be a non-empty string")
        evidence = item.get("evidence")
        if not isinstance(evidence, list) or not evidence or not all(isinstance(q, str) for q in evidence):
            raise ValueError(f"{name}.evidence: must be a non-empty list of quotes")
        for q in evidence:
            if not _squash(q) or not any(_squash(q) in s for s in spoken):
                raise ValueError(f"{name}.evidence: {q[:60]!r} is not in the transcript")
        out[name] = CriterionScore(name=name, score=float(score), analysis=analysis.strip(),
                                   evidence=list(evidence))
    return out


class LLMJudge:
    """Scores calls with an OpenAI-compatible chat model (see the module docstring):
    `samples` answers per call, each of at most `settings.max_tokens` (800 when None) within
    `settings.timeout_s` (60 s when None)."""

    kind: Literal["rubric", "llm"] = "llm"

    def __init__(self, settings: LLMSettings, *, samples: int = 3) -> None:
        if samples < 3:
            raise ValueError("samples: at least 3, so the spread means something")
        if not 0 < settings.temperature <= 2:
            raise ValueError("temperature: must be above 0 (samples must be able to differ) and at most 2")
        self.settings = settings
        self.samples = samples
        self.max_tokens = settings.max_tokens or 800
        self.timeout_s = settings.timeout_s or 60.0

    async def judge(
        self, call: SimulatedCall, scenario: Scenario, playbook: Playbook, *,
        personality: Personality | None = None,
    ) -> Judgement:
        messages: list[ChatCompletionMessageParam] = [
            {"role": "system", "content": _SYSTEM.format(rubric=_rubric())},
            {"role": "user", "content": render_call(call, scenario, personality)},
        ]
        async with open_client(self.settings, timeout_s=self.timeout_s, max_retries=0) as client:
            try:
                async with asyncio.TaskGroup() as tg:
                    tasks = [tg.create_task(self._sample(client, messages, call))
                             for _ in range(self.samples)]
            except* JudgeError as group:
                raise group.exceptions[0] from None
        return _combine([t.result() for t in tasks])

    async def _sample(self, client: AsyncOpenAI, messages: list[ChatCompletionMessageParam],
                      call: SimulatedCall) -> dict[str, CriterionScore]:
        problem = ""
        for _ in range(2):  # one retry when the reply is malformed
            text = await self._ask(client, messages)
            try:
                return parse_verdict(text, call)
            except ValueError as e:
                problem = str(e)
        raise JudgeError(f"LLM judge answered with malformed JSON twice: {problem}")

    async def _ask(self, client: AsyncOpenAI, messages: list[ChatCompletionMessageParam]) -> str:
        try:
            answer = await stream_completion(
                client, model=self.settings.model, messages=messages, timeout_s=self.timeout_s,
                temperature=self.settings.temperature, max_tokens=self.max_tokens,
                response_format={"type": "json_object"},
            )
        except LLMRequestError as e:
            if e.kind == "timeout":
                raise JudgeError(f"LLM judge timed out after {self.timeout_s:g} s") from None
            raise JudgeError(f"LLM judge request failed: {e.message}") from None
        return answer.text


def _combine(samples: list[dict[str, CriterionScore]]) -> Judgement:
    def mean(name: str) -> CriterionScore:
        scores = [s[name].score for s in samples]
        avg = sum(scores) / len(scores)
        analysis = (f"Mean {avg:.1f} of {len(scores)} samples "
                    f"({', '.join(f'{x:g}' for x in scores)}; spread {max(scores) - min(scores):g}). "
                    + samples[0][name].analysis)
        evidence = list(dict.fromkeys(q for s in samples for q in s[name].evidence))[:6]
        return CriterionScore(name=name, score=round(avg, 2), analysis=analysis, evidence=evidence)

    return Judgement("llm", mean(TASK_COMPLETION), mean(EFFICIENCY),
                     [(s[TASK_COMPLETION].score, s[EFFICIENCY].score) for s in samples])
