"""Bad values inside carrier messages, over real sockets: each closes with 1007 or 1008 and a
short reason, never 1011, never a traceback; after `start` the call is failed with that
reason. Before `start` nothing is recorded against any call."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
import websockets

from tests.carrier_client import TwilioClient, call_detail, create_call

SILENCE_ULAW = base64.b64encode(b"\xff" * 160).decode()
SILENCE_PCM = base64.b64encode(b"\x00" * 1600).decode()
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() says yes, int() says no
MANY_DIGITS = "9" * 5000  # beyond Python's int() digit limit


@pytest.fixture
def server_logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, Any]]]:
    """Everything the server logs (structlog events and standard-library records)."""
    caplog.set_level(logging.WARNING)
    with structlog.testing.capture_logs() as events:
        yield events
    for record in caplog.records:
        events.append({"event": record.getMessage(), "log_level": record.levelname.lower(),
                       "exc_info": record.exc_info})


def assert_no_traceback(events: list[dict[str, Any]]) -> None:
    bad = [e for e in events if e.get("exc_info") or e.get("log_level") in ("error", "critical")]
    assert not bad, bad[:3]


async def closed(ws: Any, timeout: float = 10.0) -> tuple[int | None, str]:
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed as exc:
        rcvd = exc.rcvd
        return (rcvd.code if rcvd else None), (rcvd.reason if rcvd else "")


def twilio_start(call_id: str, token: str, **start: Any) -> str:
    body = {
        "accountSid": "AC" + "1" * 32, "streamSid": "MZ" + "1" * 32, "callSid": "CA" + "2" * 32,
        "tracks": ["inbound"], "customParameters": {"call_id": call_id, "token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    body.update(start)
    return json.dumps({"event": "start", "sequenceNumber": "1", "streamSid": body["streamSid"],
                       "start": body})


def twilio_media(**media: Any) -> str:
    body = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": SILENCE_ULAW, **media}
    return json.dumps({"event": "media", "sequenceNumber": "2", "streamSid": "MZ" + "1" * 32,
                       "media": body})


def exotel_start(call_id: str, token: str, **media_format: Any) -> str:
    fmt = {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16", **media_format}
    return json.dumps({"event": "start", "sequence_number": "1", "stream_sid": "ex1", "start": {
        "stream_sid": "ex1", "call_sid": "c" * 32, "account_sid": "acct",
        "custom_parameters": {"call_id": call_id, "token": token}, "media_format": fmt,
    }})


def exotel_media(**media: Any) -> str:
    body = {"chunk": "1", "timestamp": "100", "payload": SILENCE_PCM, **media}
    return json.dumps({"event": "media", "sequence_number": "2", "stream_sid": "ex1",
                       "media": body})


async def _after_start(server: Any, carrier: str, bad: str) -> tuple[int | None, str, dict[str, Any]]:
    created = await create_call(server.http, carrier=carrier)
    ws = await websockets.connect(f"{server.ws}/media/{carrier}", max_size=2**22)
    start = (twilio_start if carrier == "twilio" else exotel_start)(
        created["call_id"], created["token"])
    await ws.send(start)
    await asyncio.wait_for(ws.recv(), 10)  # the greeting's first audio: the call is live
    await ws.send(bad)
    code, reason = await closed(ws)
    detail = await call_detail(server.http, created["call_id"])
    return code, reason, detail["call"]


@pytest.mark.parametrize(
    ("carrier", "bad", "why"),
    [
        pytest.param("twilio", twilio_media(timestamp=SUPERSCRIPT_TWO), "timestamp", id="tw-ts-sup2"),
        pytest.param("twilio", twilio_media(timestamp=MANY_DIGITS), "timestamp", id="tw-ts-5000"),
        pytest.param("twilio", twilio_media(chunk=SUPERSCRIPT_TWO), "chunk", id="tw-chunk-sup2"),
        pytest.param("twilio", twilio_media(chunk=MANY_DIGITS), "chunk", id="tw-chunk-5000"),
        pytest.param("exotel", exotel_media(chunk=SUPERSCRIPT_TWO), "chunk", id="ex-chunk-sup2"),
        pytest.param("exotel", exotel_media(timestamp=MANY_DIGITS), "timestamp", id="ex-ts-5000"),
        pytest.param("exotel", json.dumps({"event": "dtmf", "stream_sid": "ex1",
                                           "dtmf": {"digit": 10**30}}), "DTMF", id="ex-dtmf-bigint"),
        pytest.param("exotel", json.dumps({"event": "dtmf", "stream_sid": "ex1", "dtmf": {
            "digit": "5", "duration": SUPERSCRIPT_TWO}}), "duration", id="ex-dtmf-duration"),
    ],
)
async def test_bad_value_after_start_fails_the_call_with_its_reason(
    light_server, server_logs, carrier: str, bad: str, why: str
) -> None:
    code, reason, call = await _after_start(light_server, carrier, bad)
    assert code == 1007, (code, reason)
    assert why in reason and len(reason.encode()) <= 123
    assert call["status"] == "failed" and call["close_code"] == 1007
    assert why in call["failure_reason"] and "internal error" not in call["failure_reason"]
    assert len(call["failure_reason"]) < 200
    assert_no_traceback(server_logs)


@pytest.mark.parametrize(
    ("carrier", "path", "first", "why"),
    [
        pytest.param("twilio", "/media/twilio", lambda c, t: twilio_start(c, t, tracks=5),
                     "tracks", id="tw-tracks-5"),
        pytest.param("twilio", "/media/twilio", lambda c, t: twilio_start(c, t, tracks=True),
                     "tracks", id="tw-tracks-true"),
        pytest.param("twilio", "/media/twilio", lambda c, t: twilio_start(c, t, callSid="CA\x00"),
                     "callSid", id="tw-callsid-nul"),
        pytest.param("exotel", "/media/exotel", lambda c, t: exotel_start(
            c, t, sample_rate=SUPERSCRIPT_TWO + "k"), "sample_rate", id="ex-rate-sup2k"),
        pytest.param("exotel", "/media/exotel", lambda c, t: exotel_start(
            c, t, bit_rate=SUPERSCRIPT_TWO), "bit_rate", id="ex-bits-sup2"),
        pytest.param("exotel", "/media/exotel", lambda c, t: exotel_start(
            c, t, encoding=10**30), "encoding", id="ex-encoding-bigint"),
        pytest.param("exotel", "/media?sample-rate=%C2%B2", lambda c, t: exotel_start(c, t),
                     "sample-rate", id="detect-url-rate-sup2"),
        pytest.param("exotel", "/media/exotel?sample-rate=%C2%B2", lambda c, t: exotel_start(c, t),
                     "sample-rate", id="exotel-url-rate-sup2"),
        pytest.param("exotel", "/media/exotel?sample-rate=44100", lambda c, t: exotel_start(c, t),
                     "sample rate", id="exotel-url-rate-unsupported"),
    ],
)
async def test_bad_start_is_refused_before_any_audio(
    light_server, server_logs, carrier: str, path: str, first: Any, why: str
) -> None:
    created = await create_call(light_server.http, carrier=carrier)
    ws = await websockets.connect(f"{light_server.ws}{path}", max_size=2**22)
    await ws.send(first(created["call_id"], created["token"]))
    code, reason = await closed(ws)
    assert code in (1007, 1008), (code, reason)
    assert why in reason and len(reason.encode()) <= 123
    detail = await call_detail(light_server.http, created["call_id"], until_ended=False)
    assert detail["call"]["status"] not in ("in_progress", "failed")
    assert not detail["turns"]
    assert_no_traceback(server_logs)


async def test_good_exotel_bit_rate_spellings_still_start(light_server, server_logs) -> None:
    for bit_rate in ("16", "128kbps", "128000", 16):
        created = await create_call(light_server.http, carrier="exotel")
        ws = await websockets.connect(f"{light_server.ws}/media/exotel", max_size=2**22)
        await ws.send(exotel_start(created["call_id"], created["token"], bit_rate=bit_rate))
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["event"] == "media", bit_rate
        await ws.close()
    assert_no_traceback(server_logs)


async def test_twilio_client_helper_still_starts(light_server) -> None:
    created = await create_call(light_server.http)
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    assert (await client.recv_until("media"))["event"] == "media"
    await client.media(b"\xff" * 160, chunk=1, ts=0)
    await client.stop()
    assert (await client.closed())[0] == 1000
