"""Personalities and scenarios of the evaluation library in PostgreSQL (tables
`personalities`, `scenarios`). Deleting either keeps its row (`deleted_at`): a scenario that
names a deleted personality reports it, and a new scenario cannot name one. Use it through
evaluation.library."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

import asyncpg
from pydantic import ValidationError

from evaluation.library_errors import Conflict, Executor, Invalid, NotFound, invalid, transaction
from evaluation.models import Backstory, Personality, Scenario

__all__ = [
    "SCENARIO_SELECT", "PersonalityRecord", "ScenarioRecord", "create_personality",
    "create_scenario", "delete_personality", "delete_scenario", "get_personality",
    "get_personality_record", "get_scenario", "get_scenario_record", "list_personalities",
    "list_scenarios", "scenario_record", "update_personality", "update_scenario",
]


# ---- both kinds -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A library table of named rows kept when deleted: `columns` hold all but the name."""

    table: str
    kind: str
    columns: tuple[str, ...]

    @cached_property
    def insert_sql(self) -> str:
        """Insert, or revive a deleted row of the name ($1 the name, then the columns, then
        created_by); no row is returned when a live one has the name."""
        n = len(self.columns)
        return (f"INSERT INTO {self.table} (name, {', '.join(self.columns)}, created_by)"
                f" VALUES ({', '.join(f'${i}' for i in range(1, n + 3))})"
                " ON CONFLICT (name) DO UPDATE SET "
                + "".join(f"{c} = excluded.{c}, " for c in self.columns)
                + "created_by = excluded.created_by, deleted_at = NULL, created_at = now(),"
                f" updated_at = now() WHERE {self.table}.deleted_at IS NOT NULL RETURNING name")

    @cached_property
    def update_sql(self) -> str:
        return (f"UPDATE {self.table} SET "
                + "".join(f"{c} = ${i}, " for i, c in enumerate(self.columns, start=2))
                + "updated_at = now() WHERE name = $1")


_M = TypeVar("_M", Personality, Scenario)


async def _create(conn: asyncpg.Connection, table: _Table, name: str, values: Sequence[Any],
                  actor: str | None) -> None:
    """Store a new row; the name of a deleted one is taken over, a live one's is a Conflict."""
    if await conn.fetchrow(table.insert_sql, name, *values, actor) is None:
        raise Conflict(f"name: a {table.kind} named {name!r} exists", field="name")


def _refuse_rename(table: _Table, name: str, changes: Mapping[str, Any]) -> None:
    if "name" in changes and changes["name"] != name:
        raise Invalid(f"name: a {table.kind}'s name cannot change (create a new one)", field="name")


def _changed(table: _Table, model: type[_M], name: str, current: _M,
             deleted_at: dt.datetime | None, changes: Mapping[str, Any]) -> _M:
    """`current` with `changes`, validated; a deleted row cannot be changed (Conflict)."""
    if deleted_at is not None:
        raise Conflict(f"{table.kind} {name!r} was deleted: it cannot be changed", field=table.kind)
    try:
        return model.model_validate({**current.model_dump(), **changes})
    except ValidationError as exc:
        raise invalid(exc) from None


# ---- personalities ---------------------------------------------------------------------

_PERSONALITIES = _Table("personalities", "personality", ("traits",))


@dataclass(frozen=True)
class PersonalityRecord:
    personality: Personality
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    created_by: str | None
    #: the scenarios (not deleted) that name it
    scenarios: list[str]


_PERSONALITY = """
    SELECT p.name, p.traits, p.created_at, p.updated_at, p.deleted_at, p.created_by,
           coalesce(array_agg(s.name ORDER BY s.name) FILTER (WHERE s.name IS NOT NULL), '{}') AS scenarios
    FROM personalities p LEFT JOIN scenarios s ON s.personality = p.name AND s.deleted_at IS NULL
"""


def _personality(row: asyncpg.Record) -> PersonalityRecord:
    return PersonalityRecord(
        personality=Personality(name=row["name"], **row["traits"]), created_at=row["created_at"],
        updated_at=row["updated_at"], deleted_at=row["deleted_at"], created_by=row["created_by"],
        scenarios=list(row["scenarios"]),
    )


