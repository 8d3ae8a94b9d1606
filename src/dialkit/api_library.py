"""The evaluation library over HTTP: personalities (/api/personalities), scenarios
(/api/scenarios, and /api/scenarios/generate from a brief) and scenario sets
(/api/scenario-sets); prompt versions have their own module (dialkit.api_prompt_versions).
`install` adds them all.

Refusals: 400 `{"error": "field: reason"}` for bad input (a scenario naming an unknown
personality, a weight out of range), 404 for an unknown name, 409 for a clash with what is
stored (a name taken, a deleted personality, a scenario still in a set). Every write and
its audit row (campaigns.audit) commit in one transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel

from ai.llm_text import LLMSettings
from campaigns import audit
from dialkit.api_campaigns import pool_of, writing
from dialkit.api_library_models import (
    GenerateIn,
    GenerateOut,
    IncludeDeletedQuery,
    PersonalityList,
    PersonalityOut,
    PersonalityPatch,
    ScenarioList,
    ScenarioListQuery,
    ScenarioOut,
    ScenarioPatch,
    ScenarioSetIn,
    ScenarioSetList,
    ScenarioSetOut,
    ScenarioSetPut,
)
from dialkit.openapi import ApiError, ErrorBody, Routes
from dialkit.state import STATE
from evaluation import library, scenario_gen
from evaluation.library_errors import Conflict, LibraryError, NotFound
from evaluation.models import Personality, Scenario
from evaluation.run_store import MAX_SEED

__all__ = ["audit_write", "changes_of", "id_page", "install", "read", "refused", "routes", "write"]

routes = Routes(tag="library")
T = TypeVar("T")


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_HasId)
_ERRORS: dict[int, Any] = {404: ErrorBody, 409: ErrorBody}


def refused(exc: LibraryError) -> ApiError:
    """The API's answer to a library refusal."""
    status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
    return ApiError(status, exc.reason, field=exc.field)


async def audit_write(conn: Any, request: web.Request, kind: str, subject: str, op: str,
                      **data: Any) -> None:
    await audit.record(conn, request["actor"], audit.API_WRITE, kind, subject, {"op": op, **data})


async def write(request: web.Request, kind: str, op: str, change: Callable[[Any], Awaitable[T]],
                subject: str | Callable[[T], str], **data: Any) -> T:
    """`change(conn)` and its audit row in one transaction (the subject named, or taken from
    the result); a library refusal becomes the API's answer."""
    try:
        async with writing(request) as conn:
            result = await change(conn)
            await audit_write(conn, request, kind, subject if isinstance(subject, str) else subject(result),
                              op, **data)
    except LibraryError as exc:
        raise refused(exc) from None
    return result


async def read(found: Awaitable[T]) -> T:
    try:
        return await found
    except LibraryError as exc:
        raise refused(exc) from None


async def id_page(listing: Callable[[int, int | None], Awaitable[list[R]]], cursor: str | None,
                  limit: int) -> tuple[list[R], str | None]:
    """One page of a list ordered by id, newest first: `listing(limit, after)` is asked for
    one row more than `limit` to know whether there is a next page. The page and its
    `next_cursor` (the last id; None at the end); 400 for a cursor this API did not give, a
    library refusal as `read` answers it."""
    after = None
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit()) or not 0 < int(cursor) <= MAX_SEED:
            raise ApiError(400, "cursor: not a cursor this API gave", field="cursor")
        after = int(cursor)
    found = await read(listing(limit + 1, after))
    page = found[:limit]
    return page, str(page[-1].id) if len(found) > limit else None


def changes_of(body: BaseModel) -> dict[str, Any]:
    """A PATCH body's fields given, as changes; a null is refused."""
    changes = body.model_dump(include=body.model_fields_set)
    nulls = sorted(k for k, v in changes.items() if v is None)
    if nulls:
        raise ApiError(400, f"{nulls[0]}: may not be null (leave it out to keep it)", field=nulls[0])
    return changes


