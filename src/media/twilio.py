"""Twilio Media Streams protocol (bidirectional, `<Connect><Stream>`)."""

from __future__ import annotations

import orjson

from media.codec import MULAW_8K, AudioFormat
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
from media.protocol import b64decode, b64encode, load_json, section

VALID_DTMF = set("0123456789*#ABCD")


class TwilioProtocol:
    name = "twilio"
    chunk_frames = 1

    def parse(self, raw: str) -> Event:
        msg = load_json(raw)
        event = msg.get("event")
        if event == "media":
            media = section(msg, "media")
            track = media.get("track", "inbound")
            ts = media.get("timestamp")
            chunk = media.get("chunk")
            return Media(
                payload=b64decode(media.get("payload")),
                timestamp_ms=int(ts) if isinstance(ts, (int, str)) and str(ts).isdigit() else None,
                chunk=int(chunk) if isinstance(chunk, (int, str)) and str(chunk).isdigit() else None,
                track=str(track),
            )
        if event == "mark":
            name = section(msg, "mark").get("name")
            if not isinstance(name, str):
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, "mark event without a name")
            return Mark(name)
        if event == "connected":
            return Connected(str(msg.get("protocol", "")), str(msg.get("version", "")))
        if event == "start":
            start = section(msg, "start")
            fmt_msg = start.get("mediaFormat") or {}
            fmt = _format(fmt_msg)
            stream_sid = start.get("streamSid") or msg.get("streamSid")
            if not isinstance(stream_sid, str) or not stream_sid:
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, "start event without streamSid")
            params = start.get("customParameters") or {}
            if not isinstance(params, dict):
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, "customParameters is not an object")
            return Start(
                stream_id=stream_sid,
                call_sid=str(start.get("callSid", "")),
                account_sid=str(start.get("accountSid", "")),
                fmt=fmt,
                custom_parameters={str(k): str(v) for k, v in params.items()},
                tracks=list(start.get("tracks") or []),
            )
        if event == "dtmf":
            digit = section(msg, "dtmf").get("digit")
            if not isinstance(digit, str) or digit not in VALID_DTMF:
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"invalid DTMF digit {digit!r}")
            return Dtmf(digit)
        if event == "stop":
            return Stop("carrier stop")
        raise ProtocolError(CLOSE_POLICY, f"unknown event {str(event)[:40]!r}")

    def media(self, stream_id: str, payload: bytes) -> str:
        return orjson.dumps(
            {"event": "media", "streamSid": stream_id, "media": {"payload": b64encode(payload)}}
        ).decode()

    def mark(self, stream_id: str, name: str) -> str:
        return orjson.dumps({"event": "mark", "streamSid": stream_id, "mark": {"name": name}}).decode()

    def clear(self, stream_id: str) -> str:
        return orjson.dumps({"event": "clear", "streamSid": stream_id}).decode()


def _format(fmt_msg: object) -> AudioFormat:
    if not isinstance(fmt_msg, dict) or not fmt_msg:
        return MULAW_8K
    encoding = fmt_msg.get("encoding", "audio/x-mulaw")
    rate = fmt_msg.get("sampleRate", 8000)
    if encoding != "audio/x-mulaw" or rate != 8000:
        raise ProtocolError(
            CLOSE_POLICY, f"unsupported Twilio media format {encoding!r} at {rate!r} Hz"
        )
    return MULAW_8K
