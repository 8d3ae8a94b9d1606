"""What the product ships into the evaluation library, stored when the database is migrated
(`dialkit migrate`, and every server start): one prompt version `<name>@1` per packaged
collections playbook (src/ai/playbooks/*.yaml with its system-prompt template, so
`collections-default@1`), and the personalities and scenario sets of
evaluation.library_data (`default`, `default-heldout`).

Seeding only adds: a name already stored (edited, deleted or a later version) is left as
it is, so it is safe on every start and with several nodes starting at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import structlog

from ai.playbook import PACKAGED_PLAYBOOKS, load_playbook
from ai.prompt import load_template
from evaluation.models import Personality, Scenario
from evaluation.prompt_versions import checked_content

__all__ = ["SeedReport", "seed_library", "shipped_library"]

log = structlog.get_logger("evaluation.library_seed")

SEED_LOCK = 0x6C696272  # advisory lock id: nodes starting at once seed one after the other
SEEDED_BY = "dialkit"


@dataclass
class SeedReport:
    """What this seeding added (names)."""

    prompt_versions: list[str] = field(default_factory=list)
    personalities: list[str] = field(default_factory=list)
    scenarios: list[str] = field(default_factory=list)
    scenario_sets: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(v)} {k.replace('_', ' ')}" for k, v in vars(self).items() if v]
        return ", ".join(parts) or "nothing"

    def __bool__(self) -> bool:
        return bool(self.prompt_versions or self.personalities or self.scenarios or self.scenario_sets)


def shipped_library() -> tuple[dict[str, Personality], dict[str, list[Scenario]], dict[str, str]]:
    """The shipped personalities, scenario sets and the sets' descriptions
    (evaluation.library_data)."""
    from evaluation import library_data

    names = library_data.SCENARIO_SETS
    sets = {name: library_data.load_scenario_set(name) for name in names}
    about = {name: library_data.scenario_set_description(name) for name in names}
    return library_data.load_personalities(), sets, about


async def seed_library(
    pool: asyncpg.Pool | asyncpg.Connection, *,
    personalities: Mapping[str, Personality] | None = None,
    scenario_sets: Mapping[str, list[Scenario]] | None = None,
    descriptions: Mapping[str, str] | None = None,
    playbooks: list[Path] | None = None,
) -> SeedReport:
    """Store what is shipped and not yet stored (arguments replace the shipped data, for
    tests); returns what was added."""
    if personalities is None or scenario_sets is None:
        shipped_personalities, shipped_sets, shipped_about = shipped_library()
        personalities = shipped_personalities if personalities is None else personalities
        if scenario_sets is None:
            scenario_sets, descriptions = shipped_sets, shipped_about
    if playbooks is None:
        playbooks = sorted(PACKAGED_PLAYBOOKS.glob("*.yaml"))
    report = SeedReport()
    conn_cm = pool.acquire() if isinstance(pool, asyncpg.Pool) else nullcontext(pool)
    async with conn_cm as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SEED_LOCK)
        await _prompt_versions(conn, playbooks, report)
        await _personalities(conn, personalities, report)
        await _scenario_sets(conn, scenario_sets, descriptions or {}, report)
    if report:
        log.info("library_seeded", prompt_versions=report.prompt_versions,
                 personalities=len(report.personalities), scenarios=len(report.scenarios),
                 scenario_sets=report.scenario_sets)
    return report


async def _prompt_versions(conn: asyncpg.Connection, files: list[Path], report: SeedReport) -> None:
    for path in files:
        playbook = load_playbook(path)
        if playbook.kind != "collections":
            continue
        if await conn.fetchval("SELECT 1 FROM prompt_versions WHERE name = $1", playbook.name):
            continue
        template = load_template(playbook).template
        data, text, llm = checked_content(playbook.name, 1, playbook.model_dump(
            mode="json", exclude_unset=True), template, None)
        await conn.execute(
            "INSERT INTO prompt_versions (name, version, playbook, system_prompt_template, llm,"
            " notes, tags, created_by) VALUES ($1, 1, $2, $3, $4, $5, $6, $7)",
            playbook.name, data, text, llm.model_dump(mode="json"),
            f"shipped with dialkit ({path.name}, playbook version {playbook.version})",
            ["shipped"], SEEDED_BY)
        report.prompt_versions.append(f"{playbook.name}@1")


async def _personalities(conn: asyncpg.Connection, found: Mapping[str, Personality],
                         report: SeedReport) -> None:
    for personality in found.values():
        added = await conn.fetchval(
            "INSERT INTO personalities (name, traits, created_by) VALUES ($1, $2, $3)"
            " ON CONFLICT (name) DO NOTHING RETURNING name",
            personality.name, personality.model_dump(mode="json", exclude={"name"}), SEEDED_BY)
        if added:
            report.personalities.append(added)


async def _scenario_sets(conn: asyncpg.Connection, sets: Mapping[str, list[Scenario]],
                         descriptions: Mapping[str, str], report: SeedReport) -> None:
    for set_name, scenarios in sets.items():
        if await conn.fetchval("SELECT 1 FROM scenario_sets WHERE name = $1", set_name):
            continue
        for s in scenarios:
            known = await conn.fetchval("SELECT 1 FROM personalities WHERE name = $1", s.personality)
            if not known:
                raise ValueError(f"shipped scenario {s.name!r} (set {set_name}) names personality"
                                 f" {s.personality!r}, which is not shipped")
            added = await conn.fetchval(
                "INSERT INTO scenarios (name, description, personality, backstory, weight,"
                " expected_outcomes, tags, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                " ON CONFLICT (name) DO NOTHING RETURNING name",
                s.name, s.description, s.personality, s.backstory.model_dump(mode="json"),
                s.weight, list(s.expected_outcomes), s.tags, SEEDED_BY)
            if added:
                report.scenarios.append(added)
        set_id = await conn.fetchval(
            "INSERT INTO scenario_sets (name, description, created_by) VALUES ($1, $2, $3)"
            " RETURNING id", set_name, descriptions.get(set_name, ""), SEEDED_BY)
        # a scenario of that name the user deleted stays out of the set
        await conn.execute(
            "INSERT INTO scenario_set_members (set_id, position, scenario_id)"
            " SELECT $1, row_number() OVER (ORDER BY x.i) - 1, s.id"
            " FROM unnest($2::text[]) WITH ORDINALITY AS x(name, i)"
            " JOIN scenarios s ON s.name = x.name AND s.deleted_at IS NULL",
            set_id, [s.name for s in scenarios])
        report.scenario_sets.append(set_name)
