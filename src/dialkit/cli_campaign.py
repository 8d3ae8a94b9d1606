"""`dialkit campaign ...`: campaigns through a running server's REST API (httpx).

    dialkit campaign create --name "December" --playbook collections-default --caller-id +12025550100
    dialkit campaign upload <id> leads.csv        # streamed, with a progress bar
    dialkit campaign start|pause|resume|cancel <id> [--reason ...]
    dialkit campaign status <id>
    dialkit campaign report <id> [--csv leads.csv]

The server is --url / DIALKIT_URL (default http://127.0.0.1:8080) and the key --api-key /
DIALKIT_API_KEY. Other modules add their commands to `campaign_app` (`demo` runs a whole
campaign offline and belongs with the dialer).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn
from rich.table import Table

__all__ = ["campaign_app"]

campaign_app = typer.Typer(no_args_is_help=True, help="campaigns on a running dialkit server")
out = Console()
err = Console(stderr=True)
UPLOAD_CHUNK = 256 * 1024


def _client(ctx: typer.Context) -> httpx.Client:
    url, key = ctx.obj
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(30, read=600))


@campaign_app.callback()
def _options(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="DIALKIT_URL", help="the server")] = "http://127.0.0.1:8080",
    api_key: Annotated[str | None, typer.Option(envvar="DIALKIT_API_KEY", help="bearer API key",
                                                show_default=False)] = None,
) -> None:
    ctx.obj = (url.rstrip("/"), api_key)


def _answer(r: httpx.Response) -> Any:
    """The JSON answer, or the server's reason and exit 1."""
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code >= 400:
        reason = body.get("error") if isinstance(body, dict) else r.text[:300]
        err.print(f"error {r.status_code}: {reason}", markup=False, highlight=False)
        raise typer.Exit(1)
    return body


def _call(ctx: typer.Context, method: str, path: str, **kwargs: Any) -> Any:
    try:
        with _client(ctx) as client:
            return _answer(client.request(method, path, **kwargs))
    except httpx.TransportError as exc:
        err.print(f"cannot reach {ctx.obj[0]}: {exc}", markup=False)
        raise typer.Exit(1) from None


@campaign_app.command()
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="the campaign's name")],
    playbook: Annotated[str, typer.Option(help="name@version, or a name (its highest version)")],
    caller_id: Annotated[str, typer.Option(help="E.164 number calls come from")],
    carrier: Annotated[str, typer.Option(help="twilio or exotel")] = "twilio",
    max_concurrent: Annotated[int, typer.Option(help="calls at once")] = 5,
    max_attempts: Annotated[int, typer.Option(help="dials per lead in all")] = 6,
    region: Annotated[str, typer.Option(help="region of lead numbers without a country code")] = "US",
    webhook_url: Annotated[str | None, typer.Option(help="outcome webhooks go here")] = None,
    settings_file: Annotated[Path | None, typer.Option(
        "--settings", help="JSON file of campaign settings (country_rules, retry, ...)")] = None,
) -> None:
    """Create a campaign (draft); prints its id and webhook secret (shown only once)."""
    settings: dict[str, Any] = json.loads(settings_file.read_text()) if settings_file else {}
    settings.setdefault("default_region", region)
    body: dict[str, Any] = {
        "name": name, "playbook": playbook, "caller_id": caller_id, "carrier": carrier,
        "max_concurrent": max_concurrent, "max_attempts": max_attempts, "settings": settings,
    }
    if webhook_url:
        body["webhook_url"] = webhook_url
    created = _call(ctx, "POST", "/api/campaigns", json=body)
    out.print(f"campaign {created['id']} created ({created['status']}, {created['playbook']})")
    out.print(f"webhook secret (shown once): {created['webhook_secret']}", markup=False)


def _chunks(path: Path, progress: Progress, task: Any) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(UPLOAD_CHUNK):
            progress.update(task, advance=len(chunk))
            yield chunk


