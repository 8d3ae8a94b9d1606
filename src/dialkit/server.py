"""The aiohttp application: health, metrics, the call API (including the live calls of
every node) and the media WebSockets."""

from __future__ import annotations

import asyncio
import hmac
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import phonenumbers
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field, ValidationError, field_validator

from ai.context import ContextError, resolve_context
from ai.playbook import UnknownPlaybook
from dialkit import __version__, carrier_hooks, db
from dialkit.bodies import BodyError, check_storable, parse_json_body
from dialkit.config import Settings
from dialkit.live import RedisRegistry
from dialkit.logs import register_secrets
from dialkit.openapi import API_CONFIG, ROUTE_ATTR, ApiConfig, send_and_close
from dialkit.providers import Providers, build_providers
from dialkit.scopes import Denied, Scope
from dialkit.state import STATE, AppState
from dialkit.store import CallStore
from media.admission import StartGate
from media.auth import TokenError, issue_token, verify_token
from media.call_control import ExotelCallControl
from media.detect import DetectingProtocol
from media.events import CLOSE_POLICY, CLOSE_TRY_AGAIN, ProtocolError
from media.exotel import ExotelProtocol, query_sample_rate
from media.ports import CallInfo
from media.protocol import CarrierProtocol
from media.sanitize import close_reason
from media.session import CallSession, SessionConfig, SessionServices
from media.twilio import TwilioProtocol

log = structlog.get_logger("dialkit.server")




class CreateCall(BaseModel):
    carrier: Literal["twilio", "exotel"] = "twilio"
    to: str | None = Field(default=None, description="E.164 number of the person called")
    playbook: str | None = Field(
        default=None, max_length=200,
        description="name@version, or a name (its highest version); the server default if absent",
    )
    context: dict[str, Any] = Field(default_factory=dict)

    @field_validator("playbook")
    @classmethod
    def _playbook_ref(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)):
            raise ValueError("must be a playbook name (name or name@version), without control characters")
        return value

    @field_validator("to")
    @classmethod
    def e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"not a phone number in E.164 form: {exc}") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError("not a valid phone number")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


def _body_error(exc: BodyError) -> web.Response:
    """A 400 naming the value refused; a context field is also named in `fields`, as the
    context's own validation names it."""
    extra: dict[str, Any] = {}
    if exc.field:
        extra["field"] = exc.field
        top, _, rest = exc.field.partition(".")
        if top == "context" and rest:
            name = re.split(r"[.\[]", rest, maxsplit=1)[0]
            extra["fields"] = {name: exc.reason}
    return _error(400, f"invalid call request: {exc}", **extra)


def _providers_problem(context: Mapping[str, Any]) -> str | None:
    wanted = context.get("providers")
    if wanted is None:
        return None
    if not isinstance(wanted, Mapping):
        return 'context.providers must be an object like {"tts": "piper"}'
    for role, name in wanted.items():
        if not isinstance(name, str):
            return f"context.providers.{role} must be a provider name (a string), got {type(name).__name__}"
    return None


def _check_api_key(request: web.Request) -> web.Response | None:
    key = request.app[STATE].settings.api_key
    if key is None:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    # constant time, so response timing does not reveal how much of a guess was right
    same = hmac.compare_digest(
        given.strip().encode("utf-8", "surrogatepass"),
        key.get_secret_value().encode("utf-8", "surrogatepass"),
    )
    if scheme.lower() != "bearer" or not same:
        return _error(401, "missing or wrong API key (Authorization: Bearer …)")
    return None


async def _authenticate(request: web.Request, scope: Scope | None) -> str:
    """The registry's authentication (see dialkit.openapi)."""
    if scope is None:
        return "anonymous"
    if request.app[STATE].settings.api_key is None:
        return "local"
    if _check_api_key(request) is not None:
        raise Denied(401, "missing or wrong API key (Authorization: Bearer …)")
    return "bootstrap"


