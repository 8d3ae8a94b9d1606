"""A campaign's leads over HTTP: the CSV upload (POST /api/campaigns/{id}/leads, streamed:
the body is read in pieces, checked by worker processes while it arrives, and stored in
one transaction, each checked block written while the next ones are read and checked),
a page of leads as JSON, and every lead as CSV with formula cells neutralised
(GET /api/campaigns/{id}/leads/export).

An unreadable file (not UTF-8, a required column or a column the playbook needs missing,
an oversized field, an unclosed quote, an empty file) is a 422 with the reason, and
nothing of it is stored.
"""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from ai.playbook import Playbook
from campaigns import audit
from campaigns import store as campaigns
from campaigns.lead_context import missing_columns
from campaigns.lead_import import MAX_LISTED, CheckedBlock, LeadImport, check_block
from campaigns.leads import Block, LeadFileError, LeadParser, neutralise_cell
from dialkit.api_campaign_models import LeadListQuery, LeadOut, LeadPage, UploadReport
from dialkit.api_campaigns import campaign_id, pool_of, refused, resolve_playbook
from dialkit.lead_workers import LEAD_WORKERS
from dialkit.openapi import ApiError, ErrorBody, Routes

__all__ = ["routes"]

log = structlog.get_logger("dialkit.api_leads")
routes = Routes(tag="leads")
#: bytes gathered before they are cut into a block of records (one task for a worker)
BLOCK_BYTES = 256 * 1024
#: blocks being checked at once; bounds the memory an upload holds
IN_FLIGHT = 6
_CSV_TYPES = ("text/csv", "application/csv", "text/plain", "application/octet-stream")


