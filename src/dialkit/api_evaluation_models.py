"""Bodies of the evaluation-run API (dialkit.api_evaluations), also what `dialkit eval
--json` prints per call: each call's scores, compliance (passed, violations with the rule,
the turn and the quoted words), hostility, the transcript and the judge's evidence per
criterion."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from evaluation.models import CriterionScore, RecordedAction, SimulatedTurn
from evaluation.run_store import CallResult, EvaluationRun, RunStatus

__all__ = [
    "CallResultOut",
    "Compliance",
    "EvaluationCreated",
    "EvaluationListQuery",
    "EvaluationOut",
    "EvaluationPage",
    "EvaluationSummary",
    "RunCreated",
    "RunListQuery",
    "ViolationOut",
]


class RunCreated(BaseModel):
    """What starting a run answers (evaluation, tuning): its id and first status."""

    id: int
    status: str


class RunListQuery(BaseModel):
    """A listing of runs (evaluation, tuning): by status and prompt version, a page by cursor."""

    status: str | None = None
    prompt_version: str | None = Field(default=None, min_length=1, max_length=120,
                                       description="name@version, an id, or a name")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=30, description="`next_cursor` of the page before")


class EvaluationCreated(RunCreated):
    status: RunStatus


class EvaluationListQuery(RunListQuery):
    status: RunStatus | None = None
    label: str | None = Field(default=None, max_length=200)


class ViolationOut(BaseModel):
    rule: str
    turn: int | None = Field(description="index into the transcript; null for the whole call")
    quote: str


class Compliance(BaseModel):
    passed: bool
    violations: list[ViolationOut]


class CallResultOut(BaseModel):
    idx: int
    scenario: str
    personality: str
    weight: int
    repeat: int = Field(description="1-based")
    seed: int
    status: RunStatus
    call_id: str | None
    outcome: str | None
    score: float | None
    passed: bool | None
    task_completion: float | None
    task_analysis: str | None
    efficiency: float | None
    efficiency_analysis: str | None
    compliance: Compliance | None
    hostility: float | None
    judge: Literal["rubric", "llm"] | None
    samples: list[float]
    spread: float | None
    criteria: list[CriterionScore] = Field(description="per criterion: score, analysis, quoted evidence")
    transcript: list[SimulatedTurn]
    actions: list[RecordedAction]
    seconds: float | None = Field(description="the call's length (simulated in text mode)")
    duration_s: float | None = Field(description="wall-clock time it took to run and score")
    error: str | None

    @classmethod
    def of(cls, r: CallResult) -> CallResultOut:
        s, c = r.score, r.call
        return cls(
            idx=r.idx, scenario=r.scenario.name, personality=r.personality.name, weight=r.weight,
            repeat=r.repeat + 1, seed=r.seed, status=r.status, call_id=r.call_id,
            outcome=c.outcome if c else None,
            score=s.score if s else None, passed=s.passed if s else None,
            task_completion=s.task_completion if s else None, task_analysis=s.task_analysis if s else None,
            efficiency=s.efficiency if s else None,
            efficiency_analysis=s.efficiency_analysis if s else None,
            compliance=Compliance(passed=s.compliance_passed, violations=[
                ViolationOut(rule=v.rule, turn=v.turn, quote=v.evidence) for v in s.violations])
            if s else None,
            hostility=s.hostility if s else None, judge=s.judge if s else None,
            samples=s.samples if s else [], spread=s.spread if s else None,
            criteria=s.criteria if s else [], transcript=c.turns if c else [],
            actions=c.actions if c else [], seconds=c.seconds if c else None,
            duration_s=r.duration_s, error=r.error,
        )

    def brief(self) -> dict[str, Any]:
        """What `dialkit eval --json` prints per call."""
        return self.model_dump(mode="json", include={
            "scenario", "weight", "repeat", "status", "task_completion", "efficiency", "compliance",
            "hostility", "score", "passed", "call_id", "outcome", "error"})


class EvaluationSummary(BaseModel):
    id: int
    status: RunStatus
    prompt_version: str
    scenario_set: str | None
    scenarios: list[str] | None
    mode: Literal["text", "audio"]
    judge: Literal["rubric", "llm"]
    repeat: int
    seed: int
    label: str | None
    calls_total: int
    calls_done: int
    calls_failed: int
    weighted_score: float | None
    pass_k: float | None = Field(description="share of scenarios whose every repeat passed")
    error: str | None
    actor: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def fields_of(cls, run: EvaluationRun) -> dict[str, Any]:
        sp = run.spec
        return dict(
            id=run.id, status=run.status, prompt_version=run.prompt_version,
            scenario_set=sp.scenario_set, scenarios=[c.name for c in sp.scenarios] if sp.scenarios else None,
            mode=sp.mode, judge=sp.judge, repeat=sp.repeat, seed=sp.seed, label=run.label,
            calls_total=run.calls_total, calls_done=run.calls_done, calls_failed=run.calls_failed,
            weighted_score=run.weighted_score, pass_k=run.pass_k, error=run.error, actor=run.actor,
            created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        )

    @classmethod
    def of(cls, run: EvaluationRun) -> EvaluationSummary:
        return cls(**cls.fields_of(run))


class EvaluationOut(EvaluationSummary):
    results: list[CallResultOut]

    @classmethod
    def of(cls, run: EvaluationRun) -> EvaluationOut:
        return cls(**cls.fields_of(run), results=[CallResultOut.of(r) for r in run.results])


class EvaluationPage(BaseModel):
    items: list[EvaluationSummary]
    next_cursor: str | None = Field(description="pass as `cursor` for the next (older) page; null at the end")
