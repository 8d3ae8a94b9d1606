"""The Twilio media endpoint end to end over real sockets, with the database behind it."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json

import httpx
import numpy as np
import pytest

from media.codec import pcm16_to_ulaw
from tests.carrier_client import DEMO_CONTEXT, TwilioClient, call_detail, create_call

SILENCE = b"\xff" * 160


def voiced_frames(seconds: float, rate: int = 8000) -> list[bytes]:
    """A vowel-like harmonic signal that voice-activity detection takes for speech."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 12))
    pcm = (sig / np.max(np.abs(sig)) * 12000).astype(np.int16)
    ulaw = pcm16_to_ulaw(pcm)
    return [ulaw[i : i + 160] for i in range(0, len(ulaw) - 159, 160)]


async def test_health_and_metrics(light_server) -> None:
    async with httpx.AsyncClient(base_url=light_server.http) as c:
        health = await c.get("/health")
        assert health.status_code == 200, health.text
        body = health.json()
        assert body["database"] == "ok" and body["redis"] == "ok"
        assert body["providers"]["stt"] == "null" and body["providers"]["tts"] == "tone"
        metrics = await c.get("/metrics")
        assert "dialkit_active_calls" in metrics.text


async def test_create_call_rejects_bad_input(light_server) -> None:
    async with httpx.AsyncClient(base_url=light_server.http) as c:
        bad_json = await c.post("/api/calls", content=b"{nope", headers={"Content-Type": "application/json"})
        assert bad_json.status_code == 400 and "JSON" in bad_json.json()["error"]
        bad_phone = await c.post("/api/calls", json={"to": "12345"})
        assert bad_phone.status_code == 400
        assert bad_phone.json()["details"][0]["loc"] == ["to"]
        bad_carrier = await c.post("/api/calls", json={"carrier": "pigeon"})
        assert bad_carrier.status_code == 400
        ok = await c.post("/api/calls", json={"to": "+14155550123", "context": DEMO_CONTEXT})
        assert ok.status_code == 201
        assert ok.json()["media_url"].endswith("/media/twilio")
        missing = await c.get("/api/calls/00000000-0000-0000-0000-000000000000")
        assert missing.status_code == 404
        not_uuid = await c.get("/api/calls/abc")
        assert not_uuid.status_code == 400


async def _start_call(light_server, **ctx):
    created = await create_call(light_server.http, **ctx)
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    return created, client


async def test_full_protocol_greeting_marks_dtmf_stop(light_server) -> None:
    created, client = await _start_call(light_server, debtor_name="Ann Lee")
    call_id = created["call_id"]
    loop = asyncio.get_running_loop()
    media_times: list[float] = []
    marks: list[str] = []
    # Collect the greeting: paced media and a mark after each sentence, echoed as played.
    while True:
        try:
            msg = await client.recv(1.0 if media_times else 5.0)
        except TimeoutError:
            break
        assert msg["streamSid"] == client.stream_sid
        if msg["event"] == "media":
            payload = base64.b64decode(msg["media"]["payload"])
            assert len(payload) == 160  # exactly 20 ms of µ-law
            assert set(msg) == {"event", "streamSid", "media"} and set(msg["media"]) == {"payload"}
            media_times.append(loop.time())
        elif msg["event"] == "mark":
            assert set(msg) == {"event", "streamSid", "mark"}
            marks.append(msg["mark"]["name"])
            await client.mark(msg["mark"]["name"])
        await client.media(SILENCE)
    assert len(media_times) > 20 and len(marks) >= 1
    span = media_times[-1] - media_times[0]
    # paced in real time, not sent in one burst: n frames take about (n - lead) × 20 ms
    assert span >= (len(media_times) - 3 - 5) * 0.02
    await client.dtmf("1")
    await client.dtmf("#")
    await asyncio.sleep(0.3)
    await client.stop()
    code, _ = await client.closed()
    assert code == 1000
    detail = await call_detail(light_server.http, call_id)
    assert detail["call"]["status"] == "completed"
    assert detail["call"]["carrier_call_id"].startswith("CA")
    speakers = [t["speaker"] for t in detail["turns"]]
    assert speakers[0] == "agent" and "Ann" in detail["turns"][0]["text"]
    assert any(t["text"].startswith("[keypad] 1#") for t in detail["turns"])
    kinds = [e["kind"] for e in detail["events"]]
    assert "greeting_audio" in kinds and kinds.count("dtmf") == 2
    assert detail["outcome"]["outcome"] == "hung_up"  # the caller took part, then stopped


