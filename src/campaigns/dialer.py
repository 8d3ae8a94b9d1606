"""The dial job: one queued attempt becomes one carrier call, at most once.

`Dialer.dial(attempt_id)`:
1. builds the call's context from the lead's own data only (`campaigns.lead_context`: its
   columns and custom fields; `first_contact` is whether a conversation is on record) and
   validates it against
   the campaign's playbook (`ai.context.resolve_context`). A playbook that is not loaded or
   a context that does not validate fails the attempt with the reason and places no call;
   the lead is exhausted (retrying cannot fix it);
2. claims the attempt (`UPDATE ... SET state = 'dialing' WHERE state = 'queued'`): a job
   run twice (a retry, a re-deferred job after a crash) dials once;
3. stores the call (an injected `create_call`, dialkit's CallStore), issues the call's
   media token (`media.auth`), and asks the carrier (`media.call_control.CallControl.dial`)
   to stream to `<public url>/media/<carrier>` with the token and to send status callbacks
   to `<public url>/webhooks/<carrier>/call-status?attempt=<id>` (Twilio also reports its
   asynchronous answering-machine verdict);
4. records the carrier's call SID. A carrier that refuses fails the attempt (retried per
   the `failed` rule). The request is never retried here: a lost response may have placed
   a call; the reconciliation settles such an attempt later.

`place_single` is the same steps 2–4 for `POST /api/calls` with `"dial": true` (an attempt
without a campaign or lead).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx

from ai.context import ContextError, ResolvedContext, resolve_context
from ai.playbook import Playbook, PlaybookError
from campaigns import audit
from campaigns.lead_context import call_context
from campaigns.scheduler import global_room
from campaigns.settle import settle
from campaigns.status import end_attempt
from media.auth import issue_token
from media.call_control import CallControl, CallControlError, mask_number
from media.twilio_control import TwilioCallControl

__all__ = ["CreateCall", "DialResult", "Dialer", "lead_context"]

log = logging.getLogger(__name__)

#: (carrier, context, to_number, (playbook name, version)) -> call id
CreateCall = Callable[[str, dict[str, Any], str | None, tuple[str, str]], Awaitable[str]]
ACTOR = "dialer"
#: custom lead fields that never reach a call's context: clock overrides are for simulations
_NOT_FROM_LEADS = frozenset({"now", "today", "timezone_source", "timezone_candidates"})


@dataclass(frozen=True)
class DialResult:
    #: dialed, skipped (not queued any more), refused (no call placed: the lead's data, the
    #: cap), unavailable (no carrier or public URL configured), failed (the carrier refused)
    status: str
    attempt_id: str
    carrier_sid: str | None = None
    call_id: str | None = None
    reason: str | None = None


def lead_context(lead: Mapping[str, Any]) -> dict[str, Any]:
    """A call context from a lead row (`campaigns.lead_context.call_context`), without the
    clock overrides a custom column could carry, and `first_contact` from our own record
    (no conversation with this person yet)."""
    context = {k: v for k, v in call_context(lead).items() if k not in _NOT_FROM_LEADS}
    context["first_contact"] = lead.get("conversation_at") is None
    return context


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class Dialer:
    pool: asyncpg.Pool
    controls: Mapping[str, CallControl]
    create_call: CreateCall
    #: "name@version" -> the playbook; raises PlaybookError when it is not loaded
    find_playbook: Callable[[str], Playbook]
    media_secret: bytes
    token_ttl_s: int
    #: the base URL carriers reach us at; None: nothing can be dialled
    public_url: str | None
    exotel_webhook_secret: str | None = None
    clock: Callable[[], dt.datetime] = field(default=_now)

    async def dial(self, attempt_id: str) -> DialResult:
        aid = uuid.UUID(str(attempt_id))
        row = await self.pool.fetchrow(
            "SELECT a.state, a.carrier, a.campaign_id, l.id AS lead_id, l.name, l.phone, l.zones,"
            " l.amount_due, l.currency, l.due_date, l.account_ref, l.custom, l.conversation_at,"
            " c.playbook_name, c.playbook_version, c.caller_id"
            " FROM attempts a JOIN leads l ON l.id = a.lead_id"
            " JOIN campaigns c ON c.id = a.campaign_id WHERE a.id = $1", aid,
        )
        if row is None or row["state"] != "queued":
            return DialResult("skipped", str(aid), reason="not queued")
        context = lead_context(dict(row))
        ref = f"{row['playbook_name']}@{row['playbook_version']}"
        try:
            playbook = self.find_playbook(ref)
            resolved = resolve_context(context, playbook, now=self.clock(), phone=row["phone"])
        except ContextError as exc:
            return await self._refuse(aid, f"invalid call context for playbook {ref}: {exc}",
                                      permanent=True)
        except PlaybookError as exc:
            return await self._refuse(aid, f"playbook {ref} unavailable: {exc}", permanent=True)
        return await self._place(aid, row["carrier"], row["phone"], row["caller_id"],
                                 playbook, resolved, context)

    async def place_single(
        self,
        carrier: str,
        to: str,
        caller_id: str,
        playbook: Playbook,
        resolved: ResolvedContext,
        context: dict[str, Any],
        global_cap: int | None,
    ) -> DialResult:
        """A single call (no campaign): an attempt row for its status, then the dial. Refused
        (no row) when the global cap is reached."""
        async with self.pool.acquire() as conn, conn.transaction():
            room = await global_room(conn, global_cap)
            if room is not None and room <= 0:
                return DialResult("refused", "", reason="the global concurrent-call cap is reached")
            aid = await conn.fetchval(
                "INSERT INTO attempts (carrier, state) VALUES ($1, 'queued') RETURNING id", carrier)
        return await self._place(aid, carrier, to, caller_id, playbook, resolved, context)

    async def _refuse(self, aid: uuid.UUID, reason: str, *, permanent: bool) -> DialResult:
        """No call placed for a queued attempt: it fails with the reason. `permanent` (the
        lead's data or its playbook): the lead is exhausted, "refused"; otherwise
        (configuration): the attempt is retried per its `failed` rule, "unavailable"."""
        at, reason = self.clock(), reason[:500]
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT id, state FROM attempts WHERE id = $1 AND state = 'queued' FOR UPDATE", aid)
            if row is None:
                return DialResult("skipped", str(aid), reason="not queued")
            await end_attempt(conn, row, "failed", at, ACTOR, error=reason)
            await audit.record(conn, ACTOR, audit.DIAL, "attempt", str(aid),
                               {"placed": False, "reason": reason})
            await settle(conn, aid, at=at, permanent=reason if permanent else None, actor=ACTOR)
        log.warning("dial refused for attempt %s: %s", aid, reason[:200])
        return DialResult("refused" if permanent else "unavailable", str(aid), reason=reason)

    async def _fail(self, aid: uuid.UUID, reason: str) -> DialResult:
        at = self.clock()
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT id, state FROM attempts WHERE id = $1 FOR UPDATE", aid)
            if row is not None:
                await end_attempt(conn, row, "failed", at, ACTOR, error=reason[:500])
                await audit.record(conn, ACTOR, audit.DIAL, "attempt", str(aid),
                                   {"placed": False, "reason": reason[:500]})
                await settle(conn, aid, at=at, actor=ACTOR)
        return DialResult("failed", str(aid), reason=reason)

    async def _place(
        self,
        aid: uuid.UUID,
        carrier: str,
        to: str,
        caller_id: str,
        playbook: Playbook,
        resolved: ResolvedContext,
        context: dict[str, Any],
    ) -> DialResult:
        control = self.controls.get(carrier)
        if control is None:
            return await self._refuse(aid, f"carrier {carrier} is not configured", permanent=False)
        if not self.public_url:
            return await self._refuse(
                aid, "DIALKIT_PUBLIC_URL is unset: the carrier could not reach our media and"
                     " status URLs", permanent=False)
        claimed = await self.pool.fetchval(
            "UPDATE attempts SET state = 'dialing', dialed_at = $2, updated_at = now()"
            " WHERE id = $1 AND state = 'queued' RETURNING id", aid, self.clock(),
        )
        if claimed is None:
            return DialResult("skipped", str(aid), reason="not queued")
        try:
            call_id = await self.create_call(carrier, resolved.stored(context), to,
                                             (playbook.name, playbook.version))
        except (asyncpg.PostgresError, OSError) as exc:
            return await self._fail(aid, f"call not stored: {type(exc).__name__}")
        await self.pool.execute("UPDATE attempts SET call_id = $2 WHERE id = $1", aid,
                                uuid.UUID(call_id))
        token = issue_token(self.media_secret, call_id, self.token_ttl_s)
        base = self.public_url.rstrip("/")
        ws_base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        query: dict[str, str] = {"attempt": str(aid)}
        if carrier == "exotel" and self.exotel_webhook_secret:
            query["secret"] = self.exotel_webhook_secret
        status_url = f"{base}/webhooks/{carrier}/call-status?{urlencode(query)}"
        params = {"call_id": call_id, "token": token}
        try:
            if isinstance(control, TwilioCallControl):
                sid = await control.dial(to, caller_id, f"{ws_base}/media/{carrier}", status_url,
                                         params, amd_callback=f"{base}/carriers/twilio/amd")
            else:
                sid = await control.dial(to, caller_id, f"{ws_base}/media/{carrier}", status_url,
                                         params)
        except (CallControlError, ValueError, httpx.HTTPError) as exc:
            log.warning("dial of attempt %s to %s failed: %s", aid, mask_number(to), exc)
            return await self._fail(aid, f"carrier refused the dial: {str(exc)[:300]}")
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE attempts SET carrier_sid = COALESCE(carrier_sid, $2), updated_at = now()"
                " WHERE id = $1", aid, sid)
            await audit.record(conn, ACTOR, audit.DIAL, "attempt", str(aid), {
                "placed": True, "carrier": carrier, "carrier_sid": sid, "call_id": call_id,
                "to": mask_number(to)})
        log.info("dialled attempt %s to %s: %s", aid, mask_number(to), sid)
        return DialResult("dialed", str(aid), sid, call_id)
