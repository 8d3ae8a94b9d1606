"""Campaign rows in PostgreSQL: create (the webhook secret is returned once), list, get,
update, soft delete; the status transitions start / pause / resume / cancel with their
reasons; counts of a campaign's leads per state and attempts per state; a page of leads.

Every function takes the asyncpg connection (or pool) to run on, so a caller can put the
change and its audit row in one transaction. The playbook is resolved by the caller (its
registry lives with the app) and arrives here as name and version.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, get_args

import asyncpg

from campaigns.attempts import AttemptState
from campaigns.models import CampaignCreate, CampaignSettings, CampaignUpdate

__all__ = [
    "LEAD_STATES",
    "STATUSES",
    "TRANSITIONS",
    "Campaign",
    "CampaignNotFound",
    "TransitionRefused",
    "counts",
    "create",
    "delete",
    "get",
    "list_campaigns",
    "list_leads",
    "transition",
    "update",
]

Executor: TypeAlias = "asyncpg.Connection | asyncpg.Pool"

STATUSES = ("draft", "running", "paused", "completed", "canceled")
LEAD_STATES = ("pending", "retry", "callback", "dialing", "done", "dnc", "exhausted", "canceled")
#: action → (the statuses it may leave, the status it enters)
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("draft",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("draft", "running", "paused"), "canceled"),
}
#: leads still waiting to be dialled; a cancelled campaign cancels them
_WAITING = ["pending", "retry", "callback"]

_COLUMNS = (
    "id, name, playbook_name, playbook_version, carrier, caller_id, status, status_reason,"
    " max_concurrent, max_attempts, starts_at, ends_at, webhook_url, settings, created_at,"
    " updated_at"
)


class CampaignNotFound(LookupError):
    def __init__(self, campaign_id: uuid.UUID | str) -> None:
        super().__init__(f"no campaign {campaign_id}")


class TransitionRefused(ValueError):
    """The action does not apply to the campaign's status (a 409)."""

    def __init__(self, action: str, status: str) -> None:
        message = f"cannot {action} a {status} campaign"
        if action in TRANSITIONS:
            message += f" (only a {' or '.join(TRANSITIONS[action][0])} one)"
        super().__init__(message)
        self.action, self.status = action, status


@dataclass(frozen=True, slots=True)
class Campaign:
    id: uuid.UUID
    name: str
    playbook: str  # name@version
    carrier: str
    caller_id: str
    status: str
    status_reason: str | None
    max_concurrent: int
    max_attempts: int
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    webhook_url: str | None
    settings: CampaignSettings
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> Campaign:
        return cls(
            id=r["id"], name=r["name"], playbook=f"{r['playbook_name']}@{r['playbook_version']}",
            carrier=r["carrier"], caller_id=r["caller_id"], status=r["status"],
            status_reason=r["status_reason"], max_concurrent=r["max_concurrent"],
            max_attempts=r["max_attempts"], starts_at=r["starts_at"], ends_at=r["ends_at"],
            webhook_url=r["webhook_url"], settings=CampaignSettings.model_validate(r["settings"]),
            created_at=r["created_at"], updated_at=r["updated_at"],
        )


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


async def create(
    conn: Executor, body: CampaignCreate, playbook_name: str, playbook_version: str
) -> tuple[Campaign, str]:
    """The new campaign (draft) and its webhook secret, which is never shown again."""
    secret = new_secret()
    row = await conn.fetchrow(
        "INSERT INTO campaigns (name, playbook_name, playbook_version, carrier, caller_id,"
        " max_concurrent, max_attempts, starts_at, ends_at, webhook_url, webhook_secret,"
        f" settings) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING {_COLUMNS}",
        body.name, playbook_name, playbook_version, body.carrier, body.caller_id,
        body.max_concurrent, body.max_attempts, body.starts_at, body.ends_at,
        str(body.webhook_url) if body.webhook_url else None, secret,
        body.settings.model_dump(mode="json"),
    )
    assert row is not None
    return Campaign.from_record(row), secret


async def get(conn: Executor, campaign_id: uuid.UUID) -> Campaign:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM campaigns WHERE id = $1 AND deleted_at IS NULL", campaign_id
    )
    if row is None:
        raise CampaignNotFound(campaign_id)
    return Campaign.from_record(row)


