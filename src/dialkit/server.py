"""The aiohttp application: health, metrics, authentication and the body deadline, the
API routes (dialkit.api_calls and the other route groups) and the media WebSockets."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from dialkit import (
    __version__,
    api_analytics,
    api_audit,
    api_calls,
    api_campaigns,
    api_config,
    api_evaluations,
    api_library,
    api_live,
    api_tuning,
    apikeys,
    campaign_hooks,
    carrier_hooks,
    console_routes,
    db,
    ops_metrics,
)
from dialkit.config import Settings, UnsafeBindError
from dialkit.jobs import start_for_server
from dialkit.live import RedisRegistry
from dialkit.logs import register_secrets
from dialkit.openapi import API_CONFIG, ROUTE_ATTR, ApiConfig, send_and_close
from dialkit.providers import Providers, build_providers
from dialkit.scopes import Scope
from dialkit.state import STATE, AppState
from dialkit.store import CallStore
from evaluation.library_seed import seed_library
from media.admission import StartGate
from media.auth import TokenError, verify_token
from media.detect import DetectingProtocol
from media.events import CLOSE_POLICY, CLOSE_TRY_AGAIN, ProtocolError
from media.exotel import ExotelProtocol, query_sample_rate
from media.exotel_control import ExotelCallControl
from media.ports import CallInfo
from media.protocol import CarrierProtocol
from media.sanitize import close_reason
from media.session import CallSession
from media.session_services import SessionConfig, SessionServices
from media.twilio import TwilioProtocol

log = structlog.get_logger("dialkit.server")




def _error(status: int, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": reason, **extra}, status=status)


async def _authenticate(request: web.Request, scope: Scope | None) -> str:
    """The registry's authentication: dialkit.apikeys says who may call what."""
    if scope is None:
        return "anonymous"
    state = request.app[STATE]
    bootstrap = state.settings.api_key
    return await apikeys.authenticate(
        request.headers.get("Authorization"), scope,
        bootstrap.get_secret_value() if bootstrap is not None else None, state.pool,
    )


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
    await ops_metrics.refresh(request.app[STATE].pool)  # campaign progress, job queue depth
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


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
    await seed_library(state.pool)  # the shipped evaluation library (H-library)
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
    # campaign jobs (H-sched): the in-process worker and the call-end hook
    state.jobs = await start_for_server(
        settings, url, state.pool, state.store, state.providers.controls,
        state.providers.registry, state.registry,
    )
    log.info("server_ready", providers=state.providers.describe(), registry=state.registry.name,
             node=state.registry.node, host=socket.gethostname())
    yield
    for session in list(state.sessions):
        await session.ws.close(code=1001, message=close_reason("server shutting down"))
    await state.jobs.close()  # campaign jobs (H-sched)
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
    api_live.install(app)  # GET /api/calls/live/events, before /api/calls/{call_id}
    api_calls.routes.install(app)
    api_campaigns.install(app)  # campaigns, leads (and their worker processes), DNC
    api_analytics.routes.install(app)
    api_audit.routes.install(app)
    api_config.routes.install(app)
    console_routes.install(app)  # the web console at /console/
    api_library.install(app)  # personalities, prompt versions, scenarios, sets (H-library)
    api_evaluations.install(app)  # evaluation runs (H-runs)
    api_evaluations.install(app)  # evaluation runs (issue 11)
    api_tuning.install(app)  # tuning runs (issue 12)
    app.router.add_get("/media/twilio", media_endpoint("twilio"))
    app.router.add_get("/media/exotel", media_endpoint("exotel"))
    app.router.add_get("/media", media_endpoint(None))
    carrier_hooks.add_routes(app)
    campaign_hooks.add_routes(app)  # carrier status callbacks (H-sched)
    return app


async def start_server(
    settings: Settings,
    providers: Providers | None = None,
    port: int | None = None,
    reuse_port: bool = False,
) -> tuple[web.AppRunner, int]:
    """Start the app on settings.host (port 0 = a free port); returns the runner and port.
    With `reuse_port`, several worker processes share one port (SO_REUSEPORT).
    Raises UnsafeBindError for a non-loopback host without an API key (DIALKIT_API_KEY or an
    unrevoked stored key; the latter is known once the database is open, before binding)."""
    app = build_app(settings, providers)
    # aiohttp has no separate header timeout: its keep-alive timer starts when a connection
    # opens and closes it if no whole request has arrived by then, so it is one
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=5, keepalive_timeout=settings.http_header_timeout_s
    )
    await runner.setup()
    if settings.needs_stored_key_to_bind():
        pool = app[STATE].pool
        try:
            settings.check_bind(stored_keys=pool is not None and await apikeys.any_active(pool))
        except UnsafeBindError:
            await runner.cleanup()
            raise
    site = web.TCPSite(
        runner, settings.host, settings.port if port is None else port, reuse_port=reuse_port or None
    )
    await site.start()
    # campaign jobs (H-sched): dialling starts once carriers can reach our media and webhooks
    if (jobs := app[STATE].jobs) is not None:
        jobs.listening(app[STATE].registry.node)
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else settings.port
    return runner, int(bound)
