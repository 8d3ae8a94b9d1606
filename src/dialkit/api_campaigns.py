"""The campaign API: create, list, get, update and delete campaigns; start, pause, resume
and cancel them; their status (leads per state, attempts per state). The lead upload and
the do-not-call lists have their own modules; `install` adds all three to an app.

Every write and its audit row (campaigns.audit) commit in one transaction. A campaign's
playbook must be one the server has loaded (422 otherwise).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from aiohttp import web

from ai.playbook import Playbook, UnknownPlaybook
from campaigns import audit
from campaigns import store as campaigns
from campaigns.models import CampaignCreate, CampaignUpdate
from dialkit.api_campaign_models import (
    CampaignCreated,
    CampaignListQuery,
    CampaignOut,
    CampaignPage,
    CampaignStatusOut,
    TransitionQuery,
)
from dialkit.cursors import cursor_for, read_cursor
from dialkit.openapi import ApiError, ErrorBody, Routes
from dialkit.state import STATE

__all__ = ["install", "routes"]

routes = Routes(tag="campaigns")
_LIVE = ("queued", "dialing", "ringing", "in_progress")


def pool_of(request: web.Request) -> asyncpg.Pool:
    pool = request.app[STATE].pool
    if pool is None:
        raise ApiError(503, "the database is not ready")
    return pool


@asynccontextmanager
async def writing(request: web.Request) -> AsyncIterator[asyncpg.Connection]:
    """A connection in a transaction, for a change and its audit row."""
    async with pool_of(request).acquire() as conn, conn.transaction():
        yield conn


def campaign_id(request: web.Request) -> uuid.UUID:
    raw = request.match_info["id"]
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, f"no campaign {raw[:60]!r} (ids are UUIDs)", field="id") from None


def resolve_playbook(request: web.Request, ref: str) -> Playbook:
    providers = request.app[STATE].providers
    if providers is None:
        raise ApiError(503, "the server is still starting")
    try:
        return providers.registry.get(ref)
    except UnknownPlaybook as exc:
        raise ApiError(422, str(exc), field="playbook") from None


def refused(exc: Exception) -> ApiError:
    """The API's answer to a store refusal."""
    if isinstance(exc, campaigns.CampaignNotFound):
        return ApiError(404, str(exc), field="id")
    if isinstance(exc, campaigns.TransitionRefused):
        return ApiError(409, str(exc))
    field, _, reason = str(exc).partition(": ")
    return ApiError(400, str(exc), field=field if reason else None)


_ERRORS = {404: ErrorBody, 409: ErrorBody, 422: ErrorBody}


@routes.post("/api/campaigns", body=CampaignCreate, response=CampaignCreated, status=201,
             summary="Create a campaign (draft); its webhook secret is shown only in this answer",
             responses={422: ErrorBody})
async def create_campaign(request: web.Request, body: CampaignCreate) -> CampaignCreated:
    playbook = resolve_playbook(request, body.playbook)
    async with writing(request) as conn:
        campaign, secret = await campaigns.create(conn, body, playbook.name, playbook.version)
        await audit.record(conn, request["actor"], audit.API_WRITE, "campaign", str(campaign.id),
                           {"op": "create", "name": campaign.name, "playbook": campaign.playbook})
    out = CampaignOut.model_validate(campaign, from_attributes=True)
    return CampaignCreated(**out.model_dump(), webhook_secret=secret)


def _read_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        return read_cursor(cursor)
    except ValueError:
        raise ApiError(400, "cursor: not a cursor this API gave", field="cursor") from None


@routes.get("/api/campaigns", query=CampaignListQuery, response=CampaignPage,
            summary="List campaigns, newest first")
async def list_campaigns(request: web.Request, query: CampaignListQuery) -> CampaignPage:
    before = _read_cursor(query.cursor) if query.cursor else None
    found = await campaigns.list_campaigns(pool_of(request), status=query.status,
                                           limit=query.limit + 1, before=before)
    page = found[: query.limit]
    more = len(found) > query.limit
    return CampaignPage(items=[CampaignOut.model_validate(c, from_attributes=True) for c in page],
                        next_cursor=cursor_for(page[-1].created_at, page[-1].id) if more else None)


@routes.get("/api/campaigns/{id}", response=CampaignOut, summary="One campaign",
            responses={404: ErrorBody})
async def get_campaign(request: web.Request) -> CampaignOut:
    try:
        campaign = await campaigns.get(pool_of(request), campaign_id(request))
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    return CampaignOut.model_validate(campaign, from_attributes=True)


