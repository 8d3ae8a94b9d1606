"""Twilio Media Streams protocol (bidirectional, `<Connect><Stream>`).

Every field is checked for its type and size before use; a bad one is a ProtocolError with a
short, escaped reason (never a traceback), so the session closes the stream with 1007/1008.
"""

from __future__ import annotations

import re

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

VALID_DTMF = set("0123456789*#ABCD")
_TRACK = re.compile(r"[a-z_]{1,32}")
MAX_TRACKS = 4


class TwilioProtocol:
    name = "twilio"
    chunk_frames = 1

    def parse(self, raw: str) -> Event:
        msg = load_json(raw)
        event = msg.get("event")
        if event == "media":
            media = section(msg, "media")
            payload = b64decode(media.get("payload"))
            check_payload_size(payload, MULAW_8K)
            return Media(
                payload=payload,
                timestamp_ms=whole_number(media.get("timestamp"), "media timestamp"),
                chunk=whole_number(media.get("chunk"), "media chunk"),
                track=_track(media.get("track"), "inbound"),
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
            start = section(msg, "start")
            fmt = _format(start.get("mediaFormat"))
            stream_sid = identifier(start.get("streamSid") or msg.get("streamSid"), "streamSid",
                                    required=True)
            return Start(
                stream_id=stream_sid,
                call_sid=identifier(start.get("callSid"), "callSid"),
                account_sid=identifier(start.get("accountSid"), "accountSid"),
                fmt=fmt,
                custom_parameters=parameters(start.get("customParameters"), "customParameters"),
                tracks=_tracks(start.get("tracks")),
            )
        if event == "dtmf":
            digit = section(msg, "dtmf").get("digit")
            if not isinstance(digit, str) or digit not in VALID_DTMF:
                raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"invalid DTMF digit {shown(digit)}")
            return Dtmf(digit)
        if event == "stop":
            return Stop("carrier stop")
        raise ProtocolError(CLOSE_POLICY, f"unknown event {shown(event)}")

    def media(self, stream_id: str, payload: bytes) -> str:
        return orjson.dumps(
            {"event": "media", "streamSid": stream_id, "media": {"payload": b64encode(payload)}}
        ).decode()

    def mark(self, stream_id: str, name: str) -> str:
        return orjson.dumps({"event": "mark", "streamSid": stream_id, "mark": {"name": name}}).decode()

    def clear(self, stream_id: str) -> str:
        return orjson.dumps({"event": "clear", "streamSid": stream_id}).decode()


def _track(value: object, default: str) -> str:
    if value is None or value == "":
        return default
    if not isinstance(value, str) or not _TRACK.fullmatch(value):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"media track is not a track name: {shown(value)}")
    return value


def _tracks(value: object) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TRACKS or not all(
        isinstance(t, str) and _TRACK.fullmatch(t) for t in value
    ):
        raise ProtocolError(
            CLOSE_INVALID_PAYLOAD, f"start.tracks is not a list of track names: {shown(value)}"
        )
    return list(value)


def _format(fmt_msg: object) -> AudioFormat:
    if not fmt_msg:
        return MULAW_8K
    if not isinstance(fmt_msg, dict):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "mediaFormat is not an object")
    encoding = fmt_msg.get("encoding", "audio/x-mulaw")
    rate = fmt_msg.get("sampleRate", 8000)
    if encoding != "audio/x-mulaw" or rate != 8000:
        raise ProtocolError(
            CLOSE_POLICY, f"unsupported Twilio media format {shown(encoding)} at {shown(rate)} Hz"
        )
    return MULAW_8K
