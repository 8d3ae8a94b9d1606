"""A hostile or broken peer on the media WebSocket, over real sockets with the database
behind: one media connection per call, connections that never authenticate, close frames
and reasons built from peer input, a carrier that stops reading, a call that cannot start."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog
import websockets

from ai.playbook import Playbook, load_playbook
from ai.types import AudioSpec
from dialkit.config import Settings
from dialkit.providers import Providers
from dialkit.server import start_server
from emulators.twilio_api import running_twilio_api
from media.auth import issue_token
from media.sanitize import close_reason, peer_text
from tests.carrier_client import DEMO_CONTEXT, TwilioClient, call_detail, create_call
from tests.conftest import RunningServer
from tests.test_call_end_transfer import (
    dialkit_server,
    events,
    next_mark,
    twilio_settings,
    updates_of,
)

SILENCE = b"\xff" * 160
FIRST_SID = "CA" + "2" * 32


@asynccontextmanager
async def server_with(base: Settings, providers: Providers, **settings: Any) -> AsyncIterator[RunningServer]:
    cfg = base.model_copy(update=settings)
    runner, port = await start_server(cfg, providers, port=0)
    try:
        yield RunningServer(runner, port, cfg)
    finally:
        await runner.cleanup()


async def metric(http: str, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(base_url=http) as c:
        text = (await c.get("/metrics")).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
        if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
            return float(m.group(2))
    return 0.0


async def connect_from(url: str, address: str, **kwargs: Any) -> TwilioClient:
    """A carrier client whose connection comes from `address` (any of 127.0.0.0/8)."""
    return TwilioClient(await websockets.connect(url, local_addr=(address, 0), **kwargs))


# ---- one media connection per call -----------------------------------------------------


async def test_replayed_token_during_the_call_is_refused_and_the_call_goes_on(light_server) -> None:
    http = light_server.http
    created = await create_call(http)
    call_id, token = created["call_id"], created["token"]
    first = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await first.connected()
    await first.start(call_id, token, FIRST_SID)
    await first.recv_until("media", 10)
    refused_before = await metric(http, "dialkit_media_security_events_total",
                                  carrier="twilio", kind="second_media_connection")
    with structlog.testing.capture_logs() as logs:
        second = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
        second.stream_sid = "MZ" + "9" * 32
        await second.connected()
        await second.start(call_id, token, "CA" + "9" * 32)
        await second.dtmf("5")
        await second.dtmf("#")
        code, reason = await asyncio.wait_for(second.closed(), 20)
    assert code == 1008 and "already has a media connection" in reason
    assert not [m for _, m in second.received if m.get("event") == "media"]  # heard nothing
    # the first leg goes on: paced audio keeps coming and its own keypad input still counts
    got = 0
    while got < 25:
        msg = await first.recv(5)
        got += msg["event"] == "media"
        await first.media(SILENCE)
    await first.dtmf("1")
    await first.dtmf("#")
    for _ in range(15):
        await first.media(SILENCE)
        await asyncio.sleep(0.02)
    await first.stop()
    assert (await first.closed())[0] == 1000
    detail = await call_detail(http, call_id)
    call = detail["call"]
    assert call["status"] == "completed"
    assert call["stream_id"] == first.stream_sid and call["carrier_call_id"] == FIRST_SID
    keypad = [t["text"] for t in detail["turns"] if t["text"].startswith("[keypad]")]
    assert keypad and all("5" not in k for k in keypad) and any("1#" in k for k in keypad)
    assert [e["data"].get("digit") for e in detail["events"] if e["kind"] == "dtmf"] == ["1", "#"]
    security = [e for e in logs if e["event"] == "security_event"]
    assert len(security) == 1
    assert security[0]["call_id"] == call_id and security[0]["peer"] == "127.0.0.1"
    assert token not in repr(logs)
    assert await metric(http, "dialkit_media_security_events_total",
                        carrier="twilio", kind="second_media_connection") == refused_before + 1


# ---- connections that never authenticate -------------------------------------------------


async def test_connection_without_start_is_closed_at_the_deadline_whatever_it_sends(
    base_settings, light_providers
) -> None:
    async with server_with(base_settings, light_providers, media_start_deadline_s=1.0) as server:
        client = await TwilioClient.connect(f"{server.ws}/media/twilio")

        async def chatter() -> None:  # a message every 200 ms: never idle, never authenticated
            while True:
                await client.connected()
                await asyncio.sleep(0.2)

        task = asyncio.ensure_future(chatter())
        try:
            code, reason = await asyncio.wait_for(client.closed(timeout=30), 30)
        finally:
            task.cancel()
        assert code == 1008 and "no valid start within 1 s" in reason


async def test_unauthenticated_connections_are_capped_overall_and_per_address(
    base_settings, light_providers
) -> None:
    async with server_with(base_settings, light_providers, media_max_unauthenticated=3,
                           media_max_unauthenticated_per_peer=2) as server:
        url = f"{server.ws}/media/twilio"
        refused_before = await metric(server.http, "dialkit_media_connections_refused_total",
                                      reason="unauthenticated_cap")
        a = await connect_from(url, "127.0.0.1")
        b = await connect_from(url, "127.0.0.1")
        c = await connect_from(url, "127.0.0.1")
        code, reason = await c.closed()
        assert code == 1013 and "from this address" in reason
        d = await connect_from(url, "127.0.0.2")
        e = await connect_from(url, "127.0.0.3")
        code, reason = await e.closed()
        assert code == 1013 and reason == "too many unauthenticated media connections"
        assert await metric(server.http, "dialkit_media_connections_refused_total",
                            reason="unauthenticated_cap") == refused_before + 2
        # a connection that leaves frees its place; a call that authenticates frees its own
        await a.ws.close()
        for _ in range(200):
            if server.state.start_gate.total < 3:
                break
            await asyncio.sleep(0.02)
        created = await create_call(server.http)
        f = await connect_from(url, "127.0.0.1")
        await f.start(created["call_id"], created["token"])
        await f.recv_until("media", 10)
        assert server.state.start_gate.total == 2  # b and d
        g = await connect_from(url, "127.0.0.1")
        assert g.ws.state is websockets.State.OPEN
        await f.stop()
        assert (await f.closed())[0] == 1000
        for client in (b, d, g):
            await client.ws.close()


# ---- close frames and reasons built from peer input ----------------------------------------


async def test_close_reason_of_multibyte_peer_input_fits_a_close_frame(light_server) -> None:
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.ws.send(json.dumps({"event": "漢" * 60}))
    code, reason = await client.closed()
    assert code == 1008 and reason.startswith("unknown event")
    assert len(reason.encode()) <= 123
    created = await create_call(light_server.http)
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.start(created["call_id"], created["token"])
    await client.recv_until("mark", 10)
    await client.dtmf("é" * 100)
    code, reason = await client.closed()
    assert code == 1007 and len(reason.encode()) <= 123
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "failed" and detail["call"]["close_code"] == 1007


async def test_peer_strings_are_cut_and_escaped_in_reasons_and_logs(light_server) -> None:
    created = await create_call(light_server.http)
    with structlog.testing.capture_logs() as logs:
        client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
        await client.start(created["call_id"], created["token"])
        await client.recv_until("mark", 10)
        await client.dtmf("\n\x1b[2Jforged log line\r\n" + "9" * 50_000)
        code, _ = await client.closed()
        detail = await call_detail(light_server.http, created["call_id"])
    assert code == 1007
    stored = detail["call"]["failure_reason"]
    assert "DTMF" in stored and len(stored) <= 260
    assert not any(ch in stored for ch in "\n\r\x1b")
    assert detail["turns"] and detail["turns"][0]["speaker"] == "agent"  # kept
    for entry in logs:
        for key, value in entry.items():
            if isinstance(value, str) and key != "event":
                assert len(value) <= 260 and not any(ch in value for ch in "\n\r\x1b"), (key, value[:80])
    assert any(e["event"] == "media_protocol_error" for e in logs)


# ---- a carrier that stops reading ----------------------------------------------------------


async def test_carrier_that_stops_reading_is_ended(base_settings, light_providers) -> None:
    async with server_with(base_settings, light_providers, media_send_backlog_s=1.0) as server:
        created = await create_call(server.http)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        ws = await websockets.connect(f"{server.ws}/media/twilio", sock=sock, max_queue=1,
                                      ping_interval=None)
        client = TwilioClient(ws)
        await client.start(created["call_id"], created["token"])
        # keep sending caller audio, never read what the agent sends
        detail: dict[str, Any] = {}
        for i in range(3000):
            try:
                await client.media(SILENCE, chunk=i + 1, ts=i * 20)
            except websockets.ConnectionClosed:
                break
            await asyncio.sleep(0.02)
            if i % 25 == 0:
                detail = await call_detail(server.http, created["call_id"], until_ended=False)
                if detail["call"]["status"] != "in_progress":
                    break
        ws.transport.abort()
        detail = await call_detail(server.http, created["call_id"])
        call = detail["call"]
        assert call["status"] == "failed", call
        assert "carrier is not reading" in call["failure_reason"] and call["close_code"] == 1008
        assert detail["turns"] and detail["turns"][0]["speaker"] == "agent"
        assert await metric(server.http, "dialkit_media_send_backlog_total", carrier="twilio") >= 1


# ---- a call that cannot start after its start was accepted -----------------------------------


class BrokenSTT:
    name = "broken"

    async def open_stream(self, spec: AudioSpec, endpointing_ms: int) -> Any:
        raise RuntimeError("recogniser unavailable")


class BrokenTTS:
    name = "broken"

    async def synthesize(self, text: str, spec: AudioSpec) -> AsyncIterator[Any]:
        raise RuntimeError("voice unavailable")
        yield  # an async generator, as a TTS is


async def test_call_whose_engine_cannot_be_built_hears_an_apology_then_hangs_up(base_settings) -> None:
    playbook = load_playbook()
    async with running_twilio_api() as api, dialkit_server(base_settings, **twilio_settings(api)) as server:
        store = server.state.store
        # stored before validation at creation existed: a context the engine refuses
        call_id = await store.create_call("twilio", {**DEMO_CONTEXT, "balance": "abc"}, None,
                                          (playbook.name, playbook.version))
        token = issue_token(b"test-media-secret", call_id, 60)
        carrier_call = api.add_call()
        client = await TwilioClient.connect(f"{server.ws}/media/twilio")
        await client.start(call_id, token, carrier_call.sid)
        assert await next_mark(client) == "apology"
        assert any(m["event"] == "media" for _, m in client.received)
        assert updates_of(api, carrier_call.sid) == []  # not before the apology was played
        await client.mark("apology")
        code, reason = await client.closed()
        assert code in (1008, 1011) and "balance" in reason
        assert updates_of(api, carrier_call.sid) == [{"Status": "completed"}]
        detail = await call_detail(server.http, call_id)
        assert detail["call"]["status"] == "failed" and "balance" in detail["call"]["failure_reason"]
        assert events(detail, "apology") == [{"spoken": True, "hangup": "completed"}]


async def test_call_whose_stt_and_tts_fail_at_start_is_hung_up_with_a_reason(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(
        base_settings, stt=BrokenSTT(), tts=BrokenTTS(), **twilio_settings(api)
    ) as server:
        created = await create_call(server.http)
        carrier_call = api.add_call()
        client = await TwilioClient.connect(f"{server.ws}/media/twilio")
        await client.start(created["call_id"], created["token"], carrier_call.sid)
        code, reason = await client.closed()
        assert code == 1011 and "could not start" in reason
        assert updates_of(api, carrier_call.sid) == [{"Status": "completed"}]
        detail = await call_detail(server.http, created["call_id"])
        assert detail["call"]["status"] == "failed"
        assert "recogniser unavailable" in detail["call"]["failure_reason"]
        assert events(detail, "apology") == [{"spoken": False, "hangup": "completed"}]


# ---- the helpers and the playbook line behind them ---------------------------------------


def test_peer_text_and_close_reason_limits() -> None:
    cut = peer_text("\n\x1b" + "9" * 50_000)
    assert len(cut) <= 200 and cut.startswith("\\x0a\\x1b") and "more chars" in cut
    assert peer_text(cut) == cut  # applying it twice changes nothing
    assert peer_text("\ud800").encode() == b"\\ud800"  # a lone surrogate cannot break UTF-8
    reason = close_reason("漢" * 100)
    assert len(reason) <= 123 and reason.decode() == "漢" * 41


def test_apology_line_may_not_use_the_calls_context() -> None:
    data = load_playbook().model_dump()
    data["settings"]["apology_line"] = "Sorry {debtor_name}, goodbye."
    with pytest.raises(ValueError, match="apology_line may use only"):
        Playbook.model_validate(data)
    data["settings"]["apology_line"] = "This is {agent_name} from {caller_brand}: sorry, goodbye."
    assert Playbook.model_validate(data).apology().startswith("This is ")
