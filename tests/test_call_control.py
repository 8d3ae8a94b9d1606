"""Call control clients against the carrier API emulators, over real sockets."""

from __future__ import annotations

import asyncio
import logging
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest
from aiohttp import WSMsgType, web

from emulators import serve
from emulators.exotel_api import ExotelFlow, running_exotel_api
from emulators.twilio_api import running_twilio_api
from media.call_control import CallControl, CallControlError, RetrySettings, mask_number
from media.detect import CarrierDetector
from media.events import Event, Start
from media.exotel_control import ExotelCallControl, connect_applet_response
from media.protocol import CarrierProtocol
from media.twilio_control import TwilioCallControl, stream_twiml, transfer_twiml

FAST = RetrySettings(backoff_s=0.01, max_backoff_s=0.05)


async def wait_until(predicate: Callable[[], bool], limit_s: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), limit_s)


def twilio_client(api, token: str | None = None, **retry) -> TwilioCallControl:  # type: ignore[no-untyped-def]
    return TwilioCallControl(
        api.account_sid, token or api.auth_token, base_url=api.base_url, retry=replace(FAST, **retry)
    )


# --- Twilio -----------------------------------------------------------------------------


async def test_twilio_hangup_completes_then_already_ended() -> None:
    async with running_twilio_api() as api:
        call = api.add_call()
        async with twilio_client(api) as cc:
            assert isinstance(cc, CallControl)
            assert await cc.hangup(call.sid) == "completed"
            assert api.calls[call.sid].status == "completed"
            req = api.requests[-1]
            assert req.method == "POST"
            assert req.path == f"/2010-04-01/Accounts/{api.account_sid}/Calls/{call.sid}.json"
            assert req.form == [("Status", "completed")]
            assert req.user == api.account_sid
            assert await cc.hangup(call.sid) == "already_ended"
            assert await cc.hangup("CA" + "f" * 32) == "already_ended"


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_twilio_hangup_retries_transient_errors(status: int) -> None:
    async with running_twilio_api() as api:
        call = api.add_call()
        api.faults.fail_next(2, status)
        if status == 429:
            api.faults.retry_after = "0"
        async with twilio_client(api) as cc:
            assert await cc.hangup(call.sid) == "completed"
        assert len(api.requests) == 3
        assert api.calls[call.sid].status == "completed"


async def test_twilio_hangup_gives_up_after_max_attempts() -> None:
    async with running_twilio_api() as api:
        call = api.add_call()
        api.faults.fail_next(10, 500)
        async with twilio_client(api, max_attempts=3) as cc:
            with pytest.raises(CallControlError) as err:
                await cc.hangup(call.sid)
        assert err.value.status == 500 and err.value.code == 20500
        assert len(api.requests) == 3
        assert api.calls[call.sid].status == "in-progress"


async def test_twilio_timeout_is_retried_then_reported() -> None:
    async with running_twilio_api() as api:
        call = api.add_call()
        api.faults.delay_s = 1.0
        async with twilio_client(api, timeout=0.05, max_attempts=2) as cc:
            with pytest.raises(CallControlError) as err:
                await cc.hangup(call.sid)
        assert err.value.status == 0 and err.value.code == "ReadTimeout"
        await wait_until(lambda: len(api.requests) == 2)


async def test_connection_refused_is_a_call_control_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cc = TwilioCallControl(
        "AC1", "tok", base_url=f"http://127.0.0.1:{port}",
        retry=RetrySettings(max_attempts=2, backoff_s=0.01),
    )
    async with cc:
        with pytest.raises(CallControlError) as err:
            await cc.hangup("CA1")
    assert err.value.status == 0 and err.value.code == "ConnectError"


async def test_twilio_auth_failure_is_not_retried() -> None:
    async with running_twilio_api() as api:
        call = api.add_call()
        async with twilio_client(api, token="wrong") as cc:
            with pytest.raises(CallControlError) as err:
                await cc.hangup(call.sid)
        assert (err.value.status, err.value.code) == (401, 20003)
        assert len(api.requests) == 1 and api.requests[0].user is None


