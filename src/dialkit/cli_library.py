"""`dialkit library ...`: the evaluation library through a running server's REST API.

    dialkit library personalities list [--all] | show NAME
    dialkit library prompts list [--name N --tag T --active/--inactive] | show NAME@VERSION
    dialkit library scenarios list [--personality P --tag T] | show NAME
    dialkit library sets list | show NAME
    dialkit library generate --brief "hardship after a job loss" --count 5 --seed 7 [--save]

Every command takes `--json` for the server's answer as it is. The server and key are
--url / DIALKIT_URL and --api-key / DIALKIT_API_KEY, as for `dialkit campaign`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from dialkit import cli_campaign

__all__ = ["library_app"]

library_app = typer.Typer(no_args_is_help=True, help="the evaluation library on a running dialkit server")
# the same --url / --api-key options as `dialkit campaign` (they set ctx.obj)
library_app.callback()(cli_campaign._options)
out = Console()

personalities_app = typer.Typer(no_args_is_help=True, help="personalities of simulated debtors")
prompts_app = typer.Typer(no_args_is_help=True, help="agent prompt versions")
scenarios_app = typer.Typer(no_args_is_help=True, help="scenarios")
sets_app = typer.Typer(no_args_is_help=True, help="scenario sets")
library_app.add_typer(personalities_app, name="personalities")
library_app.add_typer(prompts_app, name="prompts")
library_app.add_typer(scenarios_app, name="scenarios")
library_app.add_typer(sets_app, name="sets")

AsJson = Annotated[bool, typer.Option("--json", help="print the server's JSON answer")]


def _get(ctx: typer.Context, path: str, **params: Any) -> Any:
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items() if v is not None}
    return cli_campaign._call(ctx, "GET", path, params=query)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for row in rows:
        table.add_row(*("-" if v is None else str(v) for v in row))
    return table


def _show(found: dict[str, Any], skip: tuple[str, ...] = ()) -> None:
    table = Table(show_header=False)
    for key, value in found.items():
        if key not in skip:
            text = json.dumps(value) if isinstance(value, dict | list) else str(value)
            table.add_row(key, text)
    out.print(table)


def _print(found: Any, as_json: bool) -> bool:
    if as_json:
        print(json.dumps(found))
    return as_json


@personalities_app.command("list")
def personalities_list(ctx: typer.Context, include_deleted: Annotated[
        bool, typer.Option("--all", help="deleted ones too")] = False, as_json: AsJson = False) -> None:
    """The personalities: how willing, how patient, how they resist."""
    found = _get(ctx, "/api/personalities", include_deleted=include_deleted)
    if not _print(found, as_json):
        out.print(_table("personalities", ["name", "willing", "patience", "resists", "deleted"], [
            [p["name"], p["willingness_to_pay"], p["patience"], ", ".join(p["resistance"]) or "-",
             (p["deleted_at"] or "")[:10] or "-"] for p in found["items"]]))


@personalities_app.command("show")
def personalities_show(ctx: typer.Context, name: str, as_json: AsJson = False) -> None:
    """One personality, every trait."""
    found = _get(ctx, f"/api/personalities/{name}")
    if not _print(found, as_json):
        _show(found)


@prompts_app.command("list")
def prompts_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="only this prompt's versions")] = None,
    tag: Annotated[str | None, typer.Option(help="only versions with this tag")] = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="by the flag")] = None,
    as_json: AsJson = False,
) -> None:
    """Prompt versions with their run statistics."""
    found = _get(ctx, "/api/prompt-versions", name=name, tag=tag, active=active, limit=500)
    if not _print(found, as_json):
        rows = [[v["ref"], v["active"], "yes" if v["used_at"] else "no", v["runs"],
                 "-" if v["success_rate"] is None else f"{v['success_rate']:.0%}",
                 "-" if v["avg_duration_s"] is None else f"{v['avg_duration_s']:.1f}",
                 ", ".join(v["tags"]) or "-"] for v in found["items"]]
        out.print(_table("prompt versions",
                         ["ref", "active", "used", "runs", "success", "avg s", "tags"], rows))


@prompts_app.command("show")
def prompts_show(
    ctx: typer.Context, ref: Annotated[str, typer.Argument(help="id, name@version or name")],
    playbook: Annotated[bool, typer.Option("--playbook", help="print the playbook too")] = False,
    as_json: AsJson = False,
) -> None:
    """One prompt version (the system-prompt template and, with --playbook, the playbook)."""
    found = _get(ctx, f"/api/prompt-versions/{ref}")
    if _print(found, as_json):
        return
    _show(found, skip=("playbook", "system_prompt_template"))
    out.print("[bold]system prompt template[/]")
    out.print(found["system_prompt_template"], markup=False, highlight=False)
    if playbook:
        out.print("[bold]playbook[/]")
        out.print_json(json.dumps(found["playbook"]))


def _scenario_rows(items: list[dict[str, Any]]) -> list[list[Any]]:
    return [[s["name"], s["personality"], s.get("weight"), ", ".join(s["expected_outcomes"]),
             s["backstory"]["debtor_name"], f"{s['backstory']['balance']:,.2f}",
             "; ".join(s.get("problems", [])) or "-"] for s in items]


_SCENARIO_COLUMNS = ["name", "personality", "weight", "expected", "debtor", "balance", "problems"]


@scenarios_app.command("list")
def scenarios_list(
    ctx: typer.Context,
    personality: Annotated[str | None, typer.Option(help="only this personality's")] = None,
    tag: Annotated[str | None, typer.Option(help="only scenarios with this tag")] = None,
    as_json: AsJson = False,
) -> None:
    """The scenarios, and what stops any of them from running."""
    found = _get(ctx, "/api/scenarios", personality=personality, tag=tag)
    if not _print(found, as_json):
        out.print(_table("scenarios", _SCENARIO_COLUMNS, _scenario_rows(found["items"])))


@scenarios_app.command("show")
def scenarios_show(ctx: typer.Context, name: str, as_json: AsJson = False) -> None:
    """One scenario with its backstory."""
    found = _get(ctx, f"/api/scenarios/{name}")
    if not _print(found, as_json):
        _show(found)


@sets_app.command("list")
def sets_list(ctx: typer.Context, as_json: AsJson = False) -> None:
    """The scenario sets (`dialkit eval --scenarios SET`)."""
    found = _get(ctx, "/api/scenario-sets")
    if not _print(found, as_json):
        out.print(_table("scenario sets", ["name", "scenarios", "problems", "description"], [
            [s["name"], len(s["members"]), len(s["problems"]), s["description"]]
            for s in found["items"]]))


@sets_app.command("show")
def sets_show(ctx: typer.Context, name: str, as_json: AsJson = False) -> None:
    """One set's scenarios in order, with the weight each counts with."""
    found = _get(ctx, f"/api/scenario-sets/{name}")
    if not _print(found, as_json):
        out.print(_table(f"scenario set {found['name']}", ["scenario", "weight", "personality", "problems"], [
            [m["scenario"], m["weight"], m["personality"], "; ".join(m["problems"]) or "-"]
            for m in found["members"]]))


@library_app.command()
def generate(
    ctx: typer.Context,
    brief: Annotated[str, typer.Option(help='e.g. "two hardship cases and a hostile one"')],
    count: Annotated[int, typer.Option(help="how many scenarios (1-50)")] = 5,
    seed: Annotated[int, typer.Option(help="the same brief and seed give the same scenarios")] = 0,
    mode: Annotated[str, typer.Option(help="auto (the server's LLM when configured), templates or llm")] = "auto",
    save: Annotated[bool, typer.Option("--save", help="store them in the library")] = False,
    as_json: AsJson = False,
) -> None:
    """Generate scenarios from a short brief."""
    found = cli_campaign._call(ctx, "POST", "/api/scenarios/generate", json={
        "brief": brief, "count": count, "seed": seed, "mode": mode, "save": save})
    if _print(found, as_json):
        return
    out.print(_table(f"generated ({found['mode']})", _SCENARIO_COLUMNS, _scenario_rows(found["scenarios"])))
    if found["saved"]:
        out.print(f"saved: {', '.join(found['saved'])}")
