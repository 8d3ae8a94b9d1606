"""Tell which carrier opened a media WebSocket from its first message(s).

Twilio writes camelCase (`streamSid`, `sequenceNumber`, `"protocol": "Call"`); Exotel writes
snake_case (`stream_sid`, `sequence_number`). Exotel's `connected` message is a bare
`{"event": "connected"}`, so `CarrierDetector` may need the following `start` to be sure.
The stream URL may also say so outright with `?carrier=twilio|exotel`; `?sample-rate=` is
Exotel's own parameter and picks the PCM rate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from media.events import CLOSE_POLICY, Connected, Event, ProtocolError
from media.exotel import ExotelProtocol, query_sample_rate, url_sample_rate
from media.protocol import CarrierProtocol, load_json, shown
from media.twilio import TwilioProtocol

Carrier = Literal["twilio", "exotel"]

_TWILIO_KEYS = frozenset(
    {"streamSid", "sequenceNumber", "callSid", "accountSid", "mediaFormat", "customParameters"}
)
_EXOTEL_KEYS = frozenset(
    {
        "stream_sid",
        "sequence_number",
        "call_sid",
        "account_sid",
        "media_format",
        "custom_parameters",
    }
)
MAX_MESSAGES = 2


def carrier_of(msg: Mapping[str, Any]) -> Carrier | None:
    """The carrier a decoded message belongs to, or None when it does not say."""
    keys = set(msg)
    for value in msg.values():
        if isinstance(value, dict):
            keys.update(value)
    twilio = bool(keys & _TWILIO_KEYS) or msg.get("protocol") == "Call"
    exotel = bool(keys & _EXOTEL_KEYS)
    if twilio and exotel:
        raise ProtocolError(CLOSE_POLICY, "message mixes Twilio and Exotel field names")
    if twilio:
        return "twilio"
    if exotel:
        return "exotel"
    return None


def protocol_for(carrier: Carrier, query: Mapping[str, str]) -> CarrierProtocol:
    if carrier == "twilio":
        return TwilioProtocol()
    return ExotelProtocol(sample_rate=_sample_rate(query))


def detect_protocol(first_message: str, query: Mapping[str, str]) -> CarrierProtocol:
    """The protocol for a stream, from its first message and the URL query; refuses to guess."""
    carrier = _decide(carrier_of(load_json(first_message)), query)
    if carrier is None:
        raise ProtocolError(CLOSE_POLICY, "cannot tell the carrier from the first message")
    return protocol_for(carrier, query)


class CarrierDetector:
    """Feed the first messages until the carrier is certain (at most two: connected, start).

    `feed` returns the protocol once known, else None; it raises ProtocolError(1008) when the
    carrier is still unknown after `MAX_MESSAGES` messages. `messages` keeps what was fed,
    so the caller can parse it with the protocol it got.
    """

    def __init__(self, query: Mapping[str, str] | None = None) -> None:
        self.query: Mapping[str, str] = query or {}
        self.messages: list[str] = []
        self.protocol: CarrierProtocol | None = None

    def feed(self, raw: str) -> CarrierProtocol | None:
        if self.protocol is not None:
            return self.protocol
        self.messages.append(raw)
        carrier = _decide(carrier_of(load_json(raw)), self.query)
        if carrier is None:
            if len(self.messages) >= MAX_MESSAGES:
                raise ProtocolError(
                    CLOSE_POLICY, f"cannot tell the carrier after {MAX_MESSAGES} messages"
                )
            return None
        self.protocol = protocol_for(carrier, self.query)
        return self.protocol


def _decide(found: Carrier | None, query: Mapping[str, str]) -> Carrier | None:
    hinted = _query_carrier(query)
    if hinted and found and hinted != found:
        raise ProtocolError(
            CLOSE_POLICY, f"stream URL says {hinted} but the messages are {found}'s"
        )
    if found or hinted:
        return found or hinted
    # Exotel's own URL parameter; a weak hint, used only when the message says nothing
    if "sample-rate" in query:
        return "exotel"
    return None


def _query_carrier(query: Mapping[str, str]) -> Carrier | None:
    value = (query.get("carrier") or "").strip().lower()
    if value in ("twilio", "exotel"):
        return value  # type: ignore[return-value]
    if value:
        raise ProtocolError(CLOSE_POLICY, f"unknown carrier {shown(value, 20)} in stream URL")
    return None


def _sample_rate(query: Mapping[str, str]) -> int:
    return url_sample_rate(query_sample_rate(query))


class DetectingProtocol:
    """A `CarrierProtocol` for the `/media` endpoint: recognises the carrier from the first
    messages, then delegates everything to that carrier's protocol."""

    def __init__(self, query: Mapping[str, str] | None = None) -> None:
        self._detector = CarrierDetector(query)
        self._inner: CarrierProtocol | None = None
        self.name = "unknown"

    def parse(self, raw: str) -> Event:
        if self._inner is None:
            found = self._detector.feed(raw)
            if found is None:
                return Connected()  # only a bare `connected` can leave the carrier open
            self._inner = found
            self.name = found.name
        return self._inner.parse(raw)

    @property
    def chunk_frames(self) -> int:
        # asked when playback starts, after `start` fixed the carrier's format
        return 1 if self._inner is None else self._inner.chunk_frames

    def _proto(self) -> CarrierProtocol:
        if self._inner is None:
            raise ProtocolError(CLOSE_POLICY, "carrier not recognised")
        return self._inner

    def media(self, stream_id: str, payload: bytes) -> str:
        return self._proto().media(stream_id, payload)

    def mark(self, stream_id: str, name: str) -> str:
        return self._proto().mark(stream_id, name)

    def clear(self, stream_id: str) -> str:
        return self._proto().clear(stream_id)