def _by_name(kind: str, path: str, out: Any, *, get: Any, delete: Any, summaries: tuple[str, str],
             update: Any = None, patch: type[BaseModel] | None = None, patch_summary: str = "") -> None:
    """GET, DELETE (and PATCH when given) of `{path}/{kind}`, the record named in the path."""
    one = f"{path}/{{{kind}}}"

    async def get_one(request: web.Request) -> Any:
        return out.of(await read(get(pool_of(request), request.match_info[kind])))

    async def delete_one(request: web.Request) -> Any:
        name = request.match_info[kind]
        return out.of(await write(request, kind, "delete", lambda conn: delete(conn, name), name))

    async def update_one(request: web.Request, body: BaseModel) -> Any:
        name = request.match_info[kind]
        changes = changes_of(body)
        return out.of(await write(request, kind, "update", lambda conn: update(conn, name, changes),
                                  name, fields=sorted(changes)))

    for handler, verb in ((get_one, "get"), (delete_one, "delete"), (update_one, "update")):
        handler.__name__ = f"{verb}_{kind}"
    routes.get(one, response=out, responses=_ERRORS, summary=summaries[0])(get_one)
    if patch is not None:
        routes.patch(one, body=patch, response=out, responses=_ERRORS, summary=patch_summary)(update_one)
    routes.delete(one, response=out, responses=_ERRORS, summary=summaries[1])(delete_one)


# ---- personalities ---------------------------------------------------------------------


@routes.get("/api/personalities", query=IncludeDeletedQuery, response=PersonalityList,
            summary="List the personalities of simulated debtors")
async def list_personalities(request: web.Request, query: IncludeDeletedQuery) -> PersonalityList:
    found = await library.list_personalities(pool_of(request), include_deleted=query.include_deleted)
    return PersonalityList(items=[PersonalityOut.of(r) for r in found])


@routes.post("/api/personalities", body=Personality, response=PersonalityOut, status=201,
             responses={409: ErrorBody}, summary="Create a personality (traits as parameters)")
async def create_personality(request: web.Request, body: Personality) -> PersonalityOut:
    return PersonalityOut.of(await write(
        request, "personality", "create",
        lambda conn: library.create_personality(conn, body, actor=request["actor"]), body.name))


_by_name("personality", "/api/personalities", PersonalityOut,
         get=library.get_personality_record, update=library.update_personality,
         delete=library.delete_personality, patch=PersonalityPatch,
         summaries=("One personality (a deleted one too, with deleted_at)",
                    "Delete a personality: kept, marked deleted; scenarios naming it report it"),
         patch_summary="Change some of a personality's traits")


# ---- scenarios -------------------------------------------------------------------------


@routes.get("/api/scenarios", query=ScenarioListQuery, response=ScenarioList,
            summary="List scenarios, by personality or tag")
async def list_scenarios(request: web.Request, query: ScenarioListQuery) -> ScenarioList:
    found = await library.list_scenarios(pool_of(request), personality=query.personality,
                                         tag=query.tag, include_deleted=query.include_deleted)
    return ScenarioList(items=[ScenarioOut.of(r) for r in found])


@routes.post("/api/scenarios", body=Scenario, response=ScenarioOut, status=201,
             responses={409: ErrorBody},
             summary="Create a scenario: a personality (not deleted) and a backstory, weight 1-5")
async def create_scenario(request: web.Request, body: Scenario) -> ScenarioOut:
    return ScenarioOut.of(await write(
        request, "scenario", "create",
        lambda conn: library.create_scenario(conn, body, actor=request["actor"]), body.name))


@routes.post("/api/scenarios/generate", body=GenerateIn, response=GenerateOut,
             responses={409: ErrorBody, 502: ErrorBody, 504: ErrorBody},
             summary="Generate scenarios from a short brief (LLM when configured, else templates)")
