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

With `fates` set, every created call plays out in the background as the real one would:
ringing, answered or not, status callbacks to `StatusCallback` with Exotel's documented
fields, and the stream with a callee on the line (`emulators.exotel_calls`, which names the
documents followed). `From` is the number dialled, so fates are looked up by it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from emulators import Faults, RecordedRequest, Refusal, gate, serve
from emulators.carrier_line import Line, LineChoice, Speech, make_line
from emulators.exotel_calls import (
    TERMINAL,
    ExotelCall,
    ExotelCallPlayer,
    ExotelFlow,
    ask_connect_applet,
    stream_format,
)
from emulators.fates import CallbackRecord, FateBook, FateSource, seconds_field

__all__ = ["TERMINAL", "ExotelApi", "ExotelCall", "ExotelFlow", "running_exotel_api"]

_CONTENT_TYPES = ("multipart/form-data", "application/json", "application/x-www-form-urlencoded")


class ExotelApi:
    """State and handlers. Without `fates` a created call is in-progress at once and its
    stream opens straight away with silence (`send_audio`). With `fates` (a FateBook, a dict
    From -> Fate or a callable), each call plays out in the background with status callbacks;
    `speech` (STT, TTS) voices persona lines; `callbacks` records every delivery."""

    def __init__(
        self,
        account_sid: str,
        api_key: str,
        api_token: str,
        send_audio: bool = True,
        fates: FateBook | FateSource | None = None,
        speech: Speech | None = None,
    ) -> None:
        self.account_sid = account_sid
        self.api_key = api_key
        self.api_token = api_token
        self.send_audio = send_audio
        self.fates = fates if fates is None or isinstance(fates, FateBook) else FateBook(fates)
        self.speech = speech
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, ExotelCall] = {}
        self.flows: dict[str, ExotelFlow] = {}
        self.callbacks: list[CallbackRecord] = []
        self.faults = Faults()
        self.base_url = ""
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: dict[str, aiohttp.ClientWebSocketResponse] = {}
        self._session: aiohttp.ClientSession | None = None
        self._player = ExotelCallPlayer(self.callbacks, self._http, self._line, self.flows)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/Accounts/{account}/Calls/connect.json", self._connect)
        app.router.add_get("/v1/Accounts/{account}/Calls/{sid}.json", self._fetch)
        return app

    def add_call(self, from_: str = "+919876543210", status: str = "in-progress") -> ExotelCall:
        call = ExotelCall(_sid(), self.account_sid, None, from_, "08047091234", status)
        self.calls[call.sid] = call
        return call

    def callbacks_of(self, call_sid: str) -> list[CallbackRecord]:
        """The callbacks of one call, in delivery order (dropped ones included, flagged)."""
        return [c for c in self.callbacks if c.call_sid == call_sid]

    async def finished(self, call_sid: str, timeout_s: float = 60.0) -> ExotelCall:
        """Wait until a played call has ended and its last callback was delivered."""
        call = self.calls[call_sid]
        await asyncio.wait_for(call.done.wait(), timeout_s)
        return call

    async def customer_hangup(self, call_sid: str) -> None:
        """The callee hangs up: Exotel sends `stop` and closes the stream."""
        call = self.calls[call_sid]
        if call.fate is not None:
            call.hangup.set()
            return
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

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _line(self, choice: LineChoice) -> Line:
        return make_line(choice, self.speech)

    async def _gate(self, request: web.Request) -> tuple[RecordedRequest, web.Response | None]:
        return await gate(request, self.requests, self.faults,
                          {self.api_key: self.api_token}, self.account_sid, _refuse)

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
        content_type = entry.field("StatusCallbackContentType") or _CONTENT_TYPES[-1]
        if content_type not in _CONTENT_TYPES:
            return _error(400, f"StatusCallbackContentType must be one of {_CONTENT_TYPES[:2]}")
        try:  # TimeOut: ring time of the call; TimeLimit: its length (at most 4 hours)
            ring_timeout = seconds_field(entry.field("TimeOut"), "TimeOut", 3600)
            time_limit = seconds_field(entry.field("TimeLimit"), "TimeLimit", 14400)
        except ValueError as exc:
            return _error(400, str(exc))
        call = ExotelCall(_sid(), self.account_sid, to, from_, caller_id, "in-progress")
        call.stream_url, call.flow_url, call.custom_field = stream_url, url, custom
        call.status_callback = entry.field("StatusCallback")
        # StatusCallbackEvents[] or StatusCallbackEvents[0], [1]...
        call.status_callback_events = [
            v for k, v in entry.form if k.startswith("StatusCallbackEvents")]
        call.callback_content_type = content_type
        self.calls[call.sid] = call
        if self.fates is not None:
            call.status = "queued"
            call.fate = self.fates(from_).limited(ring_timeout, time_limit)
            self._spawn(self._player.play(call))
        else:
            target = stream_url or (self.flows[url].voicebot_url if url in self.flows else None)
            if target:
                self._spawn(self._run_stream(call, target))
        return web.json_response(call.resource())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, request: web.Request) -> web.Response:
        _, refused = await self._gate(request)
        if refused is not None:
            return refused
        call = self.calls.get(request.match_info["sid"])
        if call is None:
            return _error(404, "Call not found")
        return web.json_response(call.resource())

    async def _run_stream(self, call: ExotelCall, url: str) -> None:
        """The stream of a call without a fate: silence in, whatever the bot sends recorded."""
        fmt, query = stream_format(url)
        rate = fmt.rate
        try:
            ws = await self._http().ws_connect(url)
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
            await ask_connect_applet(self._http(), call, self.flows.get(call.flow_url or ""))
            call.status = "completed"
        call.ended.set()

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


_REFUSALS: dict[Refusal, str] = {
    "fault": "Injected fault",
    "unauthenticated": "Authentication failed. Invalid API Key or Token.",
    "other_account": "Account SID does not match the API credentials",
}


def _refuse(status: int, why: Refusal, headers: dict[str, str] | None) -> web.Response:
    return _error(status, _REFUSALS[why], headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"RestException": {"Status": status, "Message": message, "Code": status}}
    return web.json_response(body, status=status, headers=headers)


@asynccontextmanager
async def running_exotel_api(
    account_sid: str = "dialkit1",
    api_key: str = "test-api-key",
    api_token: str = "test-api-token",
    send_audio: bool = True,
    fates: FateBook | FateSource | None = None,
    speech: Speech | None = None,
) -> AsyncIterator[ExotelApi]:
    """Start the emulator on 127.0.0.1:0; yields it with `.base_url`, `.requests`, `.calls`,
    `.callbacks`, `.faults`, `.flows`."""
    api = ExotelApi(account_sid, api_key, api_token, send_audio, fates, speech)
    async with serve(api.app()) as base_url:
        api.base_url = base_url
        try:
            yield api
        finally:
            await api.aclose()
