"""The shape every carrier adapter has, plus shared JSON/base64 parsing helpers."""

from __future__ import annotations

import base64
import binascii
from typing import Any, Protocol

import orjson

from media.codec import AudioFormat
from media.events import CLOSE_INVALID_PAYLOAD, CLOSE_POLICY, Event, ProtocolError


class CarrierProtocol(Protocol):
    """Translates one carrier's WebSocket JSON to typed events and back."""

    name: str

    @property
    def chunk_frames(self) -> int:
        """20 ms frames that make one outbound chunk (Twilio 1; Exotel >= 3,200 B and 100 ms)."""
        ...

    def parse(self, raw: str) -> Event: ...

    def media(self, stream_id: str, payload: bytes) -> str: ...

    def mark(self, stream_id: str, name: str) -> str: ...

    def clear(self, stream_id: str) -> str: ...


def load_json(raw: str | bytes) -> dict[str, Any]:
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"malformed JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "message is not a JSON object")
    return msg


def b64decode(data: Any) -> bytes:
    if not isinstance(data, str):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "media payload is not a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "media payload is not valid base64") from None


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def section(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"'{msg.get('event')}' event lacks an '{key}' object")
    return value


def check_payload_size(payload: bytes, fmt: AudioFormat | None, max_ms: int = 1000) -> None:
    if fmt is None:
        return
    if fmt.encoding == "pcm16" and len(payload) % 2:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "PCM16 media payload has an odd byte count")
    if len(payload) > fmt.frame_bytes(max_ms):
        raise ProtocolError(CLOSE_POLICY, f"media chunk longer than {max_ms} ms")
