"""Two nodes sharing one Redis (two servers in this process, each on its own port, one key
prefix): the live-call listing, answering-machine verdicts routed to the node that holds the
call, and Exotel transfers answered by the other node; plus expiry of a dead node's calls."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import redis.asyncio as aioredis
from pydantic import SecretStr

from dialkit.live import RedisRegistry
from emulators.exotel_api import running_exotel_api
from emulators.twilio_api import running_twilio_api
from media.codec import AudioFormat
from media.twilio_signature import twilio_signature
from tests.carrier_client import DEMO_CONTEXT, TwilioClient, call_detail, create_call
from tests.test_call_end_transfer import (
    TRANSFER_NUMBER,
    ScriptedSTT,
    dialkit_server,
    next_mark,
    twilio_call,
    twilio_settings,
)
from tests.test_exotel_session import ExotelClient


def own_prefix(base_settings: Any) -> dict[str, Any]:
    """The two nodes of one test share a key prefix no other test's server writes to."""
    return {"redis_prefix": f"{base_settings.redis_prefix}nodes-{uuid.uuid4().hex[:6]}:"}


async def live(http: str, **headers: str) -> tuple[int, Any, str]:
    async with httpx.AsyncClient(base_url=http) as client:
        resp = await client.get("/api/calls/live", headers=headers)
        return resp.status_code, resp.json(), resp.headers.get("X-Dialkit-Node", "")


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_live_calls_of_both_nodes_are_listed_by_either(base_settings) -> None:
    async with running_twilio_api() as api:
        shared = {**twilio_settings(api), **own_prefix(base_settings)}
        async with dialkit_server(base_settings, **shared) as a, \
                dialkit_server(base_settings, **shared) as b:
            node_a, node_b = a.state.registry.node, b.state.registry.node
            assert node_a != node_b
            placed: dict[str, tuple[str, str, TwilioClient]] = {}  # call_id -> (node, sid, client)
            for i, server in enumerate((a, a, b)):
                sid = f"CA{i:032d}"
                call_id, client = await twilio_call(server, sid, debtor_name="Dana Scully")
                placed[call_id] = (server.state.registry.node, sid, client)
            for _, _, client in placed.values():
                await next_mark(client)  # started: the greeting is out
            for server, node in ((a, node_a), (b, node_b)):
                status, calls, answered_by = await live(server.http)
                assert status == 200 and answered_by == node
                assert {c["call_id"] for c in calls} == set(placed)
                for entry in calls:
                    owner, sid, _ = placed[entry["call_id"]]
                    assert entry["node"] == owner
                    assert entry["call_sid"] == sid
                    assert entry["carrier"] == "twilio" and entry["kind"] == "collections"
                    assert entry["started_at"].endswith("+00:00")
                assert "token" not in json.dumps(calls)
            for _, _, client in placed.values():
                await client.stop()
                await client.closed()

            async def empty() -> bool:
                return (await live(b.http))[1] == []

            await wait_for(empty)


