"""Exotel v1 Calls API emulator, with the Voicebot stream and a minimal App Bazaar flow.

REST: `POST /v1/Accounts/{sid}/Calls/connect.json` (form-encoded, HTTP Basic API key : API
token) and `GET /v1/Accounts/{sid}/Calls/{CallSid}.json`, answering `{"Call": {...}}` with
Exotel's PascalCase fields, or `{"RestException": {"Status", "Message", "Code"}}` on errors.

Media: once a call is "answered", the emulator plays Exotel's part of the Voicebot protocol:
it opens a WebSocket to `StreamUrl` (or to the Voicebot URL of a registered flow), sends
`connected`, `start` (custom parameters from the URL query, `media_format` from
`?sample-rate=`) and 100 ms `media` chunks of silence, and records what the bot sends. When
the bot closes the socket the call completes, or, for a flow with a Connect applet, Exotel's
GET to the applet's dynamic URL decides whether it is transferred.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import orjson
from aiohttp import web

from emulators import Faults, RecordedRequest, apply_faults, basic_auth_user, record, serve

TERMINAL = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})


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
    date_created: str = field(default_factory=lambda: _now())

    def resource(self) -> dict[str, Any]:
        return {
            "Call": {
                "Sid": self.sid,
                "ParentCallSid": None,
                "DateCreated": self.date_created,
                "DateUpdated": _now(),
                "AccountSid": self.account_sid,
                "To": self.to or self.from_,
                "From": self.from_,
                "PhoneNumberSid": self.caller_id,
                "Status": self.status,
                "StartTime": self.date_created,
                "EndTime": None,
                "Duration": None,
                "Price": None,
                "Direction": "outbound-api",
                "AnsweredBy": None,
                "ForwardedFrom": None,
                "CallerName": None,
                "Uri": f"/v1/Accounts/{self.account_sid}/Calls/{self.sid}.json",
                "RecordingUrl": None,
            }
        }


class ExotelApi:
    def __init__(
        self, account_sid: str, api_key: str, api_token: str, send_audio: bool = True
    ) -> None:
        self.account_sid = account_sid
        self.api_key = api_key
        self.api_token = api_token
        self.send_audio = send_audio
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, ExotelCall] = {}
        self.flows: dict[str, ExotelFlow] = {}
        self.faults = Faults()
        self.base_url = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self._session: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/Accounts/{account}/Calls/connect.json", self._connect)
        app.router.add_get("/v1/Accounts/{account}/Calls/{sid}.json", self._fetch)
        return app

    def add_call(self, from_: str = "+919876543210", status: str = "in-progress") -> ExotelCall:
        call = ExotelCall(_sid(), self.account_sid, None, from_, "08047091234", status)
        self.calls[call.sid] = call
        return call

    async def customer_hangup(self, call_sid: str) -> None:
        """The callee hangs up: Exotel sends `stop` and closes the stream."""
        call = self.calls[call_sid]
        ws = self._sockets.get(call_sid)
        call.status = "completed"
        if ws is not None and not ws.closed:
            await ws.send_str(
                orjson.dumps({"event": "stop", "stream_sid": _stream_sid(call)}).decode()
            )
            await ws.close()
        call.ended.set()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    async def _gate(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        user = basic_auth_user(request, {self.api_key: self.api_token})
        entry = await record(request, self.requests, user)
        injected = await apply_faults(self.faults)
        if injected is not None:
            headers = {"Retry-After": self.faults.retry_after} if self.faults.retry_after else None
            return entry, _error(injected, "Injected fault", headers)
        if user is None:
            return entry, _error(401, "Authentication failed. Invalid API Key or Token.")
        if request.match_info["account"] != self.account_sid:
            return entry, _error(403, "Account SID does not match the API credentials")
        return entry, None

    async def _connect(self, request: web.Request) -> web.Response:
        entry, refused = await self._gate(request)
        if refused is not None:
            return refused
        from_, caller_id = entry.field("From"), entry.field("CallerId")
        to, url = entry.field("To"), entry.field("Url")
        stream_url, stream_type = entry.field("StreamUrl"), entry.field("StreamType")
        if not from_:
            return _error(400, "Missing parameter: From")
        if not caller_id:
            return _error(400, "Missing parameter: CallerId")
        if stream_url is not None:
            if stream_type != "bidirectional" and stream_type != "unidirectional":
                return _error(400, "StreamType must be bidirectional or unidirectional")
            if not stream_url.startswith(("ws://", "wss://")) or len(stream_url) > 600:
                return _error(400, "StreamUrl must be a ws:// or wss:// URL of at most 600 chars")
        elif not url and not to:
            return _error(400, "One of To, Url or StreamUrl is required")
        custom = entry.field("CustomField")
        if custom is not None and len(custom) > 128:
            return _error(400, "CustomField longer than 128 characters")
        call = ExotelCall(_sid(), self.account_sid, to, from_, caller_id, "in-progress")
        call.stream_url, call.flow_url, call.custom_field = stream_url, url, custom
        call.status_callback = entry.field("StatusCallback")
        self.calls[call.sid] = call
        target = stream_url or (self.flows[url].voicebot_url if url in self.flows else None)
        if target:
            task = asyncio.create_task(self._run_stream(call, target))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return web.json_response(call.resource())

    async def _fetch(self, request: web.Request) -> web.Response:
        _, refused = await self._gate(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return _error(404, "Call not found")
        return web.json_response(call.resource())

    async def _run_stream(self, call: ExotelCall, url: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        query = dict(parse_qsl(urlsplit(url).query))
        rate = int(query.pop("sample-rate", "8000"))
        try:
            ws = await self._session.ws_connect(url)
        except (aiohttp.ClientError, OSError):
            call.status = "failed"
            call.ended.set()
            return
        self._sockets[call.sid] = ws
        stream_sid = _stream_sid(call)
        await ws.send_str(orjson.dumps({"event": "connected"}).decode())
        start = {
            "event": "start",
            "sequence_number": "1",
            "stream_sid": stream_sid,
            "start": {
                "stream_sid": stream_sid,
                "call_sid": call.sid,
                "account_sid": call.account_sid,
                "from": call.from_,
                "to": call.caller_id,
                "custom_parameters": query,
                "media_format": {
                    "encoding": "audio/x-raw",
                    "sample_rate": str(rate),
                    "bit_rate": "16",
                },
            },
        }
        await ws.send_str(orjson.dumps(start).decode())
        call.stream_open.set()
        sender = (
            asyncio.create_task(self._send_silence(ws, stream_sid, rate))
            if self.send_audio
            else None
        )
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    with contextlib.suppress(orjson.JSONDecodeError):
                        call.received.append(orjson.loads(msg.data))
        finally:
            if sender is not None:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
            self._sockets.pop(call.sid, None)
        if call.status not in TERMINAL:
            await self._after_stream(call)
        call.ended.set()

    async def _after_stream(self, call: ExotelCall) -> None:
        flow = self.flows.get(call.flow_url or "")
        if flow is not None and flow.connect_url and self._session is not None:
            params = {
                "CallSid": call.sid,
                "CallFrom": call.from_,
                "CallTo": call.caller_id,
                "Direction": "outbound-dial",
                "CustomField": call.custom_field or "",
            }
            call.connect_requests.append(params)
            try:
                async with self._session.get(
                    flow.connect_url, params=params, headers={"Exotel-Version": "1.0"}
                ) as response:
                    body = await response.json(content_type=None) if response.status == 200 else {}
            except (aiohttp.ClientError, ValueError):
                body = {}
            numbers = (
                (body.get("destination") or {}).get("numbers") if isinstance(body, dict) else None
            )
            if numbers:
                call.transferred_to = str(numbers[0])
        call.status = "completed"

    async def _send_silence(
        self, ws: aiohttp.ClientWebSocketResponse, stream_sid: str, rate: int
    ) -> None:
        payload = base64.b64encode(b"\x00\x00" * (rate // 10)).decode()
        chunk = 0
        while not ws.closed:
            chunk += 1
            msg = {
                "event": "media",
                "sequence_number": str(chunk + 1),
                "stream_sid": stream_sid,
                "media": {"chunk": str(chunk), "timestamp": str(chunk * 100), "payload": payload},
            }
            try:
                await ws.send_str(orjson.dumps(msg).decode())
            except (ConnectionError, RuntimeError):
                return
            await asyncio.sleep(0.1)


def _sid() -> str:
    return secrets.token_hex(16)


def _stream_sid(call: ExotelCall) -> str:
    return "MZ" + call.sid[:24]


def _now() -> str:
    return datetime.now().strftime("%Y-%m-%d %H:%M:%S")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"RestException": {"Status": status, "Message": message, "Code": status}}
    return web.json_response(body, status=status, headers=headers)


@asynccontextmanager
async def running_exotel_api(
    account_sid: str = "dialkit1",
    api_key: str = "test-api-key",
    api_token: str = "test-api-token",
    send_audio: bool = True,
) -> AsyncIterator[ExotelApi]:
    """Start the emulator on 127.0.0.1:0; yields it with `.base_url`, `.requests`, `.calls`,
    `.faults`, `.flows`."""
    api = ExotelApi(account_sid, api_key, api_token, send_audio)
    async with serve(api.app()) as base_url:
        api.base_url = base_url
        try:
            yield api
        finally:
            await api.aclose()
