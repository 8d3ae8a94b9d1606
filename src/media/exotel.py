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
from media.protocol import b64decode, b64encode, check_payload_size, load_json, section

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
    """

    name = "exotel"

    def __init__(self, sample_rate: int = 8000) -> None:
        if sample_rate not in SUPPORTED_PCM_RATES:
            raise ProtocolError(CLOSE_POLICY, f"unsupported Exotel sample rate {sample_rate!r}")
        self.sample_rate = sample_rate
        self.fmt = AudioFormat("pcm16", sample_rate)

    @property
    def chunk_frames(self) -> int:
        """20 ms frames per outbound chunk for the negotiated format (known after `start`)."""
        return min_chunk_frames(self.fmt)

    def parse(self, raw: str) -> Event:
        msg = load_json(raw)
        event = msg.get("event")
        if event == "media":
            media = section(msg, "media")
            payload = b64decode(media.get("payload"))
            check_payload_size(payload, self.fmt)
            return Media(
                payload=payload,
                timestamp_ms=_int_or_none(media.get("timestamp")),
                chunk=_int_or_none(media.get("chunk")),
                track=str(media.get("track") or "inbound"),
            )
        if event == "mark":
            name = section(msg, "mark").get("name")
            if not isinstance(name, str):
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, "mark event without a name")
            return Mark(name)
        if event == "connected":
            return Connected(str(msg.get("protocol") or ""), str(msg.get("version") or ""))
        if event == "start":
            return self._start(msg)
        if event == "dtmf":
            dtmf = section(msg, "dtmf")
            digit = dtmf.get("digit")
            if isinstance(digit, int) and not isinstance(digit, bool):
                digit = str(digit)
            if not isinstance(digit, str) or digit.upper() not in VALID_DTMF or len(digit) != 1:
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"invalid DTMF digit {digit!r}")
            return Dtmf(digit.upper(), _int_or_none(dtmf.get("duration")))
        if event == "stop":
            stop = msg.get("stop")
            reason = stop.get("reason") if isinstance(stop, dict) else None
            return Stop(str(reason) if reason else "carrier stop")
        raise ProtocolError(CLOSE_POLICY, f"unknown event {str(event)[:40]!r}")

    def _start(self, msg: dict[str, Any]) -> Start:
        start = section(msg, "start")
        stream_sid = start.get("stream_sid") or msg.get("stream_sid")
        if not isinstance(stream_sid, str) or not stream_sid:
            raise ProtocolError(CLOSE_INVALID_PAYLOAD, "start event without stream_sid")
        params = start.get("custom_parameters")
        if params is None or params == "":
            params = {}
        if not isinstance(params, dict):
            raise ProtocolError(CLOSE_INVALID_PAYLOAD, "custom_parameters is not an object")
        self.fmt = exotel_format(start.get("media_format"), self.sample_rate)
        from_number = start.get("from")
        to_number = start.get("to")
        return Start(
            stream_id=stream_sid,
            call_sid=str(start.get("call_sid") or ""),
            account_sid=str(start.get("account_sid") or ""),
            fmt=self.fmt,
            custom_parameters={str(k): str(v) for k, v in params.items()},
            tracks=["inbound"],
            from_number=str(from_number) if from_number else None,
            to_number=str(to_number) if to_number else None,
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
    raw_encoding = str(media_format.get("encoding") or "").strip().lower()
    # "audio/x-mulaw;rate=8000" style content types carry the rate as a parameter
    encoding, _, params = raw_encoding.partition(";")
    encoding = encoding.strip()
    rate_value: object = media_format.get("sample_rate")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip() == "rate" and rate_value in (None, ""):
            rate_value = value.strip()
    rate = _rate(rate_value)
    bits = _int_or_none(media_format.get("bit_rate"))
    if encoding in _MULAW_NAMES:
        if rate not in (None, 8000) or bits not in (None, 8):
            raise ProtocolError(
                CLOSE_POLICY, f"unsupported Exotel µ-law format at {rate_value!r} Hz"
            )
        return AudioFormat("mulaw", 8000)
    if encoding in _PCM_NAMES:
        rate = rate or default_rate
        if rate not in SUPPORTED_PCM_RATES or bits not in (None, 16):
            raise ProtocolError(
                CLOSE_POLICY, f"unsupported Exotel PCM format: {rate_value!r} Hz, {bits!r} bits"
            )
        return AudioFormat("pcm16", rate)
    raise ProtocolError(CLOSE_POLICY, f"unsupported Exotel encoding {raw_encoding[:40]!r}")


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


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _rate(value: object) -> int | None:
    if value is None or value == "":
        return None
    rate = _int_or_none(value)
    if rate is None:
        # "8000Hz", "16k" appear in hand-built flows
        text = str(value).strip().lower().removesuffix("hz").strip()
        if text.endswith("k") and text[:-1].isdigit():
            rate = int(text[:-1]) * 1000
        elif text.isdigit():
            rate = int(text)
    if rate is None:
        raise ProtocolError(CLOSE_POLICY, f"unreadable Exotel sample_rate {value!r}")
    return rate
