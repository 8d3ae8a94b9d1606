"""Exotel Voicebot protocol: parsing, outbound messages, chunking, carrier detection."""

from __future__ import annotations

import base64
import random

import numpy as np
import orjson
import pytest

from media.codec import AudioFormat, decode
from media.detect import CarrierDetector, DetectingProtocol, detect_protocol
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
from media.exotel import (
    MAX_CHUNK_BYTES,
    ExotelProtocol,
    exotel_chunks,
    exotel_format,
    min_chunk_frames,
)
from media.twilio import TwilioProtocol


def start_msg(media_format: object = None, **start_extra: object) -> str:
    start: dict[str, object] = {
        "stream_sid": "MZ123",
        "call_sid": "CA456",
        "account_sid": "AC789",
        "from": "+919876543210",
        "to": "+918047491899",
        "custom_parameters": {"call_id": "c-1", "token": "t"},
    }
    if media_format is not None:
        start["media_format"] = media_format
    start.update(start_extra)
    return orjson.dumps(
        {"event": "start", "sequence_number": "1", "stream_sid": "MZ123", "start": start}
    ).decode()


def media_msg(payload: bytes, chunk: object = "2", timestamp: object = "200") -> str:
    return orjson.dumps(
        {
            "event": "media",
            "sequence_number": "3",
            "stream_sid": "MZ123",
            "media": {
                "chunk": chunk,
                "timestamp": timestamp,
                "payload": base64.b64encode(payload).decode(),
            },
        }
    ).decode()