async def test_twilio_transfer_sends_escaped_twiml() -> None:
    async with running_twilio_api() as api:
        call = api.add_call()
        async with twilio_client(api) as cc:
            await cc.transfer(call.sid, "+1 (415) <555>&0123", caller_id='+1"800')
        form = dict(api.requests[-1].form)
        assert form == {
            "Twiml": '<Response><Dial callerId="+1&quot;800">'
            "+1 (415) &lt;555&gt;&amp;0123</Dial></Response>"
        }
        dial = ET.fromstring(api.calls[call.sid].twiml[-1]).find("Dial")
        assert dial is not None and dial.text == "+1 (415) <555>&0123"
        assert dial.get("callerId") == '+1"800'
        assert transfer_twiml("+14155550123") == "<Response><Dial>+14155550123</Dial></Response>"


async def test_twilio_transfer_of_ended_call_raises() -> None:
    async with running_twilio_api() as api:
        call = api.add_call(status="completed")
        async with twilio_client(api) as cc:
            with pytest.raises(CallControlError) as err:
                await cc.transfer(call.sid, "+14155550123")
        assert (err.value.status, err.value.code) == (404, 20404)


async def test_twilio_dial_params() -> None:
    stream = "wss://media.example.com/twilio?token=abc.def&x=1"
    async with running_twilio_api() as api:
        async with twilio_client(api) as cc:
            sid = await cc.dial(
                "+14155550123",
                "+18005550100",
                stream,
                "https://app.example.com/status",
                {"call_id": "c-1", "note": 'a"b<c'},
            )
        assert sid in api.calls and sid.startswith("CA")
        req = api.requests[-1]
        assert req.path == f"/2010-04-01/Accounts/{api.account_sid}/Calls.json"
        assert req.field("To") == "+14155550123"
        assert req.field("From") == "+18005550100"
        assert req.field("StatusCallback") == "https://app.example.com/status"
        assert req.field("StatusCallbackMethod") == "POST"
        assert req.fields("StatusCallbackEvent") == [
            "initiated",
            "ringing",
            "answered",
            "completed",
        ]
        twiml = req.field("Twiml")
        assert twiml == stream_twiml(stream, {"call_id": "c-1", "note": 'a"b<c'})
        root = ET.fromstring(twiml or "")
        stream_el = root.find("Connect/Stream")
        assert stream_el is not None and stream_el.get("url") == stream
        params = {p.get("name"): p.get("value") for p in stream_el.findall("Parameter")}
        assert params == {"call_id": "c-1", "note": 'a"b<c'}


async def test_twilio_dial_is_never_retried() -> None:
    async with running_twilio_api() as api:
        api.faults.fail_next(1, 503)
        async with twilio_client(api) as cc:
            with pytest.raises(CallControlError) as err:
                await cc.dial("+14155550123", "+18005550100", "wss://m.example.com/s", None, {})
        assert err.value.status == 503
        assert len(api.requests) == 1 and not api.calls


async def test_twilio_dial_refused_for_missing_from() -> None:
    async with running_twilio_api() as api:
        async with twilio_client(api) as cc:
            with pytest.raises(CallControlError) as err:
                await cc.dial("+14155550123", "", "wss://m.example.com/s", None, {})
        assert (err.value.status, err.value.code) == (400, 21213)


async def test_logs_mask_numbers_and_hide_secrets(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="media")  # every call-control module
    async with running_twilio_api(auth_token="very-secret-token") as api:
        async with twilio_client(api) as cc:
            sid = await cc.dial(
                "+14155550123", "+18005550100", "wss://m.example.com/s?token=tok-123", None, {}
            )
            await cc.transfer(sid, "+14155550199")
            await cc.hangup(sid)
    text = caplog.text
    assert sid in text and "+1******0123" in text
    for secret in ("4155550123", "4155550199", "very-secret-token", "tok-123"):
        assert secret not in text


def test_mask_number() -> None:
    assert mask_number("+14155550123") == "+1******0123"
    assert mask_number("+919876543210") == "+91******3210"
    assert mask_number("09876543210") == "*******3210"
    assert mask_number("+4420") == "****"
    assert mask_number(None) == "?"


# --- Exotel -----------------------------------------------------------------------------


