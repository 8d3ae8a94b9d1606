"""Local stand-ins for vendor and carrier APIs that speak their real wire protocols
(paths, form encoding, auth, JSON shapes, error codes), for tests and benchmarks.

Each emulator runs on 127.0.0.1 with an ephemeral port, records every request it got, keeps
the state a real service would (calls and their status) and can inject faults (error
statuses, delays) so retry and failure paths run against real sockets.

The carrier emulators (twilio_api, exotel_api) can also play each created call out as the
carrier would, by a fate scripted per number (`fates`): status callbacks, and for an answered
call the media WebSocket with a callee on the line (`carrier_line`); `carriers` starts both.

This module holds what they share: request recording, fault injection, Basic auth, the
gate every carrier REST request passes (`gate`), serving.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web


@dataclass(slots=True)
class RecordedRequest:
    method: str
    path: str
    form: list[tuple[str, str]]
    query: dict[str, str]
    user: str | None

    def field(self, name: str) -> str | None:
        """The first value of form field `name`."""
        return next((v for k, v in self.form if k == name), None)

    def fields(self, name: str) -> list[str]:
        return [v for k, v in self.form if k == name]


@dataclass
class Faults:
    """Fault injection: queued error statuses for the next requests, and a per-request delay."""

    statuses: deque[int] = field(default_factory=deque)
    delay_s: float = 0.0
    retry_after: str | None = None

    def fail_next(self, count: int, status: int = 500) -> None:
        self.statuses.extend([status] * count)

    def clear(self) -> None:
        self.statuses.clear()
        self.delay_s = 0.0
        self.retry_after = None


def basic_auth_user(request: web.Request, password_of: dict[str, str]) -> str | None:
    """The authenticated user name, or None when the Basic credentials do not match."""
    header = request.headers.get("Authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    if not sep or password_of.get(user) != password:
        return None
    return user


async def record(
    request: web.Request, requests: list[RecordedRequest], user: str | None
) -> RecordedRequest:
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        data = await request.post()
        form = [(k, v) for k, v in data.items() if isinstance(v, str)]
    entry = RecordedRequest(request.method, request.path, form, dict(request.query), user)
    requests.append(entry)
    return entry


@asynccontextmanager
async def serve(app: web.Application) -> AsyncIterator[str]:
    """Run `app` on 127.0.0.1, an ephemeral port; yield its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def apply_faults(faults: Faults) -> int | None:
    """Sleep the injected delay; return an injected error status, if one is queued."""
    if faults.delay_s:
        await asyncio.sleep(faults.delay_s)
    return faults.statuses.popleft() if faults.statuses else None


#: why a request is turned away before its handler runs: an injected fault, credentials that
#: do not match, or an account in the path other than the credentials'
Refusal = Literal["fault", "unauthenticated", "other_account"]
#: a carrier's error answer: (HTTP status, why, headers) -> the response
Refuse = Callable[[int, Refusal, dict[str, str] | None], web.Response]


async def gate(
    request: web.Request,
    requests: list[RecordedRequest],
    faults: Faults,
    password_of: dict[str, str],
    account: str,
    refuse: Refuse,
) -> tuple[RecordedRequest, web.Response | None]:
    """What every carrier REST request passes first: it is recorded (with its Basic user);
    then an injected fault answers, if one is queued (after the injected delay; 401 / 403
    are the carrier's statuses for the other two refusals); then the credentials; then the
    path's `{account}`, which must be `account`. The response is None when it may go on."""
    user = basic_auth_user(request, password_of)
    entry = await record(request, requests, user)
    injected = await apply_faults(faults)
    if injected is not None:
        headers = {"Retry-After": faults.retry_after} if faults.retry_after else None
        return entry, refuse(injected, "fault", headers)
    if user is None:
        return entry, refuse(401, "unauthenticated", None)
    if request.match_info["account"] != account:
        return entry, refuse(403, "other_account", None)
    return entry, None