def test_start_reads_every_field() -> None:
    proto = ExotelProtocol()
    fmt = {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}
    event = proto.parse(start_msg(fmt))
    assert isinstance(event, Start)
    assert event.stream_id == "MZ123"
    assert event.call_sid == "CA456"
    assert event.account_sid == "AC789"
    assert event.from_number == "+919876543210"
    assert event.to_number == "+918047491899"
    assert event.custom_parameters == {"call_id": "c-1", "token": "t"}
    assert event.fmt == AudioFormat("pcm16", 8000)


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
@pytest.mark.parametrize("as_string", [True, False])
def test_pcm_rates_from_media_format(rate: int, as_string: bool) -> None:
    proto = ExotelProtocol()
    value: object = str(rate) if as_string else rate
    event = proto.parse(start_msg({"encoding": "audio/x-raw", "sample_rate": value}))
    assert isinstance(event, Start)
    assert event.fmt == AudioFormat("pcm16", rate)
    # a 100 ms chunk at that rate decodes to rate/10 samples
    samples = (np.arange(rate // 10) % 200 - 100).astype("<i2")
    media = proto.parse(media_msg(samples.tobytes()))
    assert isinstance(media, Media)
    assert np.array_equal(decode(media.payload, event.fmt), samples)


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_missing_media_format_uses_url_rate(rate: int) -> None:
    event = ExotelProtocol(sample_rate=rate).parse(start_msg())
    assert isinstance(event, Start)
    assert event.fmt == AudioFormat("pcm16", rate)


def test_media_format_overrides_url_rate() -> None:
    event = ExotelProtocol(sample_rate=16000).parse(start_msg({"sample_rate": "8000"}))
    assert isinstance(event, Start) and event.fmt.rate == 8000


@pytest.mark.parametrize(
    "encoding", ["audio/x-mulaw", "ulaw", "mulaw", "MULAW", "audio/x-mulaw;rate=8000"]
)
def test_mulaw_encodings(encoding: str) -> None:
    proto = ExotelProtocol()
    event = proto.parse(start_msg({"encoding": encoding, "sample_rate": "8000", "bit_rate": "8"}))
    assert isinstance(event, Start) and event.fmt == AudioFormat("mulaw", 8000)
    # µ-law is one byte per sample: an odd-sized chunk is fine
    media = proto.parse(media_msg(b"\xff" * 161))
    assert isinstance(media, Media) and len(media.payload) == 161


@pytest.mark.parametrize(
    "fmt",
    [
        {"encoding": "audio/x-raw", "sample_rate": "44100"},
        {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "8"},
        {"encoding": "audio/x-mulaw", "sample_rate": "16000"},
        {"encoding": "audio/opus", "sample_rate": "8000"},
        {"encoding": "audio/x-raw", "sample_rate": "fast"},
    ],
)
def test_unsupported_formats_are_policy_errors(fmt: dict[str, str]) -> None:
    with pytest.raises(ProtocolError) as err:
        ExotelProtocol().parse(start_msg(fmt))
    assert err.value.code == CLOSE_POLICY


def test_format_helper_reads_rate_spellings() -> None:
    assert exotel_format({"sample_rate": "16k"}) == AudioFormat("pcm16", 16000)
    assert exotel_format({"sample_rate": "24000Hz"}) == AudioFormat("pcm16", 24000)
    assert exotel_format(None, 16000) == AudioFormat("pcm16", 16000)


def test_bad_sample_rate_argument() -> None:
    with pytest.raises(ProtocolError) as err:
        ExotelProtocol(sample_rate=11025)
    assert err.value.code == CLOSE_POLICY


def test_media_fields_and_strings() -> None:
    proto = ExotelProtocol()
    event = proto.parse(media_msg(b"\x01\x00\x02\x00", chunk="7", timestamp="700"))
    assert event == Media(payload=b"\x01\x00\x02\x00", timestamp_ms=700, chunk=7, track="inbound")
    event = proto.parse(media_msg(b"", chunk=None, timestamp=""))
    assert isinstance(event, Media) and event.chunk is None and event.timestamp_ms is None
    for bad in ("soon", "\u00b2", "9" * 5000, -1, True, [1]):
        with pytest.raises(ProtocolError) as err:
            proto.parse(media_msg(b"", timestamp=bad))
        assert err.value.code == CLOSE_INVALID_PAYLOAD and "timestamp" in err.value.reason


def test_odd_pcm16_chunk_is_refused() -> None:
    proto = ExotelProtocol()
    proto.parse(start_msg({"encoding": "audio/x-raw", "sample_rate": "8000"}))
    with pytest.raises(ProtocolError) as err:
        proto.parse(media_msg(b"\x00" * 321))
    assert err.value.code == CLOSE_INVALID_PAYLOAD


def test_oversized_chunk_is_refused() -> None:
    with pytest.raises(ProtocolError) as err:
        ExotelProtocol().parse(media_msg(b"\x00" * (16000 + 2)))
    assert err.value.code == CLOSE_POLICY


def test_dtmf_mark_stop_connected() -> None:
    proto = ExotelProtocol()
    dtmf = orjson.dumps({"event": "dtmf", "dtmf": {"digit": "5", "duration": "100"}}).decode()
    assert proto.parse(dtmf) == Dtmf("5", 100)
    assert proto.parse('{"event":"dtmf","dtmf":{"digit":7}}') == Dtmf("7", None)
    assert proto.parse('{"event":"mark","stream_sid":"MZ1","mark":{"name":"u-3"}}') == Mark("u-3")
    assert isinstance(proto.parse('{"event":"stop","stream_sid":"MZ1"}'), Stop)
    stop = proto.parse('{"event":"stop","stop":{"call_sid":"CA1","reason":"callended"}}')
    assert stop == Stop("callended")
    assert proto.parse('{"event":"connected"}') == Connected("", "")


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", CLOSE_INVALID_PAYLOAD),
        ("[1, 2]", CLOSE_INVALID_PAYLOAD),
        ('{"event":"media","media":{"payload":"***"}}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"media","media":{"payload":12}}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"media"}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"dtmf","dtmf":{"digit":"55"}}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"dtmf","dtmf":{"digit":"x"}}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"mark","mark":{}}', CLOSE_INVALID_PAYLOAD),
        ('{"event":"start","start":{"call_sid":"CA1"}}', CLOSE_INVALID_PAYLOAD),
        (
            '{"event":"start","start":{"stream_sid":"MZ","custom_parameters":[1]}}',
            CLOSE_INVALID_PAYLOAD,
        ),
        ('{"event":"hello"}', CLOSE_POLICY),
        ('{"no_event":1}', CLOSE_POLICY),
    ],
)
def test_bad_input(raw: str, code: int) -> None:
    with pytest.raises(ProtocolError) as err:
        ExotelProtocol().parse(raw)
    assert err.value.code == code


