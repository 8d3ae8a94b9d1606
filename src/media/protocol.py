"""The shape every carrier adapter has, plus shared JSON/base64 parsing helpers."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
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


#: the most digits a counter, timestamp or duration may have (ms for 31 years); also keeps
#: int() far from Python's 4,300-digit limit
MAX_DIGITS = 12
_DECIMAL = re.compile(rf"[0-9]{{1,{MAX_DIGITS}}}")  # ASCII only: "²".isdigit() is True
_IDENT = re.compile(r"[!-~]{1,128}")  # printable ASCII, no spaces: SIDs and stream ids
MAX_PARAMS = 32
MAX_PARAM_CHARS = 1024
MAX_TEXT_CHARS = 256


def shown(value: object, limit: int = 24) -> str:
    """An untrusted value as a short, escaped piece of a close reason or log line."""
    if isinstance(value, str):
        return ascii(value[:limit]) + ("..." if len(value) > limit else "")
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        # repr() of a huge int raises (and costs quadratic time below the limit)
        return repr(value) if value.bit_length() <= 64 else f"<{value.bit_length()}-bit integer>"
    return f"<{type(value).__name__}>"


def whole_number(value: object, what: str) -> int | None:
    """A counter, timestamp or duration: absent or "" is None; a non-negative integer (or its
    ASCII decimal text) of at most MAX_DIGITS digits is that number; anything else is 1007."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < 10**MAX_DIGITS:
            return value
    elif isinstance(value, float):
        if value.is_integer() and 0 <= value < 10**MAX_DIGITS:
            return int(value)
    elif isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return int(value.strip())
    raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"{what} is not a whole number: {shown(value)}")


def identifier(value: object, what: str, required: bool = False) -> str:
    """A carrier id (stream, call or account SID): printable ASCII, at most 128 characters."""
    if value is None or value == "":
        if required:
            raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"start event without {what}")
        return ""
    if not isinstance(value, str) or not _IDENT.fullmatch(value):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"{what} is not a carrier id: {shown(value)}")
    return value


def text(value: object, what: str, default: str = "", max_chars: int = MAX_TEXT_CHARS) -> str:
    """A short free-text field: a string of printable characters, at most `max_chars`."""
    if value is None or value == "":
        return default
    if not isinstance(value, str) or len(value) > max_chars or not value.isprintable():
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"{what} is not short text: {shown(value)}")
    return value


def parameters(value: object, what: str) -> dict[str, str]:
    """Custom parameters: an object of at most MAX_PARAMS short keys to short scalar values
    (numbers and booleans become text, as a carrier's URL-encoded parameters would)."""
    if value is None or value == "":
        return {}
    if not isinstance(value, Mapping):
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"{what} is not an object")
    if len(value) > MAX_PARAMS:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, f"{what} has more than {MAX_PARAMS} entries")
    out: dict[str, str] = {}
    for key, item in value.items():
        name = text(key, f"{what} key", max_chars=64)
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, int) and item.bit_length() <= 64:
            item = str(item)
        elif isinstance(item, float):
            item = repr(item)
        out[name] = text(item, f"{what}.{shown(name, 16)}", max_chars=MAX_PARAM_CHARS)
    return out


def check_payload_size(payload: bytes, fmt: AudioFormat | None, max_ms: int = 1000) -> None:
    if fmt is None:
        return
    if fmt.encoding == "pcm16" and len(payload) % 2:
        raise ProtocolError(CLOSE_INVALID_PAYLOAD, "PCM16 media payload has an odd byte count")
    if len(payload) > fmt.frame_bytes(max_ms):
        raise ProtocolError(CLOSE_POLICY, f"media chunk longer than {max_ms} ms")
