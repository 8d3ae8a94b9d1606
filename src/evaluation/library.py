"""The evaluation library in PostgreSQL (asyncpg), in one place: personalities of simulated
debtors and scenarios (evaluation.library_records), named, ordered scenario sets
(evaluation.scenario_sets) and agent prompt versions (evaluation.prompt_versions). A run
needs only this module:

    pv = await library.get_prompt_version(pool, "collections-default@1")
    scenarios = await library.get_scenario_set(pool, "default")
    personality = await library.get_personality(pool, scenarios[0].personality)
    await library.mark_used(pool, pv.id)
    await library.record_run_stats(pool, pv.id, runs=8, successes=6, duration_s=410.0)

Deleting a personality or a scenario keeps its row (`deleted_at`): a scenario that names a
deleted personality reports it, and a new scenario cannot name one. Each write takes a
connection or a pool, so the REST API commits it with its audit row. Refusals are
evaluation.library_errors' (NotFound, Conflict, Invalid).
"""

from __future__ import annotations

from evaluation.library_errors import Conflict, Invalid, LibraryError, NotFound
from evaluation.library_records import (
    PersonalityRecord,
    ScenarioRecord,
    create_personality,
    create_scenario,
    delete_personality,
    delete_scenario,
    get_personality,
    get_personality_record,
    get_scenario,
    get_scenario_record,
    list_personalities,
    list_scenarios,
    update_personality,
    update_scenario,
)
from evaluation.prompt_versions import (
    LlmParams,
    PromptVersion,
    create_prompt_version,
    delete_prompt_version,
    get_prompt_version,
    list_prompt_versions,
    mark_used,
    record_run_stats,
    set_active,
    update_prompt_version,
)
from evaluation.scenario_sets import (
    ScenarioSetRecord,
    SetMember,
    create_scenario_set,
    delete_scenario_set,
    get_scenario_set,
    get_scenario_set_record,
    list_scenario_sets,
    replace_scenario_set,
)

__all__ = [
    "Conflict", "Invalid", "LibraryError", "LlmParams", "NotFound", "PersonalityRecord",
    "PromptVersion", "ScenarioRecord", "ScenarioSetRecord", "SetMember", "create_personality",
    "create_prompt_version", "create_scenario", "create_scenario_set", "delete_personality",
    "delete_prompt_version", "delete_scenario", "delete_scenario_set", "get_personality",
    "get_personality_record", "get_prompt_version", "get_scenario", "get_scenario_record",
    "get_scenario_set", "get_scenario_set_record", "list_personalities", "list_prompt_versions",
    "list_scenario_sets", "list_scenarios", "mark_used", "record_run_stats",
    "replace_scenario_set", "set_active", "update_personality", "update_prompt_version",
    "update_scenario",
]
