"""Personalities and scenarios of the evaluation library in PostgreSQL (tables
`personalities`, `scenarios`). Deleting either keeps its row (`deleted_at`): a scenario that
names a deleted personality reports it, and a new scenario cannot name one. Use it through
evaluation.library."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


# ---- personalities ---------------------------------------------------------------------


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
        row = await conn.fetchrow(
            "INSERT INTO personalities (name, traits, created_by) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO UPDATE SET traits = excluded.traits, deleted_at = NULL,"
            "   created_by = excluded.created_by, created_at = now(), updated_at = now()"
            "   WHERE personalities.deleted_at IS NOT NULL"
            " RETURNING name", personality.name, _traits(personality), actor)
        if row is None:
            raise Conflict(f"name: a personality named {personality.name!r} exists", field="name")
        return await get_personality_record(conn, personality.name)


async def update_personality(db: Executor, name: str, changes: Mapping[str, Any]) -> PersonalityRecord:
    """Change some traits (`changes` by field name; `name` cannot change)."""
    if "name" in changes and changes["name"] != name:
        raise Invalid("name: a personality's name cannot change (create a new one)", field="name")
    async with transaction(db) as conn:
        current = await get_personality_record(conn, name)
        if current.deleted_at is not None:
            raise Conflict(f"personality {name!r} was deleted: it cannot be changed", field="personality")
        try:
            changed = Personality.model_validate({**current.personality.model_dump(), **changes})
        except ValidationError as exc:
            raise invalid(exc) from None
        await conn.execute("UPDATE personalities SET traits = $2, updated_at = now() WHERE name = $1",
                           name, _traits(changed))
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


def _scenario_args(s: Scenario) -> tuple[Any, ...]:
    return (s.name, s.description, s.personality, s.backstory.model_dump(mode="json"), s.weight,
            list(s.expected_outcomes), s.tags)


async def create_scenario(db: Executor, scenario: Scenario, actor: str | None = None) -> ScenarioRecord:
    """Store a new scenario; its personality must exist and not be deleted. The name of a
    deleted scenario is taken over; a live one's is a Conflict."""
    async with transaction(db) as conn:
        await _usable_personality(conn, scenario.personality)
        row = await conn.fetchrow(
            "INSERT INTO scenarios (name, description, personality, backstory, weight,"
            " expected_outcomes, tags, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (name) DO UPDATE SET description = excluded.description,"
            "   personality = excluded.personality, backstory = excluded.backstory,"
            "   weight = excluded.weight, expected_outcomes = excluded.expected_outcomes,"
            "   tags = excluded.tags, created_by = excluded.created_by, deleted_at = NULL,"
            "   created_at = now(), updated_at = now()"
            "   WHERE scenarios.deleted_at IS NOT NULL"
            " RETURNING name", *_scenario_args(scenario), actor)
        if row is None:
            raise Conflict(f"name: a scenario named {scenario.name!r} exists", field="name")
        return await get_scenario_record(conn, scenario.name)


async def update_scenario(db: Executor, name: str, changes: Mapping[str, Any]) -> ScenarioRecord:
    """Change some fields (`backstory` is replaced whole; `name` cannot change)."""
    if "name" in changes and changes["name"] != name:
        raise Invalid("name: a scenario's name cannot change (create a new one)", field="name")
    async with transaction(db) as conn:
        current = await get_scenario_record(conn, name)
        if current.deleted_at is not None:
            raise Conflict(f"scenario {name!r} was deleted: it cannot be changed", field="scenario")
        try:
            changed = Scenario.model_validate({**current.scenario.model_dump(), **changes})
        except ValidationError as exc:
            raise invalid(exc) from None
        if changed.personality != current.scenario.personality:
            await _usable_personality(conn, changed.personality)
        await conn.execute(
            "UPDATE scenarios SET description = $2, personality = $3, backstory = $4, weight = $5,"
            " expected_outcomes = $6, tags = $7, updated_at = now() WHERE name = $1",
            *_scenario_args(changed))
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
