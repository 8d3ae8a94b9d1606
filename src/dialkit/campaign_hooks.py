"""Carrier status callbacks for dial attempts (campaigns.status does the work).

- `POST /webhooks/twilio/call-status`: Twilio's StatusCallback (CallSid, CallStatus,
  Timestamp, CallDuration...; https://www.twilio.com/docs/voice/api/call-resource#statuscallback),
  signed with X-Twilio-Signature over the URL we gave (the configured public URL) and the
  form; a missing or wrong signature is a 403 with the reason, before anything is read
  further.
- `POST /webhooks/exotel/call-status`: Exotel's StatusCallback (CallSid, Status, DateUpdated,
  Legs[0][AnsweredBy]...; urlencoded, multipart or JSON; a machine's answer is voicemail), authenticated like the Connect applet's URL (carrier_hooks): the shared secret
  DIALKIT_EXOTEL_WEBHOOK_SECRET as `?secret=` (the dialer puts it in the callback URL) or
  the HTTP Basic password; 404 while no secret is configured.

Both are idempotent and safe out of order (`campaigns.attempts.advance`). A callback for a
call no attempt knows is answered 404 with the reason: neither carrier retries a 4xx, and
the carrier's debugger shows it; 5xx is kept for "try again" (the database is down), which
both carriers retry.

Twilio's asynchronous answering-machine verdict arrives at `POST /carriers/twilio/amd`
(carrier_hooks); `amd_verdict` marks the attempt voicemail when a machine answered.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
from email.parser import BytesParser
from typing import Any

import asyncpg
import orjson
import structlog
from aiohttp import web

from campaigns.attempts import AttemptState, from_exotel, from_twilio
from campaigns.status import Applied, apply
from dialkit.carrier_hooks import (
    FormError,
    _carrier_sid,
    _exotel_secret_given,
    _json,
    _read_form,
    _same_secret,
    signed_twilio_form,
)
from dialkit.state import STATE, AppState

log = structlog.get_logger("dialkit.campaign_hooks")

#: AnsweredBy values of Twilio AMD that mean a machine took the call
MACHINE = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other")


def _state_of(request: web.Request) -> AppState:
    return request.app[STATE]


def _when(value: str | None) -> dt.datetime:
    """A callback's own time (RFC 2822 from Twilio, ISO or 'YYYY-MM-DD HH:MM:SS' from Exotel),
    else now."""
    now = dt.datetime.now(dt.UTC)
    if not value:
        return now
    try:
        at = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        try:
            at = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            return now
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    # a carrier clock far off ours is not trusted for retry delays
    return at if abs((at - now).total_seconds()) < 3600 else now


async def _apply(request: web.Request, carrier: str, sid: str, state: AttemptState,
                 at: dt.datetime, extra: dict[str, Any]) -> web.Response:
    pool = _state_of(request).pool
    assert pool is not None
    try:
        async with pool.acquire() as conn:
            done: Applied = await apply(conn, carrier, sid, state, at, extra)
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("status_not_applied", carrier=carrier, error=type(exc).__name__)
        return _json(503, f"database unavailable: {type(exc).__name__}")
    if not done.found:
        log.info("status_for_unknown_call", carrier=carrier, call_sid=sid[-6:])
        return _json(404, "no dial attempt for this call")
    return web.json_response({"attempt_id": done.attempt_id, "state": done.state,
                              "changed": done.changed, "settled": done.settled})


async def twilio_status(request: web.Request) -> web.Response:
    state = _state_of(request)
    params = await signed_twilio_form(request, state.settings)
    if isinstance(params, web.Response):
        return params
    sid, status = params.get("CallSid", ""), params.get("CallStatus", "")
    if not _carrier_sid(sid):
        return _json(400, "CallSid is required (a carrier call SID)")
    mapped = from_twilio(status)
    if mapped is None:
        return _json(400, f"unknown CallStatus {status[:40]!r}")
    extra = {"attempt_id": request.query.get("attempt"), "event": status,
             "duration": params.get("CallDuration"), "answered_by": params.get("AnsweredBy")}
    if mapped == "failed" and params.get("ErrorMessage"):
        extra["error"] = params["ErrorMessage"][:300]
    return await _apply(request, "twilio", sid, mapped, _when(params.get("Timestamp")), extra)


async def exotel_status(request: web.Request) -> web.Response:
    state = _state_of(request)
    secret = state.settings.exotel_webhook_secret
    if secret is None:
        return _json(404, "Exotel webhook not configured: set DIALKIT_EXOTEL_WEBHOOK_SECRET")
    given = _exotel_secret_given(request)
    if given is None or not _same_secret(given, secret.get_secret_value()):
        log.warning("exotel_webhook_refused", path=request.path, given=given is not None)
        return _json(403, "missing or wrong webhook secret (?secret= or HTTP Basic password)")
    try:
        params = await _exotel_body(request)
    except FormError as exc:
        return _json(400, str(exc))
    sid = str(params.get("CallSid") or params.get("call_sid") or "")
    status = str(params.get("Status") or params.get("CallStatus") or params.get("status") or "")
    if not _carrier_sid(sid):
        return _json(400, "CallSid is required (a carrier call SID)")
    mapped = from_exotel(status)
    if mapped is None:
        return _json(400, f"unknown Status {status[:40]!r}")
    if mapped == "completed" and str(params.get("Legs[0][AnsweredBy]", "")).upper() == "MACHINE":
        mapped = "voicemail"  # Exotel's answering-machine verdict on the callee's leg
    extra = {"attempt_id": request.query.get("attempt"), "event": status,
             "duration": params.get("ConversationDuration") or params.get("Duration")}
    at = _when(str(params.get("DateUpdated") or params.get("EndTime") or "") or None)
    return await _apply(request, "exotel", sid, mapped, at, extra)


async def _exotel_body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/json":
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise FormError("body is not valid JSON") from None
        if not isinstance(body, dict):
            raise FormError("body must be a JSON object")
        return {k: v for k, v in body.items() if isinstance(v, str | int | float)}
    if request.content_type == "multipart/form-data":
        return _multipart_fields(request.headers.get("Content-Type", ""), await request.read())
    return await _read_form(request)


def _multipart_fields(content_type: str, body: bytes) -> dict[str, str]:
    """The text fields of a multipart/form-data body (the body was already read whole, by
    the server's body deadline, so the stdlib MIME parser reads it from bytes)."""
    message = BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body)
    if not message.is_multipart():
        raise FormError("unreadable multipart body")
    fields: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes) and len(fields) < 100:
            try:
                fields[name] = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise FormError(f"field {name[:40]!r} is not UTF-8") from None
    return fields


async def amd_verdict(state: Any, call_sid: str, answered_by: str) -> None:
    """Twilio's answering-machine verdict: a machine → the attempt is voicemail (settled
    when the call's media ends, which records the voicemail outcome)."""
    if answered_by not in MACHINE or state.pool is None:
        return
    try:
        async with state.pool.acquire() as conn:
            await apply(conn, "twilio", call_sid, "voicemail", dt.datetime.now(dt.UTC),
                        {"answered_by": answered_by, "event": "amd"})
    except (asyncpg.PostgresError, OSError) as exc:
        log.warning("amd_not_applied", call_sid=call_sid[-6:], error=type(exc).__name__)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/webhooks/twilio/call-status", twilio_status)
    app.router.add_post("/webhooks/exotel/call-status", exotel_status)
