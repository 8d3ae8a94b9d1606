"""`dialkit serve --workers 2`: two real processes on one port (SO_REUSEPORT) sharing a real
Redis under a private key prefix. Whichever worker a request lands on, it sees every live
call, routes an answering-machine verdict to the worker holding the call, and answers a
pending Exotel transfer."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis.asyncio as aioredis

from dialkit.config import Settings
from dialkit.live import RedisTransferStore
from emulators.twilio_api import running_twilio_api
from media.exotel_control import TransferTarget
from media.twilio_signature import twilio_signature
from tests.carrier_client import DEMO_CONTEXT, TwilioClient
from tests.test_call_end_transfer import next_mark

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
NODE = "X-Dialkit-Node"
SILENCE = b"\xff" * 160


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def serve_workers(env: dict[str, str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """`dialkit serve --workers 2` until both workers answer; SIGTERM and reaped afterwards."""
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("dialkit")), "serve", "--workers", "2", "--port", str(port),
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    children: list[psutil.Process] = []
    try:
        nodes: set[str] = set()
        for _ in range(600):
            if proc.returncode is not None or len(nodes) == 2:
                break
            with contextlib.suppress(httpx.TransportError):
                async with httpx.AsyncClient() as fresh:  # a new connection: either worker
                    resp = await fresh.get(f"http://127.0.0.1:{port}/health")
                    nodes.add(resp.json()["node"])
                    continue
            await asyncio.sleep(0.1)
        if len(nodes) < 2:
            err = await proc.stderr.read() if proc.stderr and proc.returncode is not None else b""
            raise AssertionError(f"both workers never answered (saw {nodes}): {err.decode()[-2000:]}")
        children = psutil.Process(proc.pid).children(recursive=True)
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()
        assert not alive, f"processes outlived `dialkit serve`: {alive}"


async def feed_silence(client: TwilioClient) -> None:
    """The caller's side stays on the line: inbound silence every 100 ms."""
    with contextlib.suppress(Exception):
        while True:
            await client.media(SILENCE)
            await asyncio.sleep(0.1)


async def on_node(base: str, node: str, tries: int = 100) -> httpx.AsyncClient:
    """A keep-alive client whose one connection landed on worker `node`."""
    for _ in range(tries):
        client = httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=1, keepalive_expiry=600))
        if (await client.get("/health")).headers[NODE] == node:
            return client
        await client.aclose()
    raise AssertionError(f"no connection landed on {node} in {tries} tries")


