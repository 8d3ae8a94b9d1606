"""The audit log and the outcome-webhook deliveries over HTTP:
GET /api/audit (admin: filtered by subject, action, actor and time, paged by cursor) and
GET /api/campaigns/{id}/webhooks (each delivery with its state and last error)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from campaigns import audit, outbox
from campaigns import store as campaigns
from dialkit.api_campaigns import campaign_id, pool_of, refused
from dialkit.openapi import ApiError, ErrorBody, Routes

routes = Routes(tag="audit")

DeliveryState = Literal["pending", "retrying", "delivered", "given_up"]


class AuditFilter(BaseModel):
    subject_type: str | None = Field(default=None, max_length=100, description="campaign, lead, attempt, call, api_key…")
    subject_id: str | None = Field(default=None, max_length=200)
    action: audit.Action | None = None
    actor: str | None = Field(default=None, max_length=200)
    since: AwareDatetime | None = Field(default=None, description="inclusive, ISO 8601 with a UTC offset")
    until: AwareDatetime | None = Field(default=None, description="exclusive, ISO 8601 with a UTC offset")
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = Field(default=None, max_length=100, description="`next` of the previous page")

    @field_validator("since", "until")
    @classmethod
    def _in_utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        try:
            return value.astimezone(dt.UTC) if value is not None else None
        except OverflowError:
            raise ValueError("out of range once converted to UTC") from None

    @model_validator(mode="after")
    def _range(self) -> AuditFilter:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class AuditEntry(BaseModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str | None
    data: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next: str | None = Field(description="pass as `cursor` for the next (older) page; null on the last")


@routes.get("/api/audit", query=AuditFilter, response=AuditPage, scope="admin",
            summary="Audit log entries, newest first")
async def list_audit(request: web.Request, query: AuditFilter) -> AuditPage:
    q = audit.AuditQuery(**query.model_dump())
    try:
        rows, cursor = await audit.query(pool_of(request), q)
    except ValueError as exc:
        raise ApiError(400, f"cursor: {exc}", field="cursor") from None
    return AuditPage(items=[AuditEntry(**r) for r in rows], next=cursor)


class WebhookFilter(BaseModel):
    state: DeliveryState | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    before: int | None = Field(default=None, ge=1, le=2**63 - 1,
                               description="only deliveries with a smaller id (paging)")


class WebhookDelivery(BaseModel):
    id: int
    event: str
    idempotency_key: str
    state: DeliveryState
    attempts: int
    next_at: dt.datetime | None = Field(description="when it is tried next (pending and retrying)")
    delivered_at: dt.datetime | None
    given_up_at: dt.datetime | None
    last_status: int | None = Field(description="the receiver's last HTTP status")
    last_error: str | None
    last_attempt_at: dt.datetime | None
    created_at: dt.datetime
    payload: dict[str, Any]


class WebhookPage(BaseModel):
    items: list[WebhookDelivery]
    next: int | None = Field(description="pass as `before` for the next (older) page; null on the last")


@routes.get("/api/campaigns/{id}/webhooks", query=WebhookFilter, response=WebhookPage,
            responses={404: ErrorBody},
            summary="A campaign's outcome-webhook deliveries, newest first, with their state")
async def list_webhooks(request: web.Request, query: WebhookFilter) -> WebhookPage:
    cid = campaign_id(request)
    pool = pool_of(request)
    try:
        await campaigns.get(pool, cid)
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    rows = await outbox.list_deliveries(
        pool, cid, state=query.state, limit=query.limit + 1, before_id=query.before
    )
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    items = [
        WebhookDelivery(**{**r, "next_at": r["next_at"] if r["state"] in ("pending", "retrying") else None})
        for r in rows
    ]
    return WebhookPage(items=items, next=rows[-1]["id"] if more and rows else None)
