"""Agent prompt versions over HTTP (/api/prompt-versions): create (validated: a playbook or
template that fails is a 400 naming the problem), list (by name, tag, active flag), get
by id, `name@version` or a name (its highest active version), change (a used version's
content change creates the next version, 201, linked to its parent), activate and
deactivate, and delete (only a version never used, 409 otherwise). Each write is audited.
"""

from __future__ import annotations

from aiohttp import web

from dialkit.api_campaigns import pool_of, writing
from dialkit.api_library import audit_write, changes_of, read, refused, write
from dialkit.api_library_models import (
    PromptVersionIn,
    PromptVersionListQuery,
    PromptVersionOut,
    PromptVersionPage,
    PromptVersionPatch,
    PromptVersionSummary,
)
from dialkit.bodies import BodyError, check_storable
from dialkit.openapi import ApiError, ErrorBody, Routes
from evaluation import library
from evaluation.library_errors import LibraryError

__all__ = ["routes"]

routes = Routes(tag="prompt versions")
_ERRORS = {404: ErrorBody, 409: ErrorBody}
_KIND = "prompt_version"
#: a playbook's YAML text and a system prompt are longer than the API's usual text limit
MAX_TEXT = 200_000


def _storable(request: web.Request) -> None:
    try:
        check_storable(request["json"], max_string=MAX_TEXT)
    except BodyError as exc:
        raise ApiError(400, str(exc), field=exc.field) from None


@routes.post("/api/prompt-versions", body=PromptVersionIn, response=PromptVersionOut, status=201,
             responses=_ERRORS, check_storable=False,
             summary="Create the next version of a prompt (playbook, template, LLM)")
async def create_prompt_version(request: web.Request, body: PromptVersionIn) -> PromptVersionOut:
    _storable(request)
    created = await write(request, _KIND, "create", lambda conn: library.create_prompt_version(
        conn, name=body.name, playbook=body.playbook, system_prompt_template=body.system_prompt_template,
        llm=body.llm, notes=body.notes, tags=body.tags, active=body.active, parent=body.parent,
        actor=request["actor"]), lambda v: v.ref)
    return PromptVersionOut.of(created)


@routes.get("/api/prompt-versions", query=PromptVersionListQuery, response=PromptVersionPage,
            summary="List prompt versions (oldest first), by name, tag or active flag")
async def list_prompt_versions(request: web.Request, query: PromptVersionListQuery) -> PromptVersionPage:
    found = await library.list_prompt_versions(
        pool_of(request), name=query.name, tag=query.tag, active=query.active,
        limit=query.limit + 1, after=query.after)
    page = found[: query.limit]
    return PromptVersionPage(
        items=[PromptVersionSummary(**PromptVersionSummary.fields_of(v)) for v in page],
        next_after=page[-1].id if len(found) > query.limit else None)


@routes.get("/api/prompt-versions/{prompt_version}", response=PromptVersionOut,
            responses={404: ErrorBody},
            summary="One prompt version: by id, name@version, or a name (its highest active version)")
async def get_prompt_version(request: web.Request) -> PromptVersionOut:
    return PromptVersionOut.of(await read(library.get_prompt_version(
        pool_of(request), request.match_info["prompt_version"])))


@routes.patch("/api/prompt-versions/{prompt_version}", body=PromptVersionPatch,
              response=PromptVersionOut, responses={**_ERRORS, 201: PromptVersionOut},
              check_storable=False,
              summary="Change a prompt version; a used one's content change is a new version (201)")
async def update_prompt_version(request: web.Request, body: PromptVersionPatch) -> web.Response:
    """Notes, tags and the active flag change in place. The playbook, the template and the
    LLM parameters of a version already used never change: the change is stored as the
    next version of the name, its parent_id this one, and answered with 201."""
    _storable(request)
    ref = request.match_info["prompt_version"]
    changes = changes_of(body)
    try:
        async with writing(request) as conn:
            version, created = await library.update_prompt_version(conn, ref, changes,
                                                                   actor=request["actor"])
            extra = {"parent_id": version.parent_id} if created else {}
            await audit_write(conn, request, _KIND, version.ref, "derive" if created else "update",
                              fields=sorted(changes), **extra)
    except LibraryError as exc:
        raise refused(exc) from None
    return web.Response(body=PromptVersionOut.of(version).model_dump_json(),
                        status=201 if created else 200, content_type="application/json")


def _flag_route(action: str, active: bool) -> None:
    async def handler(request: web.Request) -> PromptVersionOut:
        ref = request.match_info["prompt_version"]
        return PromptVersionOut.of(await write(
            request, _KIND, action, lambda conn: library.set_active(conn, ref, active), lambda v: v.ref))

    handler.__name__ = f"{action}_prompt_version"
    routes.post(f"/api/prompt-versions/{{prompt_version}}/{action}", response=PromptVersionOut,
                responses={404: ErrorBody}, summary=f"{action.capitalize()} a prompt version")(handler)


_flag_route("activate", True)
_flag_route("deactivate", False)


@routes.delete("/api/prompt-versions/{prompt_version}", response=PromptVersionOut,
               responses=_ERRORS, summary="Delete a prompt version never used (409 once used)")
async def delete_prompt_version(request: web.Request) -> PromptVersionOut:
    ref = request.match_info["prompt_version"]
    return PromptVersionOut.of(await write(
        request, _KIND, "delete", lambda conn: library.delete_prompt_version(conn, ref), lambda v: v.ref))
