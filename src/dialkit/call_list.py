"""Calls as one line each (for the call history and the live-call feed): the call's
record, its campaign (when a campaign dialled it), its outcome, and its turns counted,
with the last one. Newest first, paged by a (created_at, id) cursor."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from dialkit.cursors import cursor_for
from dialkit.cursors import read_cursor as read_cursor  # the call list's cursors, for its API

_SELECT = """
SELECT c.id, c.status, c.carrier, c.to_number, c.playbook_name, c.playbook_version,
       c.created_at, c.started_at, c.ended_at, c.failure_reason,
       a.campaign_id, k.name AS campaign_name, o.outcome, o.ptp_amount,
       (SELECT count(*) FROM turns t WHERE t.call_id = c.id) AS turns,
       last.speaker AS last_speaker, last.text AS last_text
FROM calls c
LEFT JOIN LATERAL (SELECT campaign_id FROM attempts WHERE call_id = c.id LIMIT 1) a ON true
LEFT JOIN campaigns k ON k.id = a.campaign_id
LEFT JOIN call_outcomes o ON o.call_id = c.id
LEFT JOIN LATERAL (SELECT speaker, text FROM turns t WHERE t.call_id = c.id
                   ORDER BY seq DESC LIMIT 1) last ON true
"""


@dataclass(frozen=True)
class CallFilter:
    campaign_id: uuid.UUID | None = None
    outcomes: Sequence[str] = ()
    statuses: Sequence[str] = ()
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before: tuple[dt.datetime, uuid.UUID] | None = None
    limit: int = 50


def cursor_of(row: dict[str, Any]) -> str:
    """The cursor after a call's line."""
    return cursor_for(row["created_at"], row["id"])


def _line(row: asyncpg.Record) -> dict[str, Any]:
    out = dict(row)
    out["id"] = str(out["id"])
    if out["campaign_id"] is not None:
        out["campaign_id"] = str(out["campaign_id"])
    if out["ptp_amount"] is not None:
        out["ptp_amount"] = float(out["ptp_amount"])
    name, version = out.pop("playbook_name"), out.pop("playbook_version")
    out["playbook"] = f"{name}@{version}" if name else None
    for key in ("created_at", "started_at", "ended_at"):
        if out[key] is not None:
            out[key] = out[key].isoformat()
    return out


async def list_calls(pool: asyncpg.Pool, f: CallFilter) -> list[dict[str, Any]]:
    """Up to `f.limit` calls matching every filter given, newest first."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if f.campaign_id is not None:
        where.append(f"a.campaign_id = {arg(f.campaign_id)}")
    if f.outcomes:
        where.append(f"o.outcome = ANY({arg(list(f.outcomes))}::text[])")
    if f.statuses:
        where.append(f"c.status = ANY({arg(list(f.statuses))}::text[])")
    if f.since is not None:
        where.append(f"c.created_at >= {arg(f.since)}")
    if f.until is not None:
        where.append(f"c.created_at < {arg(f.until)}")
    if f.before is not None:
        when, cid = f.before
        where.append(f"(c.created_at, c.id) < ({arg(when)}, {arg(cid)})")
    sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
    sql += f" ORDER BY c.created_at DESC, c.id DESC LIMIT {arg(f.limit)}"
    return [_line(r) for r in await pool.fetch(sql, *args)]


async def summaries(pool: asyncpg.Pool, call_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The line of each of these calls that is stored, by id."""
    ids = []
    for raw in call_ids:
        try:
            ids.append(uuid.UUID(raw))
        except ValueError:
            continue
    if not ids:
        return {}
    rows = await pool.fetch(_SELECT + " WHERE c.id = ANY($1::uuid[])", ids)
    return {str(r["id"]): _line(r) for r in rows}
