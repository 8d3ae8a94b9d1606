"""A status-callback receiver for tests: a small aiohttp app on 127.0.0.1 that records every
request a carrier (emulator) sends it, and can answer TwiML, JSON or errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from emulators import serve


@dataclass
class Got:
    path: str
    method: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    url: str
    json: Any = None

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


@dataclass
class Receiver:
    """A status-callback endpoint (and a TwiML URL) that records what it was sent."""

    base: str = ""
    got: list[Got] = field(default_factory=list)
    twiml: str = "<Response/>"
    fail_first: int = 0  # answer this many deliveries with a 500
    answers: dict[str, Any] = field(default_factory=dict)  # JSON to answer, by path

    async def handle(self, request: web.Request) -> web.Response:
        body: Any = None
        if request.content_type == "application/json":
            body = await request.json()
            params = [(k, v) for k, v in body.items() if not isinstance(v, list)]
        else:
            params = list((await request.post()).items()) if request.method == "POST" else []
        self.got.append(Got(request.path, request.method, [(k, str(v)) for k, v in params],
                            dict(request.headers), str(request.url), body))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        if request.path in self.answers:
            return web.json_response(self.answers[request.path])
        if request.path == "/twiml":
            return web.Response(text=self.twiml, content_type="application/xml")
        return web.Response(text="ok")

    def at(self, path: str) -> list[Got]:
        return [g for g in self.got if g.path == path]

    def statuses(self, path: str = "/status") -> list[str | None]:
        return [g.param("CallStatus") or g.param("Status") for g in self.at(path)]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    async with serve(app) as base:
        rec.base = base
        yield rec


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), limit_s)
