"""An ended dial attempt turned into its lead's next state, once.

`settle(conn, attempt_id, at)` runs in the caller's transaction when an attempt has reached
a terminal state and its call (if it was answered) has ended; whichever of the carrier's
status callback and the call's end comes last triggers it, and `attempts.settled_at` makes
the second call a no-op. It reads the call's outcome (`call_outcomes`, names from
`ai.vocabulary`) and:

- opt-out (a stop request or notice of an attorney) → lead `dnc` (the number went on the
  campaign's and the global do-not-call list when the outcome was written: the trigger of
  migration 006_optout_dnc);
- a conversation that settles the account (promise to pay, dispute, already paid, refused,
  transferred, abusive) or a wrong party → `done`;
- a call-back → `callback` at the time the person gave (or after the no-answer delay when
  they gave none); due call-backs are dialled first;
- no answer, busy, failed, voicemail (by the carrier or the answering-machine verdict) →
  `retry` after the disposition's delay, widening with each retry (`RetryRule.delay`),
  `exhausted` past its `max_retries`, or past the campaign's `max_attempts`;
- a call the right party answered but that reached no outcome counts as a conversation
  (`conversation_at`, so the quiet days apply) and is retried as no-answer.

Every lead change is audited; outcomes the campaign's webhook hears about (promise to pay,
call-back, dispute, opt-out, wrong party) go to the outbox with the idempotency key
`<call id>:<event>` (`campaigns.outcome_events`; one call per attempt). A campaign whose last `failure_window` ended attempts failed at
`pause_failure_rate` or more pauses itself.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from campaigns import audit, outbox
from campaigns.attempts import TERMINAL
from campaigns.models import CampaignSettings, RetryRules
from campaigns.outcome_events import WEBHOOK_EVENTS, outcome_event

__all__ = ["LeadUpdate", "next_lead_state", "settle"]

ACTOR = "scheduler"
#: outcomes after which the lead is not called again by this campaign
_FINAL = frozenset({"promise_to_pay", "dispute", "already_paid", "refused", "transferred",
                    "abusive", "wrong_party"})
#: outcomes that mean the person was not reached (retried as no-answer)
_NOT_REACHED = frozenset({"no_contact", "hung_up", "no_response", "unverified", "timed_out"})


@dataclass(frozen=True)
class LeadUpdate:
    state: str
    next_at: dt.datetime | None = None
    callback_at: dt.datetime | None = None
    conversation_at: dt.datetime | None = None
    #: the retry rule this attempt counts against (attempts.disposition)
    disposition: str | None = None
    reason: str = ""


def next_lead_state(
    attempt_state: str,
    outcome: Mapping[str, Any] | None,
    *,
    at: dt.datetime,
    lead_attempts: int,
    max_attempts: int,
    retry: RetryRules,
    retries_so_far: Mapping[str, int],
    permanent: str | None = None,
) -> LeadUpdate:
    """The lead's next state after one ended attempt (pure). `retries_so_far`: how many of
    the lead's earlier attempts ended with each disposition."""
    if permanent is not None:
        return LeadUpdate("exhausted", reason=permanent)
    name = outcome.get("outcome") if outcome else None
    conversation: dt.datetime | None = None
    if outcome and (outcome.get("opt_out") or name == "opt_out"):
        return LeadUpdate("dnc", conversation_at=at, reason="opted out on the call")
    if name in _FINAL:
        spoke = at if name != "wrong_party" else None
        return LeadUpdate("done", conversation_at=spoke, reason=str(name))
    if name == "callback":
        wanted = outcome.get("callback_at") if outcome else None
        when = max(wanted, at) if isinstance(wanted, dt.datetime) else at + retry.no_answer.delay(1)
        update = LeadUpdate("callback", next_at=when, callback_at=when, conversation_at=at,
                            reason="asked to be called back")
        return _capped(update, lead_attempts, max_attempts)
    if name == "voicemail":
        disposition = "voicemail"
    elif name in _NOT_REACHED or name is not None:
        disposition = "no_answer"
        if outcome and outcome.get("right_party"):
            conversation = at
    elif attempt_state in ("no_answer", "busy", "failed", "voicemail"):
        disposition = attempt_state
    else:  # completed or canceled with no outcome: nothing happened on the call
        disposition = "failed"
    rule = retry.for_state(disposition)
    assert rule is not None
    number = retries_so_far.get(disposition, 0) + 1
    if number > rule.max_retries:
        return LeadUpdate("exhausted", conversation_at=conversation, disposition=disposition,
                          reason=f"{disposition}: {rule.max_retries} retries used")
    update = LeadUpdate("retry", next_at=at + rule.delay(number), conversation_at=conversation,
                        disposition=disposition, reason=f"{disposition}: retry {number}")
    return _capped(update, lead_attempts, max_attempts)


def _capped(update: LeadUpdate, lead_attempts: int, max_attempts: int) -> LeadUpdate:
    if lead_attempts >= max_attempts:
        return LeadUpdate("exhausted", conversation_at=update.conversation_at,
                          disposition=update.disposition,
                          reason=f"max attempts ({max_attempts}) reached")
    return update