@pytest.mark.parametrize(
    ("bad", "code", "reason"),
    [
        ("{not json", 1007, "malformed JSON"),
        (json.dumps({"event": "teleport"}), 1008, "unknown event"),
        (json.dumps({"event": "media", "streamSid": "MZ", "media": {"payload": "!!!notbase64"}}), 1007, "base64"),
        (json.dumps({"event": "dtmf", "streamSid": "MZ", "dtmf": {"digit": "X"}}), 1007, "DTMF"),
    ],
)
async def test_bad_input_mid_call_fails_call_and_keeps_transcript(light_server, bad, code, reason) -> None:
    created, client = await _start_call(light_server)
    await client.recv_until("mark", 10)  # the greeting has been spoken
    await client.ws.send(bad)
    got_code, _ = await client.closed()
    assert got_code == code
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "failed"
    assert reason in detail["call"]["failure_reason"]
    assert detail["call"]["close_code"] == code
    assert detail["turns"] and detail["turns"][0]["speaker"] == "agent"


async def test_media_before_start_is_refused(light_server) -> None:
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.connected()
    await client.media(SILENCE)
    code, reason = await client.closed()
    assert code == 1008 and "before start" in reason


async def test_binary_frame_is_refused(light_server) -> None:
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.ws.send(b"\x00\x01")
    code, _ = await client.closed()
    assert code == 1003


async def test_text_frame_that_is_not_utf8_is_refused_1007_after_start_too(light_server) -> None:
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.ws.send(b'{"event": "connected\xff"}', text=True)
    code, _ = await client.closed()
    assert code == 1007  # aiohttp's reader closes it at once; the session logs the reason
    created, client = await _start_call(light_server)
    await client.recv_until("media", 10)
    await client.ws.send(b"\xc3\x28", text=True)
    code, _ = await client.closed()
    assert code == 1007
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "failed"
    assert detail["call"]["failure_reason"] == "text frame is not valid UTF-8"


async def test_bad_or_missing_token_refused_before_audio(light_server) -> None:
    created = await create_call(light_server.http)
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.start(created["call_id"], "forged.token")
    code, reason = await client.closed()
    assert code == 1008 and "token" in reason
    other = await create_call(light_server.http)
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.start(created["call_id"], other["token"])  # a token for another call
    code, _ = await client.closed()
    assert code == 1008
    detail = await call_detail(light_server.http, created["call_id"], until_ended=False)
    assert detail["call"]["status"] == "created"  # an unauthenticated peer changed nothing


async def test_oversized_message_closes_1009_and_fails_call(light_server) -> None:
    created, client = await _start_call(light_server)
    await client.recv_until("mark", 10)
    big = {"event": "media", "streamSid": client.stream_sid,
           "media": {"payload": base64.b64encode(b"\xff" * 200_000).decode()}}
    await client.ws.send(json.dumps(big))
    code, _ = await client.closed()
    assert code == 1009
    detail = await call_detail(light_server.http, created["call_id"])
    assert detail["call"]["status"] == "failed"
    assert detail["turns"]


