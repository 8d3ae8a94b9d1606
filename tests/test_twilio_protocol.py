"""Twilio Media Streams protocol: every inbound event, bad input, and the outbound messages
exactly as Twilio documents them."""

from __future__ import annotations

import base64

import orjson
import pytest

from media.codec import MULAW_8K, decode, encode
from media.events import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
)
from media.twilio import TwilioProtocol

# Messages as in Twilio's Media Streams WebSocket reference.
CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC" + "1" * 32,
        "streamSid": "MZ" + "2" * 32,
        "callSid": "CA" + "3" * 32,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"call_id": "c-9", "token": "tok"},
    },
    "streamSid": "MZ" + "2" * 32,
}


def dumps(msg: object) -> str:
    return orjson.dumps(msg).decode()


def media(payload: str, **extra: object) -> str:
    body: dict[str, object] = {
        "track": "inbound",
        "chunk": "2",
        "timestamp": "5",
        "payload": payload,
    }
    body.update(extra)
    return dumps({"event": "media", "sequenceNumber": "3", "media": body, "streamSid": "MZ1"})


def test_connected() -> None:
    assert TwilioProtocol().parse(dumps(CONNECTED)) == Connected("Call", "1.0.0")


def test_start() -> None:
    event = TwilioProtocol().parse(dumps(START))
    assert isinstance(event, Start)
    assert event.stream_id == "MZ" + "2" * 32
    assert event.call_sid == "CA" + "3" * 32
    assert event.account_sid == "AC" + "1" * 32
    assert event.fmt == MULAW_8K
    assert event.tracks == ["inbound"]
    assert event.custom_parameters == {"call_id": "c-9", "token": "tok"}


def test_start_without_media_format_is_mulaw() -> None:
    msg = {"event": "start", "streamSid": "MZ1", "start": {"callSid": "CA1"}}
    event = TwilioProtocol().parse(dumps(msg))
    assert isinstance(event, Start) and event.stream_id == "MZ1" and event.fmt == MULAW_8K


def test_media_round_trips_audio() -> None:
    import numpy as np

    pcm = (np.sin(np.arange(160) / 5) * 8000).astype(np.int16)
    ulaw = encode(pcm, MULAW_8K)
    event = TwilioProtocol().parse(media(base64.b64encode(ulaw).decode()))
    assert isinstance(event, Media)
    assert event.payload == ulaw and len(event.payload) == 160
    assert (event.chunk, event.timestamp_ms, event.track) == (2, 5, "inbound")
    assert np.max(np.abs(decode(event.payload, MULAW_8K).astype(int) - pcm)) < 300


def test_dtmf_mark_stop() -> None:
    proto = TwilioProtocol()
    dtmf = {
        "event": "dtmf",
        "streamSid": "MZ1",
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }
    assert proto.parse(dumps(dtmf)) == Dtmf("#")
    mark = {
        "event": "mark",
        "sequenceNumber": "4",
        "streamSid": "MZ1",
        "mark": {"name": "my label"},
    }
    assert proto.parse(dumps(mark)) == Mark("my label")
    stop = {
        "event": "stop",
        "sequenceNumber": "5",
        "streamSid": "MZ1",
        "stop": {"accountSid": "AC1", "callSid": "CA1"},
    }
    assert isinstance(proto.parse(dumps(stop)), Stop)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("", CLOSE_INVALID_PAYLOAD),
        ("{", CLOSE_INVALID_PAYLOAD),
        ('"media"', CLOSE_INVALID_PAYLOAD),
        (media("not base64!"), CLOSE_INVALID_PAYLOAD),
        (media("AAA"), CLOSE_INVALID_PAYLOAD),
        ('{"event":"media","media":"x"}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"mark","mark":{"name":5}}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"dtmf","dtmf":{"digit":"E"}}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"start","start":{}}', CLOSE_INVALID_PAYLOAD),
        (
            '{"event":"start","streamSid":"MZ","start":{"customParameters":"a=b"}}',
            CLOSE_INVALID_PAYLOAD,
        ),
        (
            '{"event":"start","streamSid":"MZ","start":{"mediaFormat":'
            '{"encoding":"audio/x-l16","sampleRate":16000}}}',
            CLOSE_POLICY,
        ),
        ('{"event":"update"}', CLOSE_POLICY),
        ("{}", CLOSE_POLICY),
    ],
)
def test_bad_input(raw: str, code: int) -> None:
    with pytest.raises(ProtocolError) as err:
        TwilioProtocol().parse(raw)
    assert err.value.code == code
    assert err.value.reason


def test_outbound_messages_exact() -> None:
    proto = TwilioProtocol()
    payload = b"\xff" * 160
    b64 = base64.b64encode(payload).decode()
    assert proto.media("MZ1", payload) == (
        '{"event":"media","streamSid":"MZ1","media":{"payload":"' + b64 + '"}}'
    )
    assert (
        proto.mark("MZ1", "utt-1") == '{"event":"mark","streamSid":"MZ1","mark":{"name":"utt-1"}}'
    )
    assert proto.clear("MZ1") == '{"event":"clear","streamSid":"MZ1"}'
    assert proto.name == "twilio" and proto.chunk_frames == 1
