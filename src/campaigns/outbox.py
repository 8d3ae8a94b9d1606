"""Outcome webhooks out: the `outbox` table, written in the caller's transaction and
delivered at least once, signed, with retries on `ai.resilience.backoff_delay`.

Delivery (`deliver_due`):
- due rows are claimed with `FOR UPDATE SKIP LOCKED` and leased: the claim bumps `next_at`
  past the longest a request may take and counts the attempt, then commits. No transaction
  stays open across the HTTP request, so several deliverers share the table, and a worker
  that dies mid-request leaves a row that is due again when its lease ends (at least once;
  nothing is lost across restarts).
- each request is a JSON POST with `Idempotency-Key` (the same on every retry),
  `X-Dialkit-Event` and `X-Dialkit-Signature` (`campaigns.signing`), and a total timeout.
- 2xx: delivered. 410 Gone: the receiver asks us to stop: given up at once. Any other
  answer (3xx: redirects are not followed, 4xx: often a receiver's deploy or secret
  rotation that gets fixed, 5xx), a timeout or a connection error: retried after
  `backoff_delay(attempt, base_delay_s, max_delay_s)`, until `max_attempts` sends (12 by
  default, over 10 to 20 hours), then given up; `last_error` and `last_status` stay.
- a result is written only by the lease holder (fenced on the attempt count); a success
  is always kept.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import httpx
import orjson
import structlog
from pydantic import BaseModel

from ai.resilience import backoff_delay
from campaigns import audit
from campaigns.signing import HEADER as SIGNATURE_HEADER
from campaigns.signing import sign

log = structlog.get_logger("campaigns.outbox")


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 12
    base_delay_s: float = 60.0
    max_delay_s: float = 6 * 3600.0
    #: a whole request (connect, send, read the answer), whatever the receiver does
    timeout_s: float = 10.0
    #: how long a claimed row is not due for anyone else; longer than any request
    lease_s: float = 60.0
    #: requests in flight at once per `deliver_due` call
    concurrency: int = 16

    def __post_init__(self) -> None:
        if self.lease_s <= self.timeout_s:
            raise ValueError("the lease must outlast a request (lease_s > timeout_s)")


@dataclass
class DeliveryReport:
    delivered: list[int] = field(default_factory=list)
    retrying: list[int] = field(default_factory=list)
    given_up: list[int] = field(default_factory=list)

    @property
    def claimed(self) -> int:
        return len(self.delivered) + len(self.retrying) + len(self.given_up)


async def enqueue(
    conn: audit.Executor,
    campaign_id: UUID | str,
    event: str,
    idempotency_key: str,
    payload: BaseModel | dict[str, Any],
    url: str,
) -> bool:
    """Queue one delivery (pass the connection of the transaction that records the
    outcome). False when `idempotency_key` is already queued: nothing changes."""
    if not url.startswith(("http://", "https://")):
        raise ValueError("a webhook URL must be http:// or https://")
    body = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    row = await conn.fetchval(
        "INSERT INTO outbox (campaign_id, event, idempotency_key, url, payload)"
        " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
        UUID(str(campaign_id)), event, idempotency_key, url, body,
    )
    return row is not None


_CLAIM = """
WITH due AS (
    SELECT id FROM outbox
    WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_at <= $1
    ORDER BY next_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
SET next_at = $1 + make_interval(secs => $3), attempts = o.attempts + 1, last_attempt_at = $1
FROM due
WHERE o.id = due.id
RETURNING o.id, o.campaign_id, o.event, o.idempotency_key, o.url, o.payload, o.attempts,
    (SELECT c.webhook_secret FROM campaigns c WHERE c.id = o.campaign_id) AS secret
"""


async def deliver_due(
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    *,
    now: dt.datetime | None = None,
    limit: int = 100,
    policy: DeliveryPolicy | None = None,
) -> DeliveryReport:
    """Claim up to `limit` due rows and deliver them (concurrently); one pass."""
    policy = policy or DeliveryPolicy()
    now = now or dt.datetime.now(dt.UTC)
    rows = await pool.fetch(_CLAIM, now, limit, policy.lease_s)
    report = DeliveryReport()
    if not rows:
        return report
    gate = asyncio.Semaphore(policy.concurrency)

    async def one(row: asyncpg.Record) -> None:
        async with gate:
            await _deliver(pool, client, row, now, policy, report)

    await asyncio.gather(*(one(r) for r in sorted(rows, key=lambda r: r["id"])))
    return report


async def drain(
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    *,
    policy: DeliveryPolicy | None = None,
    batch: int = 100,
    max_batches: int = 50,
) -> DeliveryReport:
    """The delivery job's body: pass after pass until nothing is due (or `max_batches`)."""
    total = DeliveryReport()
    for _ in range(max_batches):
        report = await deliver_due(pool, client, limit=batch, policy=policy)
        total.delivered += report.delivered
        total.retrying += report.retrying
        total.given_up += report.given_up
        if report.claimed < batch:
            break
    return total


async def _deliver(
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    row: asyncpg.Record,
    now: dt.datetime,
    policy: DeliveryPolicy,
    report: DeliveryReport,
) -> None:
    row_id, attempt = row["id"], row["attempts"]
    if not row["secret"]:
        await _give_up(pool, row, now, None, "the campaign has no webhook secret")
        report.given_up.append(row_id)
        return
    body = orjson.dumps(row["payload"])
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "dialkit-webhooks/1",
        "Idempotency-Key": row["idempotency_key"],
        "X-Dialkit-Event": row["event"],
        "X-Dialkit-Delivery": str(row_id),
        SIGNATURE_HEADER: sign(row["secret"], body),
    }
    status: int | None = None
    started = time.monotonic()
    try:
        async with asyncio.timeout(policy.timeout_s):
            response = await client.post(
                row["url"], content=body, headers=headers,
                timeout=policy.timeout_s, follow_redirects=False,
            )
        status = response.status_code
        error = None if 200 <= status < 300 else f"HTTP {status}: {_snippet(response.text)}"
    except TimeoutError:
        error = f"timeout after {policy.timeout_s:g} s"
    except httpx.TimeoutException as exc:
        error = f"timeout ({type(exc).__name__})"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {_snippet(str(exc))}"
    elapsed_ms = round((time.monotonic() - started) * 1000)
    host = urlsplit(row["url"]).hostname
    if error is None:
        await pool.execute(
            "UPDATE outbox SET delivered_at = COALESCE(delivered_at, $2), last_status = $3,"
            " last_error = NULL WHERE id = $1",
            row_id, now, status,
        )
        report.delivered.append(row_id)
        log.info("webhook_delivered", id=row_id, host=host, status=status, attempt=attempt, ms=elapsed_ms)
        return
    if status == 410 or attempt >= policy.max_attempts:
        if await _give_up(pool, row, now, status, error):
            report.given_up.append(row_id)
            log.warning("webhook_given_up", id=row_id, host=host, status=status, attempt=attempt, error=error)
        else:
            log.warning("webhook_lease_lost", id=row_id, host=host, status=status, attempt=attempt)
        return
    delay = backoff_delay(attempt - 1, policy.base_delay_s, policy.max_delay_s)
    kept = await pool.fetchval(
        "UPDATE outbox SET next_at = $3, last_error = $4, last_status = $5"
        " WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL RETURNING id",
        row_id, attempt, now + dt.timedelta(seconds=delay), error, status,
    )
    if kept is None:  # our lease ran out and another deliverer has the row now
        log.warning("webhook_lease_lost", id=row_id, host=host, status=status, attempt=attempt)
        return
    report.retrying.append(row_id)
    log.info("webhook_retry", id=row_id, host=host, status=status, attempt=attempt, delay_s=round(delay, 1))


