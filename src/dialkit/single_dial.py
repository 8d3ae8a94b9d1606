"""`POST /api/calls` with `"dial": true`: one call placed through the carrier by the same
dialer campaigns use (`campaigns.dialer.Dialer.place_single`), after the checks a lead
gets: the number is on no global do-not-call list, and it is inside the calling window of
its country (the rules of `campaigns.compliance`) in every time zone the number may be in.
The call gets an attempt row (no campaign, no lead), so the carrier's status callbacks and
the reconciliation follow it like any other; it counts against the global cap.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import phonenumbers

from ai.context import ResolvedContext
from ai.playbook import Playbook
from campaigns import dnc
from campaigns.compliance import ContactHistory, decide, rules_for
from dialkit.openapi import ApiError
from dialkit.state import AppState


def _zones(resolved: ResolvedContext) -> list[str]:
    if resolved.timezone_candidates:
        return list(resolved.timezone_candidates)
    return [resolved.timezone] if resolved.timezone_source != "not declared" else []


async def place(
    state: AppState,
    carrier: str,
    to: str | None,
    caller_id: str | None,
    playbook: Playbook,
    resolved: ResolvedContext,
    context: dict[str, Any],
) -> dict[str, Any]:
    """Dial now, or raise ApiError: 400 (to / caller_id missing), 409 (do-not-call, outside
    the window), 429 (global cap), 502 (the carrier refused), 503 (not configured)."""
    if to is None:
        raise ApiError(400, "a call to dial needs `to` (E.164)", field="to")
    if caller_id is None:
        raise ApiError(400, "a call to dial needs `caller_id` (E.164, a number of the carrier"
                            " account)", field="caller_id")
    if state.jobs is None or state.jobs.runtime is None or state.pool is None:
        raise ApiError(503, "the dialer is not running")
    if await dnc.check(state.pool, to):
        raise ApiError(409, "the number is on the do-not-call list", field="to")
    region = phonenumbers.region_code_for_number(phonenumbers.parse(to, None)) or ""
    now = dt.datetime.now(dt.UTC)
    decision = decide(now, _zones(resolved), ContactHistory(), rules_for(region))
    if not decision.allowed:
        when = f"; allowed from {decision.not_before.isoformat()}" if decision.not_before else ""
        raise ApiError(409, f"not callable now: {decision.reason}{when}", field="to")
    runtime = state.jobs.runtime
    result = await runtime.dialer.place_single(
        carrier, to, caller_id, playbook, resolved, context, state.settings.max_concurrent_calls)
    if result.status == "dialed":
        return {"call_id": result.call_id, "attempt_id": result.attempt_id,
                "carrier_sid": result.carrier_sid}
    if result.status == "refused" and not result.attempt_id:
        raise ApiError(429, result.reason or "the global concurrent-call cap is reached")
    if result.status == "unavailable":
        raise ApiError(503, result.reason or "the dialer is not configured")
    raise ApiError(502, result.reason or "the carrier refused the dial")
