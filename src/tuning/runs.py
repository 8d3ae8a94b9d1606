"""Stored tuning runs: the writer–critique loop (tuning.loop.step) over evaluation runs, a
run and every iteration recorded in PostgreSQL (tuning.run_store), each candidate saved as
a prompt version.

    run = await runs.create_tuning(pool, TuningSpec(prompt_version="collections-weak@1",
                                                    scenario_set="default", heldout_set="default-heldout",
                                                    target=95, max_iterations=5))
    await jobs.defer_tuning(run.id)             # the `dialkit.tuning_run` job runs `run_tuning`
    done = await runs.wait_for_tuning(pool, run.id)

- `create_tuning` validates the request (unknown prompt version, scenario or set:
  NotFound; weights, target, iterations out of range: the spec's own validation; an LLM
  writer with no LLM configured or not installed: Unrunnable) and stores it PENDING.
- `run_tuning` (the job's body) evaluates the current version on the training and the
  held-out scenarios (two evaluation runs deferred together, so their calls run in
  parallel over the job library), then iterates: one `tuning.loop.step`, the approved
  candidate saved as the next prompt version of the name (its parent the version it came
  from, its notes naming the run and the iteration) and evaluated the same way. Each
  iteration's row is written in its own transaction as it completes.
- It is idempotent: run again (a job redelivered after its worker died), it starts after
  the last recorded iteration with the writer's state restored, reusing the evaluations
  and the prompt version an interrupted iteration had already made (found by their label
  and notes). Completed iterations are never lost.
- Cancel (`cancel_tuning`) sets `cancel_requested`; the job stops at its next step
  (CANCELLED, the best version so far kept as final). A target not reached ends COMPLETED
  after `max_iterations` with the best version found.
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any, Protocol

import asyncpg
import structlog

from ai.llm_text import LLMSettings
from ai.playbook import Playbook
from evaluation import library
from evaluation.library_errors import Conflict, Executor, transaction
from evaluation.prompt_versions import PromptVersion
from evaluation.run_store import EvaluationRun, EvaluationSpec
from evaluation.runs import Unrunnable, create_evaluation, get_evaluation
from evaluation.waiting import wait_finished
from tuning.analysis import ScenarioResult
from tuning.loop import Candidate, Iteration, scores_of, step
from tuning.run_store import (
    FINISHED,
    TuningRun,
    TuningSpec,
    get_run,
    insert_iteration,
    insert_run,
    list_runs,
)
from tuning.writer import OfflineWriter, Writer

__all__ = [
    "Deferrer",
    "TuningRun",
    "TuningSpec",
    "cancel_tuning",
    "create_tuning",
    "export_yaml",
    "get_tuning",
    "list_tuning",
    "llm_settings",
    "make_writer",
    "run_tuning",
    "wait_for_tuning",
]

log = structlog.get_logger("dialkit.tuning")


class Deferrer(Protocol):
    """What the job needs of dialkit.jobs.Jobs: the evaluation calls deferred."""

    async def defer_evaluation(self, evaluation_id: int) -> int: ...


class _Cancelled(Exception):
    pass


def llm_settings(settings: Any) -> LLMSettings | None:
    """The LLM writer's settings from dialkit's (OPENAI_API_KEY, OPENAI_MODEL,
    OPENAI_BASE_URL); None when no key is set."""
    key = getattr(settings, "openai_api_key", None) if settings is not None else None
    if key is None:
        return None
    return LLMSettings(model=settings.openai_model, api_key=key.get_secret_value(),
                       base_url=settings.openai_base_url)


def make_writer(kind: str, seed: int, llm: LLMSettings | None) -> Writer:
    """The writer a run asks for: the offline one, or tuning.writer_llm.LLMWriter (imported
    here, so a build without it still tunes offline); Unrunnable when it cannot be made."""
    if kind == "offline":
        return OfflineWriter(seed)
    if llm is None:
        raise Unrunnable("writer: no LLM is configured for the LLM writer (set OPENAI_API_KEY),"
                         " or use the offline writer", field="writer")
    try:
        module = importlib.import_module("tuning.writer_llm")
    except ImportError:
        raise Unrunnable("writer: the LLM writer is not part of this build; use the offline"
                         " writer", field="writer") from None
    writer: Writer = module.LLMWriter(llm, seed=seed)
    return writer


async def _check_scenarios(conn: Executor, spec: TuningSpec) -> None:
    for names, set_name, what in ((spec.scenarios, spec.scenario_set, "scenario_set"),
                                  (spec.heldout_scenarios, spec.heldout_set, "heldout_set")):
        if set_name is not None:
            scenarios = await library.get_scenario_set(conn, set_name)
            if not scenarios:
                from evaluation.library_errors import Invalid

                raise Invalid(f"{what}: the set {set_name!r} has no scenarios", field=what)
        for choice in names or []:
            await library.get_scenario(conn, choice.name)


async def create_tuning(pool: Executor, spec: TuningSpec, *, actor: str | None = None,
                        llm: LLMSettings | None = None, check_writer: bool = True) -> TuningRun:
    """Validate and store a run (PENDING); it does not defer the job. With `check_writer`,
    an LLM writer that cannot be made here (no LLM settings, not installed) is refused now."""
    async with transaction(pool) as conn:
        pv = await library.get_prompt_version(conn, spec.prompt_version)
        from evaluation.runs import _runnable_playbook

        _runnable_playbook(pv)
        await _check_scenarios(conn, spec)
        if check_writer:
            make_writer(spec.writer, spec.seed, llm)
        run_id = await insert_run(conn, spec, pv.id, actor)
        return await get_run(conn, run_id)


async def get_tuning(pool: Executor, tuning_id: int) -> TuningRun:
    return await get_run(pool, tuning_id)


async def list_tuning(pool: Executor, *, status: str | None = None, prompt_version: str | None = None,
                      limit: int = 100, after: int | None = None) -> list[TuningRun]:
    pv_id = None
    if prompt_version is not None:
        pv_id = (await library.get_prompt_version(pool, prompt_version)).id
    return await list_runs(pool, status=status, prompt_version_id=pv_id, limit=limit, after=after)


async def cancel_tuning(pool: Executor, tuning_id: int) -> TuningRun:
    """Ask a run to stop: a PENDING one is CANCELLED at once, a RUNNING one at its next
    step. Conflict when it has already finished."""
    async with transaction(pool) as conn:
        run = await get_run(conn, tuning_id, with_iterations=False)
        if run.status in FINISHED:
            raise Conflict(f"tuning run {tuning_id} has already finished ({run.status})", field="tuning")
        await conn.execute(
            "UPDATE tuning_runs SET cancel_requested = true,"
            " status = CASE WHEN status = 'PENDING' THEN 'CANCELLED' ELSE status END,"
            " finished_at = CASE WHEN status = 'PENDING' THEN now() ELSE finished_at END"
            " WHERE id = $1", tuning_id)
        return await get_run(conn, tuning_id)


async def wait_for_tuning(pool: Executor, tuning_id: int, *, poll_s: float = 0.2,
                          timeout_s: float | None = None) -> TuningRun:
    """The run once COMPLETED, FAILED or CANCELLED; TimeoutError after `timeout_s`."""
    return await wait_finished(
        lambda: pool.fetchval("SELECT status FROM tuning_runs WHERE id = $1", tuning_id),
        lambda: get_run(pool, tuning_id), FINISHED, f"tuning run {tuning_id}", "tuning",
        poll_s=poll_s, timeout_s=timeout_s)


# ---- the job ---------------------------------------------------------------------------


def _results(run: EvaluationRun) -> list[ScenarioResult]:
    return [ScenarioResult(r.scenario.model_copy(update={"weight": r.weight}), r.call, r.score, r.personality)
            for r in run.results if r.call is not None and r.score is not None]


class _Job:
    def __init__(self, pool: asyncpg.Pool, run: TuningRun, jobs: Deferrer, poll_s: float) -> None:
        self.pool, self.run, self.jobs, self.poll_s = pool, run, jobs, poll_s
        self.spec = run.spec

    async def cancelled(self) -> bool:
        return bool(await self.pool.fetchval("SELECT cancel_requested FROM tuning_runs WHERE id = $1",
                                             self.run.id))

    def _eval_spec(self, pv: PromptVersion, train: bool, label: str) -> EvaluationSpec:
        s = self.spec
        fields: dict[str, Any] = ({"scenarios": s.scenarios, "scenario_set": s.scenario_set} if train else
                                  {"scenarios": s.heldout_scenarios, "scenario_set": s.heldout_set})
        return EvaluationSpec(prompt_version=pv.ref, repeat=s.repeat, seed=s.seed, label=label, **fields)

    async def _evaluation(self, pv: PromptVersion, train: bool, what: str) -> tuple[int, bool]:
        """The evaluation of `pv` for `what` (made before this job was interrupted, or new)."""
        label = f"tuning {self.run.id} {what} {'train' if train else 'heldout'}"
        found = await self.pool.fetchval(
            "SELECT id FROM evaluations WHERE label = $1 AND prompt_version_id = $2"
            " AND status <> 'FAILED' ORDER BY id DESC LIMIT 1", label, pv.id)
        if found is not None:
            return found, False
        created = await create_evaluation(self.pool, self._eval_spec(pv, train, label), actor="tuning")
        return created.id, True

    async def _wait(self, evaluation_id: int) -> EvaluationRun:
        while True:
            status = await self.pool.fetchval("SELECT status FROM evaluations WHERE id = $1", evaluation_id)
            if status in ("COMPLETED", "FAILED"):
                done = await get_evaluation(self.pool, evaluation_id)
                if done.status == "FAILED":
                    raise RuntimeError(f"evaluation {evaluation_id} failed: {done.error}")
                return done
            if await self.cancelled():
                raise _Cancelled()
            await asyncio.sleep(self.poll_s)

    async def evaluate(self, pv: PromptVersion, what: str) -> Candidate:
        """`pv` on the training and the held-out scenarios, both runs' calls deferred together."""
        ids = [await self._evaluation(pv, True, what), await self._evaluation(pv, False, what)]
        for evaluation_id, _new in ids:
            await self.jobs.defer_evaluation(evaluation_id)  # only calls still pending
        train, heldout = await asyncio.gather(*(self._wait(i) for i, _ in ids))
        results = _results(train)
        assert train.weighted_score is not None and heldout.weighted_score is not None
        return Candidate(pv.playbook(), train.weighted_score, heldout.weighted_score, scores_of(results),
                         results, {"prompt_version_id": pv.id, "train_evaluation_id": train.id,
                                   "heldout_evaluation_id": heldout.id}, pv.system_prompt_template)

    async def candidate_version(self, parent: PromptVersion, playbook: Playbook, n: int,
                                rationale: str, template: str | None = None) -> PromptVersion:
        """The candidate as the next prompt version of the name, with its system-prompt
        `template` (None: the parent's), or the one an interrupted attempt at this iteration
        saved, when there is one."""
        note = f"tuning run {self.run.id} iteration {n}"
        found = await self.pool.fetchval(
            "SELECT id FROM prompt_versions WHERE name = $1 AND parent_id = $2 AND notes LIKE $3"
            " ORDER BY id LIMIT 1", parent.name, parent.id, note + ":%")
        if found is not None:
            return await library.get_prompt_version(self.pool, found)
        data = playbook.model_dump(mode="json", exclude={"name", "version"})
        return await library.create_prompt_version(
            self.pool, name=parent.name, playbook=data,
            system_prompt_template=parent.system_prompt_template if template is None else template,
            llm=parent.llm, notes=f"{note}: {rationale}"[:2000], tags=["tuning"], parent=parent.id,
            actor="tuning")


