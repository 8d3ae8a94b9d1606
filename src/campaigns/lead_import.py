"""A lead upload into one campaign, in one transaction: parsed leads are copied in batches
(COPY) into a temporary table as the file arrives, then compared with the campaign's
stored leads and written with one INSERT ... ON CONFLICT (campaign_id, account_ref) DO
UPDATE. A file that turns out unreadable part-way rolls the transaction back: nothing of
it is stored.

What the report calls each data row:
- accepted: a new lead;
- updated: an account reference already stored (or given on an earlier line of the same
  file) with different details; the stored lead keeps its id, state, attempts and history;
- duplicate: the same account reference with the very same details (nothing to change);
- rejected: a row that failed validation (line and reason).
An account reference repeated in the file is written once, with its last line's details;
each repeat names the earlier line (`previous_line`). A lead whose phone is on the
campaign's or the global do-not-call list is stored with state `dnc`, never dialable.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson

from campaigns.leads import Lead, Rejected
from campaigns.store import CampaignNotFound, TransitionRefused

__all__ = ["MAX_LISTED", "ImportReport", "LeadImport", "Repeat", "import_leads"]

#: rejections (and updates, duplicates) listed one by one in a report; the counts are exact
MAX_LISTED = 1000
_LOCK_SALT = 0x6C656164  # "lead": advisory lock namespace of uploads, one campaign at a time

_TEMP = (
    "CREATE TEMPORARY TABLE lead_upload (line integer NOT NULL, account_ref text NOT NULL,"
    " name text NOT NULL, phone text NOT NULL, country text NOT NULL, zones text[] NOT NULL,"
    " amount_due numeric(14, 2) NOT NULL, currency text NOT NULL, due_date date NOT NULL,"
    " custom text NOT NULL) ON COMMIT DROP"
)
_COPY_COLUMNS = ("line", "account_ref", "name", "phone", "country", "zones", "amount_due",
                 "currency", "due_date", "custom")
_CONTENT = "ROW({p}name, {p}phone, {p}country, {p}zones, {p}amount_due, {p}currency, {p}due_date, {c})"
_UPLOAD_CONTENT = _CONTENT.format(p="", c="custom::jsonb")
_STORED_CONTENT = _CONTENT.format(p="l.", c="l.custom")

# every row of the file against the row before it with the same account reference (or,
# for the first, the stored lead); counts per kind and the first rows of each kind
_CLASSIFY = f"""
WITH u AS (
    SELECT line, account_ref, {_UPLOAD_CONTENT} AS content,
           lag(line) OVER w AS previous_line, lag({_UPLOAD_CONTENT}) OVER w AS previous
    FROM lead_upload WINDOW w AS (PARTITION BY account_ref ORDER BY line)
), c AS (
    SELECT u.line, u.account_ref, u.previous_line,
           CASE WHEN u.previous_line IS NOT NULL THEN
                    CASE WHEN u.content IS NOT DISTINCT FROM u.previous
                         THEN 'duplicate' ELSE 'updated' END
                WHEN l.id IS NULL THEN 'accepted'
                WHEN {_STORED_CONTENT} IS NOT DISTINCT FROM u.content THEN 'duplicate'
                ELSE 'updated' END AS kind
    FROM u LEFT JOIN leads l ON l.campaign_id = $1 AND l.account_ref = u.account_ref
), n AS (
    SELECT c.*, count(*) OVER (PARTITION BY kind) AS total,
           row_number() OVER (PARTITION BY kind ORDER BY line) AS rank
    FROM c
)
SELECT kind, line, account_ref, previous_line, total FROM n
WHERE rank = 1 OR (kind <> 'accepted' AND rank <= $2)
ORDER BY kind, line
"""

_WRITE = f"""
WITH latest AS (
    SELECT DISTINCT ON (account_ref) * FROM lead_upload ORDER BY account_ref, line DESC
), written AS (
    INSERT INTO leads AS l (campaign_id, account_ref, name, phone, country, zones, amount_due,
                            currency, due_date, custom, line, state)
    SELECT $1, account_ref, name, phone, country, zones, amount_due, currency, due_date,
           custom::jsonb, line,
           CASE WHEN EXISTS (SELECT 1 FROM dnc d WHERE d.phone = latest.phone
                             AND (d.campaign_id = $1 OR d.campaign_id IS NULL))
                THEN 'dnc' ELSE 'pending' END
    FROM latest
    ON CONFLICT (campaign_id, account_ref) DO UPDATE SET
        name = EXCLUDED.name, phone = EXCLUDED.phone, country = EXCLUDED.country,
        zones = EXCLUDED.zones, amount_due = EXCLUDED.amount_due, currency = EXCLUDED.currency,
        due_date = EXCLUDED.due_date, custom = EXCLUDED.custom, line = EXCLUDED.line,
        updated_at = now(),
        state = CASE WHEN EXCLUDED.state = 'dnc' AND l.state IN ('pending', 'retry', 'callback')
                     THEN 'dnc' ELSE l.state END
    WHERE {_STORED_CONTENT} IS DISTINCT FROM
          ROW(EXCLUDED.name, EXCLUDED.phone, EXCLUDED.country, EXCLUDED.zones,
              EXCLUDED.amount_due, EXCLUDED.currency, EXCLUDED.due_date, EXCLUDED.custom)
    RETURNING l.state
)
SELECT count(*) FILTER (WHERE state = 'dnc') FROM written
"""


@dataclass(frozen=True, slots=True)
class Repeat:
    """An updated or duplicate row: its line, its account reference, and the earlier line
    of this file it repeats (None: it repeats the lead already stored)."""

    line: int
    account_ref: str
    previous_line: int | None


@dataclass
class ImportReport:
    accepted: int = 0
    updated: int = 0
    duplicate: int = 0
    rejected: int = 0
    #: leads stored (new or updated) with state `dnc`: their phone is on a do-not-call list
    dnc: int = 0
    rejections: list[Rejected] = field(default_factory=list)
    updates: list[Repeat] = field(default_factory=list)
    duplicates: list[Repeat] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.accepted + self.updated + self.duplicate + self.rejected


class LeadImport:
    """One upload: `begin`, `add` batches in file order, `finish`; all on one connection
    inside a transaction the caller holds (see `import_leads`)."""

    def __init__(self, conn: asyncpg.Connection, campaign_id: uuid.UUID,
                 max_listed: int = MAX_LISTED) -> None:
        self.conn = conn
        self.campaign_id = campaign_id
        self.max_listed = max_listed
        self.report = ImportReport()
        self._leads = 0

    async def begin(self) -> None:
        status = await self.conn.fetchval(
            "SELECT status FROM campaigns WHERE id = $1 AND deleted_at IS NULL FOR SHARE",
            self.campaign_id,
        )
        if status is None:
            raise CampaignNotFound(self.campaign_id)
        if status in ("completed", "canceled"):
            raise TransitionRefused("upload leads to", status)
        # two uploads to one campaign would each compare against rows the other has not
        # committed yet: they take turns
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_SALT, str(self.campaign_id)
        )
        await self.conn.execute(_TEMP)

    async def add(self, items: Sequence[Lead | Rejected]) -> None:
        records = []
        report = self.report
        for item in items:
            if isinstance(item, Rejected):
                report.rejected += 1
                if len(report.rejections) < self.max_listed:
                    report.rejections.append(item)
                continue
            records.append((
                item.line, item.account_ref, item.name, item.phone, item.country,
                list(item.timezones), item.amount_due, item.currency, item.due_date,
                orjson.dumps(item.custom).decode(),
            ))
        if records:
            self._leads += len(records)
            await self.conn.copy_records_to_table(
                "lead_upload", records=records, columns=_COPY_COLUMNS
            )

    async def finish(self) -> ImportReport:
        report = self.report
        if not self._leads:
            return report
        for r in await self.conn.fetch(_CLASSIFY, self.campaign_id, self.max_listed):
            kind = r["kind"]
            setattr(report, kind, r["total"])
            if kind == "accepted":
                continue
            listed = report.updates if kind == "updated" else report.duplicates
            if len(listed) < self.max_listed:
                listed.append(Repeat(r["line"], r["account_ref"], r["previous_line"]))
        report.dnc = await self.conn.fetchval(_WRITE, self.campaign_id)
        return report


async def import_leads(
    conn: asyncpg.Connection, campaign_id: uuid.UUID,
    batches: AsyncIterable[Sequence[Lead | Rejected]], max_listed: int = MAX_LISTED,
) -> ImportReport:
    """Store every batch of parsed rows in one transaction; an exception from `batches`
    (a `LeadFileError`, a broken upload) leaves the campaign as it was."""
    async with conn.transaction():
        upload = LeadImport(conn, campaign_id, max_listed)
        await upload.begin()
        async for batch in batches:
            await upload.add(batch)
        return await upload.finish()