@campaign_app.command()
def upload(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="the campaign")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True,
                                         help="lead CSV (UTF-8)")],
    show: Annotated[int, typer.Option(help="rejected rows to print")] = 20,
) -> None:
    """Upload a lead CSV, streamed, and print the report."""
    columns = [BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    with Progress("{task.description}", *columns, console=err, transient=True) as progress:
        task = progress.add_task(f"uploading {file.name}", total=file.stat().st_size)
        report = _call(ctx, "POST", f"/api/campaigns/{campaign_id}/leads",
                       content=_chunks(file, progress, task),
                       headers={"Content-Type": "text/csv"})
    out.print(f"{report['rows']} rows: {report['accepted']} accepted, {report['updated']} updated,"
              f" {report['duplicate']} duplicate, {report['rejected']} rejected"
              f" ({report['dnc']} on a do-not-call list)")
    for row in report["rejections"][:show]:
        out.print(f"  line {row['line']}: {row['reason']}", markup=False, highlight=False)
    if report["rejected"] > show:
        out.print(f"  ... and {report['rejected'] - show} more rejected rows")


def _transition(action: str, doc: str) -> None:
    def command(
        ctx: typer.Context,
        campaign_id: Annotated[str, typer.Argument(help="the campaign")],
        reason: Annotated[str | None, typer.Option(help="kept with the status")] = None,
    ) -> None:
        params = {"reason": reason} if reason else {}
        done = _call(ctx, "POST", f"/api/campaigns/{campaign_id}/{action}", params=params)
        out.print(f"campaign {done['id']}: {done['status']}")

    command.__doc__ = doc
    campaign_app.command(action)(command)


_transition("start", "Start dialling a draft campaign.")
_transition("pause", "Pause a running campaign (live calls finish).")
_transition("resume", "Resume a paused campaign.")
_transition("cancel", "Cancel a campaign and its waiting leads.")


def _counts_table(title: str, counts: dict[str, int]) -> Table:
    table = Table(title=title)
    table.add_column("state")
    table.add_column("count", justify="right")
    for state, n in counts.items():
        table.add_row(state, str(n))
    return table


@campaign_app.command()
def status(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="the campaign")],
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON answer")] = False,
) -> None:
    """Leads per state and attempts per state."""
    found = _call(ctx, "GET", f"/api/campaigns/{campaign_id}/status")
    if as_json:
        print(json.dumps(found))
        return
    reason = f" ({found['status_reason']})" if found["status_reason"] else ""
    out.print(f"campaign {found['id']}: {found['status']}{reason}, {found['total_leads']} leads,"
              f" {found['live_attempts']} calls live")
    out.print(_counts_table("leads", found["leads"]))
    out.print(_counts_table("attempts", found["attempts"]))


def _flat(metrics: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(measure, value) rows of the analytics metrics: nested measures as `a.b`, promised
    amounts one row per currency."""
    for key, value in metrics.items():
        if isinstance(value, dict):
            yield from _flat(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "currency" in item:
                    yield f"{prefix}{key} {item['currency']}", f"{item.get('amount')} ({item.get('promises')})"
        else:
            yield f"{prefix}{key}", "-" if value is None else str(value)


@campaign_app.command()
def report(
    ctx: typer.Context,
    campaign_id: Annotated[str, typer.Argument(help="the campaign")],
    csv_file: Annotated[Path | None, typer.Option("--csv", help="also write every lead here (CSV)")] = None,
) -> None:
    """The campaign's status and analytics; with --csv, its leads as a spreadsheet-safe CSV."""
    found = _call(ctx, "GET", f"/api/campaigns/{campaign_id}/status")
    out.print(f"campaign {found['id']}: {found['status']}, {found['total_leads']} leads")
    out.print(_counts_table("leads", found["leads"]))
    try:
        with _client(ctx) as client:
            r = client.get(f"/api/campaigns/{campaign_id}/analytics")
    except httpx.TransportError as exc:
        err.print(f"cannot reach {ctx.obj[0]}: {exc}", markup=False)
        raise typer.Exit(1) from None
    if r.status_code == 200:
        table = Table(title="analytics")
        table.add_column("measure")
        table.add_column("value", justify="right")
        for key, value in _flat(r.json().get("metrics", {})):
            table.add_row(key, value)
        out.print(table)
    if csv_file is not None:
        with _client(ctx) as client, client.stream(
                "GET", f"/api/campaigns/{campaign_id}/leads/export") as r, csv_file.open("wb") as f:
            if r.status_code >= 400:
                r.read()
                _answer(r)
            for chunk in r.iter_bytes():
                f.write(chunk)
        out.print(f"leads written to {csv_file}")
