"""One emulated Exotel call, and how it plays out after `POST .../Calls/connect.json`.

After Exotel's documents (developer.exotel.com):
- Calls connect API (docs/voice-v1, "outgoing call to connect number to a call flow", and the
  AgentStream developer guide): `From` is dialled first; it goes into the flow at `Url`, or
  straight to the bot at `StreamUrl` (`StreamType=bidirectional`); `StatusCallback` with
  `StatusCallbackEvents[]` (answered, terminal; ringing where enabled) and
  `StatusCallbackContentType` (multipart/form-data or application/json); `TimeOut` (ring
  seconds) and `TimeLimit` (call seconds, at most 14,400).
- StatusCallback (docs/voice-v1/api-reference/status-callback, docs/references/webhooks):
  always CallSid, DateUpdated, Status (completed, failed, busy, no-answer), RecordingUrl; for
  a subscribed event also EventType, DateCreated, To, From, PhoneNumberSid, StartTime,
  EndTime, ConversationDuration, Direction (outbound-api), CustomField and Legs
  (OnCallDuration, Status, AnsweredBy). Times are "YYYY-MM-DD HH:mm:ss". A delivery that is
  not answered 2xx is retried up to twice. Without events, only the terminal callback is sent.
- Voicebot applet / bidirectional stream: the stream URL's query reaches the bot as
  `custom_parameters`; `?sample-rate=` picks 8, 16 or 24 kHz PCM16.
The call ends when the bot closes the stream (a flow then asks the Connect applet's dynamic
URL whether to transfer), when the callee hangs up, or at `TimeLimit` / the fate's
`max_call_s`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson

from emulators.carrier_line import Line, LineChoice, run_media
from emulators.fates import CallbackQueue, CallbackRecord, Fate, form_encoded, play_out
from evaluation.phone import SimulatedPhone
from media.codec import AudioFormat

log = logging.getLogger(__name__)

TERMINAL = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})
CALLBACK_RETRIES = 2
TRANSFER_HOLD_S = 0.2


def exotel_time(t: datetime | None = None) -> str:
    return (t or datetime.now()).strftime("%Y-%m-%d %H:%M:%S")


@dataclass
class ExotelFlow:
    """An App Bazaar flow: Voicebot(voicebot_url) -> [Connect(dynamic connect_url)] -> Hangup."""

    voicebot_url: str
    connect_url: str | None = None


@dataclass
class ExotelCall:
    sid: str
    account_sid: str
    to: str | None
    from_: str
    caller_id: str
    status: str = "in-progress"
    stream_url: str | None = None
    flow_url: str | None = None
    custom_field: str | None = None
    status_callback: str | None = None
    received: list[dict[str, Any]] = field(default_factory=list)
    transferred_to: str | None = None
    connect_requests: list[dict[str, str]] = field(default_factory=list)
    stream_open: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    date_created: str = field(default_factory=lambda: exotel_time())
    # played calls (the emulator has fates)
    fate: Fate | None = None
    status_callback_events: list[str] = field(default_factory=list)
    callback_content_type: str = "application/x-www-form-urlencoded"
    answered_at: datetime | None = None
    end_time: str | None = None
    duration: int | None = None
    ended_by: str | None = None
    phone: SimulatedPhone | None = None
    line: Line | None = None
    hangup: asyncio.Event = field(default_factory=asyncio.Event)  # the callee hangs up now
    done: asyncio.Event = field(default_factory=asyncio.Event)  # last callback delivered

    def resource(self) -> dict[str, Any]:
        return {
            "Call": {
                "Sid": self.sid,
                "ParentCallSid": None,
                "DateCreated": self.date_created,
                "DateUpdated": exotel_time(),
                "AccountSid": self.account_sid,
                "To": self.to or self.from_,
                "From": self.from_,
                "PhoneNumberSid": self.caller_id,
                "Status": self.status,
                "StartTime": self.date_created,
                "EndTime": self.end_time,
                "Duration": None if self.duration is None else str(self.duration),
                "Price": None,
                "Direction": "outbound-api",
                "AnsweredBy": None,
                "ForwardedFrom": None,
                "CallerName": None,
                "Uri": f"/v1/Accounts/{self.account_sid}/Calls/{self.sid}.json",
                "RecordingUrl": None,
            }
        }


def stream_format(url: str) -> tuple[AudioFormat, dict[str, str]]:
    """The audio format a Voicebot stream URL asks for, and its other query parameters
    (which Exotel hands the bot as custom parameters)."""
    query = dict(parse_qsl(urlsplit(url).query))
    rate = int(query.pop("sample-rate", "8000"))
    return AudioFormat("pcm16", rate), query


async def ask_connect_applet(
    session: aiohttp.ClientSession, call: ExotelCall, flow: ExotelFlow | None
) -> None:
    """After the Voicebot applet: a flow's Connect applet asks its dynamic URL whom to dial."""
    if flow is None or not flow.connect_url:
        return
    params = {
        "CallSid": call.sid,
        "CallFrom": call.from_,
        "CallTo": call.caller_id,
        "Direction": "outbound-dial",
        "CustomField": call.custom_field or "",
    }
    call.connect_requests.append(params)
    try:
        async with session.get(
            flow.connect_url, params=params, headers={"Exotel-Version": "1.0"}
        ) as response:
            body = await response.json(content_type=None) if response.status == 200 else {}
    except (aiohttp.ClientError, ValueError):
        body = {}
    numbers = (body.get("destination") or {}).get("numbers") if isinstance(body, dict) else None
    if numbers:
        call.transferred_to = str(numbers[0])