async def test_vanished_peer_fails_call_while_other_calls_go_on(light_server) -> None:
    good_created, good = await _start_call(light_server, debtor_name="Good Call")
    bad_created, bad = await _start_call(light_server, debtor_name="Gone Away")
    await bad.recv_until("media", 10)
    bad.ws.transport.abort()  # TCP reset: no close frame, no stop
    # the healthy call keeps receiving paced audio meanwhile
    got = 0
    while got < 25:
        msg = await good.recv(5)
        if msg["event"] == "media":
            got += 1
        await good.media(SILENCE)
    await good.stop()
    await good.closed()
    bad_detail = await call_detail(light_server.http, bad_created["call_id"])
    assert bad_detail["call"]["status"] == "failed"
    assert "closed without stop" in bad_detail["call"]["failure_reason"] or "vanished" in bad_detail["call"]["failure_reason"]
    good_detail = await call_detail(light_server.http, good_created["call_id"])
    assert good_detail["call"]["status"] == "completed"


async def test_barge_in_sends_clear_and_trims_agent_turn(light_server) -> None:
    created, client = await _start_call(light_server, debtor_name="Barbara Inman")
    await client.recv_until("media", 10)
    frames = voiced_frames(1.0)
    cleared = False
    for f in frames:
        await client.media(f)
        try:
            while True:
                msg = await asyncio.wait_for(client.ws.recv(), 0.001)
                if json.loads(msg)["event"] == "clear":
                    cleared = True
        except TimeoutError:
            pass
        await asyncio.sleep(0.02)
        if cleared:
            break
    if not cleared:
        await client.recv_until("clear", 3)
    await client.stop()
    await client.closed()
    detail = await call_detail(light_server.http, created["call_id"])
    agent = [t for t in detail["turns"] if t["speaker"] == "agent"]
    assert agent and agent[0]["interrupted"] is True
    events = [e for e in detail["events"] if e["kind"] == "barge_in"]
    assert len(events) == 1 and events[0]["data"]["reaction_ms"] >= 0


async def test_live_registry_in_redis(light_server) -> None:
    created, client = await _start_call(light_server)
    await client.recv_until("media", 10)
    registry = light_server.state.registry
    assert await registry.count() >= 1
    assert await registry.get(created["call_id"]) is not None
    await client.stop()
    await client.closed()
    await call_detail(light_server.http, created["call_id"])
    assert await registry.get(created["call_id"]) is None


async def test_unknown_call_id_refused(light_server) -> None:
    from media.auth import issue_token

    call_id = "11111111-1111-1111-1111-111111111111"
    token = issue_token(b"test-media-secret", call_id, 60)
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.start(call_id, token)
    code, reason = await client.closed()
    assert code == 1008 and "unknown call" in reason


async def test_silent_carrier_is_closed_after_idle_timeout(base_settings, light_providers) -> None:
    from dialkit.server import start_server

    settings = base_settings.model_copy(update={"carrier_idle_timeout_s": 1.5})
    providers = dataclasses.replace(
        light_providers, extra={**light_providers.extra, "carrier_idle_timeout_s": 1.5}
    )
    runner, port = await start_server(settings, providers, port=0)
    try:
        created = await create_call(f"http://127.0.0.1:{port}")
        client = await TwilioClient.connect(f"ws://127.0.0.1:{port}/media/twilio")
        await client.start(created["call_id"], created["token"])
        code, reason = await client.closed(timeout=10)  # we send nothing after start
        assert code == 1008 and "no message from carrier" in reason
        detail = await call_detail(f"http://127.0.0.1:{port}", created["call_id"])
        assert detail["call"]["status"] == "failed"
        assert "no message from carrier" in detail["call"]["failure_reason"]
    finally:
        await runner.cleanup()


async def test_call_naming_unknown_provider_is_refused(light_server) -> None:
    async with httpx.AsyncClient(base_url=light_server.http) as c:
        resp = await c.post("/api/calls", json={"context": {"providers": {"tts": "no-such-voice"}}})
        assert resp.status_code == 400
        assert "no-such-voice" in resp.json()["error"]
