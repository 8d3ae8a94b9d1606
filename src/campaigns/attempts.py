"""A dial attempt's state, driven by carrier status callbacks that may arrive twice, late
or out of order.

queued → dialing → ringing → in_progress → completed / no_answer / busy / failed /
canceled / voicemail. A state never moves backwards and an ended attempt never goes back
to ringing: a callback that would is ignored. Carriers report one terminal status per
call, but when two arrive the more telling one stands (voicemail > completed > busy >
no_answer > failed > canceled: an answering-machine verdict can come after the carrier
said the call completed), so applying any set of callbacks in any order, any number of
times, ends in the same state.

The carriers' status names (Twilio `CallStatus`; Exotel `Status` / `CallStatus`) map onto
these states in `from_twilio` and `from_exotel`.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "TERMINAL",
    "AttemptState",
    "advance",
    "from_exotel",
    "from_twilio",
]

AttemptState = Literal[
    "queued", "dialing", "ringing", "in_progress", "completed", "no_answer", "busy", "failed",
    "canceled", "voicemail",
]
TERMINAL: frozenset[str] = frozenset(
    {"completed", "no_answer", "busy", "failed", "canceled", "voicemail"})
_RANK: dict[str, int] = {
    "queued": 0, "dialing": 1, "ringing": 2, "in_progress": 3,
    "canceled": 4, "failed": 5, "no_answer": 6, "busy": 7, "completed": 8, "voicemail": 9,
}

# https://www.twilio.com/docs/voice/api/call-resource#call-status-values
_TWILIO: dict[str, AttemptState] = {
    "queued": "queued", "initiated": "dialing", "ringing": "ringing",
    "in-progress": "in_progress", "answered": "in_progress", "completed": "completed",
    "busy": "busy", "no-answer": "no_answer", "canceled": "canceled", "failed": "failed",
}
# Exotel call details / status callbacks: Status is one of queued, ringing, in-progress,
# completed, busy, failed, no-answer, canceled; passthru and AgentStream callbacks send
# the same words
_EXOTEL: dict[str, AttemptState] = {
    "queued": "queued", "ringing": "ringing", "in-progress": "in_progress",
    "answered": "in_progress", "completed": "completed", "busy": "busy", "failed": "failed",
    "no-answer": "no_answer", "canceled": "canceled", "cancelled": "canceled",
}


def from_twilio(status: str) -> AttemptState | None:
    """The attempt state for a Twilio CallStatus, or None when it is not one."""
    return _TWILIO.get(status.strip().lower())


def from_exotel(status: str) -> AttemptState | None:
    """The attempt state for an Exotel call status, or None when it is not one."""
    return _EXOTEL.get(status.strip().lower().replace("_", "-"))


def advance(current: AttemptState, incoming: AttemptState) -> AttemptState | None:
    """The attempt's next state when `incoming` is reported, or None when nothing changes
    (a repeat, a stale callback, a status after the attempt ended that tells less)."""
    return incoming if _RANK[incoming] > _RANK[current] else None
