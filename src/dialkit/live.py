"""Registry of live calls: Redis when REDIS_URL is set (many nodes), in-process otherwise."""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis


class MemoryRegistry:
    name = "in-process"

    def __init__(self) -> None:
        self.calls: dict[str, dict[str, Any]] = {}

    async def register(self, call_id: str, info: dict[str, Any]) -> None:
        self.calls[call_id] = dict(info)

    async def update(self, call_id: str, info: dict[str, Any]) -> None:
        self.calls.setdefault(call_id, {}).update(info)

    async def unregister(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    async def count(self) -> int:
        return len(self.calls)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.calls.clear()


class RedisRegistry:
    """One hash per call plus a set of live ids; entries expire if a node dies."""

    name = "redis"

    def __init__(self, client: aioredis.Redis, prefix: str = "dialkit:", ttl_s: int = 4 * 3600) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, prefix: str = "dialkit:") -> RedisRegistry:
        return cls(aioredis.Redis.from_url(url, decode_responses=True), prefix)

    def _key(self, call_id: str) -> str:
        return f"{self.prefix}call:{call_id}"

    @property
    def _set(self) -> str:
        return f"{self.prefix}calls:live"

    async def register(self, call_id: str, info: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(call_id), mapping={k: json.dumps(v) for k, v in info.items()})
            pipe.expire(self._key(call_id), self.ttl_s)
            pipe.sadd(self._set, call_id)
            await pipe.execute()

    async def update(self, call_id: str, info: dict[str, Any]) -> None:
        await self.redis.hset(self._key(call_id), mapping={k: json.dumps(v) for k, v in info.items()})  # type: ignore[misc]

    async def unregister(self, call_id: str) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(call_id))
            pipe.srem(self._set, call_id)
            await pipe.execute()

    async def get(self, call_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self._key(call_id))  # type: ignore[misc]
        return {k: json.loads(v) for k, v in raw.items()} if raw else None

    async def count(self) -> int:
        return int(await self.redis.scard(self._set))  # type: ignore[misc]

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        await self.redis.aclose()
