"""Tuning runs in PostgreSQL (sql/012_tuning.sql): the request (`TuningSpec`), a run
(`TuningRun`) and its iterations (`TuningIteration`), and the rows they come from. An
iteration row is written in its own transaction as the iteration completes, so a run
interrupted later never loses it."""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from evaluation.library_errors import Executor, NotFound
from evaluation.run_store import MAX_SEED, ScenarioChoice, StoredRun

__all__ = [
    "FINISHED",
    "TuningIteration",
    "TuningRun",
    "TuningSpec",
    "TuningStatus",
    "get_iterations",
    "get_run",
    "insert_iteration",
    "list_runs",
]

TuningStatus = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED"]
FINISHED: frozenset[str] = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


def _one_of(scenarios: list[ScenarioChoice] | None, scenario_set: str | None, what: str) -> None:
    if (scenarios is None) == (scenario_set is None):
        raise ValueError(f"give exactly one of {what}scenarios and {what}scenario_set")
    if scenarios is not None:
        names = [c.name for c in scenarios]
        twice = next((n for n in names if names.count(n) > 1), None)
        if twice is not None:
            raise ValueError(f"{what}scenarios: {twice!r} is chosen twice")


class TuningSpec(BaseModel):
    """What to tune: a prompt version (`name@version`, an id, or a name), the training
    scenarios (a set, or scenarios by name with weights 1-5) and the held-out ones, the
    target weighted score, at most `max_iterations` iterations, each scenario played
    `repeat` times, the seed, and the writer (offline: playbook edits; llm: tuning.writer_llm)."""

    model_config = ConfigDict(extra="forbid")

    prompt_version: str = Field(min_length=1, max_length=120)
    scenarios: list[ScenarioChoice] | None = Field(default=None, min_length=1, max_length=200)
    scenario_set: str | None = Field(default=None, min_length=1, max_length=100)
    heldout_scenarios: list[ScenarioChoice] | None = Field(default=None, min_length=1, max_length=200)
    heldout_set: str | None = Field(default=None, min_length=1, max_length=100)
    target: float = Field(default=95.0, ge=0, le=100)
    max_iterations: int = Field(default=5, ge=1, le=10)
    repeat: int = Field(default=1, ge=1, le=10)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    writer: Literal["offline", "llm"] = "offline"

    @model_validator(mode="after")
    def _sources(self) -> TuningSpec:
        _one_of(self.scenarios, self.scenario_set, "")
        _one_of(self.heldout_scenarios, self.heldout_set, "heldout_")
        return self


class TuningIteration(BaseModel):
    n: int
    prompt_version_id: int
    prompt_version: str  # name@version
    parent_id: int
    parent: str
    train_score: float
    heldout_score: float
    per_scenario: dict[str, float]
    delta: float
    accepted: bool
    reason: str
    train_evaluation_id: int | None
    heldout_evaluation_id: int | None
    analysis: str
    exchange: str
    tokens: int
    cost_usd: float
    writer_state: dict[str, Any]
    created_at: dt.datetime


class TuningRun(StoredRun):
    FINISHED: ClassVar[frozenset[str]] = FINISHED

    id: int
    prompt_version_id: int
    prompt_version: str  # the initial one, name@version
    spec: TuningSpec
    status: TuningStatus
    current_iteration: int
    initial_train_score: float | None
    initial_heldout_score: float | None
    initial_train_evaluation_id: int | None
    initial_heldout_evaluation_id: int | None
    initial_per_scenario: dict[str, float] | None
    final_prompt_version_id: int | None
    final_prompt_version: str | None
    final_train_score: float | None
    final_heldout_score: float | None
    outcome: str | None
    cancel_requested: bool
    #: in order (empty in a listing)
    iterations: list[TuningIteration] = Field(default_factory=list)

    def pareto(self) -> list[tuple[str, float, float]]:
        """The Pareto pool, as GEPA keeps it: (prompt version, training, held-out score) of
        the versions evaluated (the initial one, every candidate) that no other beats on every
        training scenario."""
        members: list[tuple[str, float, float, dict[str, float]]] = []
        if self.initial_per_scenario is not None and self.initial_train_score is not None:
            members.append((self.prompt_version, self.initial_train_score, self.initial_heldout_score or 0.0,
                            self.initial_per_scenario))
        members += [(it.prompt_version, it.train_score, it.heldout_score, it.per_scenario)
                    for it in self.iterations if it.train_evaluation_id is not None]
        from tuning.loop import pareto_front

        return [members[i][:3] for i in pareto_front([m[3] for m in members])]


