"""Slow HTTP clients over raw sockets: a connection that does not finish its request headers
within DIALKIT_HTTP_HEADER_TIMEOUT_S, or its body within DIALKIT_HTTP_BODY_TIMEOUT_S, is
closed; it does not hold a socket open for as long as it likes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from dialkit.config import Settings
from dialkit.providers import Providers
from dialkit.server import start_server
from tests.conftest import RunningServer

#: only a guard so a broken server fails the test instead of hanging it
GUARD_S = 20.0


@pytest_asyncio.fixture(loop_scope="session")
async def impatient_server(base_settings: Settings, light_providers: Providers) -> AsyncIterator[RunningServer]:
    settings = base_settings.model_copy(update={"http_header_timeout_s": 1.0, "http_body_timeout_s": 1.0})
    runner, port = await start_server(settings, light_providers, port=0)
    yield RunningServer(runner, port, settings)
    await runner.cleanup()


async def _open(server: RunningServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", server.port)


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sent until it closed the connection."""
    got = b""
    async with asyncio.timeout(GUARD_S):
        while True:
            try:
                chunk = await reader.read(65536)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk


async def test_a_partial_header_line_then_nothing_is_disconnected(impatient_server: RunningServer) -> None:
    reader, writer = await _open(impatient_server)
    writer.write(b"POST /api/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
    await writer.drain()
    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_a_connection_that_sends_nothing_is_disconnected(impatient_server: RunningServer) -> None:
    reader, writer = await _open(impatient_server)
    assert await _closed_by_server(reader) == b""
    writer.close()


async def test_headers_trickled_a_line_at_a_time_are_cut_off(impatient_server: RunningServer) -> None:
    reader, writer = await _open(impatient_server)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    closed = False
    # fewer lines than aiohttp's header cap (128), which would end the connection anyway
    for i in range(100):  # 100 lines at 0.25 s take 25 s: far past the 1 s bound
        try:
            writer.write(f"X-Slow-{i}: {i}\r\n".encode())
            await writer.drain()
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        try:
            if await asyncio.wait_for(reader.read(65536), 0.25) == b"":
                closed = True
                break
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = True
            break
    assert closed
    writer.close()


async def test_a_body_that_never_arrives_gets_408_and_the_connection_closes(
    impatient_server: RunningServer,
) -> None:
    reader, writer = await _open(impatient_server)
    writer.write(
        b"POST /api/calls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 400\r\n\r\n{\"context\": {"
    )
    await writer.drain()
    answer = await _closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request body not received" in answer
    writer.close()


async def test_a_prompt_client_is_served_and_an_idle_keep_alive_connection_closed(
    impatient_server: RunningServer,
) -> None:
    reader, writer = await _open(impatient_server)
    writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    answer = await _closed_by_server(reader)
    assert answer.startswith(b"HTTP/1.1 200") and b'"status": "ok"' in answer
    writer.close()