async def test_amd_verdict_reaches_the_call_on_the_other_node(base_settings) -> None:
    async with running_twilio_api() as api:
        shared = {**twilio_settings(api), **own_prefix(base_settings)}
        async with dialkit_server(base_settings, **shared) as a, \
                dialkit_server(base_settings, **shared) as b:
            call = api.add_call()
            call_id, client = await twilio_call(a, call.sid, debtor_name="Dana Scully")
            await next_mark(client)
            url = f"{b.http}/carriers/twilio/amd"
            form = {"CallSid": call.sid, "AnsweredBy": "machine_end_beep", "AccountSid": api.account_sid}
            unknown = {"CallSid": "CA" + "7" * 32, "AnsweredBy": "machine_start"}
            async with httpx.AsyncClient() as http:
                forged = await http.post(url, data=form, headers={"X-Twilio-Signature": "bm9wZQ=="})
                assert forged.status_code == 403
                resp = await http.post(url, data=unknown, headers={
                    "X-Twilio-Signature": twilio_signature(url, unknown, api.auth_token)})
                assert resp.status_code == 200 and resp.json() == {"delivered": False}
                resp = await http.post(url, data=form, headers={
                    "X-Twilio-Signature": twilio_signature(url, form, api.auth_token)})
                assert resp.status_code == 200 and resp.json() == {"delivered": True}
                assert resp.headers["X-Dialkit-Node"] == b.state.registry.node
            while True:  # the voicemail message plays on node A; marks echoed; then the hang-up
                try:
                    name = await next_mark(client, timeout=10)
                except Exception:
                    break
                await client.mark(name)
            detail = await call_detail(a.http, call_id)
            verdicts = [e["data"] for e in detail["events"] if e["kind"] == "answered_by"]
            assert verdicts == [{"value": "machine_end_beep"}]
            assert detail["outcome"]["outcome"] == "voicemail"
            assert any(e["kind"] == "hangup" for e in detail["events"])
            assert api.calls[call.sid].status == "completed"
            # the call is over: its SID no longer routes anywhere; a replay of the verdict
            # that acted is recognised as one
            late_form = {**form, "AnsweredBy": "human"}
            async with httpx.AsyncClient() as http:
                late = await http.post(url, data=late_form, headers={
                    "X-Twilio-Signature": twilio_signature(url, late_form, api.auth_token)})
                replay = await http.post(url, data=form, headers={
                    "X-Twilio-Signature": twilio_signature(url, form, api.auth_token)})
            assert late.status_code == 200 and late.json() == {"delivered": False}
            assert replay.status_code == 200 and replay.json() == {"delivered": False, "duplicate": True}


async def test_exotel_transfer_decided_on_one_node_is_answered_by_the_other(base_settings) -> None:
    from ai.playbook import load_playbook

    base_pb = load_playbook()
    playbook = base_pb.model_copy(update={
        "settings": base_pb.settings.model_copy(update={"transfer_number": TRANSFER_NUMBER})
    })
    stt = ScriptedSTT()
    async with running_exotel_api(send_audio=False) as api:
        exotel = {
            "exotel_account_sid": api.account_sid, "exotel_api_key": SecretStr(api.api_key),
            "exotel_api_token": SecretStr(api.api_token), "exotel_api_base": api.base_url,
            "exotel_flow_url": "http://my.exotel.com/acme/exoml/start_voice/1234",
            "exotel_webhook_secret": SecretStr("test-exotel-webhook-secret"),
            **own_prefix(base_settings),
        }
        async with dialkit_server(base_settings, stt=stt, playbook=playbook, **exotel) as a, \
                dialkit_server(base_settings, playbook=playbook, **exotel) as b:
            call = api.add_call()
            created = await create_call(a.http, carrier="exotel", debtor_name="Dana Cole")
            client = await ExotelClient.connect(f"{a.ws}/media/exotel", AudioFormat("pcm16", 8000))
            client.call_sid = call.sid
            await client.connected()
            await client.start(created["call_id"], created["token"])
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            asked, marks = False, 0
            while loop.time() < deadline:
                try:
                    msg = await client.recv(0.1)
                except TimeoutError:
                    await client.silence()
                    if marks >= 2 and not asked:
                        stt.streams[-1].say("Can I talk to a real person please?")
                        asked = True
                    continue
                except Exception:
                    break  # node A closed the stream: the flow moves on to Connect
                if msg["event"] == "mark":
                    marks += 1
                    await client.mark(msg["mark"]["name"])
            assert client.ws.close_code == 1000
            async with httpx.AsyncClient(
                base_url=b.http, params={"secret": "test-exotel-webhook-secret"}
            ) as http:
                resp = await http.get("/carriers/exotel/connect", params={"CallSid": call.sid})
                assert resp.status_code == 200, resp.text
                assert resp.json()["destination"] == {"numbers": [TRANSFER_NUMBER]}
                assert resp.headers["X-Dialkit-Node"] == b.state.registry.node
                again = await http.get("/carriers/exotel/connect", params={"CallSid": call.sid})
                assert again.status_code == 404
                missing = await http.get("/carriers/exotel/connect")
                assert missing.status_code == 400
            detail = await call_detail(a.http, created["call_id"])
            assert detail["outcome"]["outcome"] == "transferred"


