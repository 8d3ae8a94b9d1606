"""Evaluation runs: how many text-mode calls are simulated and scored per second (scripted
debtor, rubric judge), and the audio mode's real-time factor. Target: at least 100
evaluated calls per second on one process, more with workers.

    .venv/bin/python bench/evaluation.py [--seconds 10] [--calls 400] [--workers 1,2] [--no-audio] [--json]

- in memory: `evaluation.runs.simulate_and_score` over the default set's scenarios in a loop
  on one process (no database);
- end to end: runs of the default playbook over the default set (repeat 10) created in a
  scratch PostgreSQL database and deferred as jobs (`dialkit.evaluation_call`), worked by W
  worker processes (each `Jobs.run_evaluation_worker`); from the first defer until the last
  run is COMPLETED, every call stored with its transcript and score;
- audio: one run of the cooperative scenario in audio mode against a server in this
  process (Piper TTS, faster-whisper STT, the Twilio protocol over a real WebSocket):
  wall-clock seconds of the call (and its scoring) over the call's own length.

Prints one JSON object with `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import multiprocessing
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from common import local_postgres_url, machine, scratch_database
from dialkit.logs import setup_logging

DEFAULT = "collections-default@1"


async def in_memory(seconds: float) -> dict[str, Any]:
    from ai.playbook import load_playbook
    from evaluation.judges import RubricJudge
    from evaluation.library_data import load_personalities, load_scenario_set
    from evaluation.runs import call_seed, simulate_and_score

    playbook = load_playbook()
    people = load_personalities()
    scenarios = load_scenario_set("default")
    judge = RubricJudge()
    for s in scenarios:  # warm-up
        await simulate_and_score(playbook, s, people[s.personality], seed=0, mode="text", judge=judge)
    n = 0
    start = time.perf_counter()
    cpu0 = time.process_time()
    while time.perf_counter() - start < seconds:
        for s in scenarios:
            await simulate_and_score(playbook, s, people[s.personality], seed=call_seed(0, s.name, n),
                                     mode="text", judge=judge)
            n += 1
    wall = time.perf_counter() - start
    return {"calls": n, "seconds": round(wall, 2), "cpu_seconds": round(time.process_time() - cpu0, 2),
            "calls_per_s": round(n / wall, 1), "scenarios": len(scenarios)}


def _worker(url: str, concurrency: int, ready: Any, stop: Any) -> None:
    setup_logging("WARNING", stream=sys.stderr)
    asyncio.run(_work(url, concurrency, ready, stop))


async def _work(url: str, concurrency: int, ready: Any, stop: Any) -> None:
    from dialkit import db
    from dialkit.config import Settings
    from dialkit.jobs import EvaluationRuntime, Jobs
    from evaluation.runs import EvaluationServices

    pool = await db.create_pool(url, max_size=concurrency + 2)
    jobs = Jobs(Settings(database_url=url, log_level="WARNING"), url)
    jobs.evaluation = EvaluationRuntime(pool, EvaluationServices())
    await jobs.open()
    jobs.start_evaluation_worker(concurrency, name=f"bench-{os.getpid()}")
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await jobs.close()
    await pool.close()


async def _setup(url: str) -> None:
    from dialkit import db
    from evaluation.library_seed import seed_library

    pool = await db.create_pool(url, max_size=2)
    await db.migrate(pool)
    await seed_library(pool)
    await pool.close()


async def _drive(url: str, calls: int) -> dict[str, Any]:
    from dialkit import db
    from dialkit.config import Settings
    from dialkit.jobs import EvaluationRuntime, Jobs
    from evaluation import runs

    pool = await db.create_pool(url, max_size=4)
    jobs = Jobs(Settings(database_url=url, log_level="WARNING"), url)
    jobs.evaluation = EvaluationRuntime(pool, runs.EvaluationServices())
    await jobs.open()
    spec = runs.EvaluationSpec(prompt_version=DEFAULT, scenario_set="default", repeat=10, seed=1)
    created = []
    while sum(r.calls_total for r in created) < calls:
        created.append(await runs.create_evaluation(pool, spec))
    start = time.perf_counter()
    for r in created:
        await jobs.defer_evaluation(r.id)
    finished = [await runs.wait_for_evaluation(pool, r.id, poll_s=0.02) for r in created]
    wall = time.perf_counter() - start
    await jobs.close()
    await pool.close()
    total = sum(r.calls_total for r in finished)
    return {"runs": len(finished), "calls": total, "seconds": round(wall, 2),
            "calls_per_s": round(total / wall, 1),
            "statuses": sorted({r.status for r in finished}),
            "weighted_score": finished[0].weighted_score}


def end_to_end(admin: str, workers: int, calls: int, concurrency: int) -> dict[str, Any]:
    with scratch_database(admin) as url:
        asyncio.run(_setup(url))
        ctx = multiprocessing.get_context("spawn")
        stop = ctx.Event()
        readies = [ctx.Event() for _ in range(workers)]
        procs = [ctx.Process(target=_worker, args=(url, concurrency, r, stop)) for r in readies]
        for p in procs:
            p.start()
        for r in readies:
            r.wait(60)
        time.sleep(0.5)  # the workers LISTEN before the first defer
        try:
            result = asyncio.run(_drive(url, calls))
        finally:
            stop.set()
            for p in procs:
                p.join(30)
    return {"workers": workers, "concurrency": concurrency, **result}


async def audio(admin: str) -> dict[str, Any]:
    from dialkit import db
    from dialkit.config import Settings
    from dialkit.jobs import EvaluationRuntime, Jobs
    from dialkit.providers import build_providers
    from dialkit.server import start_server
    from evaluation import runs

    with scratch_database(admin) as url:
        settings = Settings(database_url=url, stt="whisper", tts="piper", run_jobs=False,
                            log_level="WARNING", media_secret="bench-media-secret")  # type: ignore[arg-type]
        providers = await build_providers(settings)
        runner, port = await start_server(settings, providers, port=0)
        pool = await db.create_pool(url, max_size=4)
        services = runs.EvaluationServices(audio=runs.AudioServices(
            url=f"http://127.0.0.1:{port}", stt=providers.stt, tts=providers.tts,
            playbook=providers.registry.default))
        jobs = Jobs(settings, url)
        jobs.evaluation = EvaluationRuntime(pool, services)
        await jobs.open()
        jobs.start_evaluation_worker(1, name="bench-audio")
        try:
            spec = runs.EvaluationSpec(prompt_version=DEFAULT, mode="audio", seed=1,
                                       scenarios=[runs.ScenarioChoice(name="cooperative")])
            created = await runs.create_evaluation(pool, spec, services=services)
            await jobs.defer_evaluation(created.id)
            run = await runs.wait_for_evaluation(pool, created.id, timeout_s=600)
        finally:
            await jobs.close()
            await pool.close()
            await runner.cleanup()
            await providers.close()
    (r,) = run.results
    call_s = r.call.seconds if r.call else 0.0
    return {"status": run.status, "error": run.error, "call_seconds": round(call_s, 1),
            "wall_seconds": round(r.duration_s or 0.0, 1),
            "real_time_factor": round((r.duration_s or 0.0) / call_s, 2) if call_s else None,
            "score": r.score.score if r.score else None, "outcome": r.call.outcome if r.call else None}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0, help="of the in-memory loop")
    parser.add_argument("--calls", type=int, default=400, help="at least this many end to end")
    parser.add_argument("--workers", default="1,2", help="worker process counts to measure")
    parser.add_argument("--concurrency", type=int, default=4, help="jobs at once per worker")
    parser.add_argument("--no-audio", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    setup_logging("WARNING", stream=sys.stderr)  # stdout is the report's
    report: dict[str, Any] = {"date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                              "machine": machine(), "load_average_start": os.getloadavg()}
    report["in_memory"] = asyncio.run(in_memory(args.seconds))
    admin = local_postgres_url()
    if admin is None:
        import tempfile

        import pgserver

        admin = pgserver.get_server(tempfile.mkdtemp(prefix="dialkit-bench-pg-"),
                                    cleanup_mode="delete").get_uri()
    report["end_to_end"] = [end_to_end(admin, int(w), args.calls, args.concurrency)
                            for w in args.workers.split(",")]
    if not args.no_audio:
        report["audio"] = asyncio.run(audio(admin))
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