def test_outbound_messages_are_snake_case() -> None:
    proto = ExotelProtocol()
    payload = bytes(range(256)) * 10
    assert orjson.loads(proto.media("MZ1", payload)) == {
        "event": "media",
        "stream_sid": "MZ1",
        "media": {"payload": base64.b64encode(payload).decode()},
    }
    assert orjson.loads(proto.mark("MZ1", "end-1")) == {
        "event": "mark",
        "stream_sid": "MZ1",
        "mark": {"name": "end-1"},
    }
    assert orjson.loads(proto.clear("MZ1")) == {"event": "clear", "stream_sid": "MZ1"}
    assert proto.name == "exotel"


@pytest.mark.parametrize(
    ("query_rate", "media_format", "frames", "chunk_bytes"),
    [
        # 3,200 B and 100 ms: the two readings of Exotel's "Minimum chunk size: 3.2k [100ms data]"
        (8000, None, 10, 3200),
        (16000, None, 5, 3200),
        (24000, None, 5, 4800),
        (16000, {"encoding": "audio/x-mulaw", "sample_rate": "8000"}, 20, 3200),
    ],
)
def test_outbound_chunk_follows_the_negotiated_format(
    query_rate: int, media_format: dict[str, str] | None, frames: int, chunk_bytes: int
) -> None:
    proto = ExotelProtocol(sample_rate=query_rate)
    start = proto.parse(start_msg(media_format))
    assert isinstance(start, Start)
    assert proto.chunk_frames == frames
    assert proto.chunk_frames * start.fmt.frame_bytes() == chunk_bytes
    assert min_chunk_frames(start.fmt) == frames


