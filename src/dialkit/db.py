"""PostgreSQL: the connection pool, ordered idempotent migrations, and the embedded
server (`pgserver`) used when DATABASE_URL is unset.

The migrations are package data (`dialkit/sql/NNN_*.sql`), read through importlib.resources,
so an installed wheel migrates as well as a source checkout."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import structlog

log = structlog.get_logger("dialkit.db")

SQL_DIR: Traversable = resources.files("dialkit") / "sql"
MIGRATION_LOCK = 0x6469616C  # advisory lock id: several workers may start at once


def embedded_database_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in data_dir/pgdata; returns its URL."""
    import pgserver

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(pgdata), cleanup_mode=None)
    return str(server.get_uri())


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=_json_text, decoder=orjson.loads, schema="pg_catalog")


def _json_text(value: object) -> str:
    return orjson.dumps(value).decode()


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """No session state is ever left on a connection (no SET, LISTEN, cursors or held
    advisory locks: the migration lock is released explicitly), so returning one to the
    pool needs no `RESET ALL; UNLISTEN *; ...` round trip after every write."""

    def get_reset_query(self) -> str:
        return ""


async def create_pool(url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, init=_init_connection, connection_class=_Connection
    )
    assert pool is not None
    return pool


def migration_files(sql_dir: Traversable = SQL_DIR) -> list[Traversable]:
    """The numbered migrations (`NNN_name.sql`) in order; an install without any is broken."""
    entries = sql_dir.iterdir() if sql_dir.is_dir() else iter(())
    found = sorted(
        (p for p in entries if p.name.endswith(".sql") and p.name[:3].isdigit()),
        key=lambda p: p.name,
    )
    if not found:
        raise RuntimeError(f"no migrations (NNN_name.sql) found in {sql_dir}")
    return found


async def migrate(pool: asyncpg.Pool, sql_dir: Traversable = SQL_DIR) -> list[str]:
    """Apply migrations not yet applied, in order, each in its own transaction."""
    files = migration_files(sql_dir)
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for path in files:
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", path.name)
                applied.append(path.name)
                log.info("migration_applied", version=path.name)
            if await _apply_job_schema(conn):
                applied.append(JOB_SCHEMA)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied


#: what `migrate` reports when it created the job queue's tables
JOB_SCHEMA = "procrastinate schema"


async def _apply_job_schema(conn: asyncpg.Connection) -> bool:
    """Create procrastinate's tables (the durable job queue, see dialkit.jobs) unless they
    exist. Its schema file is not idempotent, so the table's presence decides; this runs
    under the migration lock, so two nodes starting at once cannot both create it."""
    if await conn.fetchval("SELECT to_regclass('procrastinate_jobs') IS NOT NULL"):
        return False
    from procrastinate.schema import SchemaManager

    async with conn.transaction():
        await conn.execute(SchemaManager.get_schema())
    log.info("migration_applied", version=JOB_SCHEMA)
    return True


async def ping(pool: asyncpg.Pool) -> dict[str, Any]:
    async with pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return {"ok": True}
