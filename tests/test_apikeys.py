"""API keys over a real PostgreSQL and a real server socket: keys are kept only as a
SHA-256, scopes nest (read < write < admin), a revoked key is refused, the bootstrap key
(DIALKIT_API_KEY) stays valid, the API is open on loopback only while no key exists, and
`dialkit apikey create|list|revoke` works as an operator would run it.

These tests use a database of their own: a key stored in the session's database would
close the API every other test reaches without one."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from dialkit import apikeys, db
from dialkit.apikeys import DENIED
from dialkit.config import Settings
from dialkit.logs import scrub_text
from dialkit.openapi import Routes
from dialkit.providers import Providers
from dialkit.scopes import SCOPES, allows
from dialkit.server import build_app
from tests.conftest import private_database

DIALKIT = str(Path(sys.executable).with_name("dialkit"))
BOOTSTRAP = "bootstrap-" + "b" * 40

probe = Routes(tag="probe")


@probe.get("/api/probe/read", scope="read")
async def probe_read(request: web.Request) -> dict[str, str]:
    return {"actor": request["actor"]}


@probe.post("/api/probe/write", scope="write")
async def probe_write(request: web.Request) -> dict[str, str]:
    return {"actor": request["actor"]}


@probe.delete("/api/probe/admin", scope="admin")
async def probe_admin(request: web.Request) -> dict[str, str]:
    return {"actor": request["actor"]}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def keys_db(admin_database_url: str) -> AsyncIterator[str]:
    async with private_database(admin_database_url, "dialkit_keys") as url:
        pool = await db.create_pool(url)
        await db.migrate(pool)
        await pool.close()
        yield url


@pytest_asyncio.fixture(loop_scope="session")
async def pool(keys_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(keys_db)
    await pool.execute("TRUNCATE api_keys")  # each test starts with no key
    yield pool
    await pool.close()


class Served:
    def __init__(self, base: str) -> None:
        self.base = base

    async def call(self, method: str, path: str, key: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with httpx.AsyncClient(base_url=self.base) as c:
            return await c.request(method, path, headers=headers)


async def _serve(settings: Settings, providers: Providers) -> tuple[web.AppRunner, Served]:
    app = build_app(settings, providers)
    probe.install(app)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, Served(f"http://127.0.0.1:{port}")


@pytest_asyncio.fixture(loop_scope="session")
async def served(pool: asyncpg.Pool, keys_db: str, base_settings: Settings,
                 light_providers: Providers) -> AsyncIterator[Served]:
    runner, served = await _serve(base_settings.model_copy(update={"database_url": keys_db}), light_providers)
    yield served
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def served_with_bootstrap(pool: asyncpg.Pool, keys_db: str, base_settings: Settings,
                                light_providers: Providers) -> AsyncIterator[Served]:
    settings = base_settings.model_copy(update={"database_url": keys_db, "api_key": SecretStr(BOOTSTRAP)})
    runner, served = await _serve(settings, light_providers)
    yield served
    await runner.cleanup()


# ---- keys and scopes ---------------------------------------------------------------------


def test_a_key_has_its_prefix_and_256_random_bits() -> None:
    keys = {apikeys.new_key() for _ in range(200)}
    assert len(keys) == 200
    for key, prefix in keys:
        match = apikeys.KEY_RE.fullmatch(key)
        assert match and match.group(1) == prefix and len(match.group(2)) == 43


def test_scopes_nest() -> None:
    assert SCOPES == ("read", "write", "admin")
    got = {(g, n): allows(g, n) for g in SCOPES for n in SCOPES}
    assert [pair for pair, ok in got.items() if ok] == [
        ("read", "read"), ("write", "read"), ("write", "write"),
        ("admin", "read"), ("admin", "write"), ("admin", "admin"),
    ]


async def test_only_a_hash_of_the_key_is_stored(pool: asyncpg.Pool) -> None:
    key, info = await apikeys.create(pool, "ci-bot", "write")
    assert key.startswith(f"dk_{info.prefix}_") and info.scope == "write"
    row = await pool.fetchrow("SELECT * FROM api_keys WHERE id = $1", info.id)
    assert bytes(row["key_sha256"]) == hashlib.sha256(key.encode()).digest()
    secret = key.rsplit("_", 1)[1]
    dumped = json.dumps({k: (v.hex() if isinstance(v, bytes) else str(v)) for k, v in dict(row).items()})
    assert secret not in dumped and key not in dumped


async def test_names_are_checked_and_unique_among_live_keys(pool: asyncpg.Pool) -> None:
    await apikeys.create(pool, "reporting", "read")
    with pytest.raises(apikeys.ApiKeyError, match="exists"):
        await apikeys.create(pool, "reporting", "admin")
    for bad in ("", "has space", "-dash-first", "x" * 65, "local", "Bootstrap"):
        with pytest.raises(apikeys.ApiKeyError):
            await apikeys.create(pool, bad, "read")
    with pytest.raises(apikeys.ApiKeyError, match="scope must be one of"):
        await apikeys.create(pool, "other", "root")
    revoked = await apikeys.revoke(pool, "reporting")
    assert revoked.revoked_at is not None
    _, again = await apikeys.create(pool, "reporting", "read")  # a revoked key's name is free
    assert again.id != revoked.id
    with pytest.raises(apikeys.ApiKeyError, match="no live key"):
        await apikeys.revoke(pool, "nobody")
    assert [k.name for k in await apikeys.list_keys(pool, include_revoked=False)] == ["reporting"]


async def test_revoke_by_prefix_or_whole_key_and_the_audit_log(pool: asyncpg.Pool) -> None:
    _, a = await apikeys.create(pool, "a", "read")
    key_b, b = await apikeys.create(pool, "b", "admin", actor="ops")
    assert (await apikeys.revoke(pool, a.prefix)).id == a.id
    assert (await apikeys.revoke(pool, key_b)).id == b.id
    assert all(k.revoked_at for k in await apikeys.list_keys(pool))
    rows = await pool.fetch("SELECT actor, action, subject_type, subject_id, data FROM audit_log"
                            " WHERE subject_id = ANY($1::text[]) ORDER BY id", [str(a.id), str(b.id)])
    assert [(r["actor"], r["action"], r["subject_type"], r["data"]["event"], r["data"]["name"]) for r in rows] == [
        ("cli", "api_key", "api_key", "created", "a"), ("ops", "api_key", "api_key", "created", "b"),
        ("cli", "api_key", "api_key", "revoked", "a"), ("cli", "api_key", "api_key", "revoked", "b")]
    assert all(key_b.rsplit("_", 1)[1] not in str(dict(r)) for r in rows)


# ---- authentication over the server --------------------------------------------------------


async def test_open_on_loopback_until_a_key_exists(served: Served, pool: asyncpg.Pool) -> None:
    got = await served.call("DELETE", "/api/probe/admin")
    assert got.status_code == 200 and got.json() == {"actor": "local"}
    key, _ = await apikeys.create(pool, "first", "read")
    denied = await served.call("GET", "/api/probe/read")
    assert denied.status_code == 401 and denied.json() == {"error": DENIED}
    assert denied.headers["WWW-Authenticate"] == 'Bearer realm="dialkit"'
    assert (await served.call("GET", "/api/probe/read", key)).json() == {"actor": "first"}
    await apikeys.revoke(pool, "first")
    # revoking every key does not reopen the API
    assert (await served.call("GET", "/api/probe/read")).status_code == 401


async def test_each_scope_reaches_its_routes_and_no_further(served: Served, pool: asyncpg.Pool) -> None:
    keys = {scope: (await apikeys.create(pool, f"k-{scope}", scope))[0] for scope in SCOPES}
    routes = {"read": ("GET", "/api/probe/read"), "write": ("POST", "/api/probe/write"),
              "admin": ("DELETE", "/api/probe/admin")}
    for granted, key in keys.items():
        for needed, (method, path) in routes.items():
            got = await served.call(method, path, key)
            if allows(granted, needed):  # type: ignore[arg-type]
                assert got.status_code == 200 and got.json() == {"actor": f"k-{granted}"}
            else:
                assert got.status_code == 403
                assert got.json() == {"error": f"API key 'k-{granted}' has scope {granted}; this needs {needed}"}


async def test_unknown_tampered_and_revoked_keys_are_refused(served: Served, pool: asyncpg.Pool) -> None:
    key, info = await apikeys.create(pool, "ops", "admin")
    other, _ = apikeys.new_key()
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    same_prefix_other_secret = f"dk_{info.prefix}_{other.rsplit('_', 1)[1]}"
    for wrong in (other, tampered, same_prefix_other_secret, key.upper(), key[:-1], "dk_", "guess"):
        got = await served.call("GET", "/api/probe/read", wrong)
        assert got.status_code == 401 and got.json() == {"error": DENIED}, wrong
    async with httpx.AsyncClient(base_url=served.base) as c:
        basic = await c.get("/api/probe/read", headers={"Authorization": f"Basic {key}"})
    assert basic.status_code == 401
    await apikeys.revoke(pool, "ops")
    got = await served.call("GET", "/api/probe/read", key)
    assert got.status_code == 401 and got.json() == {"error": "API key 'ops' was revoked"}


async def test_use_is_recorded(served: Served, pool: asyncpg.Pool) -> None:
    key, info = await apikeys.create(pool, "reader", "read")
    assert info.last_used_at is None
    assert (await served.call("GET", "/api/probe/read", key)).status_code == 200
    used = await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", info.id)
    assert used is not None
    assert (await served.call("GET", "/api/probe/read", key)).status_code == 200
    # refreshed at most once a minute: the second use writes nothing
    assert await pool.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", info.id) == used


async def test_the_bootstrap_key_stays_an_admin_key_beside_stored_keys(
    served_with_bootstrap: Served, pool: asyncpg.Pool
) -> None:
    served = served_with_bootstrap
    assert (await served.call("GET", "/api/probe/read")).status_code == 401  # no stored key, still closed
    got = await served.call("DELETE", "/api/probe/admin", BOOTSTRAP)
    assert got.status_code == 200 and got.json() == {"actor": "bootstrap"}
    key, _ = await apikeys.create(pool, "writer", "write")
    assert (await served.call("POST", "/api/probe/write", key)).json() == {"actor": "writer"}
    assert (await served.call("DELETE", "/api/probe/admin", key)).status_code == 403
    assert (await served.call("GET", "/api/probe/read", BOOTSTRAP + "x")).status_code == 401


async def test_media_webhooks_health_and_docs_need_no_key(served: Served, pool: asyncpg.Pool) -> None:
    await apikeys.create(pool, "someone", "admin")
    async with httpx.AsyncClient(base_url=served.base) as c:
        assert (await c.get("/api/calls/live")).status_code == 401
        assert (await c.get("/health")).status_code == 200
        assert (await c.get("/openapi.json")).status_code == 200
        assert (await c.get("/docs")).status_code == 200
        # the carriers' callbacks have their own authentication (a signature): not a 401
        amd = await c.post("/carriers/twilio/amd", data={"CallSid": "CA1", "AnsweredBy": "human"})
        assert amd.status_code not in (401, 200)
    # the media WebSocket opens without an API key (its media token is checked in the stream)
    reader, writer = await asyncio.open_connection("127.0.0.1", int(served.base.rsplit(":", 1)[1]))
    writer.write(b"GET /media/twilio HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.startswith(b"HTTP/1.1 101"), status


def test_keys_are_masked_in_log_lines(tmp_path: Path) -> None:
    key, prefix = apikeys.new_key()
    assert scrub_text(f"using {key} now") == f"using dk_{prefix}_*** now"
    script = f"""