# ---- HTTP handlers ---------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    body: dict[str, Any] = {"status": "ok"}
    try:
        assert state.pool is not None
        await asyncio.wait_for(db.ping(state.pool), 2)
        body["database"] = "ok"
    except Exception as exc:
        body["database"] = f"error: {type(exc).__name__}"
        body["status"] = "degraded"
    try:
        await asyncio.wait_for(state.registry.ping(), 2)
        body["redis"] = "ok" if isinstance(state.registry, RedisRegistry) else "in-process"
    except Exception as exc:
        body["redis"] = f"error: {type(exc).__name__}"
        body["status"] = "degraded"
    body["providers"] = state.providers.describe() if state.providers else {}
    body["active_calls"] = len(state.sessions)
    body["node"] = state.registry.node
    return web.json_response(body, status=200 if body["status"] == "ok" else 503)


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def create_call(request: web.Request) -> web.Response:
    if (denied := _check_api_key(request)) is not None:
        return denied
    state = request.app[STATE]
    try:
        raw = parse_json_body(await request.read())
        body = CreateCall.model_validate(raw)
    except ValidationError as exc:
        return _error(400, "invalid call request", details=exc.errors(include_url=False, include_context=False))
    except BodyError as exc:
        return _body_error(exc)
    assert state.store is not None and state.providers is not None
    if (problem := _providers_problem(body.context)) is not None:
        return _error(400, f"invalid call request: {problem}", field="context.providers")
    try:
        playbook = state.providers.registry.get(body.playbook)
    except UnknownPlaybook as exc:
        return _error(400, str(exc), field="playbook", available=state.providers.registry.refs())
    try:
        state.providers.check_context(body.context)
    except ValueError as exc:
        return _error(400, f"invalid call request: {exc}")
    try:
        resolved = resolve_context(body.context, playbook, phone=body.to)
    except ContextError as exc:
        return _error(
            400, f"invalid call context for playbook {playbook.ref}: {exc}",
            fields=exc.problems,
        )
    try:
        check_storable(raw)
    except BodyError as exc:
        return _body_error(exc)
    try:
        call_id = await state.store.create_call(
            body.carrier, resolved.stored(body.context), body.to, (playbook.name, playbook.version)
        )
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("call_not_stored", error=type(exc).__name__)
        return _error(503, f"database unavailable: {type(exc).__name__}")
    secret = state.settings.resolved_media_secret()
    token = issue_token(secret, call_id, state.settings.media_token_ttl_s)
    base = state.settings.public_url or f"http://{request.host}"
    ws_base = base.replace("https://", "wss://").replace("http://", "ws://").rstrip("/")
    return web.json_response(
        {
            "call_id": call_id,
            "token": token,
            "media_url": f"{ws_base}/media/{body.carrier}",
            "custom_parameters": {"call_id": call_id, "token": token},
            "playbook": playbook.ref,
        },
        status=201,
    )


async def live_calls(request: web.Request) -> web.Response:
    """The live calls of every node (of this one without Redis), oldest first."""
    if (denied := _check_api_key(request)) is not None:
        return denied
    state = request.app[STATE]
    try:
        calls = await state.registry.live()
    except Exception as exc:
        log.warning("live_calls_unavailable", error=type(exc).__name__)
        return _error(503, f"live-call registry unavailable: {type(exc).__name__}")
    for entry in calls:
        started = entry.get("started")
        if isinstance(started, int | float):
            entry["started_at"] = datetime.fromtimestamp(started, UTC).isoformat()
    return web.json_response(calls)


async def get_call(request: web.Request) -> web.Response:
    if (denied := _check_api_key(request)) is not None:
        return denied
    state = request.app[STATE]
    try:
        uuid.UUID(request.match_info["call_id"])
    except ValueError:
        return _error(400, "call id is not a UUID")
    assert state.store is not None
    detail = await state.store.call_detail(request.match_info["call_id"])
    if detail is None:
        return _error(404, "no such call")
    return web.json_response(detail)


# ---- media WebSockets ------------------------------------------------------------------


def _deliver_verdict(state: AppState) -> Any:
    """The registry's local delivery: the answering-machine verdict reaches the session of
    this process carrying that carrier call SID."""

    def deliver(call_sid: str, answered_by: str) -> bool:
        for session in list(state.sessions):
            start = session.start
            if start is not None and start.call_sid == call_sid:
                session.answered_by(answered_by)
                return True
        return False

    return deliver


