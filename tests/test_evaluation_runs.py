"""Evaluation runs (evaluation.runs) through procrastinate jobs and PostgreSQL: the default
playbook over the default set, offline in text mode; the same seed gives the same scores; a
planted violation scores 0 with the rule named; bad input is refused with the reason; a
call whose LLM judge answers malformed JSON fails the run with why; two workers share a
run's calls; and one run in audio mode (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from ai.llm_text import LLMSettings
from emulators.openai_api import Reply, running_openai
from evaluation import library, runs
from evaluation.judges import Judge
from evaluation.library_errors import Conflict, NotFound
from evaluation.models import Scenario
from evaluation.runs import EvaluationSpec, ScenarioChoice, Unrunnable
from tests.evaluation_helpers import (
    eval_worker,
    library_database_fixtures,
    library_pool,
    planted_prompt_version,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")
DEFAULT = "collections-default@1"


dburl, pool = library_database_fixtures("dialkit_runs")


async def _run(pool: asyncpg.Pool, dburl: str, spec: EvaluationSpec,
               services: runs.EvaluationServices | None = None) -> runs.EvaluationRun:
    created = await runs.create_evaluation(pool, spec, actor="tests", services=services)
    assert created.status == "PENDING" and created.calls_done == 0
    async with eval_worker(dburl, pool, services) as jobs:
        assert await jobs.defer_evaluation(created.id) == created.calls_total
        return await runs.wait_for_evaluation(pool, created.id, timeout_s=400)


async def test_default_playbook_over_the_default_set_completes(pool: asyncpg.Pool, dburl: str) -> None:
    before = await library.get_prompt_version(pool, DEFAULT)
    spec = EvaluationSpec(prompt_version=DEFAULT, scenario_set="default", seed=7, label="default text")
    run = await _run(pool, dburl, spec)
    assert run.status == "COMPLETED", run.error
    default_set = await library.get_scenario_set(pool, "default")
    assert [r.scenario.name for r in run.results] == [s.name for s in default_set]
    assert len(run.results) >= 8 and run.calls_done == run.calls_total == len(run.results)
    for r in run.results:
        assert r.status == "COMPLETED" and r.error is None
        assert r.call is not None and r.score is not None
        assert r.call.turns and {t.speaker for t in r.call.turns} >= {"agent"}
        assert r.call_id == r.call.call_id
        assert r.score.compliance_passed, (r.scenario.name, r.score.violations)
        assert {c.name for c in r.score.criteria} == {"task_completion", "efficiency"}
        assert all(c.evidence for c in r.score.criteria)
    scores = [(r.weight, r.score.score) for r in run.results if r.score]
    expected = round(sum(w * s for w, s in scores) / sum(w for w, _ in scores), 2)
    assert run.weighted_score == expected and 0 < expected <= 100
    passed = sum(1 for r in run.results if r.score and r.score.passed)
    assert run.pass_k == round(passed / len(run.results), 4)
    assert run.started_at is not None and run.finished_at is not None
    after = await library.get_prompt_version(pool, DEFAULT)
    assert after.runs == before.runs + len(run.results)
    assert after.successes == before.successes + passed
    assert after.used_at is not None and after.total_duration_s > before.total_duration_s


async def test_the_same_seed_gives_the_same_scores(pool: asyncpg.Pool, dburl: str) -> None:
    spec = EvaluationSpec(prompt_version=DEFAULT, scenario_set="default-heldout", seed=11, repeat=2)
    a = await _run(pool, dburl, spec)
    b = await _run(pool, dburl, spec)
    assert a.status == b.status == "COMPLETED"
    assert a.id != b.id
    assert [r.seed for r in a.results] == [r.seed for r in b.results]
    assert len({r.seed for r in a.results}) == len(a.results)  # each repeat its own seed
    assert [r.score for r in a.results] == [r.score for r in b.results]
    assert ([[t.text for t in r.call.turns] for r in a.results if r.call]
            == [[t.text for t in r.call.turns] for r in b.results if r.call])
    assert (a.weighted_score, a.pass_k) == (b.weighted_score, b.pass_k)
    assert runs.call_seed(11, "x", 0) == runs.call_seed(11, "x", 0) != runs.call_seed(12, "x", 0)


async def test_a_planted_violation_scores_zero_with_the_rule_named(pool: asyncpg.Pool, dburl: str) -> None:
    ref = await planted_prompt_version(pool, f"planted-{uuid.uuid4().hex[:6]}")
    spec = EvaluationSpec(prompt_version=ref, scenarios=[ScenarioChoice(name="cooperative", weight=5)])
    run = await _run(pool, dburl, spec)
    assert run.status == "COMPLETED", run.error
    (result,) = run.results
    assert result.weight == 5 and result.score is not None and result.call is not None
    assert "balance of" in result.call.turns[0].text
    assert result.score.score == 0 and not result.score.compliance_passed and not result.score.passed
    rules = [v.rule for v in result.score.violations]
    assert "right_party_verified_first" in rules
    first = next(v for v in result.score.violations if v.rule == "right_party_verified_first")
    assert first.turn == 0 and "balance" in first.evidence
    assert run.weighted_score == 0 and run.pass_k == 0


async def test_unknown_prompt_version_scenario_and_set_are_not_found(pool: asyncpg.Pool) -> None:
    for spec, field in [
        (EvaluationSpec(prompt_version="nope@1", scenario_set="default"), "prompt_version"),
        (EvaluationSpec(prompt_version=DEFAULT, scenario_set="no-such-set"), "scenario_set"),
        (EvaluationSpec(prompt_version=DEFAULT, scenarios=[ScenarioChoice(name="no-such")]), "scenario"),
    ]:
        with pytest.raises(NotFound) as err:
            await runs.create_evaluation(pool, spec)
        assert err.value.field == field
    with pytest.raises(NotFound):
        await runs.get_evaluation(pool, 10**12)


@pytest.mark.parametrize("weight", [0, 6])
async def test_weights_outside_one_to_five_are_refused(weight: int) -> None:
    with pytest.raises(ValueError, match="weight"):
        EvaluationSpec(prompt_version=DEFAULT, scenarios=[ScenarioChoice(name="cooperative", weight=weight)])


async def test_exactly_one_source_of_scenarios() -> None:
    for kw in ({}, {"scenario_set": "default", "scenarios": [ScenarioChoice(name="cooperative")]}):
        with pytest.raises(ValueError, match="exactly one"):
            EvaluationSpec(prompt_version=DEFAULT, **kw)  # type: ignore[arg-type]


async def test_a_deleted_personality_is_refused(pool: asyncpg.Pool) -> None:
    cooperative = await library.get_personality(pool, "cooperative")
    name = f"gone-{uuid.uuid4().hex[:6]}"
    await library.create_personality(pool, cooperative.model_copy(update={"name": name}))
    base = await library.get_scenario(pool, "cooperative")
    scenario = Scenario.model_validate({**base.model_dump(), "name": name, "personality": name})
    await library.create_scenario(pool, scenario)
    await library.delete_personality(pool, name)
    with pytest.raises(Conflict, match="deleted"):
        await runs.create_evaluation(pool, EvaluationSpec(
            prompt_version=DEFAULT, scenarios=[ScenarioChoice(name=name)]))


async def test_a_prompt_version_that_fails_validation_is_refused(pool: asyncpg.Pool) -> None:
    name = f"broken-{uuid.uuid4().hex[:6]}"
    # stored before today's rules (inserted as-is): its playbook no longer loads
    await pool.execute(
        "INSERT INTO prompt_versions (name, version, playbook, system_prompt_template, llm)"
        " VALUES ($1, 1, $2, 'x', '{}')", name, {"name": name, "version": "1", "kind": "collections"})
    with pytest.raises(Unrunnable, match=f"{name}@1 does not validate"):
        await runs.create_evaluation(pool, EvaluationSpec(prompt_version=f"{name}@1", scenario_set="default"))
    assert not await pool.fetchval("SELECT count(*) FROM evaluations e JOIN prompt_versions p"
                                   " ON p.id = e.prompt_version_id WHERE p.name = $1", name)


async def test_audio_mode_refuses_what_the_server_does_not_play(pool: asyncpg.Pool) -> None:
    with pytest.raises(Unrunnable, match="audio mode needs a running server"):
        await runs.create_evaluation(pool, EvaluationSpec(
            prompt_version=DEFAULT, scenario_set="default", mode="audio"))


@pytest.mark.parametrize(("emulator", "timeout_s", "why"), [
    ({"reply": lambda _messages: Reply("not json at all")}, 10.0, "malformed JSON"),
    ({"first_token_delay_s": 3.0}, 0.5, "timed out"),
], ids=["malformed", "timeout"])
async def test_a_failing_llm_judge_fails_the_run_with_the_reason(
    pool: asyncpg.Pool, dburl: str, emulator: dict[str, Any], timeout_s: float, why: str,
) -> None:
    async with running_openai(**emulator) as emu:
        services = runs.EvaluationServices(llm_judge=LLMSettings(
            model="gpt-4o-mini", api_key=emu.api_key, base_url=emu.base_url, timeout_s=timeout_s))
        spec = EvaluationSpec(prompt_version=DEFAULT, judge="llm", scenarios=[
            ScenarioChoice(name="cooperative"), ScenarioChoice(name="hardship")])
        run = await _run(pool, dburl, spec, services)
    assert run.status == "FAILED"
    assert run.calls_failed == 2 and run.weighted_score is None and run.pass_k is None
    assert run.error is not None and run.error.startswith("2 of 2 calls failed; first: cooperative")
    assert "JudgeError" in run.error and why in run.error, run.error
    assert all(r.status == "FAILED" and r.score is None and r.error for r in run.results)
    assert all(r.call is not None and r.call.turns for r in run.results)  # kept, to see why
    listed = await runs.list_evaluations(pool, status="FAILED")
    assert run.id in [e.id for e in listed]


async def test_llm_judge_without_an_llm_is_refused(pool: asyncpg.Pool) -> None:
    with pytest.raises(Unrunnable, match="judge"):
        await runs.create_evaluation(pool, EvaluationSpec(
            prompt_version=DEFAULT, scenario_set="default", judge="llm"),
            services=runs.EvaluationServices())


class _Counting(runs.EvaluationServices):
    """Services that count the calls they judged (one per worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.judged = 0

    def judge(self, kind: str) -> Judge:
        self.judged += 1
        return super().judge(kind)


async def test_two_workers_share_a_run(pool: asyncpg.Pool, dburl: str) -> None:
    spec = EvaluationSpec(prompt_version=DEFAULT, scenario_set="default", repeat=3, seed=3)
    created = await runs.create_evaluation(pool, spec)
    first, second = _Counting(), _Counting()
    async with eval_worker(dburl, pool, first, name="w1", concurrency=1) as one, \
            eval_worker(dburl, pool, second, name="w2", concurrency=1):
        await one.defer_evaluation(created.id)
        run = await runs.wait_for_evaluation(pool, created.id, timeout_s=120)
    assert run.status == "COMPLETED", run.error
    assert first.judged + second.judged == run.calls_total == len(run.results)
    assert first.judged > 0 and second.judged > 0, (first.judged, second.judged)
    # a job delivered again finds its call done and changes nothing
    assert await runs.run_call(pool, created.id, 0, first) is None
    assert (await runs.get_evaluation(pool, created.id)).calls_done == run.calls_total


async def test_listing_filters(pool: asyncpg.Pool, dburl: str) -> None:
    label = f"label-{uuid.uuid4().hex[:6]}"
    created = await runs.create_evaluation(pool, EvaluationSpec(
        prompt_version=DEFAULT, scenarios=[ScenarioChoice(name="cooperative")], label=label))
    found = await runs.list_evaluations(pool, label=label)
    assert [e.id for e in found] == [created.id] and found[0].status == "PENDING"
    assert found[0].prompt_version == DEFAULT and found[0].results == []
    assert created.id in [e.id for e in await runs.list_evaluations(pool, prompt_version=DEFAULT)]
    assert created.id not in [e.id for e in await runs.list_evaluations(pool, status="COMPLETED")]


def _dialkit_eval(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("dialkit"))
    env = {**os.environ, "DATABASE_URL": url, "DIALKIT_LOG_LEVEL": "WARNING"}
    return subprocess.run([exe, "eval", *args], env=env, capture_output=True, text=True, timeout=300)


async def test_the_cli_prints_one_json_object(dburl: str, pool: asyncpg.Pool) -> None:
    args = ("--prompt", DEFAULT, "--scenarios", "default", "--mode", "text", "--repeat", "2",
            "--seed", "9", "--json")
    first, second = [await asyncio.to_thread(_dialkit_eval, dburl, *args) for _ in range(2)]
    assert first.returncode == 0, first.stderr
    found = json.loads(first.stdout)  # one object, nothing else on stdout
    assert found["status"] == "COMPLETED" and found["prompt_version"] == DEFAULT
    assert 0 < found["weighted_score"] <= 100 and 0 <= found["pass_k"] <= 1
    assert len(found["results"]) == 2 * len(await library.get_scenario_set(pool, "default"))
    for r in found["results"]:
        assert {"scenario", "weight", "task_completion", "efficiency", "compliance", "hostility",
                "score", "call_id"} <= set(r)
        assert set(r["compliance"]) == {"passed", "violations"}
    again = json.loads(second.stdout)
    assert again["id"] != found["id"]
    assert [r["score"] for r in again["results"]] == [r["score"] for r in found["results"]]
    stored = await runs.get_evaluation(pool, found["id"])
    assert stored.status == "COMPLETED" and all(r.call and r.call.turns for r in stored.results)


async def test_the_cli_refuses_with_the_reason(dburl: str) -> None:
    done = await asyncio.to_thread(_dialkit_eval, dburl, "--prompt", "nope@1", "--scenarios", "default")
    assert done.returncode == 2 and "no prompt version 'nope@1'" in done.stderr, done.stderr
    done = await asyncio.to_thread(_dialkit_eval, dburl, "--prompt", DEFAULT, "--scenarios", "default",
                                   "--repeat", "11")
    assert done.returncode == 2 and "repeat" in done.stderr, done.stderr
    done = await asyncio.to_thread(_dialkit_eval, dburl, "--prompt", DEFAULT, "--scenarios", "nowhere")
    assert done.returncode == 2 and "no scenario set or scenario 'nowhere'" in done.stderr, done.stderr


@pytest.mark.slow
async def test_an_audio_run_through_the_server(speech_server: tuple[str, Any], database_url: str) -> None:
    """The scripted debtor's speech through Piper and the Twilio protocol to a real server
    and its faster-whisper STT; the run stored and scored like a text one."""
    url, providers = speech_server
    audio = runs.AudioServices(url=url, stt=providers.stt, tts=providers.tts,
                               playbook=providers.registry.default)
    services = runs.EvaluationServices(audio=audio)
    async with library_pool(database_url, max_size=4) as pool:
        with pytest.raises(Unrunnable, match="use text mode"):
            await runs.create_evaluation(pool, EvaluationSpec(
                prompt_version="collections-weak@1", scenario_set="default", mode="audio"),
                services=services)
        spec = EvaluationSpec(prompt_version=DEFAULT, mode="audio", seed=1,
                              scenarios=[ScenarioChoice(name="cooperative")])
        run = await _run(pool, database_url, spec, services)
    assert run.status == "COMPLETED", run.error
    (result,) = run.results
    assert result.call is not None and result.call.mode == "audio" and result.score is not None
    turns = [(t.speaker, t.text) for t in result.call.turns]
    assert {"agent", "caller"} <= {speaker for speaker, _ in turns}, turns
    # what the debtor makes of the agent depends on recognition: on a loaded machine the
    # agent's speech reaches the debtor's STT late and in pieces, so a cooperative debtor may
    # end unverified. Either way the call is scored like a text one, and within the law.
    assert result.call.outcome in {"promise_to_pay", "unverified"}, turns
    assert result.score.compliance_passed, result.score
    assert result.score.score > 0, result.score
    assert result.call_id == result.call.call_id


async def test_a_run_worked_in_process_without_jobs(pool: asyncpg.Pool, dburl: str) -> None:
    spec = EvaluationSpec(prompt_version=DEFAULT, scenario_set="default-heldout", seed=21)
    created = await runs.create_evaluation(pool, spec)
    run = await runs.run_pending(pool, created.id, runs.EvaluationServices(), concurrency=3)
    assert run.status == "COMPLETED" and run.calls_done == run.calls_total
    with_jobs = await _run(pool, dburl, spec)
    assert [r.score for r in with_jobs.results] == [r.score for r in run.results]
