"""Scenario sets (tables `scenario_sets`, `scenario_set_members`): named, ordered lists of
library scenarios, each member optionally with its own weight in the set (1–5). Part of the
evaluation library; use it through evaluation.library."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

import asyncpg
from pydantic import Field, TypeAdapter, ValidationError

from evaluation.library_errors import Conflict, Executor, Invalid, NotFound, transaction
from evaluation.library_records import SCENARIO_SELECT, ScenarioRecord, scenario_record
from evaluation.models import Scenario

__all__ = ["ScenarioSetRecord", "SetMember", "create_scenario_set", "delete_scenario_set",
           "get_scenario_set", "get_scenario_set_record", "list_scenario_sets",
           "replace_scenario_set"]


@dataclass(frozen=True)
class SetMember:
    scenario: ScenarioRecord
    #: the weight given in the set (None: the scenario's own)
    set_weight: int | None

    @property
    def weight(self) -> int:
        return self.set_weight if self.set_weight is not None else self.scenario.scenario.weight


@dataclass(frozen=True)
class ScenarioSetRecord:
    name: str
    description: str
    members: list[SetMember]
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None

    @property
    def problems(self) -> list[str]:
        return [f"{m.scenario.scenario.name}: {p}" for m in self.members for p in m.scenario.problems]


async def get_scenario_set_record(db: Executor, name: str) -> ScenarioSetRecord:
    head = await db.fetchrow("SELECT id, name, description, created_at, updated_at, created_by"
                             " FROM scenario_sets WHERE name = $1", name)
    if head is None:
        raise NotFound(f"no scenario set {name[:100]!r}", field="scenario_set")
    rows = await db.fetch(SCENARIO_SELECT.replace("SELECT ", "SELECT m.weight AS set_weight, ", 1)
                          + " JOIN scenario_set_members m ON m.scenario_id = s.id"
                          " WHERE m.set_id = $1 ORDER BY m.position", head["id"])
    return ScenarioSetRecord(
        name=head["name"], description=head["description"],
        members=[SetMember(scenario_record(r), r["set_weight"]) for r in rows],
        created_at=head["created_at"], updated_at=head["updated_at"], created_by=head["created_by"],
    )


async def get_scenario_set(db: Executor, name: str) -> list[Scenario]:
    """A set's scenarios in order, each with its weight in the set; NotFound, or Conflict
    naming every member that cannot run (its personality was deleted)."""
    record = await get_scenario_set_record(db, name)
    if record.problems:
        raise Conflict(f"scenario set {name!r}: {'; '.join(record.problems)}", field="scenario_set")
    return [m.scenario.scenario.model_copy(update={"weight": m.weight}) for m in record.members]


async def list_scenario_sets(db: Executor) -> list[ScenarioSetRecord]:
    names = await db.fetch("SELECT name FROM scenario_sets ORDER BY name")
    return [await get_scenario_set_record(db, r["name"]) for r in names]


Members = Iterable[tuple[str, int | None]]


async def _store_members(conn: asyncpg.Connection, set_id: int, members: Members) -> None:
    seen: set[str] = set()
    rows = []
    for i, (scenario, weight) in enumerate(members):
        where = f"members[{i}]"
        if weight is not None and not 1 <= weight <= 5:
            raise Invalid(f"{where}.weight: must be from 1 to 5, got {weight}", field=f"{where}.weight")
        if scenario in seen:
            raise Invalid(f"{where}.scenario: {scenario!r} is listed twice", field=f"{where}.scenario")
        seen.add(scenario)
        found = await conn.fetchrow("SELECT id, deleted_at FROM scenarios WHERE name = $1", scenario)
        if found is None:
            raise Invalid(f"{where}.scenario: no scenario {scenario[:100]!r}", field=f"{where}.scenario")
        if found["deleted_at"] is not None:
            raise Conflict(f"{where}.scenario: scenario {scenario!r} was deleted", field=f"{where}.scenario")
        rows.append((set_id, i, found["id"], weight))
    await conn.execute("DELETE FROM scenario_set_members WHERE set_id = $1", set_id)
    await conn.executemany("INSERT INTO scenario_set_members (set_id, position, scenario_id, weight)"
                           " VALUES ($1, $2, $3, $4)", rows)


#: a set is named like a scenario
_SET_NAME: TypeAdapter[str] = TypeAdapter(
    Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_-]*$")])


def _set_name(name: str) -> None:
    try:
        _SET_NAME.validate_python(name)
    except ValidationError as exc:
        raise Invalid(f"name: {exc.errors()[0]['msg']}", field="name") from None


async def create_scenario_set(db: Executor, name: str, members: Members, *, description: str = "",
                              actor: str | None = None) -> ScenarioSetRecord:
    """A new set of existing scenarios, in order, each optionally with its weight in the set."""
    _set_name(name)
    async with transaction(db) as conn:
        set_id = await conn.fetchval(
            "INSERT INTO scenario_sets (name, description, created_by) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO NOTHING RETURNING id", name, description, actor)
        if set_id is None:
            raise Conflict(f"name: a scenario set named {name!r} exists", field="name")
        await _store_members(conn, set_id, members)
        return await get_scenario_set_record(conn, name)


async def replace_scenario_set(db: Executor, name: str, members: Members, *,
                               description: str | None = None) -> ScenarioSetRecord:
    """Replace a set's members (and description when given)."""
    async with transaction(db) as conn:
        set_id = await conn.fetchval(
            "UPDATE scenario_sets SET description = coalesce($2, description), updated_at = now()"
            " WHERE name = $1 RETURNING id", name, description)
        if set_id is None:
            raise NotFound(f"no scenario set {name[:100]!r}", field="scenario_set")
        await _store_members(conn, set_id, members)
        return await get_scenario_set_record(conn, name)


async def delete_scenario_set(db: Executor, name: str) -> ScenarioSetRecord:
    """Delete a set (its scenarios stay)."""
    async with transaction(db) as conn:
        record = await get_scenario_set_record(conn, name)
        await conn.execute("DELETE FROM scenario_sets WHERE name = $1", name)
        return record
