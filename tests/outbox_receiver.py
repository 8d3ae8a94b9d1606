"""A local webhook receiver for the outbox tests: a real aiohttp server on 127.0.0.1 that
verifies signatures with `campaigns.signing.verify` (as a receiver would) and answers with
a scripted status per request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from campaigns.signing import verify


@dataclass
class Received:
    key: str
    event: str
    body: bytes
    signature: str
    valid: bool
    headers: dict[str, str]


@dataclass
class Receiver:
    secret: str
    #: status for the n-th request (0-based); 200 once the script runs out
    script: list[int] = field(default_factory=list)
    #: seconds to wait before answering (per request), or a callable of the request number
    delay: float | Callable[[int], float] = 0.0
    received: list[Received] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        n = len(self.received)
        key = request.headers.get("Idempotency-Key", "")
        self.received.append(Received(
            key=key,
            event=request.headers.get("X-Dialkit-Event", ""),
            body=body,
            signature=request.headers.get("X-Dialkit-Signature", ""),
            valid=verify(self.secret, request.headers.get("X-Dialkit-Signature"), body),
            headers=dict(request.headers),
        ))
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        if self.in_flight[key] > 1:
            self.overlaps.append(key)
        try:
            delay = self.delay(n) if callable(self.delay) else self.delay
            if delay:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            self.in_flight[key] -= 1
        status = self.script[n] if n < len(self.script) else 200
        return web.json_response({"n": n}, status=status)

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"
        return self

    async def stop(self) -> None:
        self._stopping.set()  # requests held open answer now
        if self._runner is not None:
            await self._runner.cleanup()

    def keys(self) -> list[str]:
        return [r.key for r in self.received]


async def insert_campaign(conn: Any, *, webhook_url: str | None, secret: str) -> str:
    """A campaign row (the columns the outbox reads), straight in SQL."""
    return str(await conn.fetchval(
        "INSERT INTO campaigns (name, playbook_name, playbook_version, carrier, caller_id,"
        " max_concurrent, max_attempts, webhook_url, webhook_secret)"
        " VALUES ('outbox test', 'collections-default', '1.0', 'twilio', '+14155550100',"
        " 2, 3, $1, $2) RETURNING id",
        webhook_url, secret,
    ))