def _traits(p: Personality) -> dict[str, Any]:
    return p.model_dump(mode="json", exclude={"name"})


async def get_personality_record(db: Executor, name: str) -> PersonalityRecord:
    """A personality with its bookkeeping, deleted or not; NotFound when there is none."""
    row = await db.fetchrow(_PERSONALITY + " WHERE p.name = $1 GROUP BY p.id", name)
    if row is None:
        raise NotFound(f"no personality {name[:100]!r}", field="personality")
    return _personality(row)


async def get_personality(db: Executor, name: str) -> Personality:
    """The personality to play; NotFound, or Conflict when it was deleted."""
    record = await get_personality_record(db, name)
    if record.deleted_at is not None:
        raise Conflict(f"personality {name!r} was deleted on {record.deleted_at:%Y-%m-%d}",
                       field="personality")
    return record.personality


async def list_personalities(db: Executor, *, include_deleted: bool = False) -> list[PersonalityRecord]:
    where = "" if include_deleted else " WHERE p.deleted_at IS NULL"
    rows = await db.fetch(_PERSONALITY + where + " GROUP BY p.id ORDER BY p.name")
    return [_personality(r) for r in rows]


async def create_personality(db: Executor, personality: Personality, actor: str | None = None) -> PersonalityRecord:
    """Store a new personality. The name of a deleted one is taken over (it comes back with
    these traits); the name of a live one is a Conflict."""
    async with transaction(db) as conn:
        await _create(conn, _PERSONALITIES, personality.name, (_traits(personality),), actor)
        return await get_personality_record(conn, personality.name)


async def update_personality(db: Executor, name: str, changes: Mapping[str, Any]) -> PersonalityRecord:
    """Change some traits (`changes` by field name; `name` cannot change)."""
    _refuse_rename(_PERSONALITIES, name, changes)
    async with transaction(db) as conn:
        current = await get_personality_record(conn, name)
        changed = _changed(_PERSONALITIES, Personality, name, current.personality,
                           current.deleted_at, changes)
        await conn.execute(_PERSONALITIES.update_sql, name, _traits(changed))
        return await get_personality_record(conn, name)


async def delete_personality(db: Executor, name: str) -> PersonalityRecord:
    """Mark a personality deleted (again is no change); the answer lists the scenarios that
    still name it (they report it; new scenarios cannot use it)."""
    async with transaction(db) as conn:
        await get_personality_record(conn, name)
        await conn.execute("UPDATE personalities SET deleted_at = coalesce(deleted_at, now())"
                           " WHERE name = $1", name)
        return await get_personality_record(conn, name)


# ---- scenarios -------------------------------------------------------------------------


@dataclass(frozen=True)
class ScenarioRecord:
    scenario: Scenario
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    created_by: str | None
    personality_deleted: bool
    #: the sets it belongs to
    sets: list[str]

    @property
    def problems(self) -> list[str]:
        """Why it cannot be run as it is (empty when it can)."""
        out = []
        if self.deleted_at is not None:
            out.append(f"scenario {self.scenario.name!r} was deleted")
        if self.personality_deleted:
            out.append(f"personality {self.scenario.personality!r} was deleted")
        return out


SCENARIO_SELECT = """
    SELECT s.id, s.name, s.description, s.personality, s.backstory, s.weight,
           s.expected_outcomes, s.tags, s.created_at, s.updated_at, s.deleted_at, s.created_by,
           p.deleted_at IS NOT NULL AS personality_deleted,
           coalesce((SELECT array_agg(ss.name ORDER BY ss.name) FROM scenario_set_members m
                     JOIN scenario_sets ss ON ss.id = m.set_id WHERE m.scenario_id = s.id), '{}') AS sets
    FROM scenarios s JOIN personalities p ON p.name = s.personality
"""


def _scenario_model(row: asyncpg.Record, weight: int | None = None) -> Scenario:
    return Scenario(
        name=row["name"], description=row["description"], personality=row["personality"],
        backstory=Backstory.model_validate(row["backstory"]),
        weight=row["weight"] if weight is None else weight,
        expected_outcomes=list(row["expected_outcomes"]), tags=list(row["tags"]),
    )


