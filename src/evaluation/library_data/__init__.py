"""The personalities and scenario sets shipped with dialkit (YAML beside this module), for
simulated calls and the evaluation library: `load_personalities()`, `load_scenario_set(name)`
and the names of the shipped sets in `SCENARIO_SETS`."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from evaluation.models import Personality, Scenario

__all__ = ["DATA_DIR", "SCENARIO_SETS", "LibraryDataError", "load_personalities",
           "load_scenario_set", "scenario_set_description"]

DATA_DIR = Path(__file__).parent
SCENARIO_SETS: tuple[str, ...] = ("default", "default-heldout")


class LibraryDataError(ValueError):
    """A shipped file that does not exist or does not validate."""


def _read(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise LibraryDataError(f"{path.name}: {e}") from e


@cache
def _personalities() -> dict[str, Personality]:
    out: dict[str, Personality] = {}
    for path in sorted((DATA_DIR / "personalities").glob("*.yaml")):
        try:
            p = Personality.model_validate(_read(path))
        except ValidationError as e:
            raise LibraryDataError(f"personalities/{path.name}: {e}") from e
        if p.name != path.stem:
            raise LibraryDataError(f"personalities/{path.name}: name {p.name!r} differs from the file name")
        out[p.name] = p
    return out


def load_personalities() -> dict[str, Personality]:
    """The shipped personalities by name (copies: callers may change them)."""
    return {name: p.model_copy(deep=True) for name, p in _personalities().items()}


@cache
def _scenario_set(name: str) -> tuple[str, tuple[Scenario, ...]]:
    if name not in SCENARIO_SETS:
        raise LibraryDataError(f"scenario set: unknown {name!r}; choose from {', '.join(SCENARIO_SETS)}")
    data = _read(DATA_DIR / "scenarios" / f"{name}.yaml")
    try:
        scenarios = tuple(Scenario.model_validate(s) for s in data["scenarios"])
    except (ValidationError, KeyError, TypeError) as e:
        raise LibraryDataError(f"scenarios/{name}.yaml: {e}") from e
    known = _personalities()
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise LibraryDataError(f"scenarios/{name}.yaml: a scenario name is used twice")
    for s in scenarios:
        if s.personality not in known:
            raise LibraryDataError(f"scenarios/{name}.yaml: {s.name}: unknown personality {s.personality!r}")
    return str(data.get("description", "")), scenarios


def load_scenario_set(name: str) -> list[Scenario]:
    """A shipped scenario set by name ("default", "default-heldout"), as copies."""
    return [s.model_copy(deep=True) for s in _scenario_set(name)[1]]


def scenario_set_description(name: str) -> str:
    return _scenario_set(name)[0]