FORMATS = [
    AudioFormat("pcm16", 8000),
    AudioFormat("pcm16", 16000),
    AudioFormat("pcm16", 24000),
    AudioFormat("mulaw", 8000),
]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f.encoding}{f.rate}")
def test_chunks_conform_for_random_lengths(fmt: AudioFormat) -> None:
    rng = random.Random(fmt.rate + len(fmt.encoding))
    frame = fmt.frame_bytes()
    min_bytes = max(fmt.frame_bytes(100), -(-3200 // frame) * frame)
    lengths = [1, frame - 1, frame, min_bytes - 1, min_bytes, min_bytes + 1, 250_000]
    lengths += [rng.randrange(1, 300_000) for _ in range(200)]
    for n in lengths:
        n -= n % fmt.bytes_per_sample
        if n == 0:
            continue
        audio = rng.randbytes(n)
        for chunk_ms in (100, 240, 10_000):
            chunks = exotel_chunks(audio, fmt, chunk_ms=chunk_ms)
            for chunk in chunks:
                assert len(chunk) % frame == 0
                assert min_bytes <= len(chunk) <= MAX_CHUNK_BYTES
            joined = b"".join(chunks)
            assert joined[:n] == audio
            tail = joined[n:]
            assert tail == (fmt.silence(20) * (len(tail) // frame + 1))[: len(tail)]
            # padding never adds a whole chunk of silence
            assert len(tail) < max(min_bytes, frame)


def test_chunk_helper_edges() -> None:
    fmt = AudioFormat("pcm16", 8000)
    assert exotel_chunks(b"", fmt) == []
    with pytest.raises(ValueError):
        exotel_chunks(b"\x00" * 3, fmt)
    audio = b"\x01\x00" * 8000  # 1 s
    assert [len(c) for c in exotel_chunks(audio, fmt)] == [3200] * 5
    assert [len(c) for c in exotel_chunks(audio, fmt, min_ms=300)] == [4800] * 4
    assert [len(c) for c in exotel_chunks(audio, fmt, min_bytes=0)] == [1600] * 10
    with pytest.raises(ValueError):
        exotel_chunks(audio, fmt, min_bytes=MAX_CHUNK_BYTES + 1)


TWILIO_CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
TWILIO_START = orjson.dumps(
    {
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ1",
        "start": {"streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC1"},
    }
).decode()


def test_detect_from_first_message() -> None:
    assert isinstance(detect_protocol(TWILIO_CONNECTED, {}), TwilioProtocol)
    assert isinstance(detect_protocol(TWILIO_START, {}), TwilioProtocol)
    exotel = detect_protocol(start_msg(), {"sample-rate": "16000"})
    assert isinstance(exotel, ExotelProtocol) and exotel.sample_rate == 16000
    hinted = detect_protocol('{"event":"connected"}', {"carrier": "exotel"})
    assert isinstance(hinted, ExotelProtocol) and hinted.sample_rate == 8000


def test_detecting_protocol_chunks_by_the_format_start_announced() -> None:
    proto = DetectingProtocol({"sample-rate": "16000"})
    assert proto.chunk_frames == 1  # nothing recognised yet
    assert isinstance(proto.parse('{"event":"connected"}'), Connected)
    proto.parse(start_msg({"encoding": "audio/x-mulaw", "sample_rate": "8000"}))
    assert proto.name == "exotel" and proto.chunk_frames == 20  # 3,200 B of µ-law
    twilio = DetectingProtocol({})
    twilio.parse(TWILIO_START)
    assert twilio.chunk_frames == 1


@pytest.mark.parametrize(
    ("raw", "query"),
    [
        ('{"event":"connected"}', {}),
        ('{"event":"hello","foo":1}', {}),
        (TWILIO_START, {"carrier": "exotel"}),
        ('{"event":"connected"}', {"carrier": "vonage"}),
        ('{"event":"start","streamSid":"a","stream_sid":"b"}', {}),
        (start_msg(), {"sample-rate": "lots"}),
    ],
)
def test_detect_refuses_to_guess(raw: str, query: dict[str, str]) -> None:
    with pytest.raises(ProtocolError) as err:
        detect_protocol(raw, query)
    assert err.value.code == CLOSE_POLICY


def test_detector_waits_for_start() -> None:
    detector = CarrierDetector({"sample-rate": "24000", "token": "x"})
    # sample-rate alone marks the URL as Exotel's
    assert isinstance(detector.feed('{"event":"connected"}'), ExotelProtocol)

    detector = CarrierDetector({})
    assert detector.feed('{"event":"connected"}') is None
    proto = detector.feed(start_msg({"encoding": "audio/x-raw", "sample_rate": "8000"}))
    assert isinstance(proto, ExotelProtocol)
    assert detector.messages[0] == '{"event":"connected"}'
    events = [proto.parse(m) for m in detector.messages]
    assert isinstance(events[0], Connected) and isinstance(events[1], Start)

    detector = CarrierDetector()
    assert isinstance(detector.feed(TWILIO_CONNECTED), TwilioProtocol)
    assert detector.feed(TWILIO_START) is detector.protocol


def test_detector_gives_up_after_two() -> None:
    detector = CarrierDetector()
    assert detector.feed('{"event":"connected"}') is None
    with pytest.raises(ProtocolError) as err:
        detector.feed('{"event":"connected"}')
    assert err.value.code == CLOSE_POLICY
    with pytest.raises(ProtocolError) as err:
        CarrierDetector().feed("garbage")
    assert err.value.code == CLOSE_INVALID_PAYLOAD
