"""A lead upload into one campaign, in one transaction. Into a campaign without leads
(a first upload), every row is a new lead until an account reference repeats: each
checked block is copied (COPY) straight into `leads` as it arrives, so the writing
overlaps the checking of the blocks after it. Otherwise (the campaign has leads, or a
reference repeats: the leads copied so far are moved back) parsed leads are copied into a
temporary table, then compared with the campaign's stored leads and written with one
statement: new account references with a plain INSERT, changed ones with an UPDATE of the
stored lead. A file that turns out unreadable part-way rolls the transaction back:
nothing of it is stored.

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
from collections import Counter
from collections.abc import AsyncIterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

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
    "CREATE TEMPORARY TABLE lead_upload (campaign_id uuid NOT NULL,"
    " line integer NOT NULL, account_ref text NOT NULL,"
    " name text NOT NULL, phone text NOT NULL, country text NOT NULL, zones text[] NOT NULL,"
    " amount_due numeric(14, 2) NOT NULL, currency text NOT NULL, due_date date NOT NULL,"
    " custom jsonb NOT NULL) ON COMMIT DROP"
)
# the columns of a checked block, the same in `leads` and in the temporary table
_COPY_COLUMNS = ("campaign_id", "line", "account_ref", "name", "phone", "country", "zones", "amount_due",
                 "currency", "due_date", "custom")
_CONTENT = "ROW({p}name, {p}phone, {p}country, {p}zones, {p}amount_due, {p}currency, {p}due_date, {p}custom)"
_UPLOAD_CONTENT = _CONTENT.format(p="")
_STORED_CONTENT = _CONTENT.format(p="l.")
# whether a phone is on the campaign's or the global do-not-call list
_ON_DNC = "{phone} IN (SELECT phone FROM dnc WHERE campaign_id = $1 OR campaign_id IS NULL)"
_LEAD_COLUMNS = ("campaign_id, account_ref, name, phone, country, zones, amount_due, currency,"
                 " due_date, custom, line, state")

_STORED = "SELECT EXISTS (SELECT FROM leads WHERE campaign_id = $1)"
# a first upload: the leads copied straight into `leads` whose phone is on a do-not-call list
_MARK_DNC = (
    "UPDATE leads SET state = 'dnc' WHERE campaign_id = $1 AND "
    + _ON_DNC.format(phone="phone")
)
_WRITTEN = ("SELECT EXISTS (SELECT FROM leads WHERE campaign_id = $1"
            " AND account_ref = ANY($2::text[]))")
# a first upload in which a reference repeats: the leads it copied into `leads` go back to
# the temporary table (in file order), for `_STORE` to compare
_MOVE_BACK = f"""
WITH moved AS (DELETE FROM leads WHERE campaign_id = $1 RETURNING {', '.join(_COPY_COLUMNS)})
INSERT INTO lead_upload ({', '.join(_COPY_COLUMNS)})
SELECT {', '.join(_COPY_COLUMNS)} FROM moved ORDER BY line
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
    send between processes, unlike the Lead objects) with their account references, and
    the rejected rows."""

    copy: bytes
    refs: list[str]  # of the leads, in file order
    rejected: int
    rejections: list[Rejected]

    @property
    def leads(self) -> int:
        return len(self.refs)


@lru_cache(maxsize=4096)  # a file holds few distinct sets of zones
def _array(values: tuple[str, ...]) -> str:
    # a text[] literal with every element quoted: {"America/New_York","..."}
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def checked(items: Sequence[Lead | Rejected], campaign_id: uuid.UUID,
            max_listed: int = MAX_LISTED) -> CheckedBlock:
    """`items` of `campaign_id` in the form `LeadImport.add_checked` stores."""
    out = io.StringIO()
    # every field quoted: in COPY's CSV an unquoted empty field would be NULL
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    cid = str(campaign_id)
    refs: list[str] = []
    rejections: list[Rejected] = []
    rejected = 0
    for item in items:
        if isinstance(item, Rejected):
            rejected += 1
            if len(rejections) < max_listed:
                rejections.append(item)
            continue
        refs.append(item.account_ref)
        writer.writerow((
            cid, item.line, item.account_ref, item.name, item.phone, item.country,
            _array(item.timezones), item.amount_due, item.currency, item.due_date.isoformat(),
            orjson.dumps(item.custom).decode(),
        ))
    return CheckedBlock(out.getvalue().encode(), refs, rejected, rejections)


def check_block(checker: RowChecker, block: Block, campaign_id: uuid.UUID) -> CheckedBlock:
    """Parse and check one block of records and make it ready to store (a worker's task)."""
    return checked(checker.check(block), campaign_id)


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


class _Written:
    """The account references a first upload wrote, as a Bloom filter: 16 MB whatever the
    file's size (a set of the references would grow with it, to about 90 MB for a 100 MB
    file). Two bits per reference, from its hash; a reference whose bits are both set
    already may have been written, and is looked up (about two in a million among
    100,000 references, and for every real repeat)."""

    BITS = 1 << 27

    def __init__(self) -> None:
        self._bits = bytearray(self.BITS >> 3)

    def add(self, refs: list[str]) -> list[str]:
        """Add `refs`; returns those that may have been added before (or earlier in `refs`)."""
        bits, mask = self._bits, self.BITS - 1
        maybe: list[str] = []
        for ref in refs:
            h = hash(ref)
            a, b = h & mask, (h >> 32) & mask
            byte_a, bit_a, byte_b, bit_b = a >> 3, 1 << (a & 7), b >> 3, 1 << (b & 7)
            if bits[byte_a] & bit_a and bits[byte_b] & bit_b:
                maybe.append(ref)
            else:
                bits[byte_a] |= bit_a
                bits[byte_b] |= bit_b
        return maybe


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
        # a first upload while no reference repeats: the references written so far, and
        # the blocks go straight into `leads`; None: into the temporary table, for `_STORE`
        self._seen: _Written | None = None

    @property
    def direct(self) -> bool:
        """Whether checked blocks are written straight into `leads`."""
        return self._seen is not None

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
        # read after the lock: an upload that held it has committed (or rolled back), and
        # only uploads insert leads, so no lead of this campaign appears meanwhile
        if not await self.conn.fetchval(_STORED, self.campaign_id):
            self._seen = _Written()

    async def add(self, items: Sequence[Lead | Rejected]) -> None:
        await self.add_checked(checked(items, self.campaign_id))

    async def add_checked(self, block: CheckedBlock) -> None:
        """Store one checked block (see `checked`, which may run in another process)."""
        report = self.report
        report.rejected += block.rejected
        room = self.max_listed - len(report.rejections)
        if room > 0:
            report.rejections.extend(block.rejections[:room])
        if not block.leads:
            return
        self._leads += block.leads
        if self._seen is not None and await self._repeats(self._seen, block.refs):
            # the rows need comparing after all
            self._seen = None
            await self.conn.execute(_MOVE_BACK, self.campaign_id)
        await self.conn.copy_to_table(
            "leads" if self.direct else "lead_upload", source=io.BytesIO(block.copy),
            columns=_COPY_COLUMNS, format="csv",
        )

    async def _repeats(self, seen: _Written, refs: list[str]) -> bool:
        """Whether a reference of `refs` repeats one written before it (earlier in the
        block, or in `leads`); adds the rest to `seen`."""
        maybe = seen.add(refs)
        if not maybe:
            return False
        counts = Counter(refs)
        if any(counts[ref] > 1 for ref in maybe):
            return True
        return bool(await self.conn.fetchval(_WRITTEN, self.campaign_id, maybe))

    async def finish(self) -> ImportReport:
        report = self.report
        if not self._leads:
            return report
        if self.direct:
            report.accepted = self._leads
            report.dnc = int((await self.conn.execute(_MARK_DNC, self.campaign_id)).split()[-1])
            return report
        # the planner's row counts for the temporary table (autovacuum never sees it), and
        # statistics of the columns `_STORE` joins and groups on; sampling every column
        # took 0.3 s of a 100,000-row upload, for statistics no plan here uses
        await self.conn.execute("ANALYZE lead_upload (line, account_ref)")
        for r in await self.conn.fetch(_STORE, self.campaign_id, self.max_listed):
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