def _services(state: AppState) -> SessionServices:
    assert state.providers is not None and state.store is not None
    providers = state.providers
    secret = state.settings.resolved_media_secret()

    def authenticate(call_id: str, params: Mapping[str, str], query: Mapping[str, str]) -> None:
        token = params.get("token") or query.get("token")
        if not token:
            raise ProtocolError(CLOSE_POLICY, "media token missing")
        try:
            verify_token(secret, token, call_id)
        except TokenError as exc:
            raise ProtocolError(CLOSE_POLICY, f"media token refused: {exc}") from None

    def config_for(info: CallInfo) -> SessionConfig:
        return providers.session_config(info)

    def apology_for(info: CallInfo) -> str:
        try:
            playbook = providers.playbook_for(info)
        except ProtocolError:  # not loaded here: the server's default playbook apologises
            playbook = providers.playbook
        return playbook.apology()

    return SessionServices(
        stt=providers.stt,
        tts=providers.tts,
        engine_for=providers.engine_for,
        vad_factory=providers.vad_factory,
        recorder=state.store,
        registry=state.registry,
        authenticate=authenticate,
        config_for=config_for,
        speech_for=providers.speech_for if providers.catalog is not None else None,
        hangup=providers.hangup,
        transfer=providers.transfer,
        start_deadline_s=state.settings.media_start_deadline_s,
        send_backlog_s=state.settings.media_send_backlog_s,
        apology_for=apology_for,
    )


def media_endpoint(carrier: str | None) -> Any:
    async def handler(request: web.Request) -> web.WebSocketResponse:
        state = request.app[STATE]
        ws = web.WebSocketResponse(
            # no heartbeat: aiohttp re-arms its timer when data arrives after the close,
            # which kept every refused connection alive (bench/connection_storm.py); the
            # start deadline and the session's idle guard close a silent peer instead
            max_msg_size=state.settings.max_message_bytes, heartbeat=None, autoping=True,
            compress=False,  # carriers don't compress; deflating every 20 ms frame costs CPU
        )
        settings = state.settings
        if state.start_gate is None:
            state.start_gate = StartGate(
                settings.media_max_unauthenticated, settings.media_max_unauthenticated_per_peer
            )
        gate = state.start_gate
        peer = request.remote or "unknown"
        # counted before the handshake completes, so the peer cannot race its own count
        refusal = gate.admit(peer)
        try:
            await ws.prepare(request)
        except BaseException:
            if refusal is None:
                gate.release(peer)
            raise
        if refusal is not None:
            gate.refused(peer, refusal, asyncio.get_running_loop().time())
            await ws.close(code=CLOSE_TRY_AGAIN, message=close_reason(refusal))
            return ws
        try:
            query = dict(request.query)
            protocol: CarrierProtocol
            if carrier == "twilio":
                protocol = TwilioProtocol()
            elif carrier == "exotel":
                protocol = ExotelProtocol(_exotel_rate(query))
            else:
                protocol = DetectingProtocol(query)
            # from here the session releases its place in the gate
            session = CallSession(ws, protocol, _services(state), query, peer=peer, gate=gate,
                                  transport=request.transport)
        except BaseException:
            gate.release(peer)
            raise
        state.sessions.add(session)
        try:
            await session.run()
        finally:
            state.sessions.discard(session)
        return ws

    return handler


def _exotel_rate(query: Mapping[str, str]) -> str:
    # the URL's text, checked by ExotelProtocol: a bad rate is refused (1008) on the first
    # message instead of being replaced by 8 kHz, which would garble 16 kHz audio
    return query_sample_rate(query)


