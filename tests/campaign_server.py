"""A running server with the campaign routes, for the campaign and lead-upload tests, and
the helpers they share (a campaign body, a lead CSV)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from aiohttp import web

from dialkit.config import Settings
from dialkit.providers import Providers
from dialkit.server import build_app
from emulators.twilio_api import running_twilio_api
from media.twilio_control import TwilioCallControl
from tests.conftest import RunningServer

PLAYBOOK = "collections-default@1.0"
HEADER = "name,phone,amount_due,currency,due_date,account_ref,birth_year,creditor,callback_number"


def campaign_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": "December arrears", "playbook": PLAYBOOK,
                            "caller_id": "+12025550100", "max_concurrent": 3}
    body.update(overrides)
    return body


def lead_row(i: int, phone: str | None = None, amount: str = "120.50", **extra: str) -> str:
    phone = phone or f"+1202555{i % 10000:04d}"
    row = f"Person {i},{phone},{amount},USD,2026-12-15,ACC-{i},1980,Acme Bank,+12025550111"
    return row + "".join("," + v for v in extra.values())


def lead_csv(rows: list[str], header: str = HEADER) -> bytes:
    return ("\n".join([header, *rows]) + "\n").encode()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def campaign_server(
    base_settings: Settings, light_providers: Providers
) -> AsyncIterator[RunningServer]:
    # campaigns start only on a configured carrier: an emulated Twilio account (no job
    # worker runs in this server, so nothing is dialled)
    async with running_twilio_api() as twilio:
        control = TwilioCallControl(twilio.account_sid, twilio.auth_token, base_url=twilio.base_url)
        light_providers.controls["twilio"] = control
        try:
            async for server in _serve(base_settings, light_providers):
                yield server
        finally:
            light_providers.controls.pop("twilio", None)
            await control.aclose()


async def _serve(settings: Settings, providers: Providers) -> AsyncIterator[RunningServer]:
    app = build_app(settings, providers)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield RunningServer(runner, port, settings)
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def api(campaign_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=campaign_server.http, timeout=60) as client:
        yield client