async def test_two_workers_share_live_calls_verdicts_and_transfers(
    base_settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    prefix = f"{base_settings.redis_prefix}workers-{uuid.uuid4().hex[:6]}:"
    raw = aioredis.Redis.from_url(str(base_settings.redis_url), decode_responses=True)
    async with running_twilio_api() as api:
        env = {
            **os.environ,
            "DATABASE_URL": str(base_settings.database_url),
            "REDIS_URL": str(base_settings.redis_url),
            "DIALKIT_REDIS_PREFIX": prefix,
            "DIALKIT_STT": "null",
            "DIALKIT_TTS": "tone",
            "DIALKIT_DATA_DIR": str(tmp_path),
            "DIALKIT_LOG_LEVEL": "WARNING",
            "TWILIO_ACCOUNT_SID": api.account_sid,
            "TWILIO_AUTH_TOKEN": api.auth_token,
            "DIALKIT_TWILIO_API_BASE": api.base_url,
            "EXOTEL_ACCOUNT_SID": "dialkit1",
            "EXOTEL_API_KEY": "test-api-key",
            "EXOTEL_API_TOKEN": "test-api-token",
            "DIALKIT_EXOTEL_WEBHOOK_SECRET": "test-exotel-webhook-secret",
        }
        env.pop("DIALKIT_API_KEY", None)
        clients: list[TwilioClient] = []
        feeders: list[asyncio.Task[None]] = []
        http: dict[str, httpx.AsyncClient] = {}
        try:
            async with serve_workers(env, port):
                async with httpx.AsyncClient(base_url=base) as one:
                    nodes = [(await one.get("/health")).json()["node"]]
                other = nodes[0]
                while other == nodes[0]:
                    async with httpx.AsyncClient(base_url=base) as fresh:
                        other = (await fresh.get("/health")).json()["node"]
                nodes.append(other)
                http = {node: await on_node(base, node) for node in nodes}

                # calls placed over fresh connections until each worker holds some
                owner: dict[str, str] = {}  # call_id -> node
                sids: dict[str, str] = {}
                while len(owner) < 4 or set(owner.values()) != set(nodes):
                    assert len(owner) < 16, f"calls never spread over both workers: {owner}"
                    call = api.add_call()
                    async with httpx.AsyncClient(base_url=base) as fresh:
                        created = (await fresh.post("/api/calls", json={
                            "carrier": "twilio", "context": DEMO_CONTEXT})).json()
                    client = await TwilioClient.connect(f"ws://127.0.0.1:{port}/media/twilio")
                    client.stream_sid = "MZ" + uuid.uuid4().hex
                    clients.append(client)
                    await client.connected()
                    await client.start(created["call_id"], created["token"], call.sid)
                    await next_mark(client)  # the session started: it is registered
                    feeders.append(asyncio.create_task(feed_silence(client)))
                    sids[created["call_id"]] = call.sid
                    async with httpx.AsyncClient(base_url=base) as fresh:
                        listing = (await fresh.get("/api/calls/live")).json()
                    owner[created["call_id"]] = next(
                        c["node"] for c in listing if c["call_id"] == created["call_id"])

                # every worker lists every call, asked over fresh connections
                answered: set[str] = set()
                for asked in range(40):
                    async with httpx.AsyncClient(base_url=base) as fresh:
                        resp = await fresh.get("/api/calls/live")
                    assert resp.status_code == 200
                    answered.add(resp.headers[NODE])
                    listed = {c["call_id"]: c for c in resp.json()}
                    assert set(listed) == set(owner)
                    for call_id, entry in listed.items():
                        assert entry["node"] == owner[call_id]
                        assert entry["call_sid"] == sids[call_id]
                    if answered == set(nodes) and asked >= 10:
                        break
                assert answered == set(nodes)

                # verdicts: each call gets one through each worker (one local, one routed); a
                # replay acts once, whichever worker it reaches (the claim is in Redis)
                amd_url = f"{base}/carriers/twilio/amd"

                async def verdict(node: str, call_sid: str, value: str) -> dict[str, Any]:
                    form = {"CallSid": call_sid, "AnsweredBy": value, "AccountSid": api.account_sid}
                    signature = twilio_signature(amd_url, form, api.auth_token)
                    resp = await http[node].post(
                        "/carriers/twilio/amd", data=form, headers={"X-Twilio-Signature": signature})
                    assert resp.status_code == 200 and resp.headers[NODE] == node
                    return dict(resp.json())

                for sid in sids.values():
                    for node, value in zip(nodes, ("human", "unknown"), strict=True):
                        assert await verdict(node, sid, value) == {"delivered": True}
                    assert await verdict(nodes[1], sid, "human") == {"delivered": False, "duplicate": True}
                for node in nodes:
                    assert await verdict(node, "CA" + "8" * 32, "human") == {"delivered": False}

                # a machine verdict received by the worker that does not hold the call
                target = next(cid for cid, node in owner.items() if node == nodes[0])
                target_client = clients[list(sids).index(target)]
                assert await verdict(nodes[1], sids[target], "machine_end_beep") == {"delivered": True}
                while True:  # the voicemail message; every mark echoed; then the REST hang-up
                    try:
                        name = await next_mark(target_client, timeout=10)
                    except Exception:
                        break
                    await target_client.mark(name)

                async def detail(call_id: str, ended: bool) -> dict[str, Any]:
                    for _ in range(100):
                        async with httpx.AsyncClient(base_url=base) as fresh:
                            body = dict((await fresh.get(f"/api/calls/{call_id}")).json())
                        if not ended or body["call"]["status"] in ("completed", "failed"):
                            return body
                        await asyncio.sleep(0.05)
                    return body

                ended = await detail(target, ended=True)
                assert [e["data"]["value"] for e in ended["events"] if e["kind"] == "answered_by"] == [
                    "human", "unknown", "machine_end_beep"]
                assert ended["outcome"]["outcome"] == "voicemail"
                assert any(e["kind"] == "hangup" for e in ended["events"])
                assert api.calls[sids[target]].status == "completed"
                for call_id in owner:
                    if call_id == target:
                        continue
                    events = (await detail(call_id, ended=False))["events"]
                    assert [e["data"]["value"] for e in events if e["kind"] == "answered_by"] == [
                        "human", "unknown"]
                    assert not any(e["kind"] == "machine_detected" for e in events)

                # pending Exotel transfers: each answered once, by whichever worker is asked
                store = RedisTransferStore(raw, prefix)
                for i in range(len(nodes)):
                    await store.put(f"EXO{i}", TransferTarget(f"+91987654321{i}", "+918047000000"))
                for i, node in enumerate(nodes):
                    resp = await http[node].get("/carriers/exotel/connect", params={
                        "CallSid": f"EXO{i}", "secret": "test-exotel-webhook-secret"})
                    assert resp.status_code == 200 and resp.headers[NODE] == node
                    assert resp.json()["destination"] == {"numbers": [f"+91987654321{i}"]}
                    again = await http[nodes[1 - i]].get("/carriers/exotel/connect", params={
                        "CallSid": f"EXO{i}", "secret": "test-exotel-webhook-secret"})
                    assert again.status_code == 404

                for task in feeders:
                    task.cancel()
                for client in clients:
                    with contextlib.suppress(Exception):
                        await client.stop()
                        await client.closed()
                for _ in range(100):
                    async with httpx.AsyncClient(base_url=base) as fresh:
                        if (await fresh.get("/api/calls/live")).json() == []:
                            break
                    await asyncio.sleep(0.05)
                else:
                    raise AssertionError("calls still listed after they ended")
        finally:
            for task in feeders:
                task.cancel()
            for client in http.values():
                await client.aclose()
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.ws.close()
            keys = [k async for k in raw.scan_iter(f"{prefix}*")]
            if keys:
                await raw.delete(*keys)
            await raw.aclose()
