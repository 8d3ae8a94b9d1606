"""What the evaluation-library routes take and answer (pydantic, so each appears in the
OpenAPI document): personalities, prompt versions, scenarios, scenario sets, generation."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from evaluation.library import PersonalityRecord, PromptVersion, ScenarioRecord, ScenarioSetRecord
from evaluation.models import Personality, Scenario
from evaluation.prompt_versions import LlmParams

NAME = r"^[a-z0-9][a-z0-9_-]*$"
Tags = list[Annotated[str, Field(min_length=1, max_length=100)]]


def partial(model: type[BaseModel], name: str, *, exclude: tuple[str, ...] = ()) -> type[BaseModel]:
    """`model` with every field optional and its type and constraints kept (null is not a
    value): the body of a PATCH, whose fields given are the changes."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in exclude:
            continue
        optional = copy.copy(info)
        optional.default, optional.default_factory = None, None
        fields[field_name] = (info.annotation, optional)  # the default (None) is never validated
    made: type[BaseModel] = create_model(name, __config__=ConfigDict(extra="forbid"), **fields)
    made.__doc__ = f"Some fields of a {model.__name__}: those given change."
    return made


# ---- personalities ---------------------------------------------------------------------


class PersonalityOut(Personality):
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None = Field(description="set once deleted: no new scenario may use it")
    created_by: str | None
    scenarios: list[str] = Field(description="the scenarios (not deleted) that name it")

    @classmethod
    def of(cls, r: PersonalityRecord) -> PersonalityOut:
        return cls(**r.personality.model_dump(), created_at=r.created_at, updated_at=r.updated_at,
                   deleted_at=r.deleted_at, created_by=r.created_by, scenarios=r.scenarios)


PersonalityPatch = partial(Personality, "PersonalityPatch", exclude=("name",))


class PersonalityList(BaseModel):
    items: list[PersonalityOut]


class IncludeDeletedQuery(BaseModel):
    include_deleted: bool = Field(default=False, description="list deleted ones too")


# ---- scenarios -------------------------------------------------------------------------


class ScenarioOut(Scenario):
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    created_by: str | None
    personality_deleted: bool = Field(description="its personality was deleted: it cannot run")
    sets: list[str] = Field(description="the scenario sets it belongs to")
    problems: list[str] = Field(description="why it cannot run as it is (empty when it can)")

    @classmethod
    def of(cls, r: ScenarioRecord) -> ScenarioOut:
        return cls(**r.scenario.model_dump(), created_at=r.created_at, updated_at=r.updated_at,
                   deleted_at=r.deleted_at, created_by=r.created_by,
                   personality_deleted=r.personality_deleted, sets=r.sets, problems=r.problems)


ScenarioPatch = partial(Scenario, "ScenarioPatch", exclude=("name",))


class ScenarioList(BaseModel):
    items: list[ScenarioOut]


class ScenarioListQuery(IncludeDeletedQuery):
    personality: str | None = Field(default=None, max_length=100)
    tag: str | None = Field(default=None, max_length=100)


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    brief: str = Field(min_length=1, max_length=2000,
                       description='what to generate, e.g. "hardship cases after a job loss"')
    count: int = Field(default=5, ge=1, le=50)
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="same brief and seed: same scenarios")
    mode: Literal["auto", "templates", "llm"] = Field(
        default="auto", description="auto: the LLM when the server has one configured, else templates")
    save: bool = Field(default=False, description="store them in the library too")


class GenerateOut(BaseModel):
    mode: Literal["templates", "llm"]
    scenarios: list[Scenario]
    saved: list[str] = Field(description="the names stored (save: true)")


# ---- scenario sets ---------------------------------------------------------------------


class SetMemberIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scenario: str = Field(min_length=1, max_length=100)
    weight: int | None = Field(default=None, ge=1, le=5,
                               description="its weight in this set (null: the scenario's own)")


class ScenarioSetIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NAME)
    description: str = Field(default="", max_length=2000)
    members: list[SetMemberIn] = Field(default_factory=list, max_length=500)


