"""The application state every HTTP handler reaches through `request.app[STATE]`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp import web

from dialkit.config import Settings
from dialkit.jobs import Jobs
from dialkit.live import MemoryRegistry, Registry
from dialkit.providers import Providers
from dialkit.store import CallStore
from media.admission import StartGate
from media.session import CallSession


@dataclass
class AppState:
    settings: Settings
    pool: asyncpg.Pool | None = None
    store: CallStore | None = None
    registry: Registry = field(default_factory=MemoryRegistry)
    providers: Providers | None = None
    sessions: set[CallSession] = field(default_factory=set)
    database_url: str | None = None
    start_gate: StartGate | None = None
    #: webhook deliveries that have acted (see carrier_hooks.ReplayGuard)
    replays: Any = None
    #: durable jobs: dials, scheduler ticks, reconciliation, webhooks out (dialkit.jobs)
    jobs: Jobs | None = None


STATE = web.AppKey("state", AppState)