def scenario_record(row: asyncpg.Record) -> ScenarioRecord:
    return ScenarioRecord(
        scenario=_scenario_model(row), created_at=row["created_at"], updated_at=row["updated_at"],
        deleted_at=row["deleted_at"], created_by=row["created_by"],
        personality_deleted=row["personality_deleted"], sets=list(row["sets"]),
    )


async def get_scenario_record(db: Executor, name: str) -> ScenarioRecord:
    row = await db.fetchrow(SCENARIO_SELECT + " WHERE s.name = $1", name)
    if row is None:
        raise NotFound(f"no scenario {name[:100]!r}", field="scenario")
    return scenario_record(row)


async def get_scenario(db: Executor, name: str) -> Scenario:
    """The scenario to run; NotFound, or Conflict when it or its personality was deleted."""
    record = await get_scenario_record(db, name)
    if record.problems:
        raise Conflict(f"scenario {name!r}: {'; '.join(record.problems)}", field="scenario")
    return record.scenario


async def list_scenarios(db: Executor, *, personality: str | None = None, tag: str | None = None,
                         include_deleted: bool = False) -> list[ScenarioRecord]:
    where, args = [], []
    if not include_deleted:
        where.append("s.deleted_at IS NULL")
    if personality is not None:
        args.append(personality)
        where.append(f"s.personality = ${len(args)}")
    if tag is not None:
        args.append(tag)
        where.append(f"${len(args)} = ANY (s.tags)")
    sql = SCENARIO_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY s.name"
    return [scenario_record(r) for r in await db.fetch(sql, *args)]


async def _usable_personality(conn: asyncpg.Connection, name: str) -> None:
    deleted = await conn.fetchrow("SELECT deleted_at FROM personalities WHERE name = $1", name)
    if deleted is None:
        raise Invalid(f"personality: no personality {name[:100]!r}", field="personality")
    if deleted["deleted_at"] is not None:
        raise Conflict(f"personality: personality {name!r} was deleted; choose another",
                       field="personality")


_SCENARIOS = _Table("scenarios", "scenario", ("description", "personality", "backstory", "weight",
                                              "expected_outcomes", "tags"))


def _scenario_values(s: Scenario) -> tuple[Any, ...]:
    """The values of `_SCENARIOS.columns`."""
    return (s.description, s.personality, s.backstory.model_dump(mode="json"), s.weight,
            list(s.expected_outcomes), s.tags)


async def create_scenario(db: Executor, scenario: Scenario, actor: str | None = None) -> ScenarioRecord:
    """Store a new scenario; its personality must exist and not be deleted. The name of a
    deleted scenario is taken over; a live one's is a Conflict."""
    async with transaction(db) as conn:
        await _usable_personality(conn, scenario.personality)
        await _create(conn, _SCENARIOS, scenario.name, _scenario_values(scenario), actor)
        return await get_scenario_record(conn, scenario.name)


async def update_scenario(db: Executor, name: str, changes: Mapping[str, Any]) -> ScenarioRecord:
    """Change some fields (`backstory` is replaced whole; `name` cannot change)."""
    _refuse_rename(_SCENARIOS, name, changes)
    async with transaction(db) as conn:
        current = await get_scenario_record(conn, name)
        changed = _changed(_SCENARIOS, Scenario, name, current.scenario, current.deleted_at, changes)
        if changed.personality != current.scenario.personality:
            await _usable_personality(conn, changed.personality)
        await conn.execute(_SCENARIOS.update_sql, name, *_scenario_values(changed))
        return await get_scenario_record(conn, name)


async def delete_scenario(db: Executor, name: str) -> ScenarioRecord:
    """Mark a scenario deleted; one still in a set is refused (Conflict naming the sets)."""
    async with transaction(db) as conn:
        current = await get_scenario_record(conn, name)
        if current.sets:
            raise Conflict(f"scenario {name!r} is in the scenario sets {', '.join(current.sets)}:"
                           " take it out of them first", field="scenario")
        await conn.execute("UPDATE scenarios SET deleted_at = coalesce(deleted_at, now())"
                           " WHERE name = $1", name)
        return await get_scenario_record(conn, name)
