"""GET /api/calls/live/events: the live calls of every node as server-sent events, for
the console's Calls page (the browser's EventSource keeps it open and reconnects).

Each `calls` event carries the whole list (the registry's entries with, from PostgreSQL,
each call's campaign, state, turns and last turn) and is sent when the list changes; a
comment line every `KEEPALIVE_S` keeps proxies from closing a quiet stream. One snapshot
per `INTERVAL_S` is taken for the whole process, however many consoles are watching."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from dialkit import call_list
from dialkit.openapi import ApiError, Routes
from dialkit.state import STATE, AppState

log = structlog.get_logger("dialkit.api_live")

routes = Routes(tag="calls")
INTERVAL_S = 1.0
KEEPALIVE_S = 15.0
EVENT_STREAM = "text/event-stream"


@dataclass
class Feed:
    """The process's latest snapshot, shared by every stream."""

    taken: float = 0.0
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


FEED = web.AppKey("dialkit_live_feed", Feed)


async def snapshot(state: AppState) -> list[dict[str, Any]]:
    """The live calls, oldest first, each with its stored line (campaign, state, last turn)."""
    entries = await state.registry.live()
    lines = await call_list.summaries(state.pool, [e["call_id"] for e in entries]) if state.pool else {}
    now = time.time()
    out = []
    for entry in entries:
        started = entry.get("started")
        item: dict[str, Any] = {**entry, **lines.get(entry["call_id"], {}), "call_id": entry["call_id"]}
        if isinstance(started, int | float):
            item["started_at"] = datetime.fromtimestamp(started, UTC).isoformat()
            item["duration_s"] = round(max(now - started, 0.0), 1)
        out.append(item)
    return out


async def _latest(app: web.Application) -> list[dict[str, Any]]:
    feed = app[FEED]
    async with feed.lock:
        if time.monotonic() - feed.taken >= INTERVAL_S:
            feed.calls = await snapshot(app[STATE])
            feed.taken = time.monotonic()
        return feed.calls


def _changed(before: list[dict[str, Any]] | None, now: list[dict[str, Any]]) -> bool:
    # the durations tick every second: a change is anything else
    def key(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in c.items() if k != "duration_s"} for c in calls]

    return before is None or key(before) != key(now)


_STREAM = {
    200: {"description": "an event stream: `event: calls` with the live calls (JSON list) at each change",
          "content": {EVENT_STREAM: {"schema": {"type": "string"}}}},
    406: "the client does not accept text/event-stream (EventSource sends it)",
    503: "the live-call registry is unavailable",
}


@routes.get("/api/calls/live/events", responses=_STREAM, summary="Live calls as server-sent events")
async def live_events(request: web.Request) -> web.StreamResponse:
    """Streams until the client goes away. Only for clients that accept
    text/event-stream: a plain GET of a stream that never ends would hang."""
    if EVENT_STREAM not in request.headers.get("Accept", ""):
        raise ApiError(406, f"this route streams server-sent events: send Accept: {EVENT_STREAM}"
                            " (or GET /api/calls/live for one list)")
    app = request.app
    try:
        calls = await _latest(app)
    except Exception as exc:
        log.warning("live_feed_unavailable", error=type(exc).__name__)
        raise ApiError(503, f"live-call registry unavailable: {type(exc).__name__}") from None
    response = web.StreamResponse(headers={
        "Content-Type": EVENT_STREAM, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    sent: list[dict[str, Any]] | None = None
    quiet_since = time.monotonic()
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            if _changed(sent, calls):
                data = json.dumps(calls, default=str, separators=(",", ":"))
                await response.write(f"event: calls\ndata: {data}\n\n".encode())
                sent, quiet_since = calls, time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                quiet_since = time.monotonic()
            await asyncio.sleep(INTERVAL_S)
            try:
                calls = await _latest(app)
            except Exception as exc:  # the stream stays; the next snapshot may succeed
                log.warning("live_feed_unavailable", error=type(exc).__name__)
    except (ConnectionResetError, ConnectionError):
        pass  # the console went away
    return response


def install(app: web.Application) -> None:
    app[FEED] = Feed()
    routes.install(app)