class ScenarioSetPut(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str | None = Field(default=None, max_length=2000, description="null: unchanged")
    members: list[SetMemberIn] = Field(max_length=500, description="replace the members, in order")


class SetMemberOut(BaseModel):
    scenario: str
    weight: int = Field(description="the weight it counts with in this set")
    set_weight: int | None
    personality: str
    problems: list[str]


class ScenarioSetOut(BaseModel):
    name: str
    description: str
    members: list[SetMemberOut]
    problems: list[str] = Field(description="members that cannot run (empty when all can)")
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None

    @classmethod
    def of(cls, r: ScenarioSetRecord) -> ScenarioSetOut:
        members = [SetMemberOut(scenario=m.scenario.scenario.name, weight=m.weight,
                                set_weight=m.set_weight, personality=m.scenario.scenario.personality,
                                problems=m.scenario.problems) for m in r.members]
        return cls(name=r.name, description=r.description, members=members, problems=r.problems,
                   created_at=r.created_at, updated_at=r.updated_at, created_by=r.created_by)


class ScenarioSetList(BaseModel):
    items: list[ScenarioSetOut]


# ---- prompt versions -------------------------------------------------------------------


class PromptVersionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9][a-z0-9_.-]*$",
                      description="the next version of this name is created (1 for a new name)")
    playbook: dict[str, Any] | Annotated[str, Field(max_length=200_000)] = Field(
        description="the playbook (ai.playbook schema): a JSON object, or its YAML text")
    system_prompt_template: str | None = Field(
        default=None, max_length=100_000,
        description="the LLM system prompt ($placeholders); null: the playbook's own template")
    llm: LlmParams = Field(default_factory=LlmParams)
    notes: str = Field(default="", max_length=10_000)
    tags: Tags = Field(default_factory=list, max_length=50)
    active: bool = True
    parent: str | None = Field(default=None, max_length=200,
                               description="id or name@version it derives from (default: the"
                                           " name's latest version)")


class PromptVersionPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbook: dict[str, Any] | Annotated[str, Field(max_length=200_000)] | None = None
    system_prompt_template: str | None = Field(default=None, max_length=100_000)
    llm: LlmParams | None = None
    notes: str | None = Field(default=None, max_length=10_000)
    tags: Tags | None = Field(default=None, max_length=50)
    active: bool | None = None


class PromptVersionSummary(BaseModel):
    id: int
    ref: str = Field(description="name@version")
    name: str
    version: int
    parent_id: int | None
    llm: LlmParams
    notes: str
    tags: list[str]
    active: bool
    used_at: dt.datetime | None = Field(description="first used; from then on its content is fixed")
    runs: int
    successes: int
    success_rate: float | None = Field(description="successes / runs; null before any run")
    avg_duration_s: float | None
    created_at: dt.datetime
    updated_at: dt.datetime
    created_by: str | None

    @classmethod
    def fields_of(cls, v: PromptVersion) -> dict[str, Any]:
        return dict(
            id=v.id, ref=v.ref, name=v.name, version=v.version, parent_id=v.parent_id, llm=v.llm,
            notes=v.notes, tags=v.tags, active=v.active, used_at=v.used_at, runs=v.runs,
            successes=v.successes, success_rate=v.success_rate, avg_duration_s=v.avg_duration_s,
            created_at=v.created_at, updated_at=v.updated_at, created_by=v.created_by)


class PromptVersionOut(PromptVersionSummary):
    playbook: dict[str, Any]
    system_prompt_template: str

    @classmethod
    def of(cls, v: PromptVersion) -> PromptVersionOut:
        return cls(**cls.fields_of(v), playbook=v.playbook_data,
                   system_prompt_template=v.system_prompt_template)


class PromptVersionPage(BaseModel):
    items: list[PromptVersionSummary]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")


class PromptVersionListQuery(BaseModel):
    name: str | None = Field(default=None, max_length=100)
    tag: str | None = Field(default=None, max_length=100)
    active: bool | None = None
    limit: int = Field(default=100, ge=1, le=500)
    after: int = Field(default=0, ge=0, le=2**63 - 1, description="the last id of the previous page")