# ---- application -----------------------------------------------------------------------


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    settings = state.settings
    url = settings.database_url
    if url is None:
        url = await asyncio.to_thread(db.embedded_database_url, settings.data_dir)
        log.info("embedded_postgres", data_dir=str(settings.data_dir / "pgdata"))
    state.database_url = url
    state.pool = await db.create_pool(url)
    await db.migrate(state.pool)
    state.store = CallStore(state.pool)
    if settings.redis_url:
        state.registry = RedisRegistry.from_url(settings.redis_url, settings.redis_prefix)
        await state.registry.ping()
    if state.providers is None:
        state.providers = await build_providers(settings)
    state.store.playbooks = state.providers.registry
    if isinstance(state.registry, RedisRegistry):
        for control in state.providers.controls.values():
            if isinstance(control, ExotelCallControl):
                control.transfers = state.registry.transfer_store()
    await state.registry.start(_deliver_verdict(state))
    log.info("server_ready", providers=state.providers.describe(), registry=state.registry.name,
             node=state.registry.node)
    yield
    for session in list(state.sessions):
        await session.ws.close(code=1001, message=close_reason("server shutting down"))
    await state.registry.close()
    await state.providers.close()
    await state.pool.close()


async def _node_header(request: web.Request, response: web.StreamResponse) -> None:
    """Which node answered: behind SO_REUSEPORT or a load balancer, the one clue to a request's path."""
    response.headers["X-Dialkit-Node"] = request.app[STATE].registry.node


def _body_deadline(timeout_s: float) -> Any:
    """Every request body arrives in full within `timeout_s` of its headers, or the request
    gets a 408 and the connection is closed: a client that trickles a body, or never sends
    the one its Content-Length announced, does not hold a connection."""

    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        # the registry's routes read (or stream) their bodies under the same bound themselves
        registered = hasattr(request.match_info.handler, ROUTE_ATTR)
        if request.body_exists and request.method not in ("GET", "HEAD", "OPTIONS") and not registered:
            try:
                await asyncio.wait_for(request.read(), timeout_s)
            except TimeoutError:
                response = _error(408, f"request body not received within {timeout_s:g} s")
                return await send_and_close(request, response)
        return await handler(request)

    return middleware


def _register_secrets(settings: Settings) -> None:
    """Configured keys are masked wherever they would appear in a log line."""
    register_secrets(
        value.get_secret_value()
        for value in (
            settings.api_key, settings.media_secret, settings.twilio_auth_token,
            settings.exotel_api_key, settings.exotel_api_token, settings.exotel_webhook_secret,
            settings.deepgram_api_key, settings.openai_api_key, settings.elevenlabs_api_key,
        )
        if value is not None
    )


def build_app(settings: Settings, providers: Providers | None = None) -> web.Application:
    _register_secrets(settings)
    app = web.Application(
        client_max_size=1024 * 1024, middlewares=[_body_deadline(settings.http_body_timeout_s)]
    )
    app[STATE] = AppState(settings=settings, providers=providers)
    app[API_CONFIG] = ApiConfig(
        authenticate=_authenticate, body_timeout_s=settings.http_body_timeout_s, version=__version__
    )
    app.cleanup_ctx.append(_lifecycle)
    app.on_response_prepare.append(_node_header)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_post("/api/calls", create_call)
    app.router.add_get("/api/calls/live", live_calls)  # before {call_id}, which would match it
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_get("/media/twilio", media_endpoint("twilio"))
    app.router.add_get("/media/exotel", media_endpoint("exotel"))
    app.router.add_get("/media", media_endpoint(None))
    carrier_hooks.add_routes(app)
    return app


async def start_server(
    settings: Settings,
    providers: Providers | None = None,
    port: int | None = None,
    reuse_port: bool = False,
) -> tuple[web.AppRunner, int]:
    """Start the app on settings.host (port 0 = a free port); returns the runner and port.
    With `reuse_port`, several worker processes share one port (SO_REUSEPORT).
    Raises UnsafeBindError for a non-loopback host without an API key."""
    settings.check_bind()
    app = build_app(settings, providers)
    # aiohttp has no separate header timeout: its keep-alive timer starts when a connection
    # opens and closes it if no whole request has arrived by then, so it is one
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=5, keepalive_timeout=settings.http_header_timeout_s
    )
    await runner.setup()
    site = web.TCPSite(
        runner, settings.host, settings.port if port is None else port, reuse_port=reuse_port or None
    )
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else settings.port
    return runner, int(bound)
