"""Admitting a carrier's `start`: its call id, its media token, the call it names, and the
one atomic claim that gives a call its single media connection.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from media import metrics
from media.events import CLOSE_POLICY, ProtocolError, Start
from media.ports import CallInfo
from media.sanitize import peer_text
from media.session_services import SessionServices

__all__ = ["claim_start"]


async def claim_start(
    msg: Start, svc: SessionServices, query: Mapping[str, str], carrier: str, peer: str, log: Any
) -> CallInfo:
    """The call this `start` opens, claimed for this connection; raises ProtocolError (1008)
    for a missing or malformed call id, a refused token, an unknown or finished call, or a
    call that already has a media connection."""
    params = msg.custom_parameters
    call_id = params.get("call_id") or params.get("callId") or query.get("call_id")
    if not call_id:
        raise ProtocolError(CLOSE_POLICY, "start without a call_id custom parameter")
    try:
        uuid.UUID(call_id)
    except ValueError:
        raise ProtocolError(CLOSE_POLICY, "call_id is not a UUID") from None
    try:
        svc.authenticate(call_id, params, query)
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(CLOSE_POLICY, f"media token refused: {type(exc).__name__}") from None
    info = await svc.recorder.get_call(call_id)
    if info is None:
        raise ProtocolError(CLOSE_POLICY, "unknown call_id")
    if info.status in ("completed", "failed"):
        raise ProtocolError(CLOSE_POLICY, f"call already {info.status}")
    meta = {"format": {"encoding": msg.fmt.encoding, "rate": msg.fmt.rate}, "tracks": msg.tracks}
    # the claim is the one atomic step: of two legs with the same token, one wins
    claimed = info.status == "created" and await svc.recorder.claim_call(
        call_id, carrier, msg.call_sid, msg.stream_id, meta
    )
    if not claimed:
        metrics.SECURITY_EVENTS.labels(carrier, "second_media_connection").inc()
        log.warning("security_event", kind="second_media_connection", call_id=call_id,
                peer=peer_text(peer), close_code=CLOSE_POLICY)
        raise ProtocolError(CLOSE_POLICY, "call already has a media connection")
    return info
