"""HTTP endpoints carriers call during a live call.

- `POST /carriers/twilio/amd`: Twilio's asynchronous answering-machine result
  (`asyncAmdStatusCallback`: CallSid, AnsweredBy), signed with X-Twilio-Signature. The
  verdict reaches the live session that carries that CallSid, on whichever node holds it
  (the registry routes it; see `dialkit.live`).
- `GET|POST /carriers/exotel/connect`: the dynamic URL of an Exotel flow's Connect applet,
  asked after our Voicebot applet ends; answers the number the agent chose to transfer to
  (from the shared transfer store, so any node can answer).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from media.call_control import ExotelCallControl, connect_applet_response
from media.twilio_signature import validate_twilio_signature

log = structlog.get_logger("dialkit.carrier_hooks")


def _public_url(request: web.Request, public_base: str | None) -> str:
    """The URL the carrier signed: the configured public base when set (behind a proxy)."""
    if public_base:
        return public_base.rstrip("/") + request.path_qs
    return str(request.url)


async def twilio_amd(request: web.Request) -> web.Response:
    from dialkit.server import STATE

    state = request.app[STATE]
    token = state.settings.twilio_auth_token
    if token is None:
        return web.json_response({"error": "Twilio is not configured"}, status=404)
    form = await request.post()
    params: dict[str, Any] = {k: str(v) for k, v in form.items()}
    signature = request.headers.get("X-Twilio-Signature", "")
    url = _public_url(request, state.settings.public_url)
    if not validate_twilio_signature(url, params, signature, token.get_secret_value()):
        log.warning("twilio_signature_invalid", path=request.path)
        return web.json_response({"error": "invalid X-Twilio-Signature"}, status=403)
    call_sid, answered_by = params.get("CallSid", ""), params.get("AnsweredBy", "")
    if not call_sid or not answered_by:
        return web.json_response({"error": "CallSid and AnsweredBy are required"}, status=400)
    if await state.registry.deliver_verdict(call_sid, answered_by):
        return web.json_response({"delivered": True})
    # No node holds the call (already over, or never streamed); Twilio needs a 2xx anyway.
    log.info("amd_for_unknown_call", call_sid=call_sid[-6:])
    return web.json_response({"delivered": False})


async def exotel_connect(request: web.Request) -> web.Response:
    from dialkit.server import STATE

    state = request.app[STATE]
    control = state.providers.controls.get("exotel") if state.providers else None
    if not isinstance(control, ExotelCallControl):
        return web.json_response({"error": "Exotel is not configured"}, status=404)
    params: dict[str, str] = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    call_sid = params.get("CallSid", "")
    if not call_sid:
        return web.json_response({"error": "CallSid is required"}, status=400)
    try:
        target = await control.take_transfer(call_sid)
    except (RedisError, OSError) as exc:
        log.warning("transfer_store_unavailable", call_sid=call_sid[-6:], error=type(exc).__name__)
        return web.json_response({"error": "transfer store unavailable"}, status=503)
    if target is None:
        return web.json_response({"error": "no transfer pending for this call"}, status=404)
    return web.json_response(connect_applet_response(target))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/carriers/twilio/amd", twilio_amd)
    app.router.add_get("/carriers/exotel/connect", exotel_connect)
    app.router.add_post("/carriers/exotel/connect", exotel_connect)
