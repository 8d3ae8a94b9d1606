"""Bodies of the tuning-run API (dialkit.api_tuning), also what `dialkit tune --json`
prints: a run's status, its iterations with the training and held-out scores side by side,
and the initial and final prompt versions with their scores."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field

from dialkit.api_evaluation_models import RunCreated, RunListQuery
from tuning.run_store import TuningIteration, TuningRun, TuningSpec, TuningStatus

__all__ = [
    "IterationOut",
    "TuningCreated",
    "TuningListQuery",
    "TuningOut",
    "TuningPage",
    "TuningSummary",
    "VersionScores",
]


class TuningCreated(RunCreated):
    status: TuningStatus


class TuningListQuery(RunListQuery):
    status: TuningStatus | None = None
    prompt_version: str | None = Field(default=None, min_length=1, max_length=120,
                                       description="the initial prompt version: name@version, an id, or a name")


class VersionScores(BaseModel):
    prompt_version: str
    train_score: float | None
    heldout_score: float | None


class IterationOut(BaseModel):
    n: int
    prompt_version: str = Field(description="the candidate (the parent when the critique approved nothing)")
    parent: str
    train_score: float
    heldout_score: float
    delta: float = Field(description="training score against the parent's")
    accepted: bool
    reason: str
    per_scenario: dict[str, float] = Field(description="training score per scenario")
    train_evaluation_id: int | None
    heldout_evaluation_id: int | None
    analysis: str = Field(description="the failure analysis the writer worked from")
    exchange: str = Field(description="the writer's proposals and the critique's reviews, in full")
    tokens: int
    cost_usd: float
    created_at: dt.datetime

    @classmethod
    def of(cls, it: TuningIteration) -> IterationOut:
        return cls.model_validate(it.model_dump(exclude={"writer_state", "prompt_version_id", "parent_id"}))

    def brief(self) -> dict[str, object]:
        return {"n": self.n, "prompt_version": self.prompt_version, "train_score": self.train_score,
                "heldout_score": self.heldout_score, "delta": self.delta, "accepted": self.accepted}


class TuningSummary(BaseModel):
    id: int
    status: TuningStatus
    prompt_version: str = Field(description="the initial prompt version")
    target: float
    max_iterations: int
    writer: str
    current_iteration: int
    initial: VersionScores | None = Field(description="null until the initial version is evaluated")
    final: VersionScores | None = Field(description="the best version so far (the final one once finished)")
    outcome: str | None
    error: str | None
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @classmethod
    def fields_of(cls, run: TuningRun) -> dict[str, object]:
        initial = None if run.initial_train_score is None else VersionScores(
            prompt_version=run.prompt_version, train_score=run.initial_train_score,
            heldout_score=run.initial_heldout_score)
        final = None if run.final_prompt_version is None else VersionScores(
            prompt_version=run.final_prompt_version, train_score=run.final_train_score,
            heldout_score=run.final_heldout_score)
        return {"id": run.id, "status": run.status, "prompt_version": run.prompt_version,
                "target": run.spec.target, "max_iterations": run.spec.max_iterations,
                "writer": run.spec.writer, "current_iteration": run.current_iteration,
                "initial": initial, "final": final, "outcome": run.outcome, "error": run.error,
                "cancel_requested": run.cancel_requested, "created_at": run.created_at,
                "started_at": run.started_at, "finished_at": run.finished_at}

    @classmethod
    def of(cls, run: TuningRun) -> TuningSummary:
        return cls.model_validate(cls.fields_of(run))


class TuningOut(TuningSummary):
    spec: TuningSpec
    iterations: list[IterationOut]
    pareto: list[VersionScores] = Field(
        description="the versions evaluated that no other beats on every training scenario (GEPA's pool)")

    @classmethod
    def of(cls, run: TuningRun) -> TuningOut:
        pareto = [VersionScores(prompt_version=ref, train_score=t, heldout_score=h) for ref, t, h in run.pareto()]
        return cls.model_validate({**TuningSummary.fields_of(run), "spec": run.spec, "pareto": pareto,
                                   "iterations": [IterationOut.of(i) for i in run.iterations]})

    def brief(self) -> dict[str, object]:
        """The object `dialkit tune --json` prints."""
        return {"id": self.id, "status": self.status, "outcome": self.outcome, "error": self.error,
                "iterations": [i.brief() for i in self.iterations],
                "initial": self.initial.model_dump() if self.initial else None,
                "final": self.final.model_dump() if self.final else None}


class TuningPage(BaseModel):
    items: list[TuningSummary]
    next_cursor: str | None
