"""Do-not-call lists: one per campaign and one global (`campaign_id` NULL), each entry a
phone in E.164 with its reason, its source (api, upload, opt_out, ...) and who added it.

Adding a number stops it at once: the leads it applies to that are still waiting to be
dialled (pending, retry, callback) move to state `dnc`. Taking a number off a list puts
those `dnc` leads back to `pending`, unless another list still holds the number.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg
import phonenumbers

__all__ = ["DncEntry", "add", "check", "list_entries", "normalise_phone", "remove"]

Executor: TypeAlias = "asyncpg.Connection | asyncpg.Pool"

_NO_CAMPAIGN = uuid.UUID(int=0)  # the unique index's stand-in for the global list
_WAITING = ["pending", "retry", "callback"]


@dataclass(frozen=True, slots=True)
class DncEntry:
    id: int
    phone: str
    campaign_id: uuid.UUID | None  # None: the global list
    reason: str | None
    source: str
    created_by: str | None
    created_at: dt.datetime


def normalise_phone(raw: str, default_region: str | None = None) -> str:
    """E.164, or ValueError with the reason (a list is only as good as its numbers match)."""
    try:
        number = phonenumbers.parse(raw, default_region)
    except phonenumbers.NumberParseException:
        raise ValueError(f"{raw[:40]!r} is not a phone number (E.164: + and country code)") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"{raw[:40]!r} is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _entry(r: asyncpg.Record) -> DncEntry:
    return DncEntry(r["id"], r["phone"], r["campaign_id"], r["reason"], r["source"],
                    r["created_by"], r["created_at"])


_COLUMNS = "id, phone, campaign_id, reason, source, created_by, created_at"


async def add(
    conn: asyncpg.Connection, phone: str, campaign_id: uuid.UUID | None = None, *,
    reason: str | None = None, source: str = "api", created_by: str | None = None,
) -> tuple[DncEntry, bool, int]:
    """Put `phone` (E.164) on a list; returns the entry, whether it is new (an entry
    already there is kept as it was) and how many waiting leads it stopped."""
    row = await conn.fetchrow(
        "INSERT INTO dnc (phone, campaign_id, reason, source, created_by)"
        " VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (phone, COALESCE(campaign_id, '00000000-0000-0000-0000-000000000000'::uuid))"
        f" DO NOTHING RETURNING {_COLUMNS}",
        phone, campaign_id, reason, source, created_by,
    )
    created = row is not None
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {_COLUMNS} FROM dnc WHERE phone = $1 AND COALESCE(campaign_id, $2) = $3",
            phone, _NO_CAMPAIGN, campaign_id or _NO_CAMPAIGN,
        )
    assert row is not None
    stopped = await conn.execute(
        "UPDATE leads SET state = 'dnc', updated_at = now() WHERE phone = $1"
        " AND ($2::uuid IS NULL OR campaign_id = $2) AND state = ANY($3::text[])",
        phone, campaign_id, _WAITING,
    )
    return _entry(row), created, int(stopped.split()[-1])


async def remove(
    conn: asyncpg.Connection, phone: str, campaign_id: uuid.UUID | None = None
) -> tuple[bool, int]:
    """Take `phone` off one list; returns whether it was there and how many leads went
    back to pending (those no other list holds)."""
    deleted = await conn.fetchval(
        "DELETE FROM dnc WHERE phone = $1 AND COALESCE(campaign_id, $2) = $3 RETURNING id",
        phone, _NO_CAMPAIGN, campaign_id or _NO_CAMPAIGN,
    )
    if deleted is None:
        return False, 0
    restored = await conn.execute(
        "UPDATE leads l SET state = 'pending', updated_at = now() WHERE l.phone = $1"
        " AND ($2::uuid IS NULL OR l.campaign_id = $2) AND l.state = 'dnc'"
        " AND NOT EXISTS (SELECT 1 FROM dnc d WHERE d.phone = l.phone"
        "                 AND (d.campaign_id IS NULL OR d.campaign_id = l.campaign_id))",
        phone, campaign_id,
    )
    return True, int(restored.split()[-1])


async def check(conn: Executor, phone: str, campaign_id: uuid.UUID | None = None) -> list[DncEntry]:
    """The entries that stop `phone` for this campaign (its own list and the global
    one); empty when it may be called."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dnc WHERE phone = $1 AND (campaign_id IS NULL OR campaign_id = $2)"
        " ORDER BY campaign_id NULLS FIRST",
        phone, campaign_id,
    )
    return [_entry(r) for r in rows]


async def list_entries(
    conn: Executor, campaign_id: uuid.UUID | None = None, *, limit: int = 100, after_id: int = 0
) -> list[DncEntry]:
    """One list (global when `campaign_id` is None) in id order, a page at a time."""
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM dnc WHERE campaign_id IS NOT DISTINCT FROM $1 AND id > $2"
        " ORDER BY id LIMIT $3",
        campaign_id, after_id, limit,
    )
    return [_entry(r) for r in rows]