async def _give_up(
    pool: asyncpg.Pool, row: asyncpg.Record, now: dt.datetime, status: int | None, error: str
) -> bool:
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE outbox SET given_up_at = $3, last_error = $4, last_status = $5"
            " WHERE id = $1 AND attempts = $2 AND delivered_at IS NULL RETURNING id",
            row["id"], row["attempts"], now, error, status,
        )
        if done is not None:
            await audit.record(
                conn, "outbox", audit.WEBHOOK_GIVEN_UP, "campaign",
                str(row["campaign_id"]) if row["campaign_id"] else None,
                {"outbox_id": row["id"], "event": row["event"], "attempts": row["attempts"],
                 "status": status, "error": error},
            )
    return done is not None


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- reading ---------------------------------------------------------------------------


def delivery_state(row: dict[str, Any] | asyncpg.Record) -> str:
    """delivered, given_up, retrying (sent at least once, will be again) or pending."""
    if row["delivered_at"] is not None:
        return "delivered"
    if row["given_up_at"] is not None:
        return "given_up"
    return "retrying" if row["last_error"] is not None else "pending"


async def list_deliveries(
    conn: audit.Executor,
    campaign_id: UUID | str,
    *,
    state: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """The campaign's deliveries, newest first, each with its `state`."""
    where = ["campaign_id = $1"]
    args: list[Any] = [UUID(str(campaign_id))]
    conditions = {
        "delivered": "delivered_at IS NOT NULL",
        "given_up": "given_up_at IS NOT NULL",
        "retrying": "delivered_at IS NULL AND given_up_at IS NULL AND last_error IS NOT NULL",
        "pending": "delivered_at IS NULL AND given_up_at IS NULL AND last_error IS NULL",
    }
    if state is not None:
        if state not in conditions:
            raise ValueError(f"unknown delivery state {state!r}")
        where.append(conditions[state])
    if before_id is not None:
        args.append(before_id)
        where.append(f"id < ${len(args)}")
    args.append(max(1, min(limit, 1000)))
    rows = await conn.fetch(
        "SELECT id, campaign_id, event, idempotency_key, url, payload, attempts, next_at,"
        " delivered_at, given_up_at, last_error, last_status, last_attempt_at, created_at"
        f" FROM outbox WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    return [{**dict(r), "state": delivery_state(r)} for r in rows]
