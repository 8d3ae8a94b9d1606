"""Evaluation runs: a prompt version played against a batch of weighted scenarios, each
`repeat` times, scored call by call (evaluation.scoring), the calls fanned out as jobs.

    run = await runs.create_evaluation(pool, EvaluationSpec(prompt_version="collections-default@1",
                                                            scenario_set="default", repeat=2))
    await jobs.defer_evaluation(run.id)          # one `dialkit.evaluation_call` job per call
    done = await runs.wait_for_evaluation(pool, run.id)
    done.status, done.weighted_score, done.pass_k, done.results[0].score

- `create_evaluation` validates the request (unknown prompt version, scenario or set:
  NotFound; a deleted personality or scenario: Conflict; a prompt version whose playbook
  or template no longer validates, or that audio mode cannot play: Unrunnable), freezes the
  scenarios (with their weights) and personalities into one PENDING call row per
  (scenario, repeat) and marks the prompt version used. It does not defer the jobs.
- `run_call` (the job's body) plays one call and scores it. Its seed comes from the run's
  seed, the scenario's name and the repeat (`call_seed`), so the same seed gives the same
  calls and the same scores. The first call to start sets the run RUNNING; the last to
  finish, holding the run's row lock, finalises it: COMPLETED with the weighted score and
  pass^k, or FAILED with the number of failed calls and the first error (a judge that
  answers with malformed JSON or times out, JudgeError, fails its call). The prompt
  version's run statistics take the finished calls.
- Audio mode needs a running server (`AudioServices`): the debtor's speech through TTS, the
  carrier protocol over a real WebSocket, the server's STT. The server plays its own
  playbook, so an audio run of a prompt version whose playbook differs from it is refused
  (422, "use text mode") rather than scored against a playbook it did not play.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog

from ai.llm_text import LLMSettings
from ai.playbook import Playbook, PlaybookError
from ai.protocols import STT, TTS
from evaluation import library
from evaluation.judge_llm import LLMJudge
from evaluation.judges import Judge, JudgeError, RubricJudge
from evaluation.library_errors import (
    Conflict,
    Executor,
    Invalid,
    LibraryError,
    NotFound,
    transaction,
)
from evaluation.models import CallScore, Personality, Scenario, SimulatedCall
from evaluation.prompt_versions import PromptVersion
from evaluation.run_store import (
    FINISHED,
    CallResult,
    EvaluationRun,
    EvaluationSpec,
    FrozenCall,
    RunStatus,
    ScenarioChoice,
    get_run,
    insert_run,
    list_runs,
)
from evaluation.scoring import evaluate_call, pass_k, weighted_score
from evaluation.text_call import run_text_simulation
from evaluation.waiting import wait_finished

__all__ = [
    "AudioServices",
    "CallResult",
    "Conflict",
    "EvaluationRun",
    "EvaluationServices",
    "EvaluationSpec",
    "Invalid",
    "LibraryError",
    "NotFound",
    "RunStatus",
    "ScenarioChoice",
    "Unrunnable",
    "call_seed",
    "create_evaluation",
    "get_evaluation",
    "list_evaluations",
    "run_call",
    "run_pending",
    "services_from_settings",
    "simulate",
    "simulate_and_score",
    "wait_for_evaluation",
]

log = structlog.get_logger("dialkit.evaluation")

#: the longest a simulated call may last (simulated seconds in text mode)
MAX_CALL_S = 240.0


class Unrunnable(LibraryError):
    """The request is well formed but cannot be run as asked (422): a prompt version that no
    longer validates, audio mode for a playbook the server does not play, an LLM judge
    when none is configured."""


@dataclass
class AudioServices:
    """A running dialkit server to call in audio mode, and the ears and mouth of the debtor."""

    url: str
    stt: STT
    tts: TTS
    #: the playbook the server plays (what an audio run's prompt version must hold)
    playbook: Playbook
    api_key: str | None = None
    carrier: str = "twilio"


@dataclass
class EvaluationServices:
    """What the calls need beyond the database: the LLM judge's settings (for judge="llm")
    and a server for audio mode. Prompt versions are immutable once used, so their parsed
    playbooks are kept here."""

    llm_judge: LLMSettings | None = None
    judge_samples: int = 3
    audio: AudioServices | None = None
    _prompts: dict[int, PromptVersion] = field(default_factory=dict, repr=False)

    def judge(self, kind: str) -> Judge:
        if kind == "llm":
            if self.llm_judge is None:
                raise JudgeError("judge: no LLM judge is configured (set OPENAI_API_KEY) on this worker")
            return LLMJudge(self.llm_judge, samples=self.judge_samples)
        return RubricJudge()

    async def prompt_version(self, db: Executor, prompt_version_id: int) -> PromptVersion:
        found = self._prompts.get(prompt_version_id)
        if found is None:
            found = await library.get_prompt_version(db, prompt_version_id)
            found.playbook()
            self._prompts[prompt_version_id] = found
        return found


def services_from_settings(settings: Any) -> EvaluationServices:
    """The services a worker has from dialkit's settings: the LLM judge when OPENAI_API_KEY
    is set (OPENAI_MODEL, OPENAI_BASE_URL); no audio server."""
    key = getattr(settings, "openai_api_key", None)
    if key is None:
        return EvaluationServices()
    return EvaluationServices(llm_judge=LLMSettings(
        model=settings.openai_model, api_key=key.get_secret_value(),
        base_url=settings.openai_base_url))


def call_seed(seed: int, scenario: str, repeat: int) -> int:
    """A call's seed from the run's seed, the scenario's name and the repeat (0-based)."""
    digest = hashlib.blake2b(f"{seed}:{scenario}:{repeat}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _same_playbook(a: Playbook, b: Playbook) -> bool:
    skip = {"name", "version"}
    return a.model_dump(mode="json", exclude=skip) == b.model_dump(mode="json", exclude=skip)


def _runnable_playbook(pv: PromptVersion) -> Playbook:
    try:
        playbook = pv.playbook()
        pv.template()
    except PlaybookError as exc:
        raise Unrunnable(f"prompt version {pv.ref} does not validate: {exc}",
                         field="prompt_version") from None
    if playbook.kind != "collections":
        raise Unrunnable(f"prompt version {pv.ref} holds a {playbook.kind} playbook, not a"
                         " collections one", field="prompt_version")
    return playbook


async def _chosen(conn: asyncpg.Connection, spec: EvaluationSpec) -> list[Scenario]:
    if spec.scenario_set is not None:
        return await library.get_scenario_set(conn, spec.scenario_set)
    chosen: list[ScenarioChoice] = spec.scenarios or []
    found = []
    for choice in chosen:
        scenario = await library.get_scenario(conn, choice.name)
        if choice.weight is not None:
            scenario = scenario.model_copy(update={"weight": choice.weight})
        found.append(scenario)
    return found


async def create_evaluation(pool: Executor, spec: EvaluationSpec, *, actor: str | None = None,
                            services: EvaluationServices | None = None) -> EvaluationRun:
    """Validate, freeze and store a run (PENDING; see the module docstring). With `services`
    (what the workers will have), a judge or mode they cannot serve is refused now."""
    async with transaction(pool) as conn:
        pv = await library.get_prompt_version(conn, spec.prompt_version)
        playbook = _runnable_playbook(pv)
        if spec.mode == "audio":
            audio = services.audio if services is not None else None
            if audio is None:
                raise Unrunnable("mode: audio mode needs a running server with speech; run it with"
                                 " `dialkit eval --mode audio`, or use text mode", field="mode")
            if not _same_playbook(playbook, audio.playbook):
                raise Unrunnable(
                    f"mode: audio mode plays the server's own playbook ({audio.playbook.name}),"
                    f" not prompt version {pv.ref}'s; use text mode for this prompt version",
                    field="mode")
        if spec.judge == "llm" and services is not None and services.llm_judge is None:
            raise Unrunnable("judge: no LLM is configured for the LLM judge (set OPENAI_API_KEY),"
                             " or use the rubric judge", field="judge")
        scenarios = await _chosen(conn, spec)
        if not scenarios:
            raise Invalid("scenario_set: the set has no scenarios", field="scenario_set")
        personalities: dict[str, Personality] = {}
        for s in scenarios:
            if s.personality not in personalities:
                personalities[s.personality] = await library.get_personality(conn, s.personality)
        calls = [FrozenCall(scenario=s, personality=personalities[s.personality], weight=s.weight,
                            repeat=r, seed=call_seed(spec.seed, s.name, r))
                 for s in scenarios for r in range(spec.repeat)]
        run_id = await insert_run(conn, spec, pv.id, calls, actor)
        await library.mark_used(conn, pv.id)
        return await get_run(conn, run_id)


async def get_evaluation(pool: Executor, evaluation_id: int) -> EvaluationRun:
    """A run with its calls' results; NotFound."""
    return await get_run(pool, evaluation_id)


async def list_evaluations(pool: Executor, *, status: str | None = None,
                           prompt_version: str | None = None, label: str | None = None,
                           limit: int = 100, after: int | None = None) -> list[EvaluationRun]:
    """Runs newest first, without results; `prompt_version` as `get_prompt_version` takes it
    (NotFound when there is none)."""
    pv_id = None
    if prompt_version is not None:
        pv_id = (await library.get_prompt_version(pool, prompt_version)).id
    return await list_runs(pool, status=status, prompt_version_id=pv_id, label=label,
                           limit=limit, after=after)


async def wait_for_evaluation(pool: Executor, evaluation_id: int, *, poll_s: float = 0.1,
                              timeout_s: float | None = None) -> EvaluationRun:
    """The run once COMPLETED or FAILED; TimeoutError after `timeout_s`."""
    return await wait_finished(
        lambda: pool.fetchval("SELECT status FROM evaluations WHERE id = $1", evaluation_id),
        lambda: get_run(pool, evaluation_id), FINISHED, f"evaluation {evaluation_id}", "evaluation",
        poll_s=poll_s, timeout_s=timeout_s)


async def run_pending(pool: asyncpg.Pool, evaluation_id: int, services: EvaluationServices, *,
                      concurrency: int = 1) -> EvaluationRun:
    """Work a run's pending calls in this process, without jobs (a tuning loop's inner
    evaluations, a script); jobs deferred for the same run find their calls done. Returns
    the run as it then is."""
    pending = [r["idx"] for r in await pool.fetch(
        "SELECT idx FROM evaluation_calls WHERE evaluation_id = $1 AND status = 'PENDING'"
        " ORDER BY idx", evaluation_id)]
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(idx: int) -> None:
        async with gate:
            await run_call(pool, evaluation_id, idx, services)

    async with asyncio.TaskGroup() as tg:
        for idx in pending:
            tg.create_task(one(idx))
    return await get_run(pool, evaluation_id)


# ---- one call --------------------------------------------------------------------------


async def simulate(playbook: Playbook, scenario: Scenario, personality: Personality, *, seed: int,
                   mode: str, audio: AudioServices | None = None) -> SimulatedCall:
    """One call played, in text mode or against the audio server (no database)."""
    if mode != "audio":
        return await run_text_simulation(playbook, scenario, personality, seed=seed,
                                         max_seconds=MAX_CALL_S)
    if audio is None:
        raise RuntimeError("audio mode: this worker has no server with speech to call")
    from evaluation.audio_call import run_audio_simulation

    call = await run_audio_simulation(audio.url, scenario, personality, seed=seed, stt=audio.stt,
                                      tts=audio.tts, carrier=audio.carrier, api_key=audio.api_key,
                                      max_seconds=MAX_CALL_S)
    if call.status == "failed":
        raise RuntimeError(f"audio call failed: {call.failure_reason}")
    return call


async def simulate_and_score(playbook: Playbook, scenario: Scenario, personality: Personality, *,
                             seed: int, mode: str, judge: Judge,
                             audio: AudioServices | None = None) -> tuple[SimulatedCall, CallScore]:
    """One call played and scored (no database)."""
    call = await simulate(playbook, scenario, personality, seed=seed, mode=mode, audio=audio)
    score = await evaluate_call(call, scenario, playbook, judge=judge, personality=personality)
    return call, score


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_CLAIM = """
    UPDATE evaluation_calls c SET status = 'RUNNING', started_at = now()
    FROM evaluations e
    WHERE c.evaluation_id = $1 AND c.idx = $2 AND c.status IN ('PENDING', 'RUNNING')
      AND e.id = c.evaluation_id
    RETURNING c.scenario, c.personality, c.weight, c.repeat, c.seed, e.spec, e.prompt_version_id
"""


async def run_call(pool: asyncpg.Pool, evaluation_id: int, call_index: int,
                   services: EvaluationServices) -> RunStatus | None:
    """Play and score one call of a run and store it; the last call finalises the run.
    Returns the run's status when this call finished it, else None. A call already done
    (a job delivered twice) is left alone."""
    row = await pool.fetchrow(_CLAIM, evaluation_id, call_index)
    if row is None:
        return None
    await pool.execute("UPDATE evaluations SET status = 'RUNNING', started_at = now()"
                       " WHERE id = $1 AND status = 'PENDING'", evaluation_id)
    spec = EvaluationSpec.model_validate(row["spec"])
    scenario = Scenario.model_validate(row["scenario"])
    began = time.perf_counter()
    call: SimulatedCall | None = None
    score: CallScore | None = None
    error: str | None = None
    try:
        pv = await services.prompt_version(pool, row["prompt_version_id"])
        personality = Personality.model_validate(row["personality"])
        judge = services.judge(spec.judge)
        call = await simulate(pv.playbook(), scenario, personality, seed=row["seed"], mode=spec.mode,
                              audio=services.audio)
        # a call the judge cannot score keeps its transcript, to see why
        score = await evaluate_call(call, scenario, pv.playbook(), judge=judge, personality=personality)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the call fails, the run records why
        error = f"{scenario.name} (repeat {row['repeat'] + 1}): {_reason(exc)}"
        log.warning("evaluation_call_failed", evaluation=evaluation_id, idx=call_index, error=error)
    return await _finish_call(pool, evaluation_id, call_index, call, score, error,
                              time.perf_counter() - began)


async def _finish_call(pool: asyncpg.Pool, evaluation_id: int, idx: int, call: SimulatedCall | None,
                       score: CallScore | None, error: str | None, duration_s: float) -> RunStatus | None:
    async with pool.acquire() as conn, conn.transaction():
        stored = await conn.execute(
            "UPDATE evaluation_calls SET status = $3, call_id = $4, call = $5, score = $6, error = $7,"
            " duration_s = $8, finished_at = now()"
            " WHERE evaluation_id = $1 AND idx = $2 AND status = 'RUNNING'",
            evaluation_id, idx, "FAILED" if error else "COMPLETED",
            call.call_id if call is not None else None,
            call.model_dump(mode="json") if call is not None else None,
            score.model_dump(mode="json") if score is not None else None, error, duration_s)
        if stored != "UPDATE 1":
            return None
        counts = await conn.fetchrow(
            "UPDATE evaluations SET calls_done = calls_done + 1,"
            " calls_failed = calls_failed + $2::int, error = coalesce(error, $3)"
            " WHERE id = $1 RETURNING calls_done, calls_total, calls_failed, prompt_version_id",
            evaluation_id, 1 if error else 0, error)
        if counts["calls_done"] < counts["calls_total"]:
            return None
        return await _finalise(conn, evaluation_id, counts)


async def _finalise(conn: asyncpg.Connection, evaluation_id: int, counts: Mapping[str, Any]) -> RunStatus:
    rows = await conn.fetch("SELECT scenario->>'name' AS name, weight, score, call->>'seconds' AS seconds"
                            " FROM evaluation_calls WHERE evaluation_id = $1 ORDER BY idx", evaluation_id)
    scored = [(r["name"], r["weight"], CallScore.model_validate(r["score"]))
              for r in rows if r["score"] is not None]
    total = counts["calls_total"]
    status: RunStatus
    if counts["calls_failed"]:
        status = "FAILED"
        first = await conn.fetchval("SELECT error FROM evaluation_calls WHERE evaluation_id = $1"
                                    " AND error IS NOT NULL ORDER BY idx LIMIT 1", evaluation_id)
        await conn.execute(
            "UPDATE evaluations SET status = 'FAILED', finished_at = now(), error = $2 WHERE id = $1",
            evaluation_id, f"{counts['calls_failed']} of {total} calls failed; first: {first}")
    else:
        status = "COMPLETED"
        groups: dict[str, list[bool]] = {}
        for name, _, s in scored:
            groups.setdefault(name, []).append(s.passed)
        await conn.execute(
            "UPDATE evaluations SET status = 'COMPLETED', finished_at = now(), weighted_score = $2,"
            " pass_k = $3 WHERE id = $1", evaluation_id,
            weighted_score([(w, s.score) for _, w, s in scored]), pass_k(groups))
    seconds = sum(float(r["seconds"]) for r in rows if r["seconds"] is not None)
    await library.record_run_stats(conn, counts["prompt_version_id"], runs=len(scored),
                                   successes=sum(1 for _, _, s in scored if s.passed), duration_s=seconds)
    log.info("evaluation_finished", evaluation=evaluation_id, status=status, calls=total)
    return status