class Bot:
    """A minimal media endpoint: detects the carrier, parses events, can close a call's stream."""

    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.events: dict[str, list[Event]] = {}
        self.queries: list[dict[str, str]] = []
        self.cc: ExotelCallControl | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/exotel", self.media)
        app.router.add_get("/connect", self.connect_applet)
        return app

    async def media(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.queries.append(dict(request.query))
        detector = CarrierDetector(dict(request.query))
        proto: CarrierProtocol | None = None
        events: list[Event] = []
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            if proto is None:
                proto = detector.feed(msg.data)
                batch = [proto.parse(m) for m in detector.messages] if proto else []
            else:
                batch = [proto.parse(msg.data)]
            for event in batch:
                events.append(event)
                if isinstance(event, Start):
                    self.sockets[event.call_sid] = ws
                    self.events[event.call_sid] = events
        return ws

    async def close_stream(self, call_sid: str, reason: str) -> bool:
        ws = self.sockets.pop(call_sid, None)
        if ws is None or ws.closed:
            return False
        await ws.close(code=1000, message=reason.encode())
        return True

    async def connect_applet(self, request: web.Request) -> web.Response:
        assert self.cc is not None
        target = await self.cc.take_transfer(request.query["CallSid"])
        if target is None:
            return web.json_response({"destination": {"numbers": []}})
        return web.json_response(connect_applet_response(target))


def exotel_client(api, bot: Bot, key: str | None = None, **kw) -> ExotelCallControl:  # type: ignore[no-untyped-def]
    cc = ExotelCallControl(
        api.account_sid,
        api.api_key,
        key or api.api_token,
        base_url=api.base_url,
        close_stream=bot.close_stream,
        retry=FAST,
        **kw,
    )
    bot.cc = cc
    return cc


async def test_exotel_dial_streams_and_hangup_ends_the_call() -> None:
    bot = Bot()
    async with serve(bot.app()) as bot_url, running_exotel_api() as api:
        stream = bot_url.replace("http", "ws") + "/exotel?sample-rate=16000"
        async with exotel_client(api, bot) as cc:
            sid = await cc.dial(
                "+919876543210",
                "08047091234",
                stream,
                "https://app.example.com/status",
                {"call_id": "c-7", "token": "tk"},
            )
            req = api.requests[-1]
            assert req.path == f"/v1/Accounts/{api.account_sid}/Calls/connect.json"
            assert req.user == api.api_key
            assert req.form == [
                ("From", "+919876543210"),
                ("CallerId", "08047091234"),
                ("StreamUrl", stream + "&call_id=c-7&token=tk"),
                ("StreamType", "bidirectional"),
                ("StatusCallback", "https://app.example.com/status"),
                ("StatusCallbackEvents[0]", "answered"),
                ("StatusCallbackEvents[1]", "terminal"),
            ]
            await wait_until(lambda: sid in bot.events and len(bot.events[sid]) >= 3)
            start = bot.events[sid][1]
            assert isinstance(start, Start)
            assert start.fmt.rate == 16000 and start.fmt.encoding == "pcm16"
            assert start.custom_parameters == {"call_id": "c-7", "token": "tk"}
            assert bot.queries[0]["call_id"] == "c-7"

            assert await cc.call_status(sid) == "in-progress"
            assert await cc.hangup(sid) == "completed"
            await asyncio.wait_for(api.calls[sid].ended.wait(), 5)
            assert api.calls[sid].status == "completed"
            assert api.calls[sid].transferred_to is None
            assert await cc.hangup(sid) == "already_ended"
            assert await cc.hangup("0" * 32) == "already_ended"


async def test_exotel_customer_hangup_then_bot_hangup() -> None:
    bot = Bot()
    async with serve(bot.app()) as bot_url, running_exotel_api(send_audio=False) as api:
        async with exotel_client(api, bot) as cc:
            sid = await cc.dial(
                "+919876543210", "0804", bot_url.replace("http", "ws") + "/exotel", None, {}
            )
            await wait_until(lambda: sid in bot.sockets)
            await api.customer_hangup(sid)
            assert await cc.hangup(sid) == "already_ended"


async def test_exotel_status_lookup_retries() -> None:
    bot = Bot()
    async with running_exotel_api() as api:
        call = api.add_call(status="completed")
        api.faults.fail_next(2, 502)
        async with exotel_client(api, bot) as cc:
            assert await cc.hangup(call.sid) == "already_ended"
        assert len(api.requests) == 3
        assert all(r.method == "GET" for r in api.requests)


async def test_exotel_auth_failure_and_dial_not_retried() -> None:
    bot = Bot()
    async with running_exotel_api() as api:
        async with exotel_client(api, bot, key="wrong") as cc:
            with pytest.raises(CallControlError) as err:
                await cc.dial("+919876543210", "0804", "wss://bot.example.com/x", None, {})
        assert err.value.status == 401
        assert "Authentication failed" in err.value.message
        async with exotel_client(api, bot) as cc:
            api.faults.fail_next(1, 500)
            with pytest.raises(CallControlError) as err:
                await cc.dial("+919876543210", "0804", "wss://bot.example.com/x", None, {})
        assert err.value.status == 500
        assert len(api.requests) == 2 and not api.calls
        with pytest.raises(ValueError):
            await cc.dial("+91", "0804", "wss://bot.example.com/" + "x" * 600, None, {})


async def test_exotel_transfer_without_flow_is_unsupported() -> None:
    bot = Bot()
    async with running_exotel_api() as api:
        call = api.add_call()
        async with exotel_client(api, bot) as cc:
            with pytest.raises(CallControlError) as err:
                await cc.transfer(call.sid, "+919800000000")
        assert (err.value.status, err.value.code) == (501, "transfer_unsupported")
        assert api.requests == []


async def test_exotel_transfer_through_flow_connect_applet() -> None:
    bot = Bot()
    flow_url = "http://my.exotel.com/dialkit1/exoml/start_voice/4242"
    async with serve(bot.app()) as bot_url, running_exotel_api() as api:
        api.flows[flow_url] = ExotelFlow(
            voicebot_url=bot_url.replace("http", "ws") + "/exotel", connect_url=bot_url + "/connect"
        )
        async with exotel_client(api, bot, flow_url=flow_url) as cc:
            sid = await cc.dial("+919876543210", "08047091234", "unused", None, {"call_id": "c-8"})
            req = api.requests[-1]
            assert dict(req.form) == {
                "From": "+919876543210",
                "CallerId": "08047091234",
                "Url": flow_url,
                "CustomField": "call_id=c-8",
            }
            await wait_until(lambda: sid in bot.sockets)
            await cc.transfer(sid, "+919800000000", caller_id="08047091234")
            await asyncio.wait_for(api.calls[sid].ended.wait(), 5)
            call = api.calls[sid]
            assert call.transferred_to == "+919800000000"
            assert call.connect_requests[0]["CallSid"] == sid
            assert await cc.transfers.take(sid) is None
            with pytest.raises(CallControlError) as err:
                await cc.transfer(sid, "+919800000000")
            assert err.value.code == "call_ended"


async def test_exotel_hangup_in_flow_reaches_hangup_applet() -> None:
    bot = Bot()
    flow_url = "http://my.exotel.com/dialkit1/exoml/start_voice/77"
    async with serve(bot.app()) as bot_url, running_exotel_api() as api:
        api.flows[flow_url] = ExotelFlow(
            bot_url.replace("http", "ws") + "/exotel", bot_url + "/connect"
        )
        async with exotel_client(api, bot, flow_url=flow_url) as cc:
            sid = await cc.dial("+919876543210", "0804", "unused", None, {})
            await wait_until(lambda: sid in bot.sockets)
            assert await cc.hangup(sid) == "completed"
            await asyncio.wait_for(api.calls[sid].ended.wait(), 5)
            assert api.calls[sid].transferred_to is None


async def test_shared_client_is_not_closed() -> None:
    async with running_twilio_api() as api, httpx.AsyncClient() as client:
        call = api.add_call()
        async with TwilioCallControl(api.account_sid, api.auth_token, api.base_url, client) as cc:
            assert await cc.hangup(call.sid) == "completed"
        assert not client.is_closed