_RUN = """
    SELECT t.id, t.prompt_version_id, pv.name || '@' || pv.version AS prompt_version, t.spec,
           t.status, t.current_iteration, t.initial_train_score, t.initial_heldout_score,
           t.initial_train_evaluation_id, t.initial_heldout_evaluation_id, t.initial_per_scenario,
           t.final_prompt_version_id, fv.name || '@' || fv.version AS final_prompt_version,
           t.final_train_score, t.final_heldout_score, t.outcome, t.error, t.cancel_requested,
           t.actor, t.created_at, t.started_at, t.finished_at
    FROM tuning_runs t JOIN prompt_versions pv ON pv.id = t.prompt_version_id
    LEFT JOIN prompt_versions fv ON fv.id = t.final_prompt_version_id
"""
_ITERATIONS = """
    SELECT i.n, i.prompt_version_id, v.name || '@' || v.version AS prompt_version, i.parent_id,
           p.name || '@' || p.version AS parent, i.train_score, i.heldout_score, i.per_scenario,
           i.delta, i.accepted, i.reason, i.train_evaluation_id, i.heldout_evaluation_id,
           i.analysis, i.exchange, i.tokens, i.cost_usd, i.writer_state, i.created_at
    FROM tuning_iterations i JOIN prompt_versions v ON v.id = i.prompt_version_id
    JOIN prompt_versions p ON p.id = i.parent_id
    WHERE i.run_id = $1 ORDER BY i.n
"""


def _run(row: asyncpg.Record, iterations: list[TuningIteration] | None = None) -> TuningRun:
    data: dict[str, Any] = dict(row)
    data["spec"] = TuningSpec.model_validate(data["spec"])
    data["iterations"] = iterations or []
    return TuningRun.model_validate(data)


async def insert_run(conn: Executor, spec: TuningSpec, prompt_version_id: int, actor: str | None) -> int:
    run_id: int = await conn.fetchval(
        "INSERT INTO tuning_runs (prompt_version_id, spec, actor) VALUES ($1, $2, $3) RETURNING id",
        prompt_version_id, spec.model_dump(mode="json"), actor)
    return run_id


async def get_iterations(db: Executor, run_id: int) -> list[TuningIteration]:
    return [TuningIteration.model_validate(dict(r)) for r in await db.fetch(_ITERATIONS, run_id)]


async def get_run(db: Executor, run_id: int, *, with_iterations: bool = True) -> TuningRun:
    if not 0 < run_id <= MAX_SEED:
        raise NotFound(f"no tuning run {run_id}", field="tuning")
    row = await db.fetchrow(_RUN + " WHERE t.id = $1", run_id)
    if row is None:
        raise NotFound(f"no tuning run {run_id}", field="tuning")
    return _run(row, await get_iterations(db, run_id) if with_iterations else None)


async def list_runs(db: Executor, *, status: str | None = None, prompt_version_id: int | None = None,
                    limit: int = 100, after: int | None = None) -> list[TuningRun]:
    """Runs newest first (ids below `after` when given), without their iterations."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("t.status", status), ("t.prompt_version_id", prompt_version_id)):
        if value is not None:
            args.append(value)
            where.append(f"{column} = ${len(args)}")
    if after is not None:
        args.append(after)
        where.append(f"t.id < ${len(args)}")
    args.append(limit)
    sql = _RUN + (" WHERE " + " AND ".join(where) if where else "") + f" ORDER BY t.id DESC LIMIT ${len(args)}"
    return [_run(r) for r in await db.fetch(sql, *args)]


async def insert_iteration(conn: Executor, run_id: int, *, n: int, prompt_version_id: int, parent_id: int,
                           train_score: float, heldout_score: float, per_scenario: dict[str, float],
                           delta: float, accepted: bool, reason: str, train_evaluation_id: int | None,
                           heldout_evaluation_id: int | None, analysis: str, exchange: str, tokens: int,
                           cost_usd: float, writer_state: dict[str, Any]) -> bool:
    """The iteration's row (False when it is already there: a redelivered job)."""
    done = await conn.execute(
        "INSERT INTO tuning_iterations (run_id, n, prompt_version_id, parent_id, train_score,"
        " heldout_score, per_scenario, delta, accepted, reason, train_evaluation_id,"
        " heldout_evaluation_id, analysis, exchange, tokens, cost_usd, writer_state)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        " ON CONFLICT (run_id, n) DO NOTHING",
        run_id, n, prompt_version_id, parent_id, train_score, heldout_score, per_scenario, delta,
        accepted, reason, train_evaluation_id, heldout_evaluation_id, analysis, exchange, tokens,
        cost_usd, writer_state)
    return bool(done == "INSERT 0 1")
