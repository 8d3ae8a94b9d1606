"""A lead upload into one campaign, in one transaction: parsed leads are copied in batches
(COPY) into a temporary table as the file arrives, then compared with the campaign's
stored leads and written with one statement: new account references with a plain INSERT,
changed ones with an UPDATE of the stored lead. When the campaign has no stored leads yet
and no account reference repeats in the file, every row is a new lead and a simpler
statement (one INSERT, no comparison) writes them. A file that turns out unreadable
part-way rolls the transaction back: nothing of it is stored.

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

import csv
import io
import uuid
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field

import asyncpg
import orjson

from campaigns.leads import Block, Lead, Rejected, RowChecker
from campaigns.store import CampaignNotFound, TransitionRefused

__all__ = ["MAX_LISTED", "CheckedBlock", "ImportReport", "LeadImport", "Repeat", "check_block",
           "checked", "import_leads"]

#: rejections (and updates, duplicates) listed one by one in a report; the counts are exact
MAX_LISTED = 1000
_LOCK_SALT = 0x6C656164  # "lead": advisory lock namespace of uploads, one campaign at a time

# custom is jsonb already here: COPY parses it once, as the file arrives, instead of the
# final statement casting it (on every comparison and on the write)
_TEMP = (
    "CREATE TEMPORARY TABLE lead_upload (line integer NOT NULL, account_ref text NOT NULL,"
    " name text NOT NULL, phone text NOT NULL, country text NOT NULL, zones text[] NOT NULL,"
    " amount_due numeric(14, 2) NOT NULL, currency text NOT NULL, due_date date NOT NULL,"
    " custom jsonb NOT NULL) ON COMMIT DROP"
)
_COPY_COLUMNS = ("line", "account_ref", "name", "phone", "country", "zones", "amount_due",
                 "currency", "due_date", "custom")
_CONTENT = "ROW({p}name, {p}phone, {p}country, {p}zones, {p}amount_due, {p}currency, {p}due_date, {p}custom)"
_UPLOAD_CONTENT = _CONTENT.format(p="")
_STORED_CONTENT = _CONTENT.format(p="l.")
# whether a phone is on the campaign's or the global do-not-call list
_ON_DNC = "{phone} IN (SELECT phone FROM dnc WHERE campaign_id = $1 OR campaign_id IS NULL)"
_LEAD_COLUMNS = ("campaign_id, account_ref, name, phone, country, zones, amount_due, currency,"
                 " due_date, custom, line, state")

# Whether the campaign has stored leads, and whether an account reference repeats in the file:
# without either, every row is a new lead (`_STORE_NEW`).
_STORED = "SELECT EXISTS (SELECT FROM leads WHERE campaign_id = $1)"
_REPEATS = "SELECT EXISTS (SELECT FROM lead_upload GROUP BY account_ref HAVING count(*) > 1)"

# Every row a new lead (nothing stored to compare with, no line repeating another): one plain
# INSERT, as in `_STORE`. It answers rows of the same shape as `_STORE`.
_STORE_NEW = f"""
WITH written AS (
    INSERT INTO leads ({_LEAD_COLUMNS})
    SELECT $1, account_ref, name, phone, country, zones, amount_due, currency, due_date, custom,
           line, CASE WHEN {_ON_DNC.format(phone="phone")} THEN 'dnc' ELSE 'pending' END
    FROM lead_upload
    ORDER BY line  -- new leads take their ids, their turn to be dialled, in file order
    RETURNING state
)
SELECT 'accepted' AS kind, NULL::integer AS line, NULL AS account_ref,
       NULL::integer AS previous_line, count(*) AS total FROM written
UNION ALL SELECT 'dnc', NULL, NULL, NULL, count(*) FROM written WHERE state = 'dnc'
"""

# One statement, so that every part sees the campaign's leads as they were before it: each
# row of the file against the row before it with the same account reference (the first,
# against the stored lead); then the last row of each reference written: a new reference
# with a plain INSERT (uploads to a campaign take turns, see `LeadImport.begin`, and only
# uploads insert leads, so no other transaction can have stored it meanwhile), a stored one
# with an UPDATE when its details changed (it keeps its id, attempts and state, unless the
# phone is now on a do-not-call list and the lead still waits to be dialled). It answers the
# count of each kind, the first rows of the updated and duplicate ones, and how many leads
# were written with state dnc.
_STORE = f"""
WITH c AS MATERIALIZED (
    SELECT u.line, u.account_ref, u.previous_line, u.last, l.id,
           CASE WHEN u.previous_line IS NOT NULL THEN
                    CASE WHEN u.content IS NOT DISTINCT FROM u.previous
                         THEN 'duplicate' ELSE 'updated' END
                WHEN l.id IS NULL THEN 'accepted'
                WHEN {_STORED_CONTENT} IS NOT DISTINCT FROM u.content THEN 'duplicate'
                ELSE 'updated' END AS kind,
           -- the last row of a stored reference, with other details than the stored lead's
           u.last AND l.id IS NOT NULL AND {_STORED_CONTENT} IS DISTINCT FROM u.content
               AS changes
    FROM (SELECT line, account_ref, {_UPLOAD_CONTENT} AS content,
                 lag(line) OVER w AS previous_line, lag({_UPLOAD_CONTENT}) OVER w AS previous,
                 lead(line) OVER w IS NULL AS last
          FROM lead_upload WINDOW w AS (PARTITION BY account_ref ORDER BY line)) u
    LEFT JOIN leads l ON l.campaign_id = $1 AND l.account_ref = u.account_ref
), inserted AS (
    INSERT INTO leads ({_LEAD_COLUMNS})
    SELECT $1, n.account_ref, n.name, n.phone, n.country, n.zones, n.amount_due, n.currency,
           n.due_date, n.custom, n.line,
           CASE WHEN {_ON_DNC.format(phone="n.phone")} THEN 'dnc' ELSE 'pending' END
    FROM c JOIN lead_upload n USING (line)
    WHERE c.last AND c.id IS NULL
    ORDER BY n.line  -- new leads take their ids, their turn to be dialled, in file order
    RETURNING state
), updated AS (
    UPDATE leads l SET
        name = n.name, phone = n.phone, country = n.country, zones = n.zones,
        amount_due = n.amount_due, currency = n.currency, due_date = n.due_date,
        custom = n.custom, line = n.line, updated_at = now(),
        state = CASE WHEN {_ON_DNC.format(phone="n.phone")}
                          AND l.state IN ('pending', 'retry', 'callback')
                     THEN 'dnc' ELSE l.state END
    FROM c JOIN lead_upload n USING (line)
    WHERE c.changes AND l.id = c.id
    RETURNING l.state
)
SELECT kind, NULL::integer AS line, NULL AS account_ref, NULL::integer AS previous_line,
       count(*) AS total FROM c GROUP BY kind
