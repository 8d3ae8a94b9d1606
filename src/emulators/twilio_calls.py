"""One emulated Twilio call, and how it plays out after `POST .../Calls.json`.

The documents followed are named in `emulators.twilio_api`. In order, as Twilio does:
queued; `initiated`; `ringing` (not for busy or failed); after the fate's ring time
`answered` (CallStatus in-progress) or the end (no-answer, busy, failed); for an answered call
the TwiML runs (inline `Twiml`, or fetched from `Url` with a signed POST): a
`<Connect><Stream>` opens the media WebSocket with its `<Parameter>`s and puts the fate's
line on it; AMD, when asked, reports its verdict (synchronous: before the TwiML runs;
`AsyncAmd=true`: posted to AsyncAmdStatusCallback while the stream runs). The stream ends
when our server closes it, the callee hangs up, or the call is ended or redirected through
the REST API (a `<Dial>` keeps the call up on the new leg a moment). Then `completed` with
CallDuration. Each callback is signed with X-Twilio-Signature and carries an
I-Twilio-Idempotency-Token that stays the same when the same callback is delivered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate
from typing import Any

import aiohttp

from emulators.carrier_line import Line, LineChoice, run_media
from emulators.fates import CallbackQueue, CallbackRecord, Fate, play_out, with_query
from evaluation.phone import SimulatedPhone
from media.codec import MULAW_8K
from media.twilio_signature import twilio_signature

log = logging.getLogger(__name__)

API = "/2010-04-01"
API_VERSION = "2010-04-01"
TERMINAL = frozenset({"completed", "canceled", "failed", "busy", "no-answer"})
TRANSFER_HOLD_S = 0.2  # how long a transferred call stays up on its new leg


def rfc2822(t: datetime | None) -> str | None:
    return format_datetime(t) if t is not None else None


@dataclass
class TwilioCall:
    sid: str
    account_sid: str
    to: str
    from_: str
    status: str = "queued"
    twiml: list[str] = field(default_factory=list)
    url: str | None = None
    status_callback: str | None = None
    status_callback_events: list[str] = field(default_factory=list)
    date_created: str = field(default_factory=lambda: formatdate(usegmt=True))
    # played calls (the emulator has fates)
    fate: Fate | None = None
    url_method: str = "POST"
    callback_method: str = "POST"
    machine_detection: str | None = None
    async_amd: bool = False
    amd_callback: str | None = None
    amd_method: str = "POST"
    answered_by: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    duration: int | None = None
    transferred_to: str | None = None
    stream_url: str | None = None
    stream_parameters: dict[str, str] = field(default_factory=dict)
    ended_by: str | None = None  # who ended the media stream (carrier_line.Ender)
    phone: SimulatedPhone | None = None
    line: Line | None = None
    sequence: int = 0
    interrupt: asyncio.Event = field(default_factory=asyncio.Event)  # REST hangup/redirect
    done: asyncio.Event = field(default_factory=asyncio.Event)  # last callback delivered

    def resource(self) -> dict[str, Any]:
        uri = f"{API}/Accounts/{self.account_sid}/Calls/{self.sid}.json"
        return {
            "account_sid": self.account_sid,
            "answered_by": self.answered_by,
            "api_version": API_VERSION,
            "caller_name": None,
            "date_created": self.date_created,
            "date_updated": formatdate(usegmt=True),
            "direction": "outbound-api",
            "duration": None if self.duration is None else str(self.duration),
            "end_time": rfc2822(self.end_time),
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": rfc2822(self.start_time),
            "status": self.status,
            "to": self.to,
            "to_formatted": self.to,
            "uri": uri,
            "subresource_uris": {
                "recordings": uri.replace(".json", "/Recordings.json"),
                "events": uri.replace(".json", "/Events.json"),
            },
        }


def connect_stream(twiml: str) -> tuple[str, dict[str, str]] | None:
    """The URL and custom parameters of a `<Connect><Stream>` TwiML, if it has one."""
    try:
        stream = ET.fromstring(twiml).find("Connect/Stream")
    except ET.ParseError:
        return None
    if stream is None or not stream.get("url"):
        return None
    params = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    return str(stream.get("url")), params


def dial_target(twiml: str) -> str | None:
    """The number a `<Dial>` TwiML transfers to, if it is one."""
    try:
        dial = ET.fromstring(twiml).find("Dial")
    except ET.ParseError:
        return None
    return (dial.text or "").strip() or None if dial is not None else None


class TwilioCallPlayer:
    """Plays created calls out; `records` receives every callback delivery."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        records: list[CallbackRecord],
        session: Callable[[], aiohttp.ClientSession],
        resolve_line: Callable[[LineChoice], Line],
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.records = records
        self.session = session
        self.resolve_line = resolve_line

    async def play(self, call: TwilioCall) -> None:
        assert call.fate is not None
        fate = call.fate
        await play_out(
            call, lambda queue: self._progress(call, fate, queue),
            lambda queue, status: self._finish(call, queue, status),
            terminal=TERMINAL, session=self.session, records=self.records)

    async def _progress(self, call: TwilioCall, fate: Fate, queue: CallbackQueue) -> None:
        if fate.kind == "failed":
            self._finish(call, queue, "failed")
            return
        self._emit(call, queue, "initiated", "initiated")
        if fate.kind == "busy":
            await self._wait(call, fate.ring_s)
            self._finish(call, queue, "busy" if call.status not in TERMINAL else call.status)
            return
        call.status = "ringing"
        self._emit(call, queue, "ringing", "ringing")
        if await self._wait(call, fate.ring_s):
            self._finish(call, queue, call.status)  # canceled while ringing
            return
        if fate.kind == "no_answer":
            self._finish(call, queue, "no-answer")
            return
        call.status = "in-progress"
        call.start_time = datetime.now(UTC)
        self._emit(call, queue, "answered", "in-progress")
        if call.machine_detection and not call.async_amd:
            if await self._wait(call, fate.amd_after_s):
                self._finish(call, queue, call.status)
                return
            call.answered_by = fate.verdict(call.machine_detection)
        twiml = call.twiml[-1] if call.twiml else await self._fetch_twiml(call)
        stream = connect_stream(twiml)
        if stream is not None:
            await self._stream(call, fate, queue, *stream)
        elif dial_target(twiml) is None:
            await self._wait(call, 0.05)  # whatever else the TwiML says, then the end
        if call.status == "in-progress" and call.twiml and dial_target(call.twiml[-1]):
            call.transferred_to = dial_target(call.twiml[-1])
            await self._wait(call, TRANSFER_HOLD_S)
        self._finish(call, queue, "completed" if call.status == "in-progress" else call.status)

    async def _stream(
        self, call: TwilioCall, fate: Fate, queue: CallbackQueue, url: str,
        params: dict[str, str],
    ) -> None:
        call.stream_url, call.stream_parameters = url, params
        call.line = line = self.resolve_line(fate.line_factory())
        call.phone = phone = SimulatedPhone(
            url, "twilio", params.get("call_id", ""), params.get("token", ""), MULAW_8K,
            call_sid=call.sid, custom_parameters=params, account_sid=self.account_sid,
            from_=call.from_, to=call.to,
        )
        amd: list[asyncio.Task[None]] = []

        def opened() -> None:
            if call.machine_detection and call.async_amd:
                amd.append(asyncio.ensure_future(self._async_amd(call, fate, queue)))

        call.ended_by = await run_media(phone, line, call.interrupt, fate.max_call_s, opened)
        call.interrupt.clear()
        for task in amd:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _async_amd(self, call: TwilioCall, fate: Fate, queue: CallbackQueue) -> None:
        await asyncio.sleep(fate.amd_after_s)
        call.answered_by = fate.verdict(call.machine_detection)
        if not call.amd_callback:
            return
        params = [
            ("AccountSid", self.account_sid),
            ("AnsweredBy", call.answered_by),
            ("CallSid", call.sid),
            ("MachineDetectionDuration", str(int(fate.amd_after_s * 1000))),
        ]
        self._send(queue, "amd", call.amd_callback, params, call.amd_method)

    @staticmethod
    async def _wait(call: TwilioCall, seconds: float) -> bool:
        """Sleep `seconds`; True (early) when the call was ended through the REST API."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(call.interrupt.wait(), seconds)
        call.interrupt.clear()
        return call.status in TERMINAL

    def _finish(self, call: TwilioCall, queue: CallbackQueue, status: str) -> None:
        call.status = status
        call.end_time = datetime.now(UTC)
        if call.start_time is None:
            call.duration = 0
        else:
            # whole seconds; an answered call lasts at least one
            call.duration = max(1, round((call.end_time - call.start_time).total_seconds()))
        self._emit(call, queue, "completed", status)

    def _base_params(self, call: TwilioCall, status: str) -> list[tuple[str, str]]:
        params = [
            ("AccountSid", self.account_sid), ("ApiVersion", API_VERSION),
            ("CallSid", call.sid), ("CallStatus", status), ("Called", call.to),
            ("Caller", call.from_), ("Direction", "outbound-api"), ("From", call.from_),
            ("To", call.to),
        ]
        if call.answered_by:
            params.append(("AnsweredBy", call.answered_by))
        return params

    def _emit(self, call: TwilioCall, queue: CallbackQueue, event: str, status: str) -> None:
        # "completed" is sent whether subscribed or not, as Twilio does
        if not call.status_callback:
            return
        if event != "completed" and event not in call.status_callback_events:
            return
        params = [
            *self._base_params(call, status),
            ("CallbackSource", "call-progress-events"),
            ("SequenceNumber", str(call.sequence)),
            ("Timestamp", format_datetime(datetime.now(UTC))),
        ]
        call.sequence += 1
        if status in TERMINAL:
            seconds = call.duration or 0
            params += [("CallDuration", str(seconds)), ("Duration", str(math.ceil(seconds / 60)))]
        self._send(queue, event, call.status_callback, params, call.callback_method)

    def _signed(
        self, url: str, params: list[tuple[str, str]], method: str
    ) -> dict[str, str]:
        signed = twilio_signature(
            with_query(url, params) if method == "GET" else url,
            None if method == "GET" else params, self.auth_token)
        return {"X-Twilio-Signature": signed, "User-Agent": "TwilioProxy/1.1"}

    def _send(
        self, queue: CallbackQueue, event: str, url: str, params: list[tuple[str, str]],
        method: str,
    ) -> None:
        headers = self._signed(url, params, method)
        headers["I-Twilio-Idempotency-Token"] = secrets.token_hex(16)
        queue.emit(event, url, params, headers, method=method)

    async def _fetch_twiml(self, call: TwilioCall) -> str:
        """The TwiML at the call's `Url`, requested as Twilio does; empty when it fails."""
        if not call.url:
            return ""
        params = self._base_params(call, "in-progress")
        method = call.url_method
        url = with_query(call.url, params) if method == "GET" else call.url
        try:
            async with self.session().request(
                method, url, data=None if method == "GET" else params,
                headers=self._signed(call.url, params, method),
                timeout=aiohttp.ClientTimeout(total=15),
            ) as response:
                return await response.text() if response.status == 200 else ""
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("TwiML of %s not fetched: %s", call.sid[-6:], type(exc).__name__)
            return ""
