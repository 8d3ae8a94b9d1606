"""Rows for scheduler tests: campaigns and leads written straight into PostgreSQL, so a
test sets up exactly the state it means (zones, histories, DNC) without the upload path."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from campaigns.models import CampaignSettings


async def make_campaign(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    status: str = "running",
    carrier: str = "twilio",
    max_concurrent: int = 5,
    max_attempts: int = 6,
    settings: CampaignSettings | dict[str, Any] | None = None,
    playbook: str = "collections@1",
    caller_id: str = "+14155550100",
    webhook_url: str | None = None,
    starts_at: dt.datetime | None = None,
    ends_at: dt.datetime | None = None,
) -> uuid.UUID:
    if isinstance(settings, CampaignSettings):
        settings = settings.model_dump(mode="json")
    name, _, version = playbook.partition("@")
    cid: uuid.UUID = await conn.fetchval(
        "INSERT INTO campaigns (name, playbook_name, playbook_version, carrier, caller_id, status,"
        " max_concurrent, max_attempts, starts_at, ends_at, webhook_url, webhook_secret, settings)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        f"test {uuid.uuid4().hex[:6]}", name, version or "1", carrier, caller_id, status,
        max_concurrent, max_attempts, starts_at, ends_at, webhook_url, secrets.token_hex(16),
        settings or {},
    )
    return cid


async def add_lead(
    conn: asyncpg.Connection | asyncpg.Pool,
    campaign_id: uuid.UUID,
    *,
    phone: str | None = None,
    zones: Sequence[str] = ("America/New_York",),
    country: str = "US",
    state: str = "pending",
    next_at: dt.datetime | None = None,
    conversation_at: dt.datetime | None = None,
    attempts: int = 0,
    name: str = "Jordan Smith",
    amount: str = "420.50",
    currency: str = "USD",
    custom: dict[str, Any] | None = None,
) -> int:
    phone = phone or f"+1415{secrets.randbelow(10**7):07d}"
    lead_id: int = await conn.fetchval(
        "INSERT INTO leads (campaign_id, account_ref, name, phone, country, zones, amount_due,"
        " currency, due_date, custom, state, next_at, conversation_at, attempts)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7::numeric, $8, $9, $10, $11, $12, $13, $14) RETURNING id",
        campaign_id, f"ACC-{uuid.uuid4().hex[:10]}", name, phone, country, list(zones), amount,
        currency, dt.date(2026, 11, 1), custom or {}, state, next_at, conversation_at, attempts,
    )
    return lead_id


async def add_past_attempt(
    conn: asyncpg.Connection | asyncpg.Pool, campaign_id: uuid.UUID, lead_id: int,
    at: dt.datetime, state: str = "no_answer",
) -> None:
    await conn.execute(
        "INSERT INTO attempts (campaign_id, lead_id, carrier, state, created_at, ended_at,"
        " settled_at) VALUES ($1, $2, 'twilio', $3, $4, $4, $4)",
        campaign_id, lead_id, state, at,
    )


async def quiesce(conn: asyncpg.Connection | asyncpg.Pool) -> None:
    """End every live attempt and stop every running campaign (state left by earlier tests)."""
    await conn.execute(
        "UPDATE attempts SET state = 'canceled', ended_at = now(), settled_at = now()"
        " WHERE state IN ('queued', 'dialing', 'ringing', 'in_progress')")
    await conn.execute("UPDATE campaigns SET status = 'completed' WHERE status = 'running'")
