"""API keys and the authentication of API requests.

A key reads `dk_<prefix>_<secret>`: 8 hex characters found in the clear in the database,
and 256 random bits. Only the SHA-256 of the whole key is stored (a key this random needs
no slow hash), so a database dump holds no usable key. Scopes: read < write < admin
(dialkit.scopes).

Who may call a route (`authenticate`):
- `Authorization: Bearer <DIALKIT_API_KEY>` (the bootstrap key, compared in constant time)
  may call every route, as actor "bootstrap";
- `Authorization: Bearer dk_…` a stored, unrevoked key of a sufficient scope, as the key's name;
- anyone, as actor "local", while no DIALKIT_API_KEY is set and no key was ever stored
  (the server then listens on loopback only: Settings.check_bind; beyond loopback it needs
  DIALKIT_API_KEY or an unrevoked stored key). Once a key has been
  created the API needs a key, even after every key is revoked.
Else 401 (no key, an unknown or a revoked one) or 403 (a scope too low), with the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

import asyncpg

from campaigns import audit
from dialkit.scopes import SCOPES, Denied, Scope, allows

KEY_RE = re.compile(r"dk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
#: actors that are not key names
BOOTSTRAP_ACTOR = "bootstrap"
OPEN_ACTOR = "local"
RESERVED_NAMES = frozenset({BOOTSTRAP_ACTOR, OPEN_ACTOR})
DENIED = "missing or wrong API key (Authorization: Bearer …)"
TOUCH_EVERY = dt.timedelta(minutes=1)


class ApiKeyError(ValueError):
    """A key that cannot be created or revoked as asked; the message says why."""


@dataclass(frozen=True)
class KeyInfo:
    id: int
    name: str
    prefix: str
    scope: Scope
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "prefix": self.prefix, "scope": self.scope,
            **{k: (v.isoformat() if v else None) for k, v in (
                ("created_at", self.created_at), ("last_used_at", self.last_used_at),
                ("revoked_at", self.revoked_at))},
        }


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def new_key() -> tuple[str, str]:
    """A fresh key and its prefix."""
    prefix = secrets.token_hex(4)
    return f"dk_{prefix}_{secrets.token_urlsafe(32)}", prefix


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ApiKeyError("a key name is 1 to 64 letters, digits or . _ @ -, starting with a letter or digit")
    if name.lower() in RESERVED_NAMES:
        raise ApiKeyError(f"{name!r} is reserved (it names a caller without a stored key)")
    return name


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(row["id"], row["name"], row["prefix"], row["scope"], row["created_at"],
                   row["last_used_at"], row["revoked_at"])


async def create(pool: asyncpg.Pool, name: str, scope: str, actor: str = "cli") -> tuple[str, KeyInfo]:
    """Store a new key (and its audit row); returns the key (shown once, never stored)
    and its record."""
    check_name(name)
    if scope not in SCOPES:
        raise ApiKeyError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    for _ in range(5):  # a prefix already taken (1 in 4 billion per key) draws again
        key, prefix = new_key()
        try:
            async with pool.acquire() as conn, conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO api_keys (name, prefix, key_sha256, scope) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (prefix) DO NOTHING RETURNING *",
                    name, prefix, digest(key), scope,
                )
                if row is not None:
                    info = _info(row)
                    await _audit(conn, actor, "created", info)
                    return key, info
        except asyncpg.UniqueViolationError:
            raise ApiKeyError(f"a key named {name!r} exists; revoke it first or choose another name") from None
    raise RuntimeError("no free key prefix after 5 draws")


async def _audit(conn: asyncpg.Connection, actor: str, event: str, key: KeyInfo) -> None:
    await audit.record(conn, actor, audit.API_KEY, "api_key", str(key.id),
                       {"event": event, "name": key.name, "prefix": key.prefix, "scope": key.scope})


async def list_keys(conn: asyncpg.Pool | asyncpg.Connection, include_revoked: bool = True) -> list[KeyInfo]:
    rows = await conn.fetch(
        "SELECT * FROM api_keys WHERE $1 OR revoked_at IS NULL ORDER BY created_at, id", include_revoked
    )
    return [_info(r) for r in rows]


async def revoke(pool: asyncpg.Pool, which: str, actor: str = "cli") -> KeyInfo:
    """Revoke the live key of this name, or with this prefix (or given whole)."""
    async with pool.acquire() as conn, conn.transaction():
        key = await _revoke(conn, which)
        await _audit(conn, actor, "revoked", key)
    return key


async def _revoke(conn: asyncpg.Connection, which: str) -> KeyInfo:
    parsed = KEY_RE.fullmatch(which)
    if parsed is None:
        row = await conn.fetchrow(
            "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND name = $1 RETURNING *", which
        )
    else:
        row = None
    if row is None:
        row = await conn.fetchrow(
            "UPDATE api_keys SET revoked_at = now() WHERE revoked_at IS NULL AND prefix = $1 RETURNING *",
            parsed.group(1) if parsed else which,
        )
    if row is None:
        raise ApiKeyError(f"no live key named {which!r} or with that prefix")
    return _info(row)


async def any_stored(conn: asyncpg.Pool | asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys)"))


async def any_active(conn: asyncpg.Pool | asyncpg.Connection) -> bool:
    """Whether an unrevoked stored key exists (so the API cannot be called without one)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL)"))


def _matches_bootstrap(given: str, bootstrap: str) -> bool:
    # constant time, so response timing does not reveal how much of a guess was right
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), bootstrap.encode("utf-8", "surrogatepass"))


async def authenticate(
    authorization: str | None, needed: Scope, bootstrap: str | None, pool: asyncpg.Pool | None
) -> str:
    """The caller's name, or Denied (401 / 403 / 503) with the reason (see the module's text)."""
    scheme, _, given = (authorization or "").partition(" ")
    given = given.strip()
    bearer = scheme.lower() == "bearer"
    if bootstrap is not None and _matches_bootstrap(given, bootstrap) and bearer:
        return BOOTSTRAP_ACTOR
    parsed = KEY_RE.fullmatch(given) if bearer else None
    try:
        if parsed is not None and pool is not None:
            row = await pool.fetchrow("SELECT * FROM api_keys WHERE prefix = $1", parsed.group(1))
            if row is not None and hmac.compare_digest(bytes(row["key_sha256"]), digest(given)):
                return await _stored_key(pool, _info(row), needed)
        if bootstrap is None and pool is not None and not await any_stored(pool):
            return OPEN_ACTOR
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise Denied(503, f"API keys cannot be checked: database unavailable ({type(exc).__name__})") from None
    raise Denied(401, DENIED)


async def _stored_key(pool: asyncpg.Pool, key: KeyInfo, needed: Scope) -> str:
    if key.revoked_at is not None:
        raise Denied(401, f"API key {key.name!r} was revoked")
    if not allows(key.scope, needed):
        raise Denied(403, f"API key {key.name!r} has scope {key.scope}; this needs {needed}")
    now = dt.datetime.now(dt.UTC)
    if key.last_used_at is None or now - key.last_used_at >= TOUCH_EVERY:
        await pool.execute("UPDATE api_keys SET last_used_at = now() WHERE id = $1", key.id)
    return key.name