async def test_a_dead_nodes_calls_expire_and_a_live_node_keeps_its_own(base_settings) -> None:
    url, prefix = str(base_settings.redis_url), f"{base_settings.redis_prefix}expiry-{uuid.uuid4().hex[:6]}:"
    dead = RedisRegistry.from_url(url, prefix, ttl_s=0.5)  # never started: no heartbeat
    alive = RedisRegistry.from_url(url, prefix, ttl_s=2.0)  # refreshed every 0.67 s
    reader = RedisRegistry.from_url(url, prefix)
    raw = aioredis.Redis.from_url(url, decode_responses=True)
    delivered: list[tuple[str, str]] = []

    def deliver(sid: str, verdict: str) -> bool:
        delivered.append((sid, verdict))
        return True

    try:
        await alive.start(deliver)
        await reader.start(lambda sid, verdict: False)
        await dead.register("dead-call", {"carrier": "twilio", "started": 1.0, "kind": "collections",
                                          "call_sid": "CAdead"})
        await alive.register("live-call", {"carrier": "exotel", "started": 2.0, "kind": "collections",
                                           "call_sid": "CAlive"})
        assert [c["call_id"] for c in await reader.live()] == ["dead-call", "live-call"]
        assert await reader.count() == 2
        await asyncio.sleep(2.5)  # past `alive`'s first expiry: only its heartbeat keeps it
        listing = await reader.live()
        assert [(c["call_id"], c["node"]) for c in listing] == [("live-call", alive.node)]
        assert await raw.zscore(f"{prefix}live:calls", "dead-call") is None
        assert await raw.exists(f"{prefix}call:dead-call", f"{prefix}live:sid:CAdead") == 0
        # a verdict for the dead node's call reaches no one; the live one is routed
        assert await reader.deliver_verdict("CAdead", "machine_start") is False
        await raw.publish(f"{prefix}node:{alive.node}", "not json")  # refused, listener goes on
        assert await reader.deliver_verdict("CAlive", "human") is True
        assert delivered == [("CAlive", "human")]
        await alive.unregister("live-call")
        assert await reader.live() == []
        assert await reader.deliver_verdict("CAlive", "human") is False
        # a node shutting down takes its remaining calls out of the listing at once
        await alive.register("left-call", {"carrier": "twilio", "started": 3.0, "kind": "collections",
                                           "call_sid": "CAleft"})
        assert [c["call_id"] for c in await reader.live()] == ["left-call"]
        await alive.close()
        assert await reader.live() == []
        assert await raw.exists(f"{prefix}live:sid:CAleft") == 0
    finally:
        for registry in (dead, alive, reader):
            await registry.close()
        keys = [k async for k in raw.scan_iter(f"{prefix}*")]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


async def test_one_node_without_redis_lists_its_calls_behind_the_api_key(base_settings) -> None:
    async with dialkit_server(
        base_settings, redis_url=None, api_key=SecretStr("k-live-test")
    ) as server:
        assert server.state.registry.name == "in-process"
        auth = {"Authorization": "Bearer k-live-test"}
        status, body, _ = await live(server.http)
        assert status == 401 and "API key" in body["error"]
        async with httpx.AsyncClient(base_url=server.http, headers=auth) as http:
            resp = await http.post("/api/calls", json={"carrier": "twilio", "context": DEMO_CONTEXT})
            created = resp.json()
        client = await TwilioClient.connect(f"{server.ws}/media/twilio")
        await client.connected()
        await client.start(created["call_id"], created["token"], "CA" + "5" * 32)
        await next_mark(client)
        status, calls, node = await live(server.http, **auth)
        assert status == 200 and node == server.state.registry.node
        assert [(c["call_id"], c["node"], c["call_sid"]) for c in calls] == [
            (created["call_id"], node, "CA" + "5" * 32)]
        await client.stop()
        await client.closed()

        async def empty() -> bool:
            return (await live(server.http, **auth))[1] == []

        await wait_for(empty)
