"""Twilio REST API emulator: the Calls resource of `/2010-04-01`, and what follows a create.

Speaks Twilio's wire format: form-encoded POSTs, HTTP Basic (account SID : auth token),
JSON call resources with Twilio's field names, and Twilio's error bodies
(`{"code", "message", "more_info", "status"}`; 20003 unauthenticated, 20404 not found,
20429 too many requests, 21201/21213/21205 missing To/From/Url, 12100 TwiML parse failure).
Modifying a call that ended or never existed gives 404 / 20404, as the real API does.

With `fates` set, every created call plays out in the background as the real one would
(see `emulators.twilio_calls`), after these documents:
- https://www.twilio.com/docs/voice/api/call-resource: create parameters (To, From, Twiml or
  Url, StatusCallback, StatusCallbackMethod, StatusCallbackEvent initiated / ringing /
  answered / completed, MachineDetection, AsyncAmd, AsyncAmdStatusCallback, Timeout (ring
  seconds, at most 600), TimeLimit (call seconds)), the status
  values (queued, ringing, in-progress, completed, busy, no-answer, canceled, failed) and
  the status-callback parameters (CallSid, AccountSid, From, To, CallStatus, Direction,
  ApiVersion, CallbackSource=call-progress-events, SequenceNumber, Timestamp; CallDuration
  and Duration once completed). The "answered" event reports CallStatus in-progress; the
  completed callback is sent whether asked for or not.
- https://www.twilio.com/docs/voice/twiml/stream: `<Connect><Stream url>` opens a
  bidirectional media WebSocket, its `<Parameter>`s arrive as `customParameters` in `start`.
- https://www.twilio.com/docs/usage/webhooks/webhooks-security: every callback carries
  X-Twilio-Signature (media.twilio_signature).
- https://www.twilio.com/docs/voice/answering-machine-detection: the asynchronous result
  (CallSid, AccountSid, AnsweredBy, MachineDetectionDuration) posted to
  AsyncAmdStatusCallback; AnsweredBy is human, machine_start, machine_end_beep,
  machine_end_silence, machine_end_other, fax or unknown.
Without `fates` a created call just stands in-progress (`answer_on_create`), for tests that
drive the media stream themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web

from emulators import Faults, RecordedRequest, Refusal, gate, serve
from emulators.carrier_line import Line, LineChoice, Speech, make_line
from emulators.fates import CallbackRecord, FateBook, FateSource, seconds_field
from emulators.twilio_calls import API, TERMINAL, TwilioCall, TwilioCallPlayer

__all__ = ["API", "TERMINAL", "TwilioApi", "TwilioCall", "running_twilio_api"]

_MESSAGES = {500: "Internal Server Error", 503: "Service Unavailable", 429: "Too Many Requests"}
_METHODS = ("GET", "POST")


class TwilioApi:
    """State and handlers. Without `fates`, `answer_on_create` moves new calls to
    in-progress at once and nothing else happens. With `fates` (a FateBook, a dict To ->
    Fate or a callable), each call plays out in the background; `speech` (STT, TTS) voices
    persona lines; `callbacks` records every callback delivered."""

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        answer_on_create: bool = True,
        fates: FateBook | FateSource | None = None,
        speech: Speech | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.answer_on_create = answer_on_create
        self.fates = fates if fates is None or isinstance(fates, FateBook) else FateBook(fates)
        self.speech = speech
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, TwilioCall] = {}
        self.callbacks: list[CallbackRecord] = []
        self.faults = Faults()
        self.base_url = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._player = TwilioCallPlayer(
            account_sid, auth_token, self.callbacks, self._http, self._line)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(API + "/Accounts/{account}/Calls.json", self._create)
        app.router.add_post(API + "/Accounts/{account}/Calls/{sid}.json", self._update)
        app.router.add_get(API + "/Accounts/{account}/Calls/{sid}.json", self._fetch)
        return app

    def add_call(
        self, to: str = "+15005550006", from_: str = "+15005550001", status: str = "in-progress"
    ) -> TwilioCall:
        call = TwilioCall(_sid("CA"), self.account_sid, to, from_, status)
        self.calls[call.sid] = call
        return call

    def callbacks_of(self, call_sid: str) -> list[CallbackRecord]:
        """The callbacks of one call, in delivery order (dropped ones included, flagged)."""
        return [c for c in self.callbacks if c.call_sid == call_sid]

    async def finished(self, call_sid: str, timeout_s: float = 60.0) -> TwilioCall:
        """Wait until a played call has ended and its last callback was delivered."""
        call = self.calls[call_sid]
        await asyncio.wait_for(call.done.wait(), timeout_s)
        return call

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _line(self, choice: LineChoice) -> Line:
        return make_line(choice, self.speech)

    async def _gate(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        return await gate(request, self.requests, self.faults,
                          {self.account_sid: self.auth_token}, self.account_sid, _refuse)

    async def _create(self, request: web.Request) -> web.Response:
        entry, refused = await self._gate(request)
        if refused is not None:
            return refused
        to, from_ = entry.field("To"), entry.field("From")
        twiml, url = entry.field("Twiml"), entry.field("Url")
        if not to:
            return _error(400, 21201, "No 'To' number is specified")
        if not from_:
            return _error(400, 21213, "No 'From' number is specified")
        if not twiml and not url:
            return _error(400, 21205, "Url or Twiml parameter is required")
        if twiml and not _well_formed(twiml):
            return _error(400, 12100, "Document parse failure")
        call = TwilioCall(_sid("CA"), self.account_sid, to, from_)
        if twiml:
            call.twiml.append(twiml)
        call.url = url
        call.status_callback = entry.field("StatusCallback")
        # Twilio takes the events space-separated in one value or as repeated fields
        call.status_callback_events = [
            e for v in entry.fields("StatusCallbackEvent") for e in v.split()]
        for name, attr in (("Method", "url_method"), ("StatusCallbackMethod", "callback_method"),
                           ("AsyncAmdStatusCallbackMethod", "amd_method")):
            value = (entry.field(name) or "POST").upper()
            if value not in _METHODS:
                return _error(400, 21209, f"Invalid {name}: {value}")
            setattr(call, attr, value)
        detection = entry.field("MachineDetection")
        if detection not in (None, "Enable", "DetectMessageEnd"):
            return _error(400, 21247, f"Invalid MachineDetection: {detection}")
        call.machine_detection = detection
        call.async_amd = (entry.field("AsyncAmd") or "").lower() == "true"
        call.amd_callback = entry.field("AsyncAmdStatusCallback")
        try:  # the ring time and the call's length, as Twilio bounds them
            ring_timeout = seconds_field(entry.field("Timeout"), "Timeout", 600)
            time_limit = seconds_field(entry.field("TimeLimit"), "TimeLimit", 86400)
        except ValueError as exc:
            return _error(400, 20001, str(exc))
        self.calls[call.sid] = call
        body = call.resource()
        if self.fates is not None:
            call.fate = self.fates(to).limited(ring_timeout, time_limit)
            task = asyncio.create_task(self._player.play(call))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        elif self.answer_on_create:
            call.status = "in-progress"
        return web.json_response(body, status=201)

    async def _update(self, request: web.Request) -> web.Response:
        entry, refused = await self._gate(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.match_info["sid"])
        if call is None or call.status in TERMINAL:
            return _not_found(request)
        status, twiml, url = entry.field("Status"), entry.field("Twiml"), entry.field("Url")
        if status is not None:
            if status not in ("completed", "canceled"):
                return _error(400, 21218, f"Invalid value for Status: {status}")
            if call.fate is not None:
                # a call not yet answered is canceled either way; canceled leaves a call
                # in progress alone, as Twilio's does
                if call.status in ("queued", "ringing"):
                    call.status = "canceled"
                elif status == "completed":
                    call.status = "completed"
                call.interrupt.set()
            else:
                call.status = status
        elif twiml is not None:
            if not _well_formed(twiml):
                return _error(400, 12100, "Document parse failure")
            call.twiml.append(twiml)
            call.interrupt.set()
        elif url is not None:
            call.url = url
            call.interrupt.set()
        else:
            return _error(400, 20001, "Nothing to update")
        return web.json_response(call.resource())

    async def _fetch(self, request: web.Request) -> web.Response:
        _, refused = await self._gate(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return _not_found(request)
        return web.json_response(call.resource())


def _sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _well_formed(xml: str) -> bool:
    try:
        ET.fromstring(xml)
    except ET.ParseError:
        return False
    return True


def _error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status, headers=headers)


def _refuse(status: int, why: Refusal, headers: dict[str, str] | None) -> web.Response:
    if why == "fault":
        code = 20429 if status == 429 else 20500
        return _error(status, code, _MESSAGES.get(status, "Error"), headers)
    return _error(401, 20003, "Authenticate")  # another account's path as well


def _not_found(request: web.Request) -> web.Response:
    return _error(404, 20404, f"The requested resource {request.path} was not found")


@asynccontextmanager
async def running_twilio_api(
    account_sid: str = "AC" + "0" * 32,
    auth_token: str = "test-auth-token",
    answer_on_create: bool = True,
    fates: FateBook | FateSource | None = None,
    speech: Speech | None = None,
) -> AsyncIterator[TwilioApi]:
    """Start the emulator on 127.0.0.1:0; yields it with `.base_url`, `.requests`, `.calls`,
    `.callbacks`, `.faults`."""
    api = TwilioApi(account_sid, auth_token, answer_on_create, fates, speech)
    async with serve(api.app()) as base_url:
        api.base_url = base_url
        try:
            yield api
        finally:
            await api.aclose()
