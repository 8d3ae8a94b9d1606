"""HTTP endpoints carriers call during a live call.

- `POST /carriers/twilio/amd`: Twilio's asynchronous answering-machine result
  (`asyncAmdStatusCallback`: CallSid, AnsweredBy), signed with X-Twilio-Signature. The
  verdict reaches the live session that carries that CallSid, on whichever node holds it
  (the registry routes it; see `dialkit.live`). A replayed result (same CallSid and
  AnsweredBy) acts once.
- `GET|POST /carriers/exotel/connect`: the dynamic URL of an Exotel flow's Connect applet,
  asked after our Voicebot applet ends; answers the number the agent chose to transfer to
  (from the shared transfer store, so any node can answer). It needs the shared secret
  `DIALKIT_EXOTEL_WEBHOOK_SECRET` as `?secret=` or as the HTTP Basic password.

Bodies are read as `application/x-www-form-urlencoded` (what both carriers send); anything
unreadable is a 400, never an error page. Authentication comes before any action.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import structlog
from aiohttp import BasicAuth, web
from redis.exceptions import RedisError

from dialkit.live import RedisRegistry, Registry
from media.exotel_control import ExotelCallControl, connect_applet_response
from media.twilio_signature import validate_twilio_signature

log = structlog.get_logger("dialkit.carrier_hooks")

FORM = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 100
#: how long a delivered answering-machine result is remembered, to ignore its replays
REPLAY_TTL_S = 3600.0


class FormError(ValueError):
    pass


def _public_url(request: web.Request, public_base: str | None) -> str:
    """The URL the carrier signed: the configured public base when set (behind a proxy)."""
    if public_base:
        return public_base.rstrip("/") + request.path_qs
    return str(request.url)


async def _read_form(request: web.Request) -> dict[str, str]:
    """The urlencoded form of a carrier's request; FormError for anything else. A repeated
    name keeps its last value."""
    if not request.body_exists:
        return {}
    if request.content_type != FORM:
        raise FormError(f"expected {FORM}, got {request.content_type or 'no content type'}")
    raw = await request.read()
    try:
        pairs = parse_qsl(
            raw.decode("ascii"), keep_blank_values=True, strict_parsing=False,
            encoding="utf-8", errors="strict", max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeError, ValueError) as exc:
        raise FormError(f"unreadable form body: {type(exc).__name__}") from None
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise FormError("form fields must not contain NUL characters")
    return dict(pairs)


def _json(status: int, error: str) -> web.Response:
    return web.json_response({"error": error}, status=status)


class ReplayGuard:
    """Remembers which webhook deliveries have acted: in Redis (SET NX with a TTL) when the
    registry is Redis, so a replay to another node is caught too; in-process otherwise."""

    def __init__(self, registry: Registry, ttl_s: float = REPLAY_TTL_S, max_local: int = 100_000) -> None:
        self.registry = registry
        self.ttl_s = ttl_s
        self.max_local = max_local
        self._seen: dict[str, float] = {}

    async def first(self, key: str) -> bool:
        """True the first time `key` is claimed within the TTL; False for a replay."""
        registry = self.registry
        if isinstance(registry, RedisRegistry):
            claimed = await registry.redis.set(
                f"{registry.prefix}webhook:{key}", "1", nx=True, px=max(1, int(self.ttl_s * 1000))
            )
            return bool(claimed)
        now = time.monotonic()
        if len(self._seen) >= self.max_local:
            self._seen = {k: t for k, t in self._seen.items() if t > now}
            while len(self._seen) >= self.max_local:  # still full: forget the oldest
                self._seen.pop(next(iter(self._seen)))
        expires = self._seen.get(key)
        if expires is not None and expires > now:
            return False
        self._seen[key] = now + self.ttl_s
        return True

    async def release(self, key: str) -> None:
        """Forget a claim whose delivery did not act, so a retry may."""
        registry = self.registry
        if isinstance(registry, RedisRegistry):
            await registry.redis.delete(f"{registry.prefix}webhook:{key}")
        else:
            self._seen.pop(key, None)


def _replays(state: Any) -> ReplayGuard:
    guard = state.replays
    if not isinstance(guard, ReplayGuard) or guard.registry is not state.registry:
        guard = state.replays = ReplayGuard(state.registry)
    return guard


def _carrier_sid(value: str) -> bool:
    return 0 < len(value) <= 64 and value.isascii() and value.isprintable()


async def signed_twilio_form(request: web.Request, settings: Any) -> dict[str, str] | web.Response:
    """The form of a Twilio webhook whose X-Twilio-Signature is valid, or the refusal: 404
    while Twilio is not configured, 403 for a missing or wrong signature, 400 for a body
    that is not a form. Twilio signs the URL (the configured public URL) and the POST
    parameters, so the form is read first (defensively)."""
    token = settings.twilio_auth_token
    if token is None:
        return _json(404, "Twilio is not configured")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not signature.isascii():
        log.warning("twilio_signature_missing", path=request.path)
        return _json(403, "missing X-Twilio-Signature")
    try:
        params = await _read_form(request)
    except FormError as exc:
        log.warning("twilio_webhook_unreadable", path=request.path, error=str(exc)[:120])
        return _json(400, str(exc))
    url = _public_url(request, settings.public_url)
    if not validate_twilio_signature(url, params, signature, token.get_secret_value()):
        log.warning("twilio_signature_invalid", path=request.path)
        return _json(403, "invalid X-Twilio-Signature (signed URL must be the public URL)")
    return params


async def twilio_amd(request: web.Request) -> web.Response:
    from dialkit.state import STATE

    state = request.app[STATE]
    params = await signed_twilio_form(request, state.settings)
    if isinstance(params, web.Response):
        return params
    call_sid, answered_by = params.get("CallSid", ""), params.get("AnsweredBy", "")
    if not _carrier_sid(call_sid) or not answered_by or len(answered_by) > 64:
        return _json(400, "CallSid and AnsweredBy are required (a carrier call SID, a verdict)")
    from dialkit.campaign_hooks import amd_verdict  # a machine: the dial attempt is voicemail

    await amd_verdict(state, call_sid, answered_by)
    guard = _replays(state)
    key = f"amd:{call_sid}:{answered_by}"
    try:
        if not await guard.first(key):
            log.info("amd_replay_ignored", call_sid=call_sid[-6:], answered_by=answered_by[:40])
            return web.json_response({"delivered": False, "duplicate": True})
    except (RedisError, OSError) as exc:
        log.warning("webhook_replay_store_unavailable", error=type(exc).__name__)
        return _json(503, "replay store unavailable")
    if await state.registry.deliver_verdict(call_sid, answered_by):
        return web.json_response({"delivered": True})
    try:
        await guard.release(key)
    except (RedisError, OSError) as exc:
        log.warning("webhook_replay_store_unavailable", error=type(exc).__name__)
    # No node holds the call (already over, or never streamed); Twilio needs a 2xx anyway.
    log.info("amd_for_unknown_call", call_sid=call_sid[-6:])
    return web.json_response({"delivered": False})


def _exotel_secret_given(request: web.Request) -> str | None:
    given = request.query.get("secret")
    if given:
        return given
    header = request.headers.get("Authorization", "")
    if header[:6].lower() != "basic ":
        return None
    try:
        return BasicAuth.decode(header).password
    except ValueError:
        return None


def _same_secret(given: str, expected: str) -> bool:
    # constant time, so response timing does not reveal how much of a guess was right
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )


async def exotel_connect(request: web.Request) -> web.Response:
    from dialkit.server import STATE

    state = request.app[STATE]
    control = state.providers.controls.get("exotel") if state.providers else None
    if not isinstance(control, ExotelCallControl):
        return _json(404, "Exotel is not configured")
    secret = state.settings.exotel_webhook_secret
    if secret is None:
        # open, anyone could read (and so cancel) a pending transfer and its phone number
        return _json(404, "Exotel webhook not configured: set DIALKIT_EXOTEL_WEBHOOK_SECRET")
    given = _exotel_secret_given(request)
    if given is None or not _same_secret(given, secret.get_secret_value()):
        log.warning("exotel_webhook_refused", path=request.path, given=given is not None)
        return _json(403, "missing or wrong webhook secret (?secret= or HTTP Basic password)")
    params: dict[str, str] = {k: v for k, v in request.query.items() if k != "secret"}
    if request.method == "POST":
        try:
            params.update(await _read_form(request))
        except FormError as exc:
            log.warning("exotel_webhook_unreadable", path=request.path, error=str(exc)[:120])
            return _json(400, str(exc))
    return await _answer_connect(control, params)


async def _answer_connect(control: ExotelCallControl, params: Mapping[str, Any]) -> web.Response:
    call_sid = params.get("CallSid", "")
    if not isinstance(call_sid, str) or not _carrier_sid(call_sid):
        return _json(400, "CallSid is required (a carrier call SID)")
    try:
        target = await control.take_transfer(call_sid)
    except (RedisError, OSError) as exc:
        log.warning("transfer_store_unavailable", call_sid=call_sid[-6:], error=type(exc).__name__)
        return _json(503, "transfer store unavailable")
    if target is None:
        return _json(404, "no transfer pending for this call")
    return web.json_response(connect_applet_response(target))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/carriers/twilio/amd", twilio_amd)
    app.router.add_get("/carriers/exotel/connect", exotel_connect)
    app.router.add_post("/carriers/exotel/connect", exotel_connect)
