"""Tuning runs over HTTP (tuning.runs):

- POST /api/tuning: a prompt version, training scenarios (a set, or scenarios by name with
  weights 1-5) and held-out ones, a target (0-100), max iterations (1-10), repeats, seed
  and writer (offline, or llm when the server has an LLM); answers 202 {id, status} at once
  and defers the `dialkit.tuning_run` job (queue `evaluation`);
- GET /api/tuning: newest first, by status and initial prompt version, paged by cursor;
- GET /api/tuning/{tuning}: status, current iteration, every iteration with its training
  and held-out scores side by side, delta, accepted and why, the evaluations, the analysis
  and the writer–critique exchange, tokens and cost; the initial and final versions;
- POST /api/tuning/{tuning}/cancel: the run stops at its next step (CANCELLED);
- GET /api/tuning/{tuning}/export: the final prompt version's playbook as YAML.

Refusals: 400 for bad input (a weight outside 1-5, a target or max iterations out of
range, both or neither of a set and scenarios), 404 for an unknown prompt version,
scenario, set or run, 409 to cancel a finished run, 422 for an LLM writer the server cannot
make (no LLM configured, or not part of this build).
"""

from __future__ import annotations

from aiohttp import web

from dialkit.api_campaigns import pool_of, writing
from dialkit.api_evaluations import run_refused
from dialkit.api_library import audit_write, id_page, read
from dialkit.api_tuning_models import (
    TuningCreated,
    TuningListQuery,
    TuningOut,
    TuningPage,
    TuningSummary,
)
from dialkit.openapi import ApiError, ErrorBody, Routes
from dialkit.state import STATE
from evaluation.library_errors import LibraryError
from tuning import runs
from tuning.run_store import TuningSpec

__all__ = ["install", "routes"]

routes = Routes(tag="tuning")


def _tuning_id(request: web.Request) -> int:
    raw = request.match_info["tuning"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise ApiError(404, f"no tuning run {raw[:30]!r}", field="tuning")
    return int(raw)


@routes.post("/api/tuning", body=TuningSpec, response=TuningCreated, status=202,
             responses={404: ErrorBody, 422: ErrorBody, 503: ErrorBody},
             summary="Start a tuning run: improve a prompt version toward a target score")
async def create_tuning(request: web.Request, body: TuningSpec) -> TuningCreated:
    jobs = request.app[STATE].jobs
    if jobs is None:
        raise ApiError(503, "the job queue is not ready")
    try:
        async with writing(request) as conn:
            run = await runs.create_tuning(conn, body, actor=request["actor"],
                                           llm=runs.llm_settings(request.app[STATE].settings))
            await audit_write(conn, request, "tuning", str(run.id), "create",
                              prompt_version=run.prompt_version, target=body.target,
                              max_iterations=body.max_iterations, writer=body.writer)
    except LibraryError as exc:
        raise run_refused(exc) from None
    await jobs.defer_tuning(run.id)
    return TuningCreated(id=run.id, status=run.status)


@routes.get("/api/tuning", query=TuningListQuery, response=TuningPage, responses={404: ErrorBody},
            summary="List tuning runs (newest first), by status or initial prompt version")
async def list_tuning(request: web.Request, query: TuningListQuery) -> TuningPage:
    page, next_cursor = await id_page(lambda limit, after: runs.list_tuning(
        pool_of(request), status=query.status, prompt_version=query.prompt_version,
        limit=limit, after=after), query.cursor, query.limit)
    return TuningPage(items=[TuningSummary.of(r) for r in page], next_cursor=next_cursor)


@routes.get("/api/tuning/{tuning}", response=TuningOut, responses={404: ErrorBody},
            summary="One tuning run: its iterations, training and held-out scores side by side")
async def get_tuning(request: web.Request) -> TuningOut:
    return TuningOut.of(await read(runs.get_tuning(pool_of(request), _tuning_id(request))))


@routes.post("/api/tuning/{tuning}/cancel", response=TuningSummary, status=202,
             responses={404: ErrorBody, 409: ErrorBody},
             summary="Cancel a tuning run (it stops at its next step)")
async def cancel_tuning(request: web.Request) -> TuningSummary:
    tuning_id = _tuning_id(request)
    try:
        async with writing(request) as conn:
            run = await runs.cancel_tuning(conn, tuning_id)
            await audit_write(conn, request, "tuning", str(tuning_id), "cancel")
    except LibraryError as exc:
        raise run_refused(exc) from None
    return TuningSummary.of(run)


@routes.get("/api/tuning/{tuning}/export", responses={404: ErrorBody},
            summary="The run's final prompt version (its playbook) as YAML")
async def export_tuning(request: web.Request) -> web.Response:
    tuning_id = _tuning_id(request)
    ref, text = await read(runs.export_yaml(pool_of(request), tuning_id))
    filename = ref.replace("@", "-") + ".yaml"
    return web.Response(text=text, content_type="application/yaml",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def install(app: web.Application) -> None:
    routes.install(app)
