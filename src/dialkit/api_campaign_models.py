"""What the campaign, lead and do-not-call routes answer (pydantic, so each appears in the
OpenAPI document) and the query strings they take."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from campaigns.dnc import DncEntry
from campaigns.lead_import import ImportReport
from campaigns.models import CampaignSettings

LeadState = Literal["pending", "retry", "callback", "dialing", "done", "dnc", "exhausted", "canceled"]
CampaignStatus = Literal["draft", "running", "paused", "completed", "canceled"]


class CampaignOut(BaseModel):
    id: uuid.UUID
    name: str
    playbook: str = Field(description="name@version")
    carrier: str
    caller_id: str
    status: CampaignStatus
    status_reason: str | None
    max_concurrent: int
    max_attempts: int
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    webhook_url: str | None
    settings: CampaignSettings
    created_at: dt.datetime
    updated_at: dt.datetime


class CampaignCreated(CampaignOut):
    webhook_secret: str = Field(
        description="signs this campaign's outcome webhooks (HMAC-SHA256); shown only now"
    )


class CampaignPage(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


class CampaignListQuery(BaseModel):
    status: list[CampaignStatus] = Field(default_factory=list, description="only these statuses")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=200)


class TransitionQuery(BaseModel):
    reason: str | None = Field(default=None, max_length=500, description="kept with the status")


class CampaignStatusOut(BaseModel):
    id: uuid.UUID
    status: CampaignStatus
    status_reason: str | None
    leads: dict[str, int] = Field(description="leads per state (every state, 0 when none)")
    attempts: dict[str, int] = Field(description="attempts per state (every state)")
    total_leads: int
    live_attempts: int = Field(description="attempts queued, dialing, ringing or in progress")


class Rejection(BaseModel):
    line: int
    reason: str


class Repeat(BaseModel):
    line: int
    account_ref: str
    previous_line: int | None = Field(
        description="the earlier line of this file it repeats; null: the lead already stored"
    )


class UploadReport(BaseModel):
    """Every data row of the file is exactly one of accepted, updated, duplicate, rejected."""

    rows: int
    accepted: int = Field(description="new leads")
    updated: int = Field(description="an account_ref already known, with new details")
    duplicate: int = Field(description="an account_ref already known, with the same details")
    rejected: int
    dnc: int = Field(description="leads stored with state dnc: their phone is on a do-not-call list")
    rejections: list[Rejection] = Field(description="the first rejected rows (see max_listed)")
    updates: list[Repeat]
    duplicates: list[Repeat]
    max_listed: int = Field(description="at most this many rows are listed per kind; counts are exact")

    @classmethod
    def of(cls, r: ImportReport, max_listed: int) -> UploadReport:
        return cls(
            rows=r.rows, accepted=r.accepted, updated=r.updated, duplicate=r.duplicate,
            rejected=r.rejected, dnc=r.dnc,
            rejections=[Rejection(line=x.line, reason=x.reason) for x in r.rejections],
            updates=[Repeat(line=x.line, account_ref=x.account_ref, previous_line=x.previous_line)
                     for x in r.updates],
            duplicates=[Repeat(line=x.line, account_ref=x.account_ref,
                               previous_line=x.previous_line) for x in r.duplicates],
            max_listed=max_listed,
        )


class LeadOut(BaseModel):
    id: int
    account_ref: str
    name: str
    phone: str
    country: str
    zones: list[str]
    amount_due: Decimal
    currency: str
    due_date: dt.date
    custom: dict[str, Any]
    line: int | None
    state: LeadState
    attempts: int
    next_at: dt.datetime | None
    callback_at: dt.datetime | None
    last_state: str | None
    last_outcome: str | None
    conversation_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class LeadPage(BaseModel):
    items: list[LeadOut]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")


class LeadListQuery(BaseModel):
    state: list[LeadState] = Field(default_factory=list, description="only leads in these states")
    limit: int = Field(default=100, ge=1, le=1000)
    after: int = Field(default=0, ge=0, description="the last lead id of the previous page")


class DncIn(BaseModel):
    phone: str = Field(min_length=1, max_length=40,
                       description="E.164; a campaign's list also takes its region's national form")
    reason: str | None = Field(default=None, max_length=500)


class DncOut(BaseModel):
    id: int
    phone: str
    campaign_id: uuid.UUID | None = Field(description="null: the global list")
    reason: str | None
    source: str
    created_by: str | None
    created_at: dt.datetime

    @classmethod
    def of(cls, e: DncEntry) -> DncOut:
        return cls(id=e.id, phone=e.phone, campaign_id=e.campaign_id, reason=e.reason,
                   source=e.source, created_by=e.created_by, created_at=e.created_at)


class DncAdded(DncOut):
    created: bool = Field(description="false: the number was on this list already")
    leads_stopped: int = Field(description="waiting leads moved to state dnc")


class DncRemoved(BaseModel):
    phone: str
    leads_restored: int = Field(description="dnc leads back to pending (no other list holds them)")


class DncPage(BaseModel):
    items: list[DncOut]
    next_after: int | None


class DncListQuery(BaseModel):
    phone: str | None = Field(
        default=None, max_length=40,
        description="only the entries that stop this number (for a campaign: its list and the global one)",
    )
    limit: int = Field(default=100, ge=1, le=1000)
    after: int = Field(default=0, ge=0)


class DncDeleteQuery(BaseModel):
    phone: str = Field(min_length=1, max_length=40)
