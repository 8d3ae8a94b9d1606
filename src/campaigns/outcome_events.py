"""The body of an outcome webhook (what a campaign's `webhook_url` receives), one schema.

Events are outcome names of `ai.vocabulary.OUTCOMES`; the ones a campaign owner acts on
are sent: promise_to_pay, callback, dispute, opt_out, wrong_party.

The lead is named by the campaign owner's own `account_ref` (their key for the debt) and
a masked phone number: the owner already holds the full number, and a webhook body ends
up in receivers' logs and queues, so it carries no more personal data than it needs.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ai.vocabulary import OUTCOMES, OptOutReason, PlanKind
from media.call_control import mask_number

WebhookEvent = Literal["promise_to_pay", "callback", "dispute", "opt_out", "wrong_party"]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)
assert set(WEBHOOK_EVENTS) <= set(OUTCOMES), "webhook events are outcome names"

SCHEMA_VERSION = 1


class WebhookLead(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: int
    account_ref: str
    phone_masked: str = Field(description="country code and last digits, e.g. +1******0123")


class WebhookOutcome(BaseModel):
    """The call's recorded outcome (the `call_outcomes` columns that apply)."""

    model_config = ConfigDict(extra="forbid")

    outcome: str | None = None
    right_party: bool | None = None
    ptp_amount: Decimal | None = None
    ptp_date: dt.date | None = None
    ptp_plan: PlanKind | None = None
    ptp_instalments: int | None = None
    opt_out_reason: OptOutReason | None = None
    dispute_reason: str | None = None
    hardship: bool = False
    callback_at: dt.datetime | None = None
    callback_text: str | None = None


class OutcomeEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_version: int = SCHEMA_VERSION
    id: str = Field(description="the delivery's Idempotency-Key: the same for every retry")
    event: WebhookEvent
    campaign_id: UUID
    attempt_id: UUID | None = None
    call_id: UUID | None = None
    lead: WebhookLead
    outcome: WebhookOutcome
    occurred_at: dt.datetime


def idempotency_key(call_id: UUID | str, event: str) -> str:
    """One key per (call, event): recording the same outcome twice enqueues it once."""
    return f"{call_id}:{event}"


def outcome_event(
    *,
    event: str,
    campaign_id: UUID | str,
    lead_id: int,
    account_ref: str,
    phone: str,
    call_id: UUID | str,
    outcome: dict[str, Any],
    occurred_at: dt.datetime,
    attempt_id: UUID | str | None = None,
) -> OutcomeEvent:
    """Build an event from a lead's row and a `call_outcomes` row (extra columns ignored).
    ValueError (pydantic's) when `event` is not a webhook event."""
    fields = {k: outcome.get(k) for k in WebhookOutcome.model_fields if k in outcome}
    if fields.get("hardship") is None:
        fields.pop("hardship", None)
    return OutcomeEvent.model_validate({
        "id": idempotency_key(call_id, event),
        "event": event,
        "campaign_id": campaign_id,
        "attempt_id": attempt_id,
        "call_id": call_id,
        "lead": {"id": lead_id, "account_ref": account_ref, "phone_masked": mask_number(phone)},
        "outcome": fields,
        "occurred_at": occurred_at,
    })