async def settle(
    conn: asyncpg.Connection,
    attempt_id: uuid.UUID | str,
    *,
    at: dt.datetime,
    permanent: str | None = None,
    actor: str = ACTOR,
) -> LeadUpdate | None:
    """Settle an ended attempt (in the caller's transaction); None when it is not ended or
    was settled already, or belongs to no lead (a single call)."""
    attempt = await conn.fetchrow(
        "UPDATE attempts SET settled_at = $2, updated_at = now()"
        " WHERE id = $1 AND settled_at IS NULL AND state = ANY($3::text[])"
        " RETURNING id, campaign_id, lead_id, state, call_id",
        uuid.UUID(str(attempt_id)), at, list(TERMINAL),
    )
    if attempt is None or attempt["lead_id"] is None:
        return None
    lead = await conn.fetchrow(
        "SELECT l.id, l.phone, l.account_ref, l.attempts, l.state, c.max_attempts, c.settings,"
        " c.webhook_url FROM leads l JOIN campaigns c ON c.id = l.campaign_id"
        " WHERE l.id = $1 FOR UPDATE OF l", attempt["lead_id"],
    )
    if lead is None:
        return None
    outcome = None
    if attempt["call_id"] is not None:
        row = await conn.fetchrow("SELECT * FROM call_outcomes WHERE call_id = $1", attempt["call_id"])
        outcome = dict(row) if row is not None else None
    settings = CampaignSettings.model_validate(lead["settings"] or {})
    so_far = {
        r["disposition"]: int(r["n"])
        for r in await conn.fetch(
            "SELECT disposition, count(*) AS n FROM attempts WHERE lead_id = $1 AND id <> $2"
            " AND disposition IS NOT NULL GROUP BY disposition", lead["id"], attempt["id"],
        )
    }
    update = next_lead_state(
        attempt["state"], outcome, at=at, lead_attempts=lead["attempts"],
        max_attempts=lead["max_attempts"], retry=settings.retry, retries_so_far=so_far,
        permanent=permanent,
    )
    await conn.execute("UPDATE attempts SET disposition = $2 WHERE id = $1",
                       attempt["id"], update.disposition)
    # a lead cancelled or put on a do-not-call list meanwhile keeps that state, except
    # that an opt-out always wins
    await conn.execute(
        "UPDATE leads SET state = CASE WHEN $2 = 'dnc' OR state = 'dialing' THEN $2 ELSE state END,"
        " next_at = $3, callback_at = COALESCE($4, callback_at),"
        " conversation_at = COALESCE($5, conversation_at), last_state = $6, last_outcome = $7,"
        " updated_at = now() WHERE id = $1",
        lead["id"], update.state, update.next_at, update.callback_at, update.conversation_at,
        attempt["state"], outcome.get("outcome") if outcome else None,
    )
    await audit.record(conn, actor, audit.LEAD_STATE, "lead", str(lead["id"]), {
        "attempt_id": str(attempt["id"]), "attempt_state": attempt["state"], "state": update.state,
        "next_at": update.next_at.isoformat() if update.next_at else None, "reason": update.reason,
    })
    if outcome is not None:
        await audit.record(conn, actor, audit.OUTCOME, "attempt", str(attempt["id"]), {
            "outcome": outcome.get("outcome"), "call_id": str(attempt["call_id"]),
        })
    await _enqueue_outcomes(conn, attempt, lead, outcome, at)
    if attempt["state"] == "failed":
        await _maybe_pause(conn, attempt["campaign_id"], settings, actor)
    return update


def _events(outcome: Mapping[str, Any]) -> list[str]:
    name = outcome.get("outcome")
    found = {
        "promise_to_pay": name == "promise_to_pay" or outcome.get("ptp_amount") is not None,
        "callback": name == "callback",
        "dispute": name in ("dispute", "already_paid") or bool(outcome.get("dispute")),
        "opt_out": name == "opt_out" or bool(outcome.get("opt_out")),
        "wrong_party": name == "wrong_party",
    }
    return [e for e in WEBHOOK_EVENTS if found[e]]


async def _enqueue_outcomes(
    conn: asyncpg.Connection,
    attempt: Mapping[str, Any],
    lead: Mapping[str, Any],
    outcome: Mapping[str, Any] | None,
    at: dt.datetime,
) -> None:
    if outcome is None or not lead["webhook_url"] or attempt["call_id"] is None:
        return
    for event in _events(outcome):
        body = outcome_event(
            event=event, campaign_id=attempt["campaign_id"], lead_id=lead["id"],
            account_ref=lead["account_ref"], phone=lead["phone"], call_id=attempt["call_id"],
            outcome=dict(outcome), occurred_at=at, attempt_id=attempt["id"],
        )
        await outbox.enqueue(conn, attempt["campaign_id"], event, body.id, body,
                             lead["webhook_url"])


async def _maybe_pause(
    conn: asyncpg.Connection, campaign_id: uuid.UUID, settings: CampaignSettings, actor: str
) -> None:
    window = settings.failure_window
    row = await conn.fetchrow(
        "SELECT count(*) AS n, count(*) FILTER (WHERE state = 'failed') AS failed FROM ("
        "  SELECT state FROM attempts WHERE campaign_id = $1 AND ended_at IS NOT NULL"
        "  ORDER BY ended_at DESC LIMIT $2) last", campaign_id, window,
    )
    if row["n"] < window or row["failed"] / row["n"] < settings.pause_failure_rate:
        return
    reason = (f"paused itself: {row['failed']} of the last {row['n']} attempts failed"
              f" (threshold {settings.pause_failure_rate:.0%})")
    paused = await conn.fetchval(
        "UPDATE campaigns SET status = 'paused', status_reason = $2, updated_at = now()"
        " WHERE id = $1 AND status = 'running' RETURNING id", campaign_id, reason,
    )
    if paused is not None:
        await audit.record(conn, actor, audit.CAMPAIGN_STATE, "campaign", str(campaign_id),
                           {"status": "paused", "reason": reason})
