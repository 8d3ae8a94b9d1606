"""Do-not-call lists over HTTP: the global list (/api/dnc) and each campaign's
(/api/campaigns/{id}/dnc). GET lists a page (or, with `phone`, the entries that stop that
number), POST adds a number, DELETE ?phone= takes it off. Each change is audited with the
number masked."""

from __future__ import annotations

import uuid

from aiohttp import web

from campaigns import audit, dnc
from campaigns import store as campaigns
from dialkit.api_campaign_models import (
    DncAdded,
    DncDeleteQuery,
    DncIn,
    DncListQuery,
    DncOut,
    DncPage,
    DncRemoved,
)
from dialkit.api_campaigns import campaign_id, pool_of, refused, writing
from dialkit.openapi import ApiError, ErrorBody, Routes
from media.call_control import mask_number

__all__ = ["routes"]

routes = Routes(tag="dnc")


async def _scope(request: web.Request, scoped: bool) -> tuple[uuid.UUID | None, str | None]:
    """(campaign id or None for the global list, the region for national numbers)."""
    if not scoped:
        return None, None
    cid = campaign_id(request)
    try:
        campaign = await campaigns.get(pool_of(request), cid)
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    return cid, campaign.settings.default_region


def _phone(raw: str, region: str | None) -> str:
    try:
        return dnc.normalise_phone(raw, region)
    except ValueError as exc:
        raise ApiError(400, f"phone: {exc}", field="phone") from None


async def _list(request: web.Request, query: DncListQuery, scoped: bool) -> DncPage:
    cid, region = await _scope(request, scoped)
    pool = pool_of(request)
    if query.phone is not None:
        found = await dnc.check(pool, _phone(query.phone, region), cid)
        if cid is None:
            found = [e for e in found if e.campaign_id is None]
        return DncPage(items=[DncOut.of(e) for e in found], next_after=None)
    entries = await dnc.list_entries(pool, cid, limit=query.limit + 1, after_id=query.after)
    page = entries[: query.limit]
    return DncPage(items=[DncOut.of(e) for e in page],
                   next_after=page[-1].id if len(entries) > query.limit else None)


async def _add(request: web.Request, body: DncIn, scoped: bool) -> DncAdded:
    cid, region = await _scope(request, scoped)
    phone = _phone(body.phone, region)
    async with writing(request) as conn:
        entry, created, stopped = await dnc.add(conn, phone, cid, reason=body.reason,
                                                source="api", created_by=request["actor"])
        if created:
            await audit.record(conn, request["actor"], audit.DNC_ADD, "dnc", str(entry.id), {
                "phone": mask_number(phone), "campaign_id": str(cid) if cid else None,
                "reason": body.reason, "leads_stopped": stopped})
    return DncAdded(**DncOut.of(entry).model_dump(), created=created, leads_stopped=stopped)


async def _remove(request: web.Request, query: DncDeleteQuery, scoped: bool) -> DncRemoved:
    cid, region = await _scope(request, scoped)
    phone = _phone(query.phone, region)
    async with writing(request) as conn:
        removed, restored = await dnc.remove(conn, phone, cid)
        if not removed:
            raise ApiError(404, "that number is not on this list", field="phone")
        await audit.record(conn, request["actor"], audit.DNC_REMOVE, "dnc", None, {
            "phone": mask_number(phone), "campaign_id": str(cid) if cid else None,
            "leads_restored": restored})
    return DncRemoved(phone=phone, leads_restored=restored)


_NOT_FOUND = {404: ErrorBody}


@routes.get("/api/dnc", query=DncListQuery, response=DncPage, summary="The global do-not-call list")
async def list_global(request: web.Request, query: DncListQuery) -> DncPage:
    return await _list(request, query, scoped=False)


@routes.post("/api/dnc", body=DncIn, response=DncAdded, status=201,
             summary="Never call this number again, in any campaign")
async def add_global(request: web.Request, body: DncIn) -> DncAdded:
    return await _add(request, body, scoped=False)


@routes.delete("/api/dnc", query=DncDeleteQuery, response=DncRemoved, responses=_NOT_FOUND,
               summary="Take a number off the global do-not-call list")
async def remove_global(request: web.Request, query: DncDeleteQuery) -> DncRemoved:
    return await _remove(request, query, scoped=False)


@routes.get("/api/campaigns/{id}/dnc", query=DncListQuery, response=DncPage,
            responses=_NOT_FOUND, summary="A campaign's do-not-call list")
async def list_campaign(request: web.Request, query: DncListQuery) -> DncPage:
    return await _list(request, query, scoped=True)


@routes.post("/api/campaigns/{id}/dnc", body=DncIn, response=DncAdded, status=201,
             responses=_NOT_FOUND, summary="Never call this number in this campaign")
async def add_campaign(request: web.Request, body: DncIn) -> DncAdded:
    return await _add(request, body, scoped=True)


@routes.delete("/api/campaigns/{id}/dnc", query=DncDeleteQuery, response=DncRemoved,
               responses=_NOT_FOUND, summary="Take a number off a campaign's do-not-call list")
async def remove_campaign(request: web.Request, query: DncDeleteQuery) -> DncRemoved:
    return await _remove(request, query, scoped=True)
