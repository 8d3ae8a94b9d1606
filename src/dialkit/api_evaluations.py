"""Evaluation runs over HTTP (evaluation.runs):

- POST /api/evaluations: a prompt version over scenarios chosen by name (weights 1-5) or a
  scenario set, `repeat` times; answers 202 {id, status} at once and defers one job per
  call (queue `evaluation`, taken by any worker on the database);
- GET /api/evaluations: newest first, by status, prompt version and label, paged by cursor;
- GET /api/evaluations/{evaluation}: the run with every call's transcript, scores,
  compliance (violations with rule, turn and quote), hostility and the judge's evidence per
  criterion, the weighted score and pass^k, and why it failed when it did.

Refusals: 400 for bad input (a weight outside 1-5, both or neither of scenarios and
scenario_set), 404 for an unknown prompt version, scenario, set or run, 409 for a deleted
personality or scenario, 422 for what cannot run as asked (a prompt version that no longer
validates, audio mode, which needs `dialkit eval --mode audio`, an LLM judge without an LLM).
"""

from __future__ import annotations

from aiohttp import web

from dialkit.api_campaigns import pool_of, writing
from dialkit.api_evaluation_models import (
    EvaluationCreated,
    EvaluationListQuery,
    EvaluationOut,
    EvaluationPage,
    EvaluationSummary,
)
from dialkit.api_library import audit_write, id_page, read, refused
from dialkit.openapi import ApiError, ErrorBody, Routes
from dialkit.state import STATE
from evaluation import runs
from evaluation.library_errors import LibraryError

__all__ = ["install", "routes", "run_refused"]

routes = Routes(tag="evaluations")


def run_refused(exc: LibraryError) -> ApiError:
    """The API's answer to a refused run (evaluation, tuning): 422 for what cannot run as
    asked, else as the library's refusals."""
    if isinstance(exc, runs.Unrunnable):
        return ApiError(422, exc.reason, field=exc.field)
    return refused(exc)


def _services(request: web.Request) -> runs.EvaluationServices:
    jobs = request.app[STATE].jobs
    if jobs is not None and jobs.evaluation is not None:
        return jobs.evaluation.services
    return runs.services_from_settings(request.app[STATE].settings)


@routes.post("/api/evaluations", body=runs.EvaluationSpec, response=EvaluationCreated, status=202,
             responses={404: ErrorBody, 409: ErrorBody, 422: ErrorBody, 503: ErrorBody},
             summary="Start an evaluation run: a prompt version over weighted scenarios, k repeats")
async def create_evaluation(request: web.Request, body: runs.EvaluationSpec) -> EvaluationCreated:
    jobs = request.app[STATE].jobs
    if jobs is None:
        raise ApiError(503, "the job queue is not ready")
    try:
        async with writing(request) as conn:
            run = await runs.create_evaluation(conn, body, actor=request["actor"],
                                               services=_services(request))
            await audit_write(conn, request, "evaluation", str(run.id), "create",
                              prompt_version=run.prompt_version, calls=run.calls_total)
    except LibraryError as exc:
        raise run_refused(exc) from None
    await jobs.defer_evaluation(run.id)
    return EvaluationCreated(id=run.id, status=run.status)


@routes.get("/api/evaluations", query=EvaluationListQuery, response=EvaluationPage,
            responses={404: ErrorBody},
            summary="List evaluation runs (newest first), by status, prompt version or label")
async def list_evaluations(request: web.Request, query: EvaluationListQuery) -> EvaluationPage:
    page, next_cursor = await id_page(lambda limit, after: runs.list_evaluations(
        pool_of(request), status=query.status, prompt_version=query.prompt_version,
        label=query.label, limit=limit, after=after), query.cursor, query.limit)
    return EvaluationPage(items=[EvaluationSummary.of(r) for r in page], next_cursor=next_cursor)


@routes.get("/api/evaluations/{evaluation}", response=EvaluationOut, responses={404: ErrorBody},
            summary="One evaluation run: every call's transcript, scores and evidence")
async def get_evaluation(request: web.Request) -> EvaluationOut:
    raw = request.match_info["evaluation"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise ApiError(404, f"no evaluation {raw[:30]!r}", field="evaluation")
    return EvaluationOut.of(await read(runs.get_evaluation(pool_of(request), int(raw))))


def install(app: web.Application) -> None:
    routes.install(app)
