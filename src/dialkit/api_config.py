"""GET /api/config/status: what this server is configured with, for the console's
Operations page: the provider of each role (embedded or cloud, and its fallbacks), the
carriers (whether their credentials are present), the database and live-state kinds, the
job worker, and versions. Booleans stand for every secret: no key, token, password or URL
with credentials is ever part of the answer."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Literal

import aiohttp
from aiohttp import web
from pydantic import BaseModel, Field

from dialkit import __version__
from dialkit.config import Settings
from dialkit.live import RedisRegistry
from dialkit.openapi import Routes
from dialkit.state import STATE, AppState

routes = Routes(tag="operations")

Kind = Literal["embedded", "cloud"]
#: providers that need no key and no network (DESIGN.md, providers by role)
EMBEDDED = frozenset({"whisper", "null", "piper", "tone", "playbook", "echo"})


class Provider(BaseModel):
    name: str
    kind: Kind
    fallbacks: list[str] = Field(description="tried in this order when the provider fails")
    credentials: bool = Field(description="a cloud provider's key is set (always true for embedded)")


class Carrier(BaseModel):
    credentials: bool = Field(description="account and token/key are set")
    enabled: bool = Field(description="calls can be placed through it (its REST client is built)")
    webhook_secret: bool | None = Field(default=None, description="Exotel: status callbacks are signed")


class Store(BaseModel):
    kind: str
    version: str | None = None


class Jobs(BaseModel):
    enabled: bool = Field(description="this process runs the job worker (dials, scheduler, webhooks)")
    concurrency: int
    scheduler_tick_s: int


class Versions(BaseModel):
    dialkit: str
    python: str
    aiohttp: str
    procrastinate: str | None


class ConfigStatus(BaseModel):
    providers: dict[str, Provider] = Field(description="stt, tts and policy")
    selectable: dict[str, list[str]] = Field(description="what a call may choose through context.providers")
    playbooks: list[str]
    default_playbook: str
    carriers: dict[str, Carrier]
    database: Store
    live_state: Store
    jobs: Jobs
    api_key_set: bool
    media_secret_set: bool
    public_url: str | None = Field(description="where carriers reach this server (no credentials)")
    max_concurrent_calls: int | None
    versions: Versions


def _cloud_key(settings: Settings, name: str) -> bool:
    keys = {"deepgram": settings.deepgram_api_key, "elevenlabs": settings.elevenlabs_api_key,
            "openai": settings.openai_api_key}
    return name in EMBEDDED or keys.get(name) is not None


def _providers(state: AppState) -> tuple[dict[str, Provider], dict[str, list[str]]]:
    assert state.providers is not None
    described = state.providers.describe()
    chains: dict[str, list[str]] = described.get("chains") or {
        role: [str(described[role])] for role in ("stt", "tts", "policy")}
    out = {}
    for role, chain in chains.items():
        name = chain[0] if chain else "?"
        out[role] = Provider(name=name, kind="embedded" if name in EMBEDDED else "cloud",
                             fallbacks=list(chain[1:]), credentials=_cloud_key(state.settings, name))
    return out, dict(described.get("selectable") or {})


def _carriers(state: AppState) -> dict[str, Carrier]:
    s = state.settings
    controls = state.providers.controls if state.providers is not None else {}
    return {
        "twilio": Carrier(credentials=bool(s.twilio_account_sid and s.twilio_auth_token),
                          enabled="twilio" in controls),
        "exotel": Carrier(credentials=bool(s.exotel_account_sid and s.exotel_api_key and s.exotel_api_token),
                          enabled="exotel" in controls, webhook_secret=s.exotel_webhook_secret is not None),
    }


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@routes.get("/api/config/status", response=ConfigStatus, summary="What this server is configured with (no secrets)")
async def config_status(request: web.Request) -> ConfigStatus:
    state = request.app[STATE]
    settings = state.settings
    assert state.providers is not None
    providers, selectable = _providers(state)
    pg_version = None
    if state.pool is not None:
        pg_version = await state.pool.fetchval("SHOW server_version")
    public = settings.public_url
    if public and "@" in public.split("//", 1)[-1].split("/", 1)[0]:
        public = "(set, with credentials)"  # user:password@host is never shown
    return ConfigStatus(
        providers=providers, selectable=selectable,
        playbooks=state.providers.registry.refs(), default_playbook=state.providers.playbook.ref,
        carriers=_carriers(state),
        database=Store(kind="external" if settings.database_url else "embedded", version=pg_version),
        live_state=Store(kind="redis" if isinstance(state.registry, RedisRegistry) else "in-process"),
        jobs=Jobs(enabled=settings.run_jobs and state.jobs is not None,
                  concurrency=settings.job_concurrency, scheduler_tick_s=settings.scheduler_tick_s),
        api_key_set=settings.api_key is not None, media_secret_set=settings.media_secret is not None,
        public_url=public, max_concurrent_calls=settings.max_concurrent_calls,
        versions=Versions(dialkit=__version__, python=platform.python_version(),
                          aiohttp=aiohttp.__version__, procrastinate=_version("procrastinate")),
    )
