"""The `dialkit` command line: serve, migrate, simulated calls, and API keys (`apikey`)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dialkit.cli_apikey import apikey_app
from dialkit.cli_campaign import campaign_app
from dialkit.cli_eval import eval_command
from dialkit.cli_library import library_app
from dialkit.cli_tune import tune_command
from dialkit.config import Settings, UnsafeBindError
from dialkit.logs import setup_logging

app = typer.Typer(add_completion=False, no_args_is_help=True, help="dialkit voice-agent server")
app.add_typer(apikey_app, name="apikey")
app.add_typer(campaign_app, name="campaign")
app.add_typer(library_app, name="library")
app.command("eval")(eval_command)
app.command("tune")(tune_command)
console = Console(stderr=True)
GC_GEN0_THRESHOLD = 2_000  # allocations between young collections (CPython default: 700)


def _run(coro: Any) -> Any:
    """Run on uvloop where it is installed (a dependency off Windows): at 100 calls it takes
    about a quarter less CPU than asyncio's own loop (BENCHMARKS.md).
    `DIALKIT_EVENT_LOOP=asyncio` keeps asyncio's loop."""
    if os.environ.get("DIALKIT_EVENT_LOOP", "uvloop") == "asyncio":
        return asyncio.run(coro)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    workers: Annotated[
        int, typer.Option(help="processes sharing the port (SO_REUSEPORT); one per core")
    ] = 1,
) -> None:
    """Start the server (embedded PostgreSQL when DATABASE_URL is unset)."""
    settings = Settings()
    if host:
        settings.host = host
    if port is not None:
        settings.port = port
    setup_logging(settings.log_level, settings.log_json)
    if workers > 1:
        _serve_workers(settings, workers)
        return
    _run(_serve(settings, reuse_port=False))


