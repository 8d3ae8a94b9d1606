"""Twilio REST API emulator: the Calls resource of `/2010-04-01`.

Speaks Twilio's wire format: form-encoded POSTs, HTTP Basic (account SID : auth token),
JSON call resources with Twilio's field names, and Twilio's error bodies
(`{"code", "message", "more_info", "status"}`; 20003 unauthenticated, 20404 not found,
20429 too many requests, 21201/21213/21205 missing To/From/Url, 12100 TwiML parse failure).
Modifying a call that ended or never existed gives 404 / 20404, as the real API does.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

from aiohttp import web

from emulators import Faults, RecordedRequest, apply_faults, basic_auth_user, record, serve

API = "/2010-04-01"
TERMINAL = frozenset({"completed", "canceled", "failed", "busy", "no-answer"})
_MESSAGES = {500: "Internal Server Error", 503: "Service Unavailable", 429: "Too Many Requests"}


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

    def resource(self) -> dict[str, Any]:
        uri = f"{API}/Accounts/{self.account_sid}/Calls/{self.sid}.json"
        return {
            "account_sid": self.account_sid,
            "answered_by": None,
            "api_version": "2010-04-01",
            "caller_name": None,
            "date_created": self.date_created,
            "date_updated": formatdate(usegmt=True),
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": self.from_,
            "from_formatted": self.from_,
            "parent_call_sid": None,
            "phone_number_sid": None,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": self.sid,
            "start_time": None,
            "status": self.status,
            "to": self.to,
            "to_formatted": self.to,
            "uri": uri,
            "subresource_uris": {
                "recordings": uri.replace(".json", "/Recordings.json"),
                "events": uri.replace(".json", "/Events.json"),
            },
        }


class TwilioApi:
    """State and handlers; `answer_on_create` moves new calls to in-progress at once."""

    def __init__(self, account_sid: str, auth_token: str, answer_on_create: bool = True) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.answer_on_create = answer_on_create
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, TwilioCall] = {}
        self.faults = Faults()
        self.base_url = ""

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

    async def _gate(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        user = basic_auth_user(request, {self.account_sid: self.auth_token})
        entry = await record(request, self.requests, user)
        injected = await apply_faults(self.faults)
        if injected is not None:
            code = 20429 if injected == 429 else 20500
            headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after else None
            return entry, _error(injected, code, _MESSAGES.get(injected, "Error"), headers)
        if user is None or request.match_info["account"] != user:
            return entry, _error(401, 20003, "Authenticate")
        return entry, None

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
        call.status_callback_events = entry.fields("StatusCallbackEvent")
        self.calls[call.sid] = call
        body = call.resource()
        if self.answer_on_create:
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
            call.status = status
        elif twiml is not None:
            if not _well_formed(twiml):
                return _error(400, 12100, "Document parse failure")
            call.twiml.append(twiml)
        elif url is not None:
            call.url = url
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


def _not_found(request: web.Request) -> web.Response:
    return _error(404, 20404, f"The requested resource {request.path} was not found")


@asynccontextmanager
async def running_twilio_api(
    account_sid: str = "AC" + "0" * 32,
    auth_token: str = "test-auth-token",
    answer_on_create: bool = True,
) -> AsyncIterator[TwilioApi]:
    """Start the emulator on 127.0.0.1:0; yields it with `.base_url`, `.requests`, `.calls`,
    `.faults`."""
    api = TwilioApi(account_sid, auth_token, answer_on_create)
    async with serve(api.app()) as base_url:
        api.base_url = base_url
        yield api
