"""Typed carrier events and the error that closes a media WebSocket."""

from __future__ import annotations

from dataclasses import dataclass, field

from media.codec import AudioFormat

# WebSocket close codes used by the media endpoints (RFC 6455 §7.4.1).
CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1002
CLOSE_UNSUPPORTED = 1003
CLOSE_INVALID_PAYLOAD = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL = 1011
CLOSE_TRY_AGAIN = 1013


class ProtocolError(Exception):
    """A carrier message we must refuse; the session closes with `code` and logs `reason`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class Connected:
    protocol: str = ""
    version: str = ""


@dataclass(slots=True)
class Start:
    stream_id: str
    call_sid: str
    account_sid: str
    fmt: AudioFormat
    custom_parameters: dict[str, str] = field(default_factory=dict)
    tracks: list[str] = field(default_factory=list)
    from_number: str | None = None
    to_number: str | None = None


@dataclass(slots=True)
class Media:
    payload: bytes
    timestamp_ms: int | None = None
    chunk: int | None = None
    track: str = "inbound"


@dataclass(slots=True)
class Dtmf:
    digit: str
    duration_ms: int | None = None


@dataclass(slots=True)
class Mark:
    name: str


@dataclass(slots=True)
class Stop:
    reason: str = ""


Event = Connected | Start | Media | Dtmf | Mark | Stop
