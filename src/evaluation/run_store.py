"""Evaluation runs in PostgreSQL (sql/011_evaluations.sql): the request (`EvaluationSpec`),
a run (`EvaluationRun`) and its calls (`CallResult`), and the rows they come from.

A run's scenarios and personalities are frozen into its call rows when it is created, so
editing or deleting them in the library later changes nothing about a run; its prompt
version is marked used (immutable) at the same moment."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evaluation.library_errors import Executor, NotFound
from evaluation.models import CallScore, Personality, Scenario, SimulatedCall

__all__ = [
    "STATUSES",
    "CallResult",
    "EvaluationRun",
    "EvaluationSpec",
    "FrozenCall",
    "RunStatus",
    "ScenarioChoice",
    "StoredRun",
    "get_run",
    "insert_run",
    "list_runs",
]

RunStatus = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"]
STATUSES: tuple[RunStatus, ...] = ("PENDING", "RUNNING", "COMPLETED", "FAILED")
FINISHED: frozenset[str] = frozenset({"COMPLETED", "FAILED"})
MAX_SEED = 2**63 - 1


class ScenarioChoice(BaseModel):
    """A scenario of the library by name, with a weight 1–5 (default the scenario's own)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    weight: int | None = Field(default=None, ge=1, le=5)


class EvaluationSpec(BaseModel):
    """What to evaluate: a prompt version (`name@version`, an id, or a name for its highest
    active version) over either scenarios chosen by name or a scenario set, each played
    `repeat` times."""

    model_config = ConfigDict(extra="forbid")

    prompt_version: str = Field(min_length=1, max_length=120)
    scenarios: list[ScenarioChoice] | None = Field(default=None, min_length=1, max_length=200)
    scenario_set: str | None = Field(default=None, min_length=1, max_length=100)
    repeat: int = Field(default=1, ge=1, le=10)
    mode: Literal["text", "audio"] = "text"
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    judge: Literal["rubric", "llm"] = "rubric"
    label: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _one_source(self) -> EvaluationSpec:
        if (self.scenarios is None) == (self.scenario_set is None):
            raise ValueError("give exactly one of scenarios and scenario_set")
        if self.scenarios is not None:
            names = [c.name for c in self.scenarios]
            twice = next((n for n in names if names.count(n) > 1), None)
            if twice is not None:
                raise ValueError(f"scenarios: {twice!r} is chosen twice (use repeat)")
        return self


class CallResult(BaseModel):
    """One call of a run: the frozen scenario (with its weight in the run), which repeat,
    and what it left behind once done."""

    idx: int
    scenario: Scenario
    personality: Personality
    weight: int
    repeat: int
    seed: int
    status: RunStatus
    call_id: str | None = None
    call: SimulatedCall | None = None
    score: CallScore | None = None
    error: str | None = None
    duration_s: float | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None


class StoredRun(BaseModel):
    """What every stored run has (an evaluation run, a tuning run): its status, why it
    failed, who started it and when it was created, started and finished. A subclass sets
    `FINISHED`, the statuses it ends in."""

    FINISHED: ClassVar[frozenset[str]]

    status: str
    error: str | None
    actor: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED


class EvaluationRun(StoredRun):
    FINISHED: ClassVar[frozenset[str]] = FINISHED

    id: int
    prompt_version_id: int
    prompt_version: str  # name@version
    spec: EvaluationSpec
    status: RunStatus
    calls_total: int
    calls_done: int
    calls_failed: int
    weighted_score: float | None
    pass_k: float | None
    label: str | None
    #: the calls in order (empty in a listing)
    results: list[CallResult] = Field(default_factory=list)


class FrozenCall(BaseModel):
    """A call row as created: what it will play."""

    scenario: Scenario
    personality: Personality
    weight: int
    repeat: int
    seed: int


_RUN = """
    SELECT e.id, e.prompt_version_id, pv.name || '@' || pv.version AS prompt_version, e.spec,
           e.status, e.calls_total, e.calls_done, e.calls_failed, e.weighted_score, e.pass_k,
           e.error, e.label, e.actor, e.created_at, e.started_at, e.finished_at
    FROM evaluations e JOIN prompt_versions pv ON pv.id = e.prompt_version_id
"""
_CALLS = """
    SELECT idx, scenario, personality, weight, repeat, seed, status, call_id, call, score, error,
           duration_s, started_at, finished_at
    FROM evaluation_calls WHERE evaluation_id = $1 ORDER BY idx
"""


def _run(row: asyncpg.Record, results: Sequence[asyncpg.Record] = ()) -> EvaluationRun:
    data: dict[str, Any] = dict(row)
    data["spec"] = EvaluationSpec.model_validate(data["spec"])
    data["results"] = [call_result(r) for r in results]
    return EvaluationRun.model_validate(data)


def call_result(row: asyncpg.Record) -> CallResult:
    return CallResult.model_validate(dict(row))


async def insert_run(conn: asyncpg.Connection, spec: EvaluationSpec, prompt_version_id: int,
                     calls: Sequence[FrozenCall], actor: str | None) -> int:
    """The run and its call rows (PENDING); returns its id."""
    run_id: int = await conn.fetchval(
        "INSERT INTO evaluations (prompt_version_id, spec, calls_total, label, actor)"
        " VALUES ($1, $2, $3, $4, $5) RETURNING id",
        prompt_version_id, spec.model_dump(mode="json"), len(calls), spec.label, actor)
    await conn.executemany(
        "INSERT INTO evaluation_calls (evaluation_id, idx, scenario, personality, weight, repeat, seed)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [(run_id, i, c.scenario.model_dump(mode="json"), c.personality.model_dump(mode="json"),
          c.weight, c.repeat, c.seed) for i, c in enumerate(calls)])
    return run_id


async def get_run(db: Executor, run_id: int, *, with_results: bool = True) -> EvaluationRun:
    if not 0 < run_id <= MAX_SEED:
        raise NotFound(f"no evaluation {run_id}", field="evaluation")
    row = await db.fetchrow(_RUN + " WHERE e.id = $1", run_id)
    if row is None:
        raise NotFound(f"no evaluation {run_id}", field="evaluation")
    return _run(row, await db.fetch(_CALLS, run_id) if with_results else ())


async def list_runs(db: Executor, *, status: str | None = None, prompt_version_id: int | None = None,
                    label: str | None = None, limit: int = 100, after: int | None = None) -> list[EvaluationRun]:
    """Runs newest first (ids below `after` when given), without their results."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("e.status", status), ("e.prompt_version_id", prompt_version_id),
                          ("e.label", label)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if after is not None:
        args.append(after)
        where.append(f"e.id < ${len(args)}")
    args.append(limit)
    sql = _RUN + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY e.id DESC LIMIT ${len(args)}"
    return [_run(r) for r in await db.fetch(sql, *args)]
