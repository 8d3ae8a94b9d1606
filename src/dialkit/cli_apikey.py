"""`dialkit apikey create|list|revoke`: API keys in DATABASE_URL (or the embedded database).
`create` prints the new key once, on standard output; it cannot be shown again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from dialkit.config import Settings
from dialkit.logs import setup_logging
from dialkit.scopes import SCOPES

apikey_app = typer.Typer(no_args_is_help=True, help="API keys: create (shown once), list, revoke")
console = Console(stderr=True)
T = TypeVar("T")


def _with_db(action: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    settings = Settings()
    setup_logging("WARNING", settings.log_json)

    async def main() -> T:
        from dialkit import db

        url = settings.database_url
        if url is None:
            url = await asyncio.to_thread(db.embedded_database_url, settings.data_dir)
        pool = await db.create_pool(url, min_size=1, max_size=2)
        try:
            await db.migrate(pool)
            return await action(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    return typer.Exit(code)


@apikey_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="who or what uses the key (the actor in the audit log)")],
    scope: Annotated[str, typer.Option(help="read, write (implies read) or admin (implies write)")] = "read",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Create a key and print it once: store it now, it is not kept anywhere."""
    from dialkit import apikeys

    if scope not in SCOPES:
        raise _fail(f"--scope must be one of {', '.join(SCOPES)}", 2)
    try:
        apikeys.check_name(name)
        key, info = _with_db(lambda pool: apikeys.create(pool, name, scope))
    except apikeys.ApiKeyError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        print(json.dumps({**info.as_json(), "key": key}))
    else:
        print(key)
        console.print(f"created key {info.name!r} (scope {info.scope}, prefix {info.prefix}); "
                      "it is shown only this once", markup=False, highlight=False)


@apikey_app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON array")] = False,
    revoked: Annotated[bool, typer.Option(help="include revoked keys")] = True,
) -> None:
    """The keys: name, prefix, scope, created, last used, revoked (never the key)."""
    from dialkit import apikeys

    keys = _with_db(lambda pool: apikeys.list_keys(pool, include_revoked=revoked))
    if as_json:
        print(json.dumps([k.as_json() for k in keys]))
        return
    table = Table("name", "prefix", "scope", "created", "last used", "revoked")

    def when(value: Any) -> str:
        return value.strftime("%Y-%m-%d %H:%M") if value else "-"

    for k in keys:
        table.add_row(k.name, k.prefix, k.scope, when(k.created_at), when(k.last_used_at), when(k.revoked_at))
    Console().print(table)


@apikey_app.command("revoke")
def revoke(
    which: Annotated[str, typer.Argument(help="the key's name, its prefix, or the key itself")],
) -> None:
    """Revoke a key: from now on it is refused (401)."""
    from dialkit import apikeys

    try:
        info = _with_db(lambda pool: apikeys.revoke(pool, which))
    except apikeys.ApiKeyError as exc:
        raise _fail(str(exc)) from None
    console.print(f"revoked key {info.name!r} (prefix {info.prefix})", markup=False, highlight=False)