UNION ALL (SELECT kind, line, account_ref, previous_line, NULL FROM c
           WHERE kind = 'updated' ORDER BY line LIMIT $2)
UNION ALL (SELECT kind, line, account_ref, previous_line, NULL FROM c
           WHERE kind = 'duplicate' ORDER BY line LIMIT $2)
UNION ALL SELECT 'dnc', NULL, NULL, NULL, count(*)
          FROM (SELECT state FROM inserted UNION ALL SELECT state FROM updated) w
          WHERE state = 'dnc'
"""


@dataclass(frozen=True, slots=True)
class CheckedBlock:
    """A block of parsed rows as the database takes them: the leads as COPY CSV (cheap to
    send between processes, unlike the Lead objects), and the rejected rows."""

    copy: bytes
    leads: int
    rejected: int
    rejections: list[Rejected]


def _array(values: tuple[str, ...]) -> str:
    # a text[] literal with every element quoted: {"America/New_York","..."}
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def checked(items: Sequence[Lead | Rejected], max_listed: int = MAX_LISTED) -> CheckedBlock:
    """`items` in the form `LeadImport.add_checked` stores."""
    out = io.StringIO()
    # every field quoted: in COPY's CSV an unquoted empty field would be NULL
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    leads = 0
    rejections: list[Rejected] = []
    rejected = 0
    for item in items:
        if isinstance(item, Rejected):
            rejected += 1
            if len(rejections) < max_listed:
                rejections.append(item)
            continue
        leads += 1
        writer.writerow((
            item.line, item.account_ref, item.name, item.phone, item.country,
            _array(item.timezones), item.amount_due, item.currency, item.due_date.isoformat(),
            orjson.dumps(item.custom).decode(),
        ))
    return CheckedBlock(out.getvalue().encode(), leads, rejected, rejections)


def check_block(checker: RowChecker, block: Block) -> CheckedBlock:
    """Parse and check one block of records and make it ready to store (a worker's task)."""
    return checked(checker.check(block))


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
        # the sorts of a large upload stay in memory (for this transaction only)
        await self.conn.execute("SET LOCAL work_mem = '64MB'")

    async def add(self, items: Sequence[Lead | Rejected]) -> None:
        await self.add_checked(checked(items))

    async def add_checked(self, block: CheckedBlock) -> None:
        """Store one checked block (see `checked`, which may run in another process)."""
        report = self.report
        report.rejected += block.rejected
        room = self.max_listed - len(report.rejections)
        if room > 0:
            report.rejections.extend(block.rejections[:room])
        if block.leads:
            self._leads += block.leads
            await self.conn.copy_to_table(
                "lead_upload", source=io.BytesIO(block.copy), columns=_COPY_COLUMNS,
                format="csv",
            )

    async def finish(self) -> ImportReport:
        report = self.report
        if not self._leads:
            return report
        # the planner's row counts for the temporary table (autovacuum never sees it), and
        # statistics of the columns `_STORE` joins and groups on; sampling every column
        # took 0.3 s of a 100,000-row upload, for statistics no plan here uses
        await self.conn.execute("ANALYZE lead_upload (line, account_ref)")
        if (await self.conn.fetchval(_STORED, self.campaign_id)
                or await self.conn.fetchval(_REPEATS)):
            rows = await self.conn.fetch(_STORE, self.campaign_id, self.max_listed)
        else:
            rows = await self.conn.fetch(_STORE_NEW, self.campaign_id)
        for r in rows:
            kind = r["kind"]
            if r["total"] is not None:
                setattr(report, kind, r["total"])
            else:
                listed = report.updates if kind == "updated" else report.duplicates
                listed.append(Repeat(r["line"], r["account_ref"], r["previous_line"]))
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