def _check_media_type(request: web.Request) -> None:
    if request.content_type not in _CSV_TYPES:
        raise ApiError(415, f"send the file as text/csv (got {request.content_type[:60]!r})")
    charset = (request.charset or "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise ApiError(415, f"lead files are UTF-8 (got charset {charset[:40]!r})")


async def _checked(
    request: web.Request, parser: LeadParser, needs: Playbook, cid: uuid.UUID
) -> AsyncIterator[CheckedBlock]:
    """The body's rows, checked, in file order, a block at a time."""
    loop = asyncio.get_running_loop()
    executor = await request.app[LEAD_WORKERS].executor()
    pending: deque[asyncio.Future[CheckedBlock]] = deque()
    header_seen = False

    def submit(blocks: list[Block]) -> None:
        nonlocal header_seen
        if not header_seen and parser.header_read:
            header_seen = True
            lacking = missing_columns(needs, parser.checker.keys)
            if lacking:
                raise LeadFileError(
                    f"the playbook needs the column(s) {', '.join(lacking)}, which the file lacks")
        for block in blocks:
            pending.append(loop.run_in_executor(executor, check_block, parser.checker, block, cid))

    try:
        buffered: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_chunked(BLOCK_BYTES):
            buffered.append(chunk)
            size += len(chunk)
            if size < BLOCK_BYTES:
                continue
            submit(parser.split(b"".join(buffered)))
            buffered, size = [], 0
            while pending and (len(pending) >= IN_FLIGHT or pending[0].done()):
                yield await pending.popleft()
        submit(parser.split(b"".join(buffered)) + parser.split_close())
        while pending:
            yield await pending.popleft()
    finally:
        for future in pending:
            future.cancel()


async def _settled(writing: asyncio.Task[None]) -> None:
    """Wait for the block being written when the upload ends early (an unreadable file):
    the connection must be idle before the transaction rolls back. The error raised is the
    reader's; the writer's, if any, is dropped with the transaction."""
    try:
        await asyncio.wait([writing])
    except asyncio.CancelledError:
        writing.cancel()  # asyncpg cancels the COPY on the server
        raise
    if not writing.cancelled():
        writing.exception()


@routes.post(
    "/api/campaigns/{id}/leads", raw_body=True, body_media_type="text/csv", response=UploadReport,
    summary="Upload leads (CSV, streamed): name, phone, amount_due, currency, due_date, "
            "account_ref, optional timezone, and custom columns for the call context",
    responses={404: ErrorBody, 409: ErrorBody, 415: ErrorBody, 422: ErrorBody},
)
async def upload_leads(request: web.Request) -> UploadReport:
    cid = campaign_id(request)
    _check_media_type(request)
    pool = pool_of(request)
    try:
        campaign = await campaigns.get(pool, cid)
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    playbook = resolve_playbook(request, campaign.playbook)
    parser = LeadParser(campaign.settings.default_region)
    started = time.perf_counter()
    waiting = 0.0
    try:
        async with pool.acquire() as conn, conn.transaction():
            upload = LeadImport(conn, cid, MAX_LISTED)
            await upload.begin()
            # one block written while the body goes on being read and checked
            writing: asyncio.Task[None] | None = None
            try:
                async for batch in _checked(request, parser, playbook, cid):
                    if writing is not None:
                        t0 = time.perf_counter()
                        await writing
                        waiting += time.perf_counter() - t0
                    writing = asyncio.create_task(upload.add_checked(batch))
                if writing is not None:
                    await writing
            finally:
                if writing is not None:
                    await _settled(writing)
            read = time.perf_counter()
            direct = upload.direct
            report = await upload.finish()
            await audit.record(conn, request["actor"], audit.API_WRITE, "campaign", str(cid), {
                "op": "upload_leads", "rows": report.rows, "accepted": report.accepted,
                "updated": report.updated, "duplicate": report.duplicate,
                "rejected": report.rejected, "dnc": report.dnc})
    except LeadFileError as exc:
        raise ApiError(422, f"the file cannot be read, nothing was stored: {exc}") from None
    except (campaigns.CampaignNotFound, campaigns.TransitionRefused) as exc:
        raise refused(exc) from None
    done = time.perf_counter()
    log.info("leads_uploaded", campaign=str(cid), rows=report.rows, accepted=report.accepted,
             rejected=report.rejected, seconds=round(done - started, 3), direct=direct,
             write_wait_s=round(waiting, 3), store_s=round(done - read, 3))
    return UploadReport.of(report, MAX_LISTED)


@routes.get("/api/campaigns/{id}/leads", query=LeadListQuery, response=LeadPage,
            responses={404: ErrorBody}, summary="A page of a campaign's leads, in id order")
async def list_leads(request: web.Request, query: LeadListQuery) -> LeadPage:
    cid = campaign_id(request)
    pool = pool_of(request)
    try:
        await campaigns.get(pool, cid)
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    rows = await campaigns.list_leads(pool, cid, states=query.state, limit=query.limit + 1,
                                      after_id=query.after)
    page = rows[: query.limit]
    return LeadPage(items=[LeadOut.model_validate(dict(r)) for r in page],
                    next_after=page[-1]["id"] if len(rows) > query.limit else None)


_EXPORT_COLUMNS = ("account_ref", "name", "phone", "amount_due", "currency", "due_date",
                   "state", "attempts", "last_outcome")


@routes.get(
    "/api/campaigns/{id}/leads/export", summary="Every lead as CSV (cells a spreadsheet would "
    "run as formulas are prefixed with an apostrophe)",
    responses={200: {"description": "CSV", "content": {"text/csv": {"schema": {"type": "string"}}}},
               404: ErrorBody},
)
async def export_leads(request: web.Request) -> web.StreamResponse:
    cid = campaign_id(request)
    pool = pool_of(request)
    try:
        await campaigns.get(pool, cid)
    except campaigns.CampaignNotFound as exc:
        raise refused(exc) from None
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="leads-{cid}.csv"'})
    custom_keys = [r["k"] for r in await pool.fetch(
        "SELECT DISTINCT jsonb_object_keys(custom) AS k FROM leads WHERE campaign_id = $1"
        " ORDER BY k", cid)]
    await response.prepare(request)
    header = io.StringIO()
    csv.writer(header).writerow([*_EXPORT_COLUMNS, *(neutralise_cell(k) for k in custom_keys)])
    await response.write(header.getvalue().encode())
    after = 0
    while True:
        rows = await campaigns.list_leads(pool, cid, limit=5000, after_id=after)
        if not rows:
            break
        out = io.StringIO()
        writer = csv.writer(out)
        for r in rows:
            cells = [str(r[c]) if r[c] is not None else "" for c in _EXPORT_COLUMNS]
            cells += [str(r["custom"].get(k, "")) for k in custom_keys]
            writer.writerow([neutralise_cell(c) for c in cells])
        await response.write(out.getvalue().encode())
        after = rows[-1]["id"]
    await response.write_eof()
    return response
