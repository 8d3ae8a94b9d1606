"""Exotel Voicebot (bidirectional AgentStream) protocol and outbound chunking.

Exotel speaks snake_case JSON. Audio is base64 PCM16 little-endian mono at 8 kHz unless the
stream URL asked for `?sample-rate=16000|24000`; some flows send `audio/x-mulaw`. The `start`
event's `media_format` is authoritative when present. Outbound chunks must be a whole number
of 20 ms frames and at most 100 KB, or the caller hears gaps. Exotel states the minimum as
"3.2k [100ms data]", two figures that disagree at 8 kHz PCM16 (100 ms is 1,600 B), so chunks
are at least 3,200 B *and* at least 100 ms: 200 ms at 8 kHz PCM16, 100 ms at 16 and 24 kHz,
400 ms for 8 kHz µ-law (`min_chunk_frames`, `exotel_chunks`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import orjson

from media.codec import FRAME_MS, AudioFormat
from media.events import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_POLICY,
    Connected,
    Dtmf,
    Event,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
)
from media.protocol import (
    b64decode,
    b64encode,
    check_payload_size,
    identifier,
    load_json,
    parameters,
    section,
    shown,
    text,
    whole_number,
)

SUPPORTED_PCM_RATES = (8000, 16000, 24000)
VALID_DTMF = set("0123456789*#ABCD")
MIN_CHUNK_MS = 100
MIN_CHUNK_BYTES = 3_200
MAX_CHUNK_BYTES = 100_000

_MULAW_NAMES = {
    "audio/x-mulaw",
    "audio/mulaw",
    "audio/ulaw",
    "audio/x-ulaw",
    "mulaw",
    "ulaw",
    "pcmu",
}
_PCM_NAMES = {
    "",
    "audio/x-raw",
    "audio/raw",
    "raw",
    "pcm",
    "pcm16",
    "linear16",
    "audio/l16",
    "audio/x-l16",
    "audio/pcm",
    "slin",
    "slin16",
}


class ExotelProtocol:
    """Parses Exotel Voicebot events and builds outbound messages.

    Stateful only in one respect: after `start` the negotiated format is kept in `fmt`,
    so inbound media chunks can be checked against it.

    `sample_rate` is a rate (refused at once if unsupported) or the stream URL's own
    `sample-rate` text; a bad one is refused by the first `parse`, so the session closes the
    stream with 1008 and a logged reason.
    """

    name = "exotel"

    def __init__(self, sample_rate: int | str = 8000) -> None:
        self._refused: ProtocolError | None = None
        if isinstance(sample_rate, str):
            try:
                sample_rate = url_sample_rate(sample_rate)
            except ProtocolError as exc:
                self._refused, sample_rate = exc, 8000
        elif sample_rate not in SUPPORTED_PCM_RATES:
            raise ProtocolError(CLOSE_POLICY, f"unsupported Exotel sample rate {shown(sample_rate)}")
        self.sample_rate = sample_rate
        self.fmt = AudioFormat("pcm16", sample_rate)

    @property
    def chunk_frames(self) -> int:
        """20 ms frames per outbound chunk for the negotiated format (known after `start`)."""
        return min_chunk_frames(self.fmt)

    def parse(self, raw: str) -> Event:
        if self._refused is not None:
            raise self._refused
        msg = load_json(raw)
        event = msg.get("event")
        if event == "media":
            media = section(msg, "media")
            payload = b64decode(media.get("payload"))
            check_payload_size(payload, self.fmt)
            return Media(
                payload=payload,
                timestamp_ms=whole_number(media.get("timestamp"), "media timestamp"),
                chunk=whole_number(media.get("chunk"), "media chunk"),
                track=text(media.get("track"), "media track", "inbound", max_chars=32),
            )
        if event == "mark":
            name = section(msg, "mark").get("name")
            if not isinstance(name, str):
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, "mark event without a name")
            return Mark(text(name, "mark name"))
        if event == "connected":
            return Connected(text(msg.get("protocol"), "protocol", max_chars=32),
                             text(msg.get("version"), "version", max_chars=32))
        if event == "start":
            return self._start(msg)
        if event == "dtmf":
            dtmf = section(msg, "dtmf")
            digit = dtmf.get("digit")
            if isinstance(digit, int) and not isinstance(digit, bool) and 0 <= digit <= 9:
                digit = str(digit)
            if not isinstance(digit, str) or len(digit) != 1 or digit.upper() not in VALID_DTMF:
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"invalid DTMF digit {shown(digit)}")
            return Dtmf(digit.upper(), whole_number(dtmf.get("duration"), "DTMF duration"))
        if event == "stop":
            stop = msg.get("stop")
            reason = stop.get("reason") if isinstance(stop, dict) else None
            if not isinstance(reason, str) or not reason or not reason.isprintable():
                return Stop("carrier stop")
            return Stop(reason[:80])
        raise ProtocolError(CLOSE_POLICY, f"unknown event {shown(event)}")

    def _start(self, msg: dict[str, Any]) -> Start:
        start = section(msg, "start")
        stream_sid = identifier(start.get("stream_sid") or msg.get("stream_sid"), "stream_sid",
                                required=True)
        call_sid = identifier(start.get("call_sid"), "call_sid")
        account_sid = identifier(start.get("account_sid"), "account_sid")
        params = parameters(start.get("custom_parameters"), "custom_parameters")
        from_number = text(start.get("from"), "start.from", max_chars=32)
        to_number = text(start.get("to"), "start.to", max_chars=32)
        self.fmt = exotel_format(start.get("media_format"), self.sample_rate)
        return Start(
            stream_id=stream_sid,
            call_sid=call_sid,
            account_sid=account_sid,
            fmt=self.fmt,
            custom_parameters=params,
            tracks=["inbound"],
            from_number=from_number or None,
            to_number=to_number or None,
        )

    def media(self, stream_id: str, payload: bytes) -> str:
        return orjson.dumps(
            {"event": "media", "stream_sid": stream_id, "media": {"payload": b64encode(payload)}}
        ).decode()

    def mark(self, stream_id: str, name: str) -> str:
        return orjson.dumps(
            {"event": "mark", "stream_sid": stream_id, "mark": {"name": name}}
        ).decode()

    def clear(self, stream_id: str) -> str:
        return orjson.dumps({"event": "clear", "stream_sid": stream_id}).decode()


def exotel_format(media_format: object, default_rate: int = 8000) -> AudioFormat:
    """The audio format an Exotel `start.media_format` announces (default PCM16 at `default_rate`)."""
    if media_format is None or media_format == {}:
        return AudioFormat("pcm16", default_rate)
    if not isinstance(media_format, dict):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "media_format is not an object")
    raw_encoding = media_format.get("encoding") or ""
    if not isinstance(raw_encoding, str) or len(raw_encoding) > 64:
        raise ProtocolError(CLOSE_POLICY, f"unsupported Exotel encoding {shown(raw_encoding)}")
    raw_encoding = raw_encoding.strip().lower()
    # "audio/x-mulaw;rate=8000" style content types carry the rate as a parameter
    encoding, _, params = raw_encoding.partition(";")
    encoding = encoding.strip()
    rate_value: object = media_format.get("sample_rate")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip() == "rate" and rate_value in (None, ""):
            rate_value = value.strip()
    rate = _rate(rate_value)
    if encoding in _MULAW_NAMES:
        bits = _bits(media_format.get("bit_rate"))
        if rate not in (None, 8000) or bits not in (None, 8):
            raise ProtocolError(
                CLOSE_POLICY, f"unsupported Exotel µ-law format at {shown(rate_value)} Hz"
            )
        return AudioFormat("mulaw", 8000)
    if encoding in _PCM_NAMES:
        rate = rate or default_rate
        bits = _bits(media_format.get("bit_rate"))
        if rate not in SUPPORTED_PCM_RATES or bits not in (None, 16):
            raise ProtocolError(
                CLOSE_POLICY,
                f"unsupported Exotel PCM format: {shown(rate_value)} Hz, {shown(bits)} bits",
            )
        return AudioFormat("pcm16", rate)
    raise ProtocolError(CLOSE_POLICY, f"unsupported Exotel encoding {shown(raw_encoding)}")


def url_sample_rate(raw: str) -> int:
    """The PCM rate a stream URL's `sample-rate` asks for; ProtocolError(1008) if bad."""
    rate = int(raw) if _URL_RATE.fullmatch(raw) else None
    if rate is None:
        raise ProtocolError(CLOSE_POLICY, f"bad sample-rate {shown(raw, 12)} in stream URL")
    if rate not in SUPPORTED_PCM_RATES:
        raise ProtocolError(CLOSE_POLICY, f"unsupported Exotel sample rate {rate}")
    return rate