@routes.patch("/api/campaigns/{id}", body=CampaignUpdate, response=CampaignOut,
              summary="Change some of a campaign's fields", responses=_ERRORS)
async def update_campaign(request: web.Request, body: CampaignUpdate) -> CampaignOut:
    cid = campaign_id(request)
    playbook = None
    if "playbook" in body.model_fields_set:
        if body.playbook is None:
            raise ApiError(400, "playbook: may not be null", field="playbook")
        found = resolve_playbook(request, body.playbook)
        playbook = (found.name, found.version)
    try:
        async with writing(request) as conn:
            campaign = await campaigns.update(conn, cid, body, playbook)
            await audit.record(conn, request["actor"], audit.API_WRITE, "campaign", str(cid), {
                "op": "update", "fields": sorted(body.model_fields_set)})
    except (campaigns.CampaignNotFound, campaigns.TransitionRefused, ValueError) as exc:
        raise refused(exc) from None
    return CampaignOut.model_validate(campaign, from_attributes=True)


@routes.delete("/api/campaigns/{id}", response=CampaignOut, responses={404: ErrorBody},
               summary="Delete a campaign (cancelled first when live; its records are kept)")
async def delete_campaign(request: web.Request) -> CampaignOut:
    cid = campaign_id(request)
    try:
        async with writing(request) as conn:
            campaign = await campaigns.delete(conn, cid)
            await audit.record(conn, request["actor"], audit.API_WRITE, "campaign", str(cid),
                               {"op": "delete"})
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    return CampaignOut.model_validate(campaign, from_attributes=True)


def _carrier_configured(request: web.Request, campaign: campaigns.Campaign) -> None:
    """A campaign dials only through a carrier this server has credentials for: otherwise
    every attempt would fail and count against the failure-rate pause."""
    providers = request.app[STATE].providers
    if providers is not None and campaign.carrier not in providers.controls:
        raise ApiError(409, f"carrier {campaign.carrier} is not configured on this server "
                            f"(set its account and credentials; see README, Configuration)",
                       field="carrier")


def _transition_route(action: str, summary: str) -> None:
    async def handler(request: web.Request, query: TransitionQuery) -> CampaignOut:
        cid = campaign_id(request)
        try:
            if action in ("start", "resume"):
                _carrier_configured(request, await campaigns.get(pool_of(request), cid))
            async with writing(request) as conn:
                campaign, before = await campaigns.transition(conn, cid, action, query.reason)
                await audit.record(conn, request["actor"], audit.CAMPAIGN_STATE, "campaign",
                                   str(cid), {"action": action, "from": before,
                                              "to": campaign.status, "reason": query.reason})
        except (campaigns.CampaignNotFound, campaigns.TransitionRefused) as exc:
            raise refused(exc) from None
        jobs = request.app[STATE].jobs
        if campaign.status == "running" and jobs is not None:
            await jobs.kick()  # dial now rather than at the next periodic tick
        return CampaignOut.model_validate(campaign, from_attributes=True)

    handler.__name__ = f"{action}_campaign"
    handler.__doc__ = summary
    routes.post(f"/api/campaigns/{{id}}/{action}", query=TransitionQuery, response=CampaignOut,
                summary=summary, responses={404: ErrorBody, 409: ErrorBody})(handler)


_transition_route("start", "Start dialling a draft campaign")
_transition_route("pause", "Pause a running campaign (live calls finish)")
_transition_route("resume", "Resume a paused campaign")
_transition_route("cancel", "Cancel a campaign: its waiting leads are cancelled")


@routes.get("/api/campaigns/{id}/status", response=CampaignStatusOut, responses={404: ErrorBody},
            summary="A campaign's status: leads per state and attempts per state")
async def campaign_status(request: web.Request) -> CampaignStatusOut:
    cid = campaign_id(request)
    pool = pool_of(request)
    try:
        campaign = await campaigns.get(pool, cid)
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    leads, attempts = await campaigns.counts(pool, cid)
    return CampaignStatusOut(
        id=cid, status=campaign.status, status_reason=campaign.status_reason,  # type: ignore[arg-type]
        leads=leads, attempts=attempts, total_leads=sum(leads.values()),
        live_attempts=sum(attempts[s] for s in _LIVE),
    )


def install(app: web.Application) -> None:
    """The campaign, lead and do-not-call routes."""
    from dialkit import api_dnc, api_leads, lead_workers

    lead_workers.install(app)
    routes.install(app)
    api_leads.routes.install(app)
    api_dnc.routes.install(app)
