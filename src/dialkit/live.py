"""What nodes share while calls are live: the registry of calls in progress, the routing of a
carrier's answering-machine verdict to the node that holds the call, and pending Exotel
transfers. Redis when REDIS_URL is set (many nodes), in-process otherwise (one node).

Redis keys, all under the configured prefix:

- `call:{call_id}`: hash of the call's entry (carrier, started, kind, node, call_sid; JSON
  values), expiring after `ttl_s`.
- `live:calls`: sorted set of live call ids scored by the time their entry expires. Every node
  refreshes its own calls each `ttl_s / 3` (heartbeat); readers drop lower scores first, so
  the calls of a node that died stop being listed within `ttl_s`.
- `live:sid:{call_sid}`: the node holding that carrier call SID, expiring and refreshed alike.
- `node:{node}`: one node's pub/sub channel; a verdict for one of its calls is published
  there with a `reply:{uuid}` list, onto which the node pushes "1" (delivered) or "0".
- `transfer:{call_sid}`: a pending Exotel transfer (JSON), expiring after `transfer_ttl_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from media.exotel_control import TransferTarget

log = structlog.get_logger("dialkit.live")

#: delivers a verdict to a session of this node: (call_sid, answered_by) -> True if one took it
VerdictHandler = Callable[[str, str], bool]


def node_id() -> str:
    """This process's name among the nodes: a random id and the pid (pids get reused). It is
    sent to clients (X-Dialkit-Node), so it carries no host name; the start-up log line
    pairs it with the host."""
    return f"node-{secrets.token_hex(4)}-{os.getpid()}"


def _listing(calls: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    entries = [{"call_id": call_id, **info} for call_id, info in calls.items()]
    return sorted(entries, key=lambda e: (float(e.get("started") or 0), e["call_id"]))


class MemoryRegistry:
    """One node: the live calls of this process, and verdicts delivered in-process."""

    name = "in-process"

    def __init__(self, node: str | None = None) -> None:
        self.node = node or node_id()
        self.calls: dict[str, dict[str, Any]] = {}
        self._deliver: VerdictHandler | None = None

    async def start(self, deliver: VerdictHandler) -> None:
        self._deliver = deliver

    async def register(self, call_id: str, info: dict[str, Any]) -> None:
        self.calls[call_id] = {**info, "node": self.node}

    async def update(self, call_id: str, info: dict[str, Any]) -> None:
        self.calls.setdefault(call_id, {"node": self.node}).update(info)

    async def unregister(self, call_id: str) -> None:
        self.calls.pop(call_id, None)

    async def live(self) -> list[dict[str, Any]]:
        return _listing(self.calls)

    async def count(self) -> int:
        return len(self.calls)

    async def deliver_verdict(self, call_sid: str, answered_by: str) -> bool:
        return self._deliver is not None and self._deliver(call_sid, answered_by)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self.calls.clear()


class RedisRegistry:
    """Many nodes: entries in Redis kept alive by each node's heartbeat, verdicts routed to
    the owning node over its pub/sub channel."""

    name = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "dialkit:",
        ttl_s: float = 30.0,
        node: str | None = None,
        reply_timeout_s: float = 2.0,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("registry ttl_s must be positive")
        self.redis = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.node = node or node_id()
        self.reply_timeout_s = reply_timeout_s
        # this node's calls, kept so the heartbeat can rewrite entries Redis let expire
        self._local: dict[str, dict[str, Any]] = {}
        self._deliver: VerdictHandler | None = None
        self._pubsub: Any = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_url(cls, url: str, prefix: str = "dialkit:", **kwargs: Any) -> RedisRegistry:
        return cls(aioredis.Redis.from_url(url, decode_responses=True), prefix, **kwargs)

    def _key(self, call_id: str) -> str:
        return f"{self.prefix}call:{call_id}"

    def _sid_key(self, call_sid: str) -> str:
        return f"{self.prefix}live:sid:{call_sid}"

    def _channel(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    @property
    def _live(self) -> str:
        return f"{self.prefix}live:calls"

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))

    def transfer_store(self, ttl_s: float = 300.0) -> RedisTransferStore:
        return RedisTransferStore(self.redis, self.prefix, ttl_s)

    async def start(self, deliver: VerdictHandler) -> None:
        """Listen on this node's channel and start the heartbeat."""
        self._deliver = deliver
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        await self._pubsub.subscribe(self._channel(self.node))
        self._tasks = [
            asyncio.create_task(self._listen(), name="registry-listen"),
            asyncio.create_task(self._heartbeat(), name="registry-heartbeat"),
        ]

    def _write(self, pipe: Any, call_id: str, entry: dict[str, Any]) -> None:
        pipe.hset(self._key(call_id), mapping={k: json.dumps(v) for k, v in entry.items()})
        pipe.pexpire(self._key(call_id), self._ttl_ms)
        pipe.zadd(self._live, {call_id: time.time() + self.ttl_s})
        sid = entry.get("call_sid")
        if isinstance(sid, str) and sid:
            pipe.set(self._sid_key(sid), self.node, px=self._ttl_ms)

    async def register(self, call_id: str, info: dict[str, Any]) -> None:
        entry = {**info, "node": self.node}
        self._local[call_id] = entry
        async with self.redis.pipeline(transaction=True) as pipe:
            self._write(pipe, call_id, entry)
            await pipe.execute()

    async def update(self, call_id: str, info: dict[str, Any]) -> None:
        entry = self._local.setdefault(call_id, {"node": self.node})
        entry.update(info)
        async with self.redis.pipeline(transaction=True) as pipe:
            self._write(pipe, call_id, entry)
            await pipe.execute()

    async def unregister(self, call_id: str) -> None:
        entry = self._local.pop(call_id, None) or {}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(call_id))
            pipe.zrem(self._live, call_id)
            if entry.get("call_sid"):
                pipe.delete(self._sid_key(entry["call_sid"]))
            await pipe.execute()

    async def refresh(self) -> None:
        """The heartbeat: push this node's entries' expiry `ttl_s` ahead."""
        if not self._local:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id, entry in list(self._local.items()):
                self._write(pipe, call_id, entry)
            await pipe.execute()

    async def get(self, call_id: str) -> dict[str, Any] | None:
        raw = await self.redis.hgetall(self._key(call_id))  # type: ignore[misc]
        return {k: json.loads(v) for k, v in raw.items()} if raw else None

    async def live(self) -> list[dict[str, Any]]:
        """Every node's live calls; entries whose node stopped refreshing them are pruned."""
        await self.redis.zremrangebyscore(self._live, "-inf", time.time())
        ids: list[str] = await self.redis.zrange(self._live, 0, -1)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for call_id in ids:
                pipe.hgetall(self._key(call_id))
            rows = await pipe.execute()
        calls: dict[str, dict[str, Any]] = {}
        gone: list[str] = []
        for call_id, raw in zip(ids, rows, strict=True):
            if raw:
                calls[call_id] = {k: json.loads(v) for k, v in raw.items()}
            else:
                gone.append(call_id)
        if gone:
            await self.redis.zrem(self._live, *gone)
        return _listing(calls)

    async def count(self) -> int:
        return int(await self.redis.zcount(self._live, time.time(), "+inf"))

    async def deliver_verdict(self, call_sid: str, answered_by: str) -> bool:
        """Hand a verdict to whichever node holds the call; True once that node took it."""
        try:
            node = await self.redis.get(self._sid_key(call_sid))
            if node is None or node == self.node:
                return self._deliver_here(call_sid, answered_by)
            reply = f"{self.prefix}reply:{uuid.uuid4().hex}"
            message = json.dumps({"call_sid": call_sid, "answered_by": answered_by, "reply": reply})
            if await self.redis.publish(self._channel(node), message) == 0:
                return self._deliver_here(call_sid, answered_by)  # that node is gone
            answer = await self.redis.blpop([reply], timeout=self.reply_timeout_s)  # type: ignore[misc, arg-type]
        except (RedisError, OSError) as exc:
            log.warning("verdict_routing_failed", call_sid=call_sid[-6:], error=type(exc).__name__)
            return self._deliver_here(call_sid, answered_by)
        if answer is None:
            log.warning("verdict_not_acknowledged", call_sid=call_sid[-6:], node=node)
            return False
        return bool(answer[1] == "1")

    def _deliver_here(self, call_sid: str, answered_by: str) -> bool:
        return self._deliver is not None and self._deliver(call_sid, answered_by)

    async def _on_message(self, data: str) -> None:
        try:
            msg = json.loads(data)
            call_sid, answered_by, reply = msg["call_sid"], msg["answered_by"], msg["reply"]
            if not all(isinstance(v, str) for v in (call_sid, answered_by, reply)):
                raise TypeError("fields must be strings")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("node_message_refused", error=str(exc)[:80])
            return
        if not reply.startswith(f"{self.prefix}reply:"):
            log.warning("node_message_refused", error="reply key outside the prefix")
            return
        delivered = self._deliver_here(call_sid, answered_by)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(reply, "1" if delivered else "0")
            pipe.expire(reply, 10)
            await pipe.execute()

    async def _listen(self) -> None:
        while True:
            try:
                msg = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None and msg.get("type") == "message":
                    await self._on_message(msg["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the listener must outlive a Redis hiccup
                log.warning("node_channel_error", error=type(exc).__name__)
                await asyncio.sleep(1.0)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                log.warning("registry_heartbeat_failed", error=type(exc).__name__)

    async def ping(self) -> bool:
        return bool(await self.redis.ping())

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._local:  # this node is leaving: its calls end with it
            with contextlib.suppress(RedisError, OSError):
                async with self.redis.pipeline(transaction=False) as pipe:
                    for call_id, entry in self._local.items():
                        pipe.delete(self._key(call_id))
                        pipe.zrem(self._live, call_id)
                        if entry.get("call_sid"):
                            pipe.delete(self._sid_key(entry["call_sid"]))
                    await pipe.execute()
            self._local.clear()
        if self._pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._pubsub.aclose()
        await self.redis.aclose()


Registry = MemoryRegistry | RedisRegistry


class RedisTransferStore:
    """Pending Exotel transfers in Redis, so the Connect applet's request may reach any node."""

    def __init__(self, client: aioredis.Redis, prefix: str = "dialkit:", ttl_s: float = 300.0) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl_s * 1000))

    def _key(self, call_sid: str) -> str:
        return f"{self.prefix}transfer:{call_sid}"

    async def put(self, call_sid: str, target: TransferTarget) -> None:
        value = json.dumps({"to_number": target.to_number, "caller_id": target.caller_id})
        await self.redis.set(self._key(call_sid), value, px=self.ttl_ms)

    async def take(self, call_sid: str) -> TransferTarget | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(self._key(call_sid))
            pipe.delete(self._key(call_sid))
            raw, _ = await pipe.execute()
        if raw is None:
            return None
        data = json.loads(raw)
        return TransferTarget(data["to_number"], data.get("caller_id"))