async def list_campaigns(
    conn: Executor, *, status: Sequence[str] = (), limit: int = 50,
    before: tuple[dt.datetime, uuid.UUID] | None = None,
) -> list[Campaign]:
    """Newest first; `before` (created_at, id) of the last one seen gives the next page."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM campaigns WHERE deleted_at IS NULL"
        " AND (cardinality($1::text[]) = 0 OR status = ANY($1::text[]))"
        " AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::uuid))"
        " ORDER BY created_at DESC, id DESC LIMIT $4",
        list(status), before[0] if before else None, before[1] if before else None, limit,
    )
    return [Campaign.from_record(r) for r in rows]


#: CampaignUpdate fields stored in a column of the same name
_PLAIN_FIELDS = ("name", "caller_id", "max_concurrent", "max_attempts", "starts_at", "ends_at")


async def update(
    conn: asyncpg.Connection, campaign_id: uuid.UUID, body: CampaignUpdate,
    playbook: tuple[str, str] | None = None,
) -> Campaign:
    """Apply the fields the client sent (`model_fields_set`; `webhook_url: null` clears
    the URL). A finished (completed or cancelled) campaign takes no change."""
    current = await conn.fetchrow(
        "SELECT status, starts_at, ends_at FROM campaigns WHERE id = $1 AND deleted_at IS NULL"
        " FOR UPDATE", campaign_id,
    )
    if current is None:
        raise CampaignNotFound(campaign_id)
    if current["status"] in ("completed", "canceled"):
        raise TransitionRefused("update", current["status"])
    sent = body.model_fields_set
    values: dict[str, Any] = {f: getattr(body, f) for f in _PLAIN_FIELDS if f in sent}
    for required in ("name", "caller_id", "max_concurrent", "max_attempts"):
        if required in values and values[required] is None:
            raise ValueError(f"{required}: may not be null")
    starts = values.get("starts_at", current["starts_at"])
    ends = values.get("ends_at", current["ends_at"])
    if starts and ends and ends <= starts:
        raise ValueError("ends_at: must be after starts_at")
    if "webhook_url" in sent:
        values["webhook_url"] = str(body.webhook_url) if body.webhook_url else None
    if "settings" in sent:
        if body.settings is None:
            raise ValueError("settings: may not be null")
        values["settings"] = body.settings.model_dump(mode="json")
    if playbook is not None:
        values["playbook_name"], values["playbook_version"] = playbook
    sets = ", ".join(f"{name} = ${i}" for i, name in enumerate(values, start=2))
    row = await conn.fetchrow(
        f"UPDATE campaigns SET {sets + ', ' if sets else ''}updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        campaign_id, *values.values(),
    )
    assert row is not None
    return Campaign.from_record(row)


async def transition(
    conn: asyncpg.Connection, campaign_id: uuid.UUID, action: str, reason: str | None = None
) -> tuple[Campaign, str]:
    """Move the campaign by `action` (start, pause, resume, cancel); returns it and the
    status it left. Cancelling also cancels the leads still waiting to be dialled
    (attempts already live run to their end)."""
    if action not in TRANSITIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(TRANSITIONS)}")
    sources, target = TRANSITIONS[action]
    current = await conn.fetchval(
        "SELECT status FROM campaigns WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
        campaign_id,
    )
    if current is None:
        raise CampaignNotFound(campaign_id)
    if current not in sources:
        raise TransitionRefused(action, current)
    row = await conn.fetchrow(
        "UPDATE campaigns SET status = $2, status_reason = $3, updated_at = now()"
        f" WHERE id = $1 RETURNING {_COLUMNS}",
        campaign_id, target, reason,
    )
    assert row is not None
    if target == "canceled":
        await conn.execute(
            "UPDATE leads SET state = 'canceled', updated_at = now()"
            " WHERE campaign_id = $1 AND state = ANY($2::text[])", campaign_id, _WAITING,
        )
    return Campaign.from_record(row), current


async def delete(conn: asyncpg.Connection, campaign_id: uuid.UUID) -> Campaign:
    """Soft delete: the row (and its leads, attempts and audit trail) stay for the record;
    the campaign is cancelled first when it was still live."""
    campaign = await get(conn, campaign_id)
    if campaign.status in TRANSITIONS["cancel"][0]:
        campaign, _ = await transition(conn, campaign_id, "cancel", "deleted")
    await conn.execute(
        "UPDATE campaigns SET deleted_at = now(), updated_at = now() WHERE id = $1", campaign_id
    )
    return campaign


async def counts(conn: Executor, campaign_id: uuid.UUID) -> tuple[dict[str, int], dict[str, int]]:
    """(leads per state, attempts per state), every state present (0 when none)."""
    leads = {s: 0 for s in LEAD_STATES}
    for r in await conn.fetch(
        "SELECT state, count(*) AS n FROM leads WHERE campaign_id = $1 GROUP BY state", campaign_id
    ):
        leads[r["state"]] = r["n"]
    attempts = {s: 0 for s in get_args(AttemptState)}
    for r in await conn.fetch(
        "SELECT state, count(*) AS n FROM attempts WHERE campaign_id = $1 GROUP BY state",
        campaign_id,
    ):
        attempts[r["state"]] = r["n"]
    return leads, attempts


_LEAD_COLUMNS = (
    "id, account_ref, name, phone, country, zones, amount_due, currency, due_date, custom,"
    " line, state, attempts, next_at, callback_at, last_state, last_outcome, conversation_at,"
    " created_at, updated_at"
)


async def list_leads(
    conn: Executor, campaign_id: uuid.UUID, *, states: Sequence[str] = (), limit: int = 100,
    after_id: int = 0,
) -> list[asyncpg.Record]:
    """A page of the campaign's leads in id order; pass the last id as `after_id` for the
    next page."""
    return list(await conn.fetch(
        f"SELECT {_LEAD_COLUMNS} FROM leads WHERE campaign_id = $1 AND id > $2"
        " AND (cardinality($3::text[]) = 0 OR state = ANY($3::text[]))"
        " ORDER BY id LIMIT $4",
        campaign_id, after_id, list(states), limit,
    ))
