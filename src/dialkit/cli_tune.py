"""`dialkit tune`: a tuning run (tuning.runs) from the command line, with nothing else
running.

    dialkit tune --from collections-weak@1 --scenarios default --heldout default-heldout \\
        --target 95 --max-iterations 5 --seed 0 --plot tuning.png --export tuned.yaml

Like `dialkit eval` it uses the configured database (DATABASE_URL, or the embedded one in
DIALKIT_DATA_DIR), migrates it and seeds the shipped library when needed, stores the run
like the API does (every iteration and prompt version), and works it with its own
evaluation worker in this process (the tuning job and its evaluation calls; other workers
on the same database may take some). `--scenarios` and `--heldout` are scenario sets or
names separated by commas. Without `--json`: one line per iteration as it completes
(scores, delta, accepted); with it, one JSON object: status, iterations (n,
prompt_version, train_score, heldout_score, delta, accepted), initial and final
(prompt_version, train_score, heldout_score). `--plot` writes a PNG of the training and
held-out score per iteration, `--export` the final prompt version's playbook as YAML.
`--writer llm` needs tuning.writer_llm and OPENAI_API_KEY. Exit status 0 when the run
COMPLETED, 1 when it FAILED or was cancelled, 2 when it was refused.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from dialkit.cli_runs import AsJson, Repeat, Seed, refusal, scenario_choice, score_text
from dialkit.config import Settings
from dialkit.logs import setup_logging

__all__ = ["plot_scores", "tune_command"]

err = Console(stderr=True)
out = Console()


def tune_command(
    from_: Annotated[str, typer.Option("--from", help="the prompt version to start from, NAME@VERSION")],
    scenarios: Annotated[str, typer.Option(
        "--scenarios", help="training scenarios: a set (default) or names separated by commas")],
    heldout: Annotated[str, typer.Option(
        "--heldout", help="held-out scenarios: a set (default-heldout) or names separated by commas")],
    target: Annotated[float, typer.Option("--target", help="the training score to reach (0-100)")] = 95.0,
    max_iterations: Annotated[int, typer.Option("--max-iterations", help="at most this many (1-10)")] = 5,
    seed: Seed = 0,
    repeat: Repeat = 1,
    writer: Annotated[str, typer.Option("--writer", help="offline (playbook edits) or llm")] = "offline",
    concurrency: Annotated[int | None, typer.Option(
        help="jobs worked at once here (at least 2; default DIALKIT_JOB_CONCURRENCY)")] = None,
    as_json: AsJson = False,
    plot: Annotated[Path | None, typer.Option("--plot", help="write a PNG of the scores per iteration")] = None,
    export: Annotated[Path | None, typer.Option("--export", help="write the final prompt version as YAML")] = None,
) -> None:
    """Improve a prompt version toward a target score, checked on held-out scenarios."""
    from dialkit.cli import _run

    settings = Settings()
    setup_logging("WARNING" if settings.log_level.upper() == "INFO" else settings.log_level,
                  settings.log_json)
    if writer not in ("offline", "llm"):
        err.print("error: --writer is offline or llm", markup=False)
        raise typer.Exit(2)
    code = _run(_tune(settings, from_, scenarios, heldout, target=target, max_iterations=max_iterations,
                      seed=seed, repeat=repeat, writer=writer, concurrency=concurrency, as_json=as_json,
                      plot=plot, export=export))
    raise typer.Exit(code)


async def _tune(settings: Settings, prompt: str, scenarios: str, heldout: str, *, target: float,
                max_iterations: int, seed: int, repeat: int, writer: str, concurrency: int | None,
                as_json: bool, plot: Path | None, export: Path | None) -> int:
    from pydantic import ValidationError

    from dialkit import db
    from dialkit.api_tuning_models import TuningOut
    from dialkit.jobs import EvaluationRuntime, Jobs
    from evaluation import runs
    from evaluation.library_errors import LibraryError
    from evaluation.library_seed import seed_library
    from tuning import runs as tuning
    from tuning.run_store import TuningSpec

    url = settings.database_url
    if url is None:
        url = await asyncio.to_thread(db.embedded_database_url, settings.data_dir)
    workers = max(2, concurrency or settings.job_concurrency)
    pool = await db.create_pool(url, max_size=workers + 4)
    jobs = None
    try:
        await db.migrate(pool)
        await seed_library(pool)
        try:
            spec = TuningSpec.model_validate({
                "prompt_version": prompt, "target": target, "max_iterations": max_iterations,
                "seed": seed, "repeat": repeat, "writer": writer,
                **await scenario_choice(pool, scenarios, "scenario_set", "scenarios"),
                **await scenario_choice(pool, heldout, "heldout_set", "heldout_scenarios")})
            created = await tuning.create_tuning(pool, spec, actor="cli", llm=tuning.llm_settings(settings))
        except (ValidationError, LibraryError) as exc:
            err.print(refusal(exc), markup=False)
            return 2
        jobs = Jobs(settings, url)
        jobs.evaluation = EvaluationRuntime(pool, runs.services_from_settings(settings))
        await jobs.open()
        await jobs.defer_tuning(created.id)
        jobs.start_evaluation_worker(workers, name=f"dialkit-tune-{created.id}")
        run = await _follow(pool, created.id, quiet=as_json)
        exported = await tuning.export_yaml(pool, created.id) if export is not None else None
    finally:
        if jobs is not None:
            await jobs.close()
        await pool.close()
    found = TuningOut.of(run)
    if plot is not None:
        await asyncio.to_thread(plot_scores, found, plot)
    if export is not None and exported is not None:
        await asyncio.to_thread(export.write_text, exported[1])
    if as_json:
        sys.stdout.write(json.dumps(found.brief()) + "\n")
    else:
        _report(found, plot, export)
    return 0 if run.status == "COMPLETED" else 1


async def _follow(pool: Any, run_id: int, quiet: bool) -> Any:
    """The run once finished; without `quiet`, a line per iteration as it is recorded."""
    from tuning import runs as tuning

    shown = 0
    initial_shown = False
    while True:
        run = await tuning.get_tuning(pool, run_id)
        if not quiet:
            if not initial_shown and run.initial_train_score is not None:
                err.print(f"[bold]tuning {run.id}[/] {run.prompt_version}: training "
                          f"{score_text(run.initial_train_score)}, held out {score_text(run.initial_heldout_score)}"
                          f" (target {run.spec.target:g})")
                initial_shown = True
            for it in run.iterations[shown:]:
                mark = "[green]accepted[/]" if it.accepted else "[yellow]rejected[/]"
                err.print(f"iteration {it.n}/{run.spec.max_iterations} {it.prompt_version}: training "
                          f"{score_text(it.train_score)} ({it.delta:+.2f}), held out {score_text(it.heldout_score)}  {mark}")
            shown = len(run.iterations)
        if run.finished:
            return run
        await asyncio.sleep(0.2)


def plot_scores(run: Any, path: Path) -> None:
    """A PNG of the training and held-out score per iteration (0: the initial version;
    filled markers: accepted candidates), with the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    xs = [0] + [it.n for it in run.iterations]
    initial = run.initial
    nan = float("nan")
    train: list[float] = [initial.train_score if initial and initial.train_score is not None else nan]
    held: list[float] = [initial.heldout_score if initial and initial.heldout_score is not None else nan]
    train += [it.train_score for it in run.iterations]
    held += [it.heldout_score for it in run.iterations]
    ax.plot(xs, train, "-", color="tab:blue", label="training")
    ax.plot(xs, held, "-", color="tab:orange", label="held out")
    accepted = [True] + [it.accepted for it in run.iterations]
    for x, t, h, ok in zip(xs, train, held, accepted, strict=True):
        face = None if ok else "white"
        ax.plot([x], [t], "o", color="tab:blue", markerfacecolor=face)
        ax.plot([x], [h], "s", color="tab:orange", markerfacecolor=face)
    ax.axhline(run.target, linestyle="--", color="grey", linewidth=1, label=f"target {run.target:g}")
    ax.set_xlabel("iteration (hollow: rejected)")
    ax.set_ylabel("weighted score")
    ax.set_ylim(0, 100)
    ax.set_xticks(xs)
    ax.set_title(f"tuning {run.id}: {run.prompt_version} -> {run.final.prompt_version if run.final else '-'}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _report(run: Any, plot: Path | None, export: Path | None) -> None:
    colour = "green" if run.status == "COMPLETED" else "red"
    initial, final = run.initial, run.final
    out.print(f"[{colour}]{run.status}[/]  {run.outcome or ''}")
    if initial is not None and final is not None:
        out.print(f"{initial.prompt_version} -> {final.prompt_version}: training {score_text(initial.train_score)}"
                  f" -> {score_text(final.train_score)}, held out {score_text(initial.heldout_score)} -> {score_text(final.heldout_score)}")
    if run.error:
        out.print(f"[red]{run.error}[/]")
    if plot is not None:
        out.print(f"plot: {plot}")
    if export is not None:
        out.print(f"final version: {export}")