async def _current(job: _Job, run: TuningRun) -> tuple[Candidate, PromptVersion, Candidate]:
    """(current, its prompt version, initial) from what is recorded, evaluating the initial
    version when that has not been done."""
    initial_pv = await library.get_prompt_version(job.pool, run.prompt_version_id)
    initial = await job.evaluate(initial_pv, "initial")
    if run.initial_train_score is None:
        await job.pool.execute(
            "UPDATE tuning_runs SET initial_train_score = $2, initial_heldout_score = $3,"
            " initial_train_evaluation_id = $4, initial_heldout_evaluation_id = $5, initial_per_scenario = $6,"
            " final_prompt_version_id = prompt_version_id, final_train_score = $2, final_heldout_score = $3"
            " WHERE id = $1", run.id, initial.train_score, initial.heldout_score,
            initial.extra["train_evaluation_id"], initial.extra["heldout_evaluation_id"], initial.per_scenario)
    accepted = [it for it in run.iterations if it.accepted]
    if not accepted:
        return initial, initial_pv, initial
    pv = await library.get_prompt_version(job.pool, accepted[-1].prompt_version_id)
    return await job.evaluate(pv, f"iteration {accepted[-1].n}"), pv, initial


async def _record(pool: asyncpg.Pool, run_id: int, it: Iteration, parent: PromptVersion,
                  candidate_pv: PromptVersion | None, current: Candidate, current_pv: PromptVersion) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await insert_iteration(
            conn, run_id, n=it.n, prompt_version_id=(candidate_pv or parent).id, parent_id=parent.id,
            train_score=it.train_score, heldout_score=it.heldout_score, per_scenario=it.per_scenario,
            delta=it.delta, accepted=it.accepted, reason=it.reason,
            train_evaluation_id=it.extra.get("train_evaluation_id"),
            heldout_evaluation_id=it.extra.get("heldout_evaluation_id"), analysis=it.analysis,
            exchange=it.exchange, tokens=it.tokens, cost_usd=it.cost_usd, writer_state=it.writer_state)
        await conn.execute(
            "UPDATE tuning_runs SET current_iteration = $2, final_prompt_version_id = $3,"
            " final_train_score = $4, final_heldout_score = $5 WHERE id = $1",
            run_id, it.n, current_pv.id, current.train_score, current.heldout_score)


