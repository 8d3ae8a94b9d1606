"""`dialkit campaign demo`: a small campaign end to end, offline, on this machine.

It starts the server in-process, on a private embedded PostgreSQL (never DATABASE_URL's, whose
workers would take the demo's dials), with the emulated Twilio and Exotel REST APIs (emulators.carriers): they play each dialled
number by a seeded fate (answered by a quiet callee, no answer, busy, failed, voicemail),
send their signed status callbacks, and open the media stream of answered calls to the
server's agent. The campaign goes through the REST API like any other: create, upload a
lead CSV, start; the server's own job worker ticks the scheduler, dials, settles. When no
lead is left, the campaign's analytics are printed (GET /api/campaigns/{id}/analytics).

The leads' time zone is one where it is daytime now, so the calling window is open
whatever the hour of the demo.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import socket
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

out = Console()

DEMO_LEADS = [
    ("Avery Brooks", "Northwind Bank"), ("Jordan Lee", "Contoso Card"),
    ("Casey Morgan", "Fabrikam Loans"), ("Riley Chen", "Northwind Bank"),
    ("Quinn Patel", "Contoso Card"), ("Taylor Reyes", "Fabrikam Loans"),
    ("Morgan Diaz", "Northwind Bank"), ("Jamie Novak", "Contoso Card"),
]


def daytime_zone() -> str:
    """An IANA zone (Etc/GMT±N) where it is about noon now."""
    offset = 12 - dt.datetime.now(dt.UTC).hour
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def lead_csv(count: int) -> str:
    zone = daytime_zone()
    lines = ["name,phone,amount_due,currency,due_date,account_ref,timezone,birth_year,"
             "creditor,callback_number"]
    for i in range(count):
        name, creditor = DEMO_LEADS[i % len(DEMO_LEADS)]
        lines.append(f"{name},+1415555{3000 + i:04d},{120 + 37 * i}.50,USD,2026-11-15,"
                     f"DEMO-{i + 1:04d},{zone},{1970 + i},{creditor},+14155550100")
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo(
    leads: Annotated[int, typer.Option(help="leads in the demo campaign", min=1, max=200)] = 8,
    seed: Annotated[int, typer.Option(help="the carriers' fates (same seed, same run)")] = 7,
    carrier: Annotated[str, typer.Option(help="twilio or exotel")] = "twilio",
    timeout_s: Annotated[float, typer.Option("--timeout", help="give up after (s)")] = 300.0,
) -> None:
    """Run a small campaign end to end against the emulated carriers and print its analytics."""
    from dialkit.cli import _run
    from dialkit.config import Settings
    from dialkit.logs import setup_logging

    if carrier not in ("twilio", "exotel"):
        raise typer.BadParameter("twilio or exotel", param_hint="--carrier")
    settings = Settings()
    setup_logging("WARNING", settings.log_json)
    _run(_demo(settings, leads, seed, carrier, timeout_s))


async def _demo(settings: Any, count: int, seed: int, carrier: str, timeout_s: float) -> None:
    port = _free_port()
    # a database of its own, always: the demo's campaign must not reach the workers of a
    # server already running (`make run`, or production through DATABASE_URL), which would
    # take its dials without the emulated carriers, or dial its numbers for real
    scratch = tempfile.TemporaryDirectory(prefix="dialkit-demo-")
    out.print("starting a private PostgreSQL for the demo …")
    database = await asyncio.to_thread(_private_database, Path(scratch.name))
    try:
        await _demo_on(settings, database.get_uri(), Path(scratch.name), port, count, seed,
                       carrier, timeout_s)
    finally:
        await asyncio.to_thread(database.cleanup)
        scratch.cleanup()


def _private_database(data_dir: Path) -> Any:
    import pgserver

    return pgserver.get_server(str(data_dir / "pgdata"), cleanup_mode="stop")


async def _demo_on(settings: Any, database_url: str, data_dir: Path, port: int, count: int,
                   seed: int, carrier: str, timeout_s: float) -> None:
    from dialkit.server import start_server
    from emulators.carriers import running_carriers

    async with running_carriers(seed=seed) as carriers:
        cfg = settings.model_copy(update={
            **carriers.settings(), "host": "127.0.0.1", "port": port,
            "database_url": database_url, "data_dir": data_dir, "redis_url": None,
            "public_url": f"http://127.0.0.1:{port}", "api_key": None,
            "exotel_webhook_secret": SecretStr(secrets.token_urlsafe(16)),
            "stt": "null", "tts": "tone", "scheduler_tick_s": 1,
        })
        out.print(f"starting dialkit on {cfg.public_url} with emulated carriers …")
        runner, _ = await start_server(cfg, port=port)
        try:
            async with httpx.AsyncClient(base_url=cfg.public_url, timeout=60) as http:
                await _run_campaign(http, count, carrier, timeout_s)
        finally:
            await runner.cleanup()


async def _ok(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        out.print(f"error {response.status_code}: {response.text[:300]}", markup=False)
        raise typer.Exit(1)
    return response.json()


async def _run_campaign(http: httpx.AsyncClient, count: int, carrier: str, timeout_s: float) -> None:
    once = {"delay_minutes": 60, "max_retries": 0}
    caller_id = "+14155550100" if carrier == "twilio" else "+918045678900"
    created = await _ok(await http.post("/api/campaigns", json={
        "name": f"demo {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M}", "playbook": "collections-default",
        "carrier": carrier, "caller_id": caller_id, "max_concurrent": 3, "max_attempts": 2,
        "settings": {"retry": {"no_answer": once, "busy": once, "failed": once, "voicemail": once}},
    }))
    cid = created["id"]
    report = await _ok(await http.post(f"/api/campaigns/{cid}/leads",
                                       content=lead_csv(count).encode(),
                                       headers={"Content-Type": "text/csv"}))
    out.print(f"campaign {cid}: {report['accepted']} leads accepted, {report['rejected']} rejected")
    await _ok(await http.post(f"/api/campaigns/{cid}/start"))
    deadline = time.monotonic() + timeout_s
    last = ""
    while True:
        status = await _ok(await http.get(f"/api/campaigns/{cid}/status"))
        counts = f"{status['status']}: " + ", ".join(
            f"{k} {v}" for k, v in status["leads"].items() if v)
        if counts != last:
            out.print(f"  {counts}; live calls {status['live_attempts']}", markup=False)
            last = counts
        if status["status"] in ("completed", "paused", "canceled"):
            break
        if time.monotonic() > deadline:
            out.print("[yellow]timed out; the campaign is still running[/]")
            break
        await asyncio.sleep(0.5)
    analytics = await _ok(await http.get(f"/api/campaigns/{cid}/analytics"))
    _print_analytics(analytics)


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _print_analytics(report: dict[str, Any]) -> None:
    m = report["metrics"]
    table = Table(title=f"analytics: {report['name']}", show_header=False)
    rows = [
        ("attempts", m["attempts"]), ("connected", f"{m['connected']} ({_rate(m['connect_rate'])})"),
        ("voicemail", m["voicemail"]), ("no answer", m["no_answer"]), ("busy", m["busy"]),
        ("failed", m["failed"]),
        ("right-party contacts", f"{m['right_party_contacts']} ({_rate(m['right_party_rate'])})"),
        ("promises to pay", f"{m['promises']} ({_rate(m['promise_rate'])})"),
        ("opt-outs", m["opt_outs"]),
        ("average handle time", "-" if m["average_handle_s"] is None
         else f"{m['average_handle_s']:.1f} s"),
        ("greeting latency p50 / p95", _latency(m["greeting"])),
        ("voice-to-voice p50 / p95", _latency(m["voice_to_voice"])),
        ("agent later than 2 s", f"{m['abandoned']} ({_rate(m['abandonment_rate'])})"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    out.print(table)


def _latency(lat: dict[str, Any]) -> str:
    p50, p95 = lat.get("p50_ms"), lat.get("p95_ms")
    if p50 is None:
        return "-"
    return f"{p50:.0f} / {p95:.0f} ms"


def register(campaign_app: typer.Typer) -> None:
    """Add `demo` to the `dialkit campaign` group."""
    campaign_app.command("demo")(demo)
