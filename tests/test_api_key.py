"""API keys: `Authorization: Bearer <DIALKIT_API_KEY>` on /api/*, compared in constant time,
over a real server socket."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from dialkit import apikeys
from dialkit.config import Settings
from dialkit.providers import Providers
from dialkit.server import start_server
from tests.conftest import RunningServer

KEY = "k3y-" + "x" * 40
DENIED = {"error": "missing or wrong API key (Authorization: Bearer …)"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keyed_server(
    base_settings: Settings, light_providers: Providers
) -> AsyncIterator[RunningServer]:
    settings = base_settings.model_copy(update={"api_key": SecretStr(KEY)})
    runner, port = await start_server(settings, light_providers, port=0)
    yield RunningServer(runner, port, settings)
    await runner.cleanup()


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer wrong",
        "Bearer " + "x" * len(KEY),  # as long as the key
        f"Bearer {KEY[:-1]}",  # a prefix of the key
        f"Bearer {KEY}x",  # the key and more
        f"Basic {KEY}",
        KEY,
        f"Bearer {KEY.upper()}",
    ],
)
async def test_wrong_or_missing_key_is_refused(
    keyed_server: RunningServer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    async with httpx.AsyncClient(base_url=keyed_server.http) as client:
        got = await client.get(f"/api/calls/{uuid.uuid4()}", headers=headers)
        assert got.status_code == 401 and got.json() == DENIED
        posted = await client.post("/api/calls", json={"carrier": "twilio"}, headers=headers)
        assert posted.status_code == 401 and posted.json() == DENIED


async def test_non_ascii_authorization_is_refused_not_an_error(keyed_server: RunningServer) -> None:
    # raw bytes on the wire: httpx would refuse to encode a non-ASCII header itself
    reader, writer = await asyncio.open_connection("127.0.0.1", keyed_server.port)
    writer.write(
        f"GET /api/calls/{uuid.uuid4()} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
        + "Authorization: Bearer clé-\udcff\r\n\r\n".encode("utf-8", "surrogateescape")
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    assert response.startswith(b"HTTP/1.1 401"), response[:200]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
async def test_right_key_is_accepted(keyed_server: RunningServer, scheme: str) -> None:
    async with httpx.AsyncClient(base_url=keyed_server.http) as client:
        auth = {"Authorization": f"{scheme} {KEY}"}
        got = await client.get(f"/api/calls/{uuid.uuid4()}", headers=auth)
    assert got.status_code == 404 and got.json() == {"error": "no such call"}


async def test_key_is_compared_with_compare_digest_on_bytes(
    keyed_server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[Any, Any]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(apikeys.hmac, "compare_digest", spy)
    async with httpx.AsyncClient(base_url=keyed_server.http) as client:
        await client.get(f"/api/calls/{uuid.uuid4()}", headers={"Authorization": "Bearer guess"})
    assert seen == [(b"guess", KEY.encode())]