async def _finish(pool: asyncpg.Pool, run_id: int, status: str, outcome: str | None,
                  error: str | None = None) -> None:
    await pool.execute("UPDATE tuning_runs SET status = $2, outcome = $3, error = $4, finished_at = now()"
                       " WHERE id = $1 AND status NOT IN ('COMPLETED', 'FAILED', 'CANCELLED')",
                       run_id, status, outcome, error)


async def run_tuning(pool: asyncpg.Pool, tuning_id: int, jobs: Deferrer, *,
                     llm: LLMSettings | None = None, poll_s: float = 0.1) -> str:
    """The `dialkit.tuning_run` job: the run from where it is (see the module docstring).
    Returns its status."""
    run = await get_run(pool, tuning_id)
    if run.finished:
        return run.status
    await pool.execute("UPDATE tuning_runs SET status = 'RUNNING', started_at = coalesce(started_at, now())"
                       " WHERE id = $1 AND status = 'PENDING'", tuning_id)
    job = _Job(pool, run, jobs, poll_s)
    spec = run.spec
    try:
        if await job.cancelled():
            raise _Cancelled()
        writer = make_writer(spec.writer, spec.seed, llm)
        if run.iterations:
            writer.restore(run.iterations[-1].writer_state)
        current, current_pv, _ = await _current(job, run)
        outcome = f"the target {spec.target:g} was not reached in {spec.max_iterations} iterations"
        for n in range(len(run.iterations) + 1, spec.max_iterations + 1):
            if await job.cancelled():
                raise _Cancelled()
            if current.train_score >= spec.target:
                outcome = f"the target {spec.target:g} was met"
                break
            await pool.execute("UPDATE tuning_runs SET current_iteration = $2 WHERE id = $1", tuning_id, n)
            parent = current_pv
            saved: dict[str, PromptVersion] = {}

            async def evaluate_candidate(approved: Playbook, n: int, template: str | None,
                                         parent: PromptVersion = parent,
                                         saved: dict[str, PromptVersion] = saved) -> Candidate:
                pv = await job.candidate_version(parent, approved, n, "the writer's proposal, approved",
                                                 template)
                saved["pv"] = pv
                return await job.evaluate(pv, f"iteration {n}")

            done = await step(n, writer, current, evaluate_candidate)
            current = done.current
            if done.iteration.accepted:
                current_pv = saved["pv"]
            await _record(pool, tuning_id, done.iteration, parent, saved.get("pv"), current, current_pv)
            log.info("tuning_iteration", tuning=tuning_id, n=n, train=done.iteration.train_score,
                     heldout=done.iteration.heldout_score, accepted=done.iteration.accepted)
            if done.exhausted:
                outcome = "the writer had nothing left to try"
                break
        else:
            if current.train_score >= spec.target:
                outcome = f"the target {spec.target:g} was met"
        await _finish(pool, tuning_id, "COMPLETED", outcome)
    except _Cancelled:
        await _finish(pool, tuning_id, "CANCELLED", "cancelled; the best version so far is final")
    except asyncio.CancelledError:
        raise  # the worker is stopping: the job runs again elsewhere, from the last iteration
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}".strip()
        reason = getattr(exc, "reason", None) or reason
        log.warning("tuning_failed", tuning=tuning_id, error=reason)
        await _finish(pool, tuning_id, "FAILED", None, reason)
    return str(await pool.fetchval("SELECT status FROM tuning_runs WHERE id = $1", tuning_id))



async def export_yaml(pool: Executor, tuning_id: int) -> tuple[str, str]:
    """(prompt version ref, YAML) of a run's final prompt version (the best so far while it
    runs, the initial one before any is evaluated): its playbook, a file `dialkit` loads as
    a playbook, headed by comments naming the run and the scores."""
    import yaml

    run = await get_run(pool, tuning_id, with_iterations=False)
    pv = await library.get_prompt_version(pool, run.final_prompt_version_id or run.prompt_version_id)
    head = [f"# {pv.ref}: tuning run {run.id} ({run.status}) from {run.prompt_version}"]
    if run.final_train_score is not None:
        head.append(f"# training {run.initial_train_score} -> {run.final_train_score},"
                    f" held out {run.initial_heldout_score} -> {run.final_heldout_score}")
    body = yaml.safe_dump(pv.playbook_data, sort_keys=False, allow_unicode=True)
    return pv.ref, "\n".join(head) + "\n" + body
