"""What `dialkit eval` and `dialkit tune` share: reading `--scenarios` (a set's name, or
scenario names separated by commas), the one-line reason for a refused run, and how a score
is printed, and the options both declare (`Seed`, `Repeat`, `AsJson`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:  # the CLI starts without loading the evaluation library
    from pydantic import ValidationError

    from evaluation.library_errors import LibraryError

Seed = Annotated[int, typer.Option("--seed", help="the same seed gives the same run")]
Repeat = Annotated[int, typer.Option("--repeat", help="times each scenario is played (1-10)")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]


async def scenario_choice(pool: Any, value: str, set_field: str, list_field: str) -> dict[str, Any]:
    """`{set_field: name}` when `value` names a scenario set, else `{list_field: [{"name":
    …}, …]}` for the scenarios it names (an unknown one is NotFound naming `list_field`)."""
    from evaluation import library
    from evaluation.library_errors import NotFound

    if "," not in value:
        try:
            await library.get_scenario_set_record(pool, value)
            return {set_field: value}
        except NotFound:
            pass
    names = [n.strip() for n in value.split(",") if n.strip()]
    for name in names:
        try:
            await library.get_scenario_record(pool, name)
        except NotFound:
            raise NotFound(f"no scenario set or scenario {name!r}", field=list_field) from None
    return {list_field: [{"name": n} for n in names]}


def refusal(exc: ValidationError | LibraryError) -> str:
    """The line a refused run prints (`error: field: reason`)."""
    from pydantic import ValidationError

    from evaluation.library_errors import invalid

    reason = (invalid(exc) if isinstance(exc, ValidationError) else exc).reason
    return f"error: {reason}"


def score_text(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{round(value, digits):g}"