def encoder(content_type: str) -> Callable[[list[tuple[str, str]]], Any]:
    """How a callback body is written for the content type the request asked for."""
    def multipart(params: list[tuple[str, str]]) -> tuple[aiohttp.FormData, dict[str, str]]:
        form = aiohttp.FormData(quote_fields=False, default_to_multipart=True)
        for name, value in params:
            form.add_field(name, value)
        return form, {}

    def as_json(params: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
        body: dict[str, Any] = {}
        legs: dict[int, dict[str, Any]] = {}
        for name, value in params:
            if name.startswith("Legs["):
                index, key = name[5:].split("][")
                legs.setdefault(int(index), {})[key.rstrip("]")] = (
                    int(value) if key.startswith("OnCallDuration") else value)
            else:
                body[name] = int(value) if name == "ConversationDuration" else value
        if legs:
            body["Legs"] = [legs[i] for i in sorted(legs)]
        return orjson.dumps(body), {"Content-Type": "application/json"}

    if content_type == "application/json":
        return as_json
    if content_type == "multipart/form-data":
        return multipart
    return form_encoded


class ExotelCallPlayer:
    """Plays created calls out; `records` receives every callback delivery."""

    def __init__(
        self,
        records: list[CallbackRecord],
        session: Callable[[], aiohttp.ClientSession],
        resolve_line: Callable[[LineChoice], Line],
        flows: dict[str, ExotelFlow],
    ) -> None:
        self.records = records
        self.session = session
        self.resolve_line = resolve_line
        self.flows = flows

    async def play(self, call: ExotelCall) -> None:
        assert call.fate is not None
        fate = call.fate
        await play_out(
            call, lambda queue: self._progress(call, fate, queue),
            lambda queue, status: self._finish(call, queue, status),
            terminal=TERMINAL, session=self.session, records=self.records,
            retries=CALLBACK_RETRIES, ended=call.ended)

    async def _progress(self, call: ExotelCall, fate: Fate, queue: CallbackQueue) -> None:
        if fate.kind == "failed":
            self._finish(call, queue, "failed")
            return
        if fate.kind != "busy":
            call.status = "ringing"
            self._emit(call, queue, "ringing")
        await asyncio.sleep(fate.ring_s)
        if fate.kind in ("busy", "no_answer"):
            self._finish(call, queue, "busy" if fate.kind == "busy" else "no-answer")
            return
        call.status = "in-progress"
        call.answered_at = datetime.now()
        self._emit(call, queue, "answered")
        flow = self.flows.get(call.flow_url or "")
        target = call.stream_url or (flow.voicebot_url if flow else None)
        if target:
            fmt, params = stream_format(target)
            call.line = line = self.resolve_line(fate.line_factory())
            call.phone = phone = SimulatedPhone(
                target, "exotel", params.get("call_id", ""), params.get("token", ""), fmt,
                call_sid=call.sid, custom_parameters=params, account_sid=call.account_sid,
                from_=call.from_, to=call.caller_id,
            )
            ended_by = await run_media(
                phone, line, call.hangup, fate.max_call_s, call.stream_open.set)
            # Exotel has no REST hang-up: the only outside end is the customer's
            call.ended_by = "callee" if ended_by == "carrier" else ended_by
            if call.ended_by == "server":
                await ask_connect_applet(self.session(), call, flow)
            if call.transferred_to:
                await asyncio.sleep(TRANSFER_HOLD_S)
        self._finish(call, queue, "completed")

    def _finish(self, call: ExotelCall, queue: CallbackQueue, status: str) -> None:
        call.status = status
        end = datetime.now()
        call.end_time = exotel_time(end)
        call.duration = (
            round((end - call.answered_at).total_seconds()) if call.answered_at else 0)
        self._emit(call, queue, "terminal")

    def _emit(self, call: ExotelCall, queue: CallbackQueue, event: str) -> None:
        # the terminal callback is always sent; others only when subscribed
        if not call.status_callback:
            return
        if event != "terminal" and event not in call.status_callback_events:
            return
        status = "in-progress" if event == "answered" else call.status
        params = [
            ("CallSid", call.sid), ("DateUpdated", exotel_time()), ("Status", status),
            ("RecordingUrl", ""),
        ]
        if call.status_callback_events:
            fate = call.fate
            answered_by = ("NA" if call.answered_at is None else
                           "MACHINE" if fate is not None and fate.kind == "voicemail" else "HUMAN")
            params += [
                ("EventType", event), ("DateCreated", call.date_created),
                ("To", call.to or ""), ("From", call.from_), ("PhoneNumberSid", call.caller_id),
                ("StartTime", call.date_created), ("EndTime", call.end_time or ""),
                ("ConversationDuration", str(call.duration or 0)),
                ("Direction", "outbound-api"), ("CustomField", call.custom_field or ""),
                ("Legs[0][OnCallDuration]", str(call.duration or 0)),
                ("Legs[0][Status]", status), ("Legs[0][AnsweredBy]", answered_by),
            ]
        queue.emit(event, call.status_callback, params,
                   {"User-Agent": "Exotel-Emulator/1.0"}, encoder(call.callback_content_type))