def query_sample_rate(query: Mapping[str, str]) -> str:
    """The stream URL's `sample-rate` (or `sample_rate`) text, "8000" when absent."""
    return query.get("sample-rate") or query.get("sample_rate") or "8000"


def min_chunk_frames(
    fmt: AudioFormat, min_ms: int = MIN_CHUNK_MS, min_bytes: int = MIN_CHUNK_BYTES
) -> int:
    """The fewest 20 ms frames of `fmt` that are at least `min_ms` long and `min_bytes` big."""
    frame = fmt.frame_bytes()
    return max(1, -(-min_ms // FRAME_MS), -(-min_bytes // frame))


def exotel_chunks(
    pcm_bytes: bytes,
    fmt: AudioFormat,
    chunk_ms: int = MIN_CHUNK_MS,
    min_ms: int = MIN_CHUNK_MS,
    min_bytes: int = MIN_CHUNK_BYTES,
) -> list[bytes]:
    """Split outbound audio into chunks Exotel plays without gaps.

    Every chunk is a whole number of 20 ms frames of `fmt`, at least `min_ms` long and
    `min_bytes` big, and at most 100 KB; chunks are `chunk_ms` long (or that minimum, if
    larger) except the last, whose tail is padded with silence up to the next frame boundary
    and up to the minimum.
    """
    if fmt.encoding == "pcm16" and len(pcm_bytes) % 2:
        raise ValueError("PCM16 audio has an odd number of bytes")
    if not pcm_bytes:
        return []
    frame = fmt.frame_bytes()
    least = min_chunk_frames(fmt, min_ms, min_bytes) * frame
    most = MAX_CHUNK_BYTES // frame * frame
    if least > most:
        raise ValueError(f"a {least}-byte minimum chunk does not fit in {MAX_CHUNK_BYTES} bytes")
    size = min(max(-(-fmt.frame_bytes(chunk_ms) // frame) * frame, least), most)
    chunks = [pcm_bytes[i : i + size] for i in range(0, len(pcm_bytes), size)]
    tail = chunks[-1]
    padded_len = max(-(-len(tail) // frame) * frame, least)
    if padded_len > len(tail):
        silence = fmt.silence(FRAME_MS)
        missing = padded_len - len(tail)
        chunks[-1] = tail + (silence * (missing // len(silence) + 1))[:missing]
    return chunks


_URL_RATE = re.compile(r"[0-9]{4,6}")
# "8000", "8000Hz", "16k", "16 kHz" appear in hand-built flows (ASCII digits only)
_RATE_TEXT = re.compile(r"([0-9]{1,6})\s*(k?)\s*(?:hz)?", re.IGNORECASE)
# bits per sample ("16") or per second ("128000", "128kbps", Exotel's own spelling)
_BITS_TEXT = re.compile(r"([0-9]{1,7})\s*(k?)\s*(?:bps|bit/s)?", re.IGNORECASE)


def _number(value: object, pattern: re.Pattern[str], what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        pass
    elif isinstance(value, int) and 0 < value < 10**7:
        return value
    elif isinstance(value, float) and value.is_integer() and 0 < value < 10**7:
        return int(value)
    elif isinstance(value, str) and (m := pattern.fullmatch(value.strip())):
        return int(m.group(1)) * (1000 if m.group(2) else 1)
    raise ProtocolError(CLOSE_POLICY, f"unreadable Exotel {what} {shown(value)}")


def _rate(value: object) -> int | None:
    return _number(value, _RATE_TEXT, "sample_rate")


def _bits(value: object) -> int | None:
    """Bits per sample from `bit_rate`; None when absent or given per second ("128kbps"),
    which says nothing the encoding and rate do not."""
    bits = _number(value, _BITS_TEXT, "bit_rate")
    return bits if bits is not None and bits <= 32 else None