import logging, structlog
from dialkit.logs import setup_logging
setup_logging("DEBUG")
structlog.get_logger("t").info("request", header="Bearer {key}", note="key {key}", path="/x?k={key}")
logging.getLogger("aiohttp.access").info("GET /api with %s", {key!r})
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert key.rsplit("_", 1)[1] not in run.stderr and "GET /api with" in run.stderr


# ---- the command line -------------------------------------------------------------------


def _cli(keys_db: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": keys_db, "DIALKIT_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    return subprocess.run([DIALKIT, "apikey", *args], env=env, capture_output=True, text=True, timeout=120)


async def test_cli_create_list_revoke(served: Served, keys_db: str, tmp_path: Path) -> None:
    made = await asyncio.to_thread(_cli, keys_db, tmp_path, "create", "--name", "crm-sync", "--scope", "write")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert apikeys.KEY_RE.fullmatch(key) and made.stdout.count("\n") == 1
    assert "shown only this once" in made.stderr and key not in made.stderr
    assert (await served.call("POST", "/api/probe/write", key)).json() == {"actor": "crm-sync"}

    listed = await asyncio.to_thread(_cli, keys_db, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["scope"], r["prefix"], r["revoked_at"]) for r in rows] == [
        ("crm-sync", "write", key.split("_")[1], None)]
    assert rows[0]["last_used_at"] is not None
    assert key.rsplit("_", 1)[1] not in listed.stdout
    table = await asyncio.to_thread(_cli, keys_db, tmp_path, "list")
    assert "crm-sync" in table.stdout and key.rsplit("_", 1)[1] not in table.stdout

    twice = await asyncio.to_thread(_cli, keys_db, tmp_path, "create", "--name", "crm-sync")
    assert twice.returncode == 1 and "exists" in twice.stderr
    bad = await asyncio.to_thread(_cli, keys_db, tmp_path, "create", "--name", "x", "--scope", "root")
    assert bad.returncode == 2 and "--scope must be one of read, write, admin" in bad.stderr

    gone = await asyncio.to_thread(_cli, keys_db, tmp_path, "revoke", "crm-sync")
    assert gone.returncode == 0 and "revoked key 'crm-sync'" in gone.stderr
    assert (await served.call("POST", "/api/probe/write", key)).status_code == 401
    again = await asyncio.to_thread(_cli, keys_db, tmp_path, "revoke", "crm-sync")
    assert again.returncode == 1 and "no live key" in again.stderr
    after: list[dict[str, Any]] = json.loads((await asyncio.to_thread(_cli, keys_db, tmp_path, "list", "--json")).stdout)
    assert after[0]["revoked_at"] is not None
