"""Safe defaults: the server refuses to listen beyond loopback without DIALKIT_API_KEY.

`dialkit serve` runs in its own process here, as an operator would start it."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from dialkit import apikeys, db
from dialkit.config import Settings, UnsafeBindError, is_loopback_host
from dialkit.providers import Providers
from dialkit.server import start_server
from tests.conftest import private_database

ROOT = Path(__file__).resolve().parents[1]
DIALKIT = str(Path(sys.executable).with_name("dialkit"))
KEY = "k3y-" + "x" * 40
DENIED = {"error": "missing or wrong API key (Authorization: Bearer …)"}


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
        ("localhost", True), ("LocalHost", True),
        ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
        ("192.168.1.2", False), ("example.com", False), ("localhost.example.com", False),
        ("128.0.0.1", False),
    ],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_blank_api_key_counts_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIALKIT_API_KEY", "  ")
    assert Settings().api_key is None
    assert Settings(api_key=SecretStr("")).api_key is None
    with pytest.raises(UnsafeBindError, match="DIALKIT_API_KEY"):
        Settings(host="0.0.0.0").check_bind()
    Settings(host="0.0.0.0", api_key=SecretStr(KEY)).check_bind()
    Settings(host="127.0.0.1").check_bind()


async def test_start_server_refuses_a_public_address_without_key(
    base_settings: Settings, light_providers: Providers
) -> None:
    for host in ("0.0.0.0", "::", ""):
        settings = base_settings.model_copy(update={"host": host, "api_key": None})
        with pytest.raises(UnsafeBindError) as err:
            await start_server(settings, light_providers, port=0)
        assert "DIALKIT_API_KEY" in str(err.value) and "\n" not in str(err.value)


async def test_start_server_on_a_public_address_with_key(
    base_settings: Settings, light_providers: Providers
) -> None:
    settings = base_settings.model_copy(update={"host": "0.0.0.0", "api_key": SecretStr(KEY)})
    runner, port = await start_server(settings, light_providers, port=0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get(f"/api/calls/{uuid.uuid4()}")).status_code == 401
            auth = {"Authorization": f"Bearer {KEY}"}
            assert (await client.get(f"/api/calls/{uuid.uuid4()}", headers=auth)).status_code == 404
    finally:
        await runner.cleanup()


# ---- `dialkit serve` in its own process ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(base_settings: Settings, tmp_path: Path, **extra: str) -> dict[str, str]:
    dropped = ("DIALKIT_API_KEY", "DIALKIT_HOST", "REDIS_URL")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({
        "DATABASE_URL": str(base_settings.database_url),
        "DIALKIT_STT": "null",
        "DIALKIT_TTS": "tone",
        "DIALKIT_DATA_DIR": str(tmp_path),
        "DIALKIT_LOG_LEVEL": "WARNING",
        **extra,
    })
    return env


@pytest.mark.parametrize(
    ("args", "extra_env"),
    [
        (["--host", "0.0.0.0"], {}),
        (["--host", "0.0.0.0", "--workers", "2"], {}),
        (["--host", "::"], {"DIALKIT_API_KEY": ""}),
        ([], {"DIALKIT_HOST": "0.0.0.0"}),
    ],
    ids=["host-flag", "workers", "blank-key", "host-env"],
)
async def test_serve_refuses_public_address_without_key(
    base_settings: Settings, tmp_path: Path, args: list[str], extra_env: dict[str, str]
) -> None:
    # the database is asked whether a stored key guards the API: this one holds none
    env = _env(base_settings, tmp_path, **extra_env)
    proc = await asyncio.create_subprocess_exec(
        DIALKIT, "serve", "--port", str(_free_port()), *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: refusing to listen on ") and "DIALKIT_API_KEY" in lines[0]
    assert not out


async def test_serve_on_public_address_with_a_stored_key_guards_the_api(
    base_settings: Settings, admin_database_url: str, tmp_path: Path
) -> None:
    """No DIALKIT_API_KEY, but an unrevoked key in the database: the API needs a key, so the
    server may listen beyond loopback; once every key is revoked it refuses again."""
    async with private_database(admin_database_url, "dialkit_bind") as url:
        await _serve_with_a_stored_key(base_settings.model_copy(update={"database_url": url}), tmp_path)


async def _serve_with_a_stored_key(settings: Settings, tmp_path: Path) -> None:
    pool = await db.create_pool(str(settings.database_url), min_size=1, max_size=2)
    try:
        await db.migrate(pool)
        key, info = await apikeys.create(pool, "ops", "read")
        env = _env(settings, tmp_path)
        proc, port = await _serve(env, "--host", "0.0.0.0")
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                call = f"/api/calls/{uuid.uuid4()}"
                assert (await client.get(call)).status_code == 401
                ok = await client.get(call, headers={"Authorization": f"Bearer {key}"})
                assert ok.status_code == 404
        finally:
            await _stop(proc)
        await apikeys.revoke(pool, info.prefix)
        proc = await asyncio.create_subprocess_exec(
            DIALKIT, "serve", "--port", str(_free_port()), "--host", "0.0.0.0", env=env, cwd=ROOT,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 2 and b"refusing to listen" in err, err
    finally:
        await pool.close()


async def _serve(env: dict[str, str], *args: str) -> tuple[asyncio.subprocess.Process, int]:
    port = _free_port()
    proc = await asyncio.create_subprocess_exec(
        DIALKIT, "serve", "--port", str(port), *args, env=env, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        for _ in range(300):
            if proc.returncode is not None:
                break
            try:
                if (await client.get("/health")).status_code == 200:
                    return proc, port
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    proc.terminate()
    err = await proc.stderr.read() if proc.stderr else b""
    raise AssertionError(f"dialkit serve did not come up: {err.decode()[-2000:]}")


async def _stop(proc: asyncio.subprocess.Process) -> bytes:
    proc.terminate()
    await asyncio.wait_for(proc.wait(), 15)
    return await proc.stderr.read() if proc.stderr else b""


async def test_serve_on_public_address_with_key_guards_the_api(
    base_settings: Settings, tmp_path: Path
) -> None:
    env = _env(base_settings, tmp_path, DIALKIT_API_KEY=KEY)
    proc, port = await _serve(env, "--host", "0.0.0.0")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            call = f"/api/calls/{uuid.uuid4()}"
            denied = await client.get(call)
            assert denied.status_code == 401 and denied.json() == DENIED
            wrong = await client.get(call, headers={"Authorization": "Bearer not-the-key"})
            assert wrong.status_code == 401 and wrong.json() == DENIED
            right = await client.get(call, headers={"Authorization": f"Bearer {KEY}"})
            assert right.status_code == 404
    finally:
        err = await _stop(proc)
    assert KEY.encode() not in err


async def test_serve_on_loopback_without_key_stays_open(
    base_settings: Settings, tmp_path: Path
) -> None:
    """`make run`: the default bind (127.0.0.1) needs no key."""
    proc, port = await _serve(_env(base_settings, tmp_path))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            assert (await client.get(f"/api/calls/{uuid.uuid4()}")).status_code == 404
    finally:
        await _stop(proc)
