"""`dialkit eval`: an evaluation run (evaluation.runs) from the command line, with nothing
else running.

    dialkit eval --prompt collections-default@1 --scenarios default --mode text --repeat 3 --seed 7
    dialkit eval --prompt collections-default@1 --scenarios cooperative,hardship --json

It uses the configured database (DATABASE_URL, or the embedded one in DIALKIT_DATA_DIR),
migrates it and seeds the shipped library when needed, stores the run like the API does,
and works its calls with its own evaluation worker in this process (other workers on the
same database may take some too). `--scenarios` is a scenario set (`default` and
`default-heldout` are shipped) or scenario names separated by commas. Audio mode starts a
server in this process (the configured speech models, no job worker of its own) and calls
it over the carrier protocol; it plays the server's playbook, so it takes the prompt
version holding that playbook. Without `--json`: a progress bar and a results table; with
it, one JSON object: weighted_score, pass_k and results (scenario, weight, task_completion,
efficiency, compliance {passed, violations}, hostility, score, call_id). Exit status 0 when
the run COMPLETED, 1 when it FAILED, 2 when it was refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dialkit.cli_runs import AsJson, Repeat, Seed, refusal, scenario_choice, score_text
from dialkit.config import Settings
from dialkit.logs import setup_logging

__all__ = ["eval_command"]

err = Console(stderr=True)
out = Console()


def eval_command(
    prompt: Annotated[str, typer.Option("--prompt", help="the prompt version, NAME@VERSION")],
    scenarios: Annotated[str, typer.Option(
        "--scenarios", help="a scenario set (default, default-heldout) or names separated by commas")],
    mode: Annotated[str, typer.Option("--mode", help="text or audio")] = "text",
    repeat: Repeat = 1,
    seed: Seed = 0,
    judge: Annotated[str, typer.Option("--judge", help="rubric (no LLM) or llm")] = "rubric",
    label: Annotated[str | None, typer.Option("--label", help="free text stored with the run")] = None,
    concurrency: Annotated[int | None, typer.Option(
        help="calls worked at once here (default DIALKIT_JOB_CONCURRENCY; 2 in audio mode)")] = None,
    as_json: AsJson = False,
) -> None:
    """Evaluate a prompt version over scenarios: scores, compliance and pass^k."""
    from dialkit.cli import _run

    settings = Settings()
    setup_logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level,
                  settings.log_json)
    if mode not in ("text", "audio") or judge not in ("rubric", "llm"):
        err.print("error: --mode is text or audio, --judge rubric or llm", markup=False)
        raise typer.Exit(2)
    code = _run(_evaluate(settings, prompt, scenarios, mode, repeat, seed, judge, label,  # type: ignore[arg-type]
                          concurrency, as_json))
    raise typer.Exit(code)


async def _spec_for(pool: Any, prompt: str, scenarios: str, **fields: Any) -> Any:
    from evaluation.runs import EvaluationSpec

    chosen = await scenario_choice(pool, scenarios, "scenario_set", "scenarios")
    return EvaluationSpec.model_validate({"prompt_version": prompt, **chosen, **fields})


@contextlib.asynccontextmanager
async def _audio_server(settings: Settings) -> AsyncIterator[Any]:
    """A server in this process to call in audio mode (its job worker off: the calls are
    this command's)."""
    from dialkit.providers import build_providers
    from dialkit.server import start_server
    from evaluation.runs import AudioServices

    served = settings.model_copy(update={"run_jobs": False, "port": 0})
    providers = await build_providers(served)
    runner, port = await start_server(served, providers, port=0)
    try:
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        yield AudioServices(url=f"http://127.0.0.1:{port}", stt=providers.stt, tts=providers.tts,
                            playbook=providers.registry.default, api_key=key)
    finally:
        await runner.cleanup()
        await providers.close()


async def _evaluate(settings: Settings, prompt: str, scenarios: str, mode: Literal["text", "audio"],
                    repeat: int, seed: int, judge: str, label: str | None, concurrency: int | None,
                    as_json: bool) -> int:
    from pydantic import ValidationError

    from dialkit import db
    from dialkit.jobs import EvaluationRuntime, Jobs
    from evaluation import runs
    from evaluation.library_errors import LibraryError
    from evaluation.library_seed import seed_library

    url = settings.database_url
    if url is None:
        url = await asyncio.to_thread(db.embedded_database_url, settings.data_dir)
    workers = concurrency or (2 if mode == "audio" else settings.job_concurrency)
    pool = await db.create_pool(url, max_size=workers + 3)
    jobs = None
    try:
        await db.migrate(pool)
        await seed_library(pool)
        async with contextlib.AsyncExitStack() as stack:
            services = runs.services_from_settings(settings)
            if mode == "audio":
                services.audio = await stack.enter_async_context(_audio_server(settings))
            try:
                spec = await _spec_for(pool, prompt, scenarios, repeat=repeat, mode=mode, seed=seed,
                                       judge=judge, label=label)
                created = await runs.create_evaluation(pool, spec, actor="cli", services=services)
            except (ValidationError, LibraryError) as exc:
                err.print(refusal(exc), markup=False)
                return 2
            jobs = Jobs(settings, url)
            jobs.evaluation = EvaluationRuntime(pool, services)
            await jobs.open()
            await jobs.defer_evaluation(created.id)
            jobs.start_evaluation_worker(workers, name=f"dialkit-eval-{created.id}")
            run = await _follow(pool, created.id, created.calls_total, quiet=as_json)
    finally:
        if jobs is not None:
            await jobs.close()
        await pool.close()
    _report(run, as_json)
    return 0 if run.status == "COMPLETED" else 1


async def _follow(pool: Any, run_id: int, total: int, quiet: bool) -> Any:
    from evaluation import runs

    if quiet or not err.is_terminal:
        return await runs.wait_for_evaluation(pool, run_id, poll_s=0.1)
    columns = (TextColumn("[bold]evaluation {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]}"), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task("calls", total=total, run=run_id, failed="")
        while True:
            row = await pool.fetchrow("SELECT status, calls_done, calls_failed FROM evaluations"
                                      " WHERE id = $1", run_id)
            progress.update(task, completed=row["calls_done"],
                            failed=f"{row['calls_failed']} failed" if row["calls_failed"] else "")
            if row["status"] in ("COMPLETED", "FAILED"):
                break
            await asyncio.sleep(0.1)
    return await runs.get_evaluation(pool, run_id)


def summary(run: Any) -> dict[str, Any]:
    """The object `--json` prints."""
    from dialkit.api_evaluation_models import CallResultOut

    return {
        "id": run.id, "status": run.status, "prompt_version": run.prompt_version,
        "mode": run.spec.mode, "repeat": run.spec.repeat, "seed": run.spec.seed,
        "weighted_score": run.weighted_score, "pass_k": run.pass_k, "error": run.error,
        "results": [CallResultOut.of(r).brief() for r in run.results],
    }


def _report(run: Any, as_json: bool) -> None:
    found = summary(run)
    if as_json:
        sys.stdout.write(json.dumps(found) + "\n")
        return
    table = Table(title=f"evaluation {run.id}: {run.prompt_version} ({run.spec.mode})")
    for column in ("scenario", "w", "rep", "task", "effic.", "compliance", "hostility", "score", "call"):
        table.add_column(column)
    for r in found["results"]:
        comp = r["compliance"]
        compliance = "-" if comp is None else "ok" if comp["passed"] else ", ".join(
            sorted({v["rule"] for v in comp["violations"]}))
        table.add_row(r["scenario"], str(r["weight"]), str(r["repeat"]), score_text(r["task_completion"]),
                      score_text(r["efficiency"]), compliance, score_text(r["hostility"]),
                      score_text(r["score"]) if r["error"] is None else f"[red]{r['error'][:60]}[/]",
                      (r["call_id"] or "-")[:8])
    out.print(table)
    colour = "green" if run.status == "COMPLETED" else "red"
    out.print(f"[{colour}]{run.status}[/]  weighted score {score_text(run.weighted_score)}  "
              f"pass^{run.spec.repeat} {score_text(run.pass_k)}")
    if run.error:
        out.print(f"[red]{run.error}[/]", markup=True)