async def _serve(settings: Settings, reuse_port: bool) -> None:
    from dialkit.server import start_server

    runner, bound = await start_server(settings, reuse_port=reuse_port)
    _settle_gc()
    console.print(f"dialkit serving on http://{settings.host}:{bound}  (Ctrl-C to stop)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def _settle_gc() -> None:
    """Keep garbage-collection pauses off live audio. Everything built at start-up (models,
    SDK clients, the playbook: millions of objects) moves to the permanent generation, so a
    full collection no longer walks it (it took 60–145 ms at 100 calls); collections of the
    young generations run less often. Cyclic garbage is still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 10, 100)


def _worker() -> None:
    settings = Settings()  # the parent put its resolved choices into the environment
    setup_logging(settings.log_level, settings.log_json)
    _run(_serve(settings, reuse_port=True))


def _serve_workers(settings: Settings, workers: int) -> None:
    """Media sessions share nothing in-process, so N processes on one port scale with
    cores; the database is prepared once here, live state goes through Redis."""
    import multiprocessing

    from dialkit import db

    if settings.database_url is None:
        settings.database_url = db.embedded_database_url(settings.data_dir)
    if settings.needs_stored_key_to_bind():  # refuse once, here, rather than in every worker
        settings.check_bind(stored_keys=_run(_has_active_key(settings.database_url)))
    settings.resolved_media_secret()  # generate the token secret once, before the workers
    if settings.redis_url is None:
        console.print("[yellow]REDIS_URL unset: workers share no live state (the call listing, "
                      "AMD verdicts and Exotel transfers reach one worker only)[/]")
    os.environ.update({
        "DATABASE_URL": settings.database_url,
        "DIALKIT_HOST": settings.host,
        "DIALKIT_PORT": str(settings.port),
    })
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, daemon=False) for _ in range(workers)]
    for p in procs:
        p.start()
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.is_alive():
                p.terminate()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for p in procs:
        p.join()
    if not stopping:
        raise typer.Exit(1)


async def _has_active_key(database_url: str) -> bool:
    from dialkit import apikeys, db

    pool = await db.create_pool(database_url, min_size=1, max_size=1)
    try:
        await db.migrate(pool)
        return await apikeys.any_active(pool)
    finally:
        await pool.close()


@app.command()
def migrate() -> None:
    """Apply the SQL migrations to DATABASE_URL (or the embedded database)."""
    settings = Settings()
    setup_logging(settings.log_level, settings.log_json)

    async def main() -> None:
        from dialkit import db
        from evaluation.library_seed import seed_library

        url = settings.database_url or db.embedded_database_url(settings.data_dir)
        pool = await db.create_pool(url)
        applied = await db.migrate(pool)
        seeded = await seed_library(pool)
        await pool.close()
        console.print(f"applied: {', '.join(applied) or 'nothing (up to date)'}")
        if seeded:
            console.print(f"evaluation library: added {seeded.summary()}")

    _run(main())


@app.command()
def personas() -> None:
    """List the simulated debtors: the shipped scenarios (set: name, personality)."""
    from evaluation.library_data import SCENARIO_SETS, load_scenario_set

    for set_name in SCENARIO_SETS:
        for s in load_scenario_set(set_name):
            print(f"{s.name}\t{set_name}\t{s.personality}")


@app.command()
def call(
    simulate: Annotated[bool, typer.Option("--simulate", help="call a simulated debtor")] = False,
    persona: Annotated[str, typer.Option(
        help="a shipped scenario (or personality) the simulated debtor plays; see `dialkit personas`")
    ] = "cooperative",
    seed: Annotated[int, typer.Option(help="the simulated debtor's seed")] = 1,
    url: Annotated[
        str | None, typer.Option(help="server to call (ws:// or http://); default: start one here")
    ] = None,
    carrier: Annotated[str, typer.Option(help="twilio or exotel")] = "twilio",
    sample_rate: Annotated[int, typer.Option(help="Exotel PCM rate: 8000, 16000 or 24000")] = 8000,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object at the end")] = False,
    wav: Annotated[Path | None, typer.Option(help="write the call audio (stereo WAV)")] = None,
    max_seconds: Annotated[float, typer.Option(help="hang up after this long")] = 240.0,
    mode: Annotated[
        str, typer.Option(help="audio: over a real WebSocket with STT and TTS; text: the same "
                               "engine, playbook and policy on a virtual clock, no audio")
    ] = "audio",
) -> None:
    """Place a call. With --simulate, a simulated debtor answers (over a real WebSocket in
    audio mode; straight to the conversation engine on a virtual clock in text mode)."""
    if not simulate:
        console.print("only --simulate is available from the CLI; campaigns dial real numbers")
        raise typer.Exit(2)
    if mode not in ("audio", "text"):
        console.print("--mode must be audio or text")
        raise typer.Exit(2)
    if carrier not in ("twilio", "exotel"):
        console.print("--carrier must be twilio or exotel")
        raise typer.Exit(2)
    from evaluation.simulate import SimulationChoiceError, find_scenario

    try:
        scenario, personality = find_scenario(persona)
    except SimulationChoiceError as e:
        console.print(str(e))
        raise typer.Exit(2) from None
    settings = Settings()
    if url is None:
        settings.check_bind()  # the in-process server binds settings.host
    setup_logging("WARNING" if as_json else settings.log_level, settings.log_json)
    if mode == "text":
        if url is not None or wav is not None:
            console.print("--url and --wav need --mode audio")
            raise typer.Exit(2)
        text_result = _run(_simulate_text(settings, scenario, personality, seed, max_seconds))
        if as_json:
            print(json.dumps(text_result.as_json()))
        else:
            _print_summary(text_result)
        return
    result = _run(_simulate(settings, scenario, personality, seed, url, carrier, sample_rate,
                            as_json, wav, max_seconds))
    if as_json:
        print(json.dumps(result.as_json()))
    else:
        _print_summary(result)
    sys.exit(0 if result.status == "completed" else 1)


async def _simulate(
    settings: Settings, scenario: Any, personality: Any, seed: int, url: str | None,
    carrier: str, rate: int, quiet: bool, wav: Path | None, max_seconds: float,
) -> Any:
    from dialkit.providers import build_providers
    from dialkit.server import start_server
    from evaluation.audio_call import run_audio_simulation
    from evaluation.simulate import SimulationView

    def printer(speaker: str, text: str) -> None:
        if not quiet:
            style = "bold cyan" if speaker == "agent" else "bold yellow"
            console.print(f"[{style}]{speaker:>8}[/] {text}")

    providers = await build_providers(settings)
    runner = None
    if url is None:
        runner, port = await start_server(settings, providers, port=0)
        url = f"http://{settings.host}:{port}"
        if not quiet:
            console.print(f"[dim]server started in-process on {url}[/]")
    api_key = settings.api_key.get_secret_value() if settings.api_key else None
    try:
        call = await run_audio_simulation(
            url, scenario, personality, seed=seed, stt=providers.stt, tts=providers.tts,
            carrier=carrier, exotel_rate=rate, printer=printer, wav=wav,
            max_seconds=max_seconds, api_key=api_key,
        )
        return SimulationView(call, carrier=carrier, wav=str(wav) if wav else None)
    finally:
        if runner is not None:
            await runner.cleanup()


async def _simulate_text(
    settings: Settings, scenario: Any, personality: Any, seed: int, max_seconds: float,
) -> Any:
    """The scenario's debtor against the policy the server would give this call, on a
    virtual clock."""
    from dialkit.providers import build_providers
    from evaluation.simulate import SimulationView
    from evaluation.text_call import run_text_simulation

    providers = await build_providers(settings, warmup=False)
    try:
        call = await run_text_simulation(
            providers.playbook, scenario, personality, seed=seed,
            policy=providers.policy_factory, max_seconds=max_seconds,
        )
        return SimulationView(call)
    finally:
        await providers.close()


def _print_summary(result: Any) -> None:
    data = result.as_json()
    table = Table(title=f"call {data['call_id']}", show_header=False)
    reason = data["failure_reason"]
    table.add_row("status", data["status"] + (f" ({reason})" if reason else ""))
    table.add_row("outcome", str(data["outcome"]))
    table.add_row("promise to pay", json.dumps(data["promise_to_pay"]))
    table.add_row("opt-out", str(data["opt_out"]))
    table.add_row("turns", str(len(data["turns"])))
    table.add_row("barge-ins", str(data["barge_ins"]))
    table.add_row("stages", " → ".join(data["stages"]) or "-")
    lat = data["latencies_ms"]
    table.add_row("voice-to-voice ms", ", ".join(f"{x:.0f}" for x in lat) or "-")
    if data["wav"]:
        table.add_row("audio", data["wav"])
    console.print(table)
    console.print("[bold]transcript[/]")
    for t in data["turns"]:
        mark = " [interrupted]" if t["interrupted"] else ""
        console.print(f"  {t['start_ms'] / 1000:6.1f}s {t['speaker']:>6}: {t['text']}{mark}")


def _add_job_commands() -> None:
    """`dialkit worker`, and `demo` in the `dialkit campaign` group (H-sched)."""
    from dialkit.cli_demo import register
    from dialkit.cli_jobs import worker

    app.command()(worker)
    for group in app.registered_groups:
        if group.name == "campaign" and group.typer_instance is not None:
            register(group.typer_instance)


_add_job_commands()


def main() -> None:
    try:
        app()
    except UnsafeBindError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