async def generate_scenarios(request: web.Request, body: GenerateIn) -> GenerateOut:
    """Templates with a seed are deterministic; the LLM's answer is validated (502 naming
    the problem when it is not valid scenarios, 504 when it does not answer in time)."""
    settings = request.app[STATE].settings
    key = settings.openai_api_key
    if body.mode == "llm" and key is None:
        raise ApiError(409, "mode: no LLM is configured on this server (set OPENAI_API_KEY)",
                       field="mode")
    personalities = {r.personality.name: r.personality
                     for r in await library.list_personalities(pool_of(request))}
    try:
        if key is not None and body.mode != "templates":
            llm = LLMSettings(api_key=key.get_secret_value(), model=settings.openai_model,
                              base_url=settings.openai_base_url)
            scenarios = await scenario_gen.generate_with_llm(body.brief, body.count, body.seed,
                                                             personalities, llm)
        else:
            scenarios = scenario_gen.generate_offline(body.brief, body.count, body.seed, personalities)
    except scenario_gen.NoPersonality as exc:
        raise ApiError(409, str(exc), field="brief") from None
    except scenario_gen.GenerationTimeout as exc:
        raise ApiError(504, str(exc)) from None
    except scenario_gen.GenerationError as exc:
        raise ApiError(502, str(exc)) from None
    if body.save:
        try:
            async with writing(request) as conn:
                for s in scenarios:
                    await library.create_scenario(conn, s, actor=request["actor"])
                    await audit_write(conn, request, "scenario", s.name, "generate", brief=body.brief[:200])
        except LibraryError as exc:
            raise refused(exc) from None
    return GenerateOut(mode="llm" if key is not None and body.mode != "templates" else "templates",
                       scenarios=scenarios, saved=[s.name for s in scenarios] if body.save else [])


_by_name("scenario", "/api/scenarios", ScenarioOut,
         get=library.get_scenario_record, update=library.update_scenario,
         delete=library.delete_scenario, patch=ScenarioPatch,
         summaries=("One scenario, with what stops it from running",
                    "Delete a scenario (kept, marked deleted; refused while in a set)"),
         patch_summary="Change some of a scenario's fields (backstory whole)")


# ---- scenario sets ---------------------------------------------------------------------


@routes.get("/api/scenario-sets", response=ScenarioSetList, summary="List the scenario sets")
async def list_scenario_sets(request: web.Request) -> ScenarioSetList:
    found = await library.list_scenario_sets(pool_of(request))
    return ScenarioSetList(items=[ScenarioSetOut.of(r) for r in found])


@routes.post("/api/scenario-sets", body=ScenarioSetIn, response=ScenarioSetOut, status=201,
             responses={409: ErrorBody}, summary="Create a scenario set: scenarios in order")
async def create_scenario_set(request: web.Request, body: ScenarioSetIn) -> ScenarioSetOut:
    members = [(m.scenario, m.weight) for m in body.members]
    return ScenarioSetOut.of(await write(
        request, "scenario_set", "create",
        lambda conn: library.create_scenario_set(conn, body.name, members, description=body.description,
                                                 actor=request["actor"]),
        body.name, members=len(members)))


_by_name("scenario_set", "/api/scenario-sets", ScenarioSetOut,
         get=library.get_scenario_set_record, delete=library.delete_scenario_set,
         summaries=("One scenario set, its members in order with their weights",
                    "Delete a scenario set (its scenarios stay)"))


@routes.put("/api/scenario-sets/{scenario_set}", body=ScenarioSetPut, response=ScenarioSetOut,
            responses=_ERRORS, summary="Replace a scenario set's members")
async def replace_scenario_set(request: web.Request, body: ScenarioSetPut) -> ScenarioSetOut:
    name = request.match_info["scenario_set"]
    members = [(m.scenario, m.weight) for m in body.members]
    return ScenarioSetOut.of(await write(
        request, "scenario_set", "replace",
        lambda conn: library.replace_scenario_set(conn, name, members, description=body.description),
        name, members=len(members)))


def install(app: web.Application) -> None:
    """The library routes: personalities, scenarios, scenario sets and prompt versions."""
    from dialkit import api_prompt_versions

    routes.install(app)
    api_prompt_versions.routes.install(app)
