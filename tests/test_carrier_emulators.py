"""The carrier REST emulators play out outbound calls as the carriers do: status callbacks
in order with the documented fields (Twilio's signed), duplicated / held back / dropped on
demand, and for an answered call the media WebSocket opened to our real server with a
callee on the line, until someone hangs up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from emulators import serve
from emulators.carrier_line import PersonaLine, QuietLine
from emulators.carriers import running_carriers
from emulators.exotel_api import ExotelApi, ExotelFlow, running_exotel_api
from emulators.fates import Fate, Quirks, SeededFates
from emulators.twilio_api import TwilioApi, running_twilio_api
from evaluation.personas import load_persona
from media.call_control import ExotelCallControl, TwilioCallControl, stream_twiml
from media.twilio_signature import validate_twilio_signature
from tests.carrier_client import call_detail, create_call
from tests.conftest import RunningServer
from tests.test_call_end_transfer import dialkit_server, goodbye_factory, twilio_settings

INDIAN_DEBTOR = "+919876543210"
EXOPHONE = "08047091234"

DEBTOR = "+14155550123"
CALLER_ID = "+18005550100"


@dataclass
class Got:
    path: str
    method: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    url: str
    json: Any = None

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


@dataclass
class Receiver:
    """A status-callback endpoint (and a TwiML URL) that records what it was sent."""

    base: str = ""
    got: list[Got] = field(default_factory=list)
    twiml: str = "<Response/>"
    fail_first: int = 0  # answer this many deliveries with a 500
    answers: dict[str, Any] = field(default_factory=dict)  # JSON to answer, by path

    async def handle(self, request: web.Request) -> web.Response:
        body: Any = None
        if request.content_type == "application/json":
            body = await request.json()
            params = [(k, v) for k, v in body.items() if not isinstance(v, list)]
        else:
            params = list((await request.post()).items()) if request.method == "POST" else []
        self.got.append(Got(request.path, request.method, [(k, str(v)) for k, v in params],
                            dict(request.headers), str(request.url), body))
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        if request.path in self.answers:
            return web.json_response(self.answers[request.path])
        if request.path == "/twiml":
            return web.Response(text=self.twiml, content_type="application/xml")
        return web.Response(text="ok")

    def at(self, path: str) -> list[Got]:
        return [g for g in self.got if g.path == path]

    def statuses(self, path: str = "/status") -> list[str | None]:
        return [g.param("CallStatus") or g.param("Status") for g in self.at(path)]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    async with serve(app) as base:
        rec.base = base
        yield rec


async def wait_until(predicate: Callable[[], bool], limit_s: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), limit_s)


def assert_signed(api: TwilioApi, got: list[Got]) -> None:
    for g in got:
        signature = g.headers.get("X-Twilio-Signature")
        assert validate_twilio_signature(g.url, g.params, signature, api.auth_token), g
        assert not validate_twilio_signature(g.url, g.params, signature, "another-token")


async def twilio_dial(
    api: TwilioApi, server: RunningServer, status_url: str, **context: Any
) -> tuple[str, str]:
    """Create a call on our server, dial it through the emulator as the dialer does;
    returns (our call id, the carrier's call SID)."""
    created = await create_call(server.http, carrier="twilio", **context)
    async with TwilioCallControl(api.account_sid, api.auth_token, base_url=api.base_url) as cc:
        sid = await cc.dial(DEBTOR, CALLER_ID, f"{server.ws}/media/twilio", status_url,
                            created["custom_parameters"])
    return created["call_id"], sid


async def fetch(api: TwilioApi, sid: str) -> dict[str, Any]:
    async with httpx.AsyncClient(auth=(api.account_sid, api.auth_token)) as client:
        resp = await client.get(f"{api.base_url}/2010-04-01/Accounts/{api.account_sid}/Calls/{sid}.json")
        return dict(resp.json())


async def twilio_create(api: TwilioApi, **form: str) -> str:
    """POST a Calls create with these form fields; the new call's SID."""
    async with httpx.AsyncClient(auth=(api.account_sid, api.auth_token)) as client:
        resp = await client.post(
            f"{api.base_url}/2010-04-01/Accounts/{api.account_sid}/Calls.json",
            data={"To": DEBTOR, "From": CALLER_ID, **form})
        assert resp.status_code == 201, resp.text
        return str(resp.json()["sid"])


# ---- Twilio ------------------------------------------------------------------------------


async def test_twilio_answered_call_streams_to_our_server_until_it_hangs_up(
    base_settings,
) -> None:
    async with receiver() as rec, running_twilio_api(
        fates={DEBTOR: Fate.answered(ring_s=0.1)}
    ) as api, dialkit_server(
        base_settings, policy_factory=goodbye_factory, **twilio_settings(api)
    ) as server:
        call_id, sid = await twilio_dial(api, server, rec.base + "/status")
        call = await api.finished(sid, 30)
        assert rec.statuses() == ["initiated", "ringing", "in-progress", "completed"]
        got = rec.at("/status")
        assert [g.param("SequenceNumber") for g in got] == ["0", "1", "2", "3"]
        assert_signed(api, got)
        for g in got:
            assert g.method == "POST"
            assert g.headers["Content-Type"] == "application/x-www-form-urlencoded"
            assert (g.param("CallSid"), g.param("AccountSid")) == (sid, api.account_sid)
            assert (g.param("To"), g.param("From")) == (DEBTOR, CALLER_ID)
            assert g.param("Direction") == "outbound-api"
            assert g.param("ApiVersion") == "2010-04-01"
            assert g.param("CallbackSource") == "call-progress-events"
            assert (g.param("Timestamp") or "").endswith("+0000")  # RFC 2822, UTC
        completed = got[-1]
        assert int(completed.param("CallDuration") or 0) >= 1
        assert completed.param("Duration") == "1"
        assert got[2].param("CallDuration") is None
        # the media stream carried our server's call: it spoke, then hung up via REST
        assert call.stream_parameters["call_id"] == call_id
        assert call.ended_by == "carrier"
        assert call.status == "completed" and call.duration == int(completed.param("CallDuration") or 0)
        hangups = [r for r in api.requests if r.path.endswith(f"/Calls/{sid}.json")]
        assert [r.form for r in hangups] == [[("Status", "completed")]]
        detail = await call_detail(server.http, call_id)
        assert detail["call"]["status"] == "completed"
        assert detail["turns"][0]["text"] == "Thanks for your time. Goodbye."
        assert call.phone is not None and call.phone.stats.marks_echoed >= 2
        assert (await fetch(api, sid))["duration"] == str(call.duration)


@pytest.mark.parametrize(
    ("fate", "statuses"),
    [
        (Fate.no_answer(ring_s=0.1), ["initiated", "ringing", "no-answer"]),
        (Fate.busy(), ["initiated", "busy"]),
        (Fate.failed(), ["failed"]),
    ],
)
async def test_twilio_unanswered_fates(light_server, fate: Fate, statuses: list[str]) -> None:
    async with receiver() as rec, running_twilio_api(fates={DEBTOR: fate}) as api:
        _, sid = await twilio_dial(api, light_server, rec.base + "/status")
        call = await api.finished(sid)
        assert rec.statuses() == statuses
        assert_signed(api, rec.got)
        last = rec.got[-1]
        assert (last.param("CallDuration"), last.param("Duration")) == ("0", "0")
        assert call.phone is None and call.stream_url is None  # no media stream
        assert (await fetch(api, sid))["status"] == statuses[-1]


async def test_twilio_callbacks_duplicated_held_back_and_dropped(light_server) -> None:
    quirks = Quirks.of(duplicate=["ringing"], hold=["answered"], drop=["initiated"])
    fate = Fate.answered(lambda: QuietLine(dtmf="12#", hang_up_after_s=1.0), quirks=quirks)
    async with receiver() as rec, running_twilio_api(fates=lambda to: fate) as api:
        call_id, sid = await twilio_dial(api, light_server, rec.base + "/status")
        call = await api.finished(sid)
        # the answered callback arrives after completed; ringing twice, identical
        assert rec.statuses() == ["ringing", "ringing", "completed", "in-progress"]
        assert [g.param("SequenceNumber") for g in rec.got] == ["1", "1", "3", "2"]
        assert rec.got[0].params == rec.got[1].params
        token = "I-Twilio-Idempotency-Token"
        assert rec.got[0].headers[token] == rec.got[1].headers[token] != rec.got[2].headers[token]
        assert_signed(api, rec.got)
        dropped = [c for c in api.callbacks_of(sid) if c.dropped]
        assert [c.event for c in dropped] == ["initiated"]
        # the callee pressed keys, then hung up: the stream ended from the carrier's side
        assert call.ended_by == "callee"
        detail = await call_detail(light_server.http, call_id)
        assert [e["data"]["digit"] for e in detail["events"] if e["kind"] == "dtmf"] == [
            "1", "2", "#"]
        assert detail["call"]["status"] == "completed"


async def test_twilio_delayed_callbacks_keep_their_order(light_server) -> None:
    fate = Fate.no_answer(ring_s=0.05, quirks=Quirks.of(delay_s=0.2))
    async with receiver() as rec, running_twilio_api(fates={DEBTOR: fate}) as api:
        _, sid = await twilio_dial(api, light_server, rec.base + "/status")
        assert api.calls[sid].status in ("queued", "ringing", "no-answer")
        await api.finished(sid)
        assert api.calls[sid].status == "no-answer"
        assert rec.statuses() == ["initiated", "ringing", "no-answer"]


async def test_twilio_voicemail_async_amd_reaches_our_server(base_settings) -> None:
    async with running_twilio_api(fates={DEBTOR: Fate.voicemail(amd_after_s=0.3)}) as api, \
            dialkit_server(base_settings, **twilio_settings(api)) as server, receiver() as rec:
        created = await create_call(server.http, carrier="twilio")
        sid = await twilio_create(
            api, Twiml=stream_twiml(f"{server.ws}/media/twilio", created["custom_parameters"]),
            StatusCallback=rec.base + "/status", StatusCallbackEvent="initiated answered",
            MachineDetection="DetectMessageEnd", AsyncAmd="true",
            AsyncAmdStatusCallback=f"{server.http}/carriers/twilio/amd")
        call = await api.finished(sid, 30)
        assert rec.statuses() == ["initiated", "in-progress", "completed"]
        assert rec.got[-1].param("AnsweredBy") == "machine_end_beep"
        amd = [c for c in api.callbacks_of(sid) if c.event == "amd"]
        assert len(amd) == 1 and amd[0].status == 200
        assert dict(amd[0].params) == {
            "AccountSid": api.account_sid, "AnsweredBy": "machine_end_beep", "CallSid": sid,
            "MachineDetectionDuration": "300"}
        # our server heard the verdict, left its message and hung up through the REST API
        assert call.ended_by == "carrier"
        detail = await call_detail(server.http, created["call_id"])
        assert [e["data"] for e in detail["events"] if e["kind"] == "machine_detected"] == [
            {"source": "carrier", "answered_by": "machine_end_beep"}]
        assert detail["outcome"]["outcome"] == "voicemail"
        assert (await fetch(api, sid))["answered_by"] == "machine_end_beep"


async def test_twilio_cancel_while_ringing(light_server) -> None:
    async with receiver() as rec, running_twilio_api(fates={DEBTOR: Fate.answered(ring_s=5)}) as api:
        _, sid = await twilio_dial(api, light_server, rec.base + "/status")
        await wait_until(lambda: api.calls[sid].status == "ringing")
        async with httpx.AsyncClient(auth=(api.account_sid, api.auth_token)) as client:
            path = f"{api.base_url}/2010-04-01/Accounts/{api.account_sid}/Calls/{sid}.json"
            assert (await client.post(path, data={"Status": "completed"})).status_code == 200
            await api.finished(sid, 3)
            assert (await client.post(path, data={"Status": "completed"})).status_code == 404
        assert rec.statuses() == ["initiated", "ringing", "canceled"]


async def test_twilio_url_twiml_is_fetched_signed_and_a_transfer_ends_the_stream(
    light_server,
) -> None:
    async with receiver() as rec, running_twilio_api(fates={DEBTOR: Fate.answered()}) as api:
        created = await create_call(light_server.http, carrier="twilio")
        rec.twiml = stream_twiml(f"{light_server.ws}/media/twilio", created["custom_parameters"])
        sid = await twilio_create(api, Url=rec.base + "/twiml", StatusCallback=rec.base + "/status")
        await wait_until(lambda: api.calls[sid].stream_url is not None)
        twiml_request = rec.at("/twiml")[0]
        assert twiml_request.param("CallStatus") == "in-progress"
        assert_signed(api, [twiml_request])
        async with TwilioCallControl(api.account_sid, api.auth_token, base_url=api.base_url) as cc:
            await cc.transfer(sid, "+14155550199")
        call = await api.finished(sid)
        assert call.ended_by == "carrier" and call.transferred_to == "+14155550199"
        assert rec.statuses() == ["completed"]  # only completed when no events are asked for
        detail = await call_detail(light_server.http, created["call_id"])
        assert detail["call"]["status"] == "completed"


def test_seeded_fates_are_reproducible() -> None:
    numbers = [f"+1415555{i:04d}" for i in range(200)]
    first, again = SeededFates(7), SeededFates(7)
    kinds = [first(n).kind for n in numbers]
    assert kinds == [again(n).kind for n in numbers]
    assert set(kinds) == {"answered", "no_answer", "busy", "failed", "voicemail"}
    retry = [first(n).kind for n in numbers]  # a second dial of each number draws anew
    assert retry != kinds
    assert [SeededFates(8)(n).kind for n in numbers] != kinds


# ---- Exotel ------------------------------------------------------------------------------


def exotel_settings(api: ExotelApi) -> dict[str, Any]:
    return {"exotel_account_sid": api.account_sid, "exotel_api_key": SecretStr(api.api_key),
            "exotel_api_token": SecretStr(api.api_token), "exotel_api_base": api.base_url}


def exotel_control(api: ExotelApi) -> ExotelCallControl:
    return ExotelCallControl(api.account_sid, api.api_key, api.api_token, base_url=api.base_url)


async def exotel_dial(
    api: ExotelApi, server: RunningServer, status_url: str | None, rate: int = 8000
) -> tuple[str, str]:
    created = await create_call(server.http, carrier="exotel")
    async with exotel_control(api) as cc:
        sid = await cc.dial(INDIAN_DEBTOR, EXOPHONE,
                            f"{server.ws}/media/exotel?sample-rate={rate}", status_url,
                            created["custom_parameters"])
    return created["call_id"], sid


async def exotel_connect(api: ExotelApi, **form: str) -> str:
    async with httpx.AsyncClient(auth=(api.api_key, api.api_token)) as client:
        resp = await client.post(
            f"{api.base_url}/v1/Accounts/{api.account_sid}/Calls/connect.json",
            data={"From": INDIAN_DEBTOR, "CallerId": EXOPHONE, **form})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["Call"]["Sid"])


async def test_exotel_answered_call_streams_until_our_server_closes_it(base_settings) -> None:
    async with receiver() as rec, running_exotel_api(
        fates={INDIAN_DEBTOR: Fate.answered(ring_s=0.1)}
    ) as api, dialkit_server(
        base_settings, policy_factory=goodbye_factory, **exotel_settings(api)
    ) as server:
        call_id, sid = await exotel_dial(api, server, rec.base + "/status")
        call = await api.finished(sid, 30)
        assert rec.statuses() == ["in-progress", "completed"]
        answered, terminal = rec.got
        assert [answered.param("EventType"), terminal.param("EventType")] == [
            "answered", "terminal"]
        for g in rec.got:
            assert g.headers["Content-Type"] == "application/x-www-form-urlencoded"
            assert g.param("CallSid") == sid and g.param("From") == INDIAN_DEBTOR
            assert g.param("PhoneNumberSid") == EXOPHONE
            assert g.param("Direction") == "outbound-api"
            for name in ("DateCreated", "DateUpdated", "StartTime"):
                datetime.strptime(g.param(name) or "", "%Y-%m-%d %H:%M:%S")
        assert terminal.param("EndTime") and terminal.param("RecordingUrl") == ""
        seconds = int(terminal.param("ConversationDuration") or 0)
        assert seconds >= 1 and terminal.param("Legs[0][OnCallDuration]") == str(seconds)
        assert terminal.param("Legs[0][AnsweredBy]") == "HUMAN"
        # our server said goodbye and closed the stream; the status lookup came first
        assert call.ended_by == "server"
        assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in api.requests] == [
            ("POST", "connect.json"), ("GET", f"{sid}.json")]
        detail = await call_detail(server.http, call_id)
        assert detail["call"]["status"] == "completed"
        assert detail["turns"][0]["text"] == "Thanks for your time. Goodbye."
        async with exotel_control(api) as cc:
            assert await cc.call_status(sid) == "completed"


@pytest.mark.parametrize(
    ("fate", "status"),
    [(Fate.no_answer(ring_s=0.1), "no-answer"), (Fate.busy(), "busy"), (Fate.failed(), "failed")],
)
async def test_exotel_unanswered_fates(light_server, fate: Fate, status: str) -> None:
    async with receiver() as rec, running_exotel_api(fates={INDIAN_DEBTOR: fate}) as api:
        _, sid = await exotel_dial(api, light_server, rec.base + "/status")
        call = await api.finished(sid)
        assert rec.statuses() == [status]
        assert rec.got[0].param("EventType") == "terminal"
        assert rec.got[0].param("ConversationDuration") == "0"
        assert rec.got[0].param("Legs[0][AnsweredBy]") == "NA"
        assert call.phone is None and not call.stream_open.is_set()
        async with exotel_control(api) as cc:
            assert await cc.call_status(sid) == status


async def test_exotel_default_payload_has_four_fields(light_server) -> None:
    async with receiver() as rec, running_exotel_api(fates={INDIAN_DEBTOR: Fate.busy()}) as api:
        sid = await exotel_connect(api, StreamUrl=f"{light_server.ws}/media/exotel",
                                   StreamType="bidirectional", StatusCallback=rec.base + "/status")
        await api.finished(sid)
        assert [k for k, _ in rec.got[0].params] == [
            "CallSid", "DateUpdated", "Status", "RecordingUrl"]


async def test_exotel_json_callbacks_are_retried_up_to_twice(light_server) -> None:
    async with receiver() as rec, running_exotel_api(fates={INDIAN_DEBTOR: Fate.busy()}) as api:
        rec.fail_first = 5
        sid = await exotel_connect(
            api, StreamUrl=f"{light_server.ws}/media/exotel", StreamType="bidirectional",
            StatusCallback=rec.base + "/status", StatusCallbackContentType="application/json",
            **{"StatusCallbackEvents[]": "terminal"})
        await api.finished(sid)
        assert len(rec.got) == 3  # the first try and two retries
        body = rec.got[0].json
        assert body["Status"] == "busy" and body["ConversationDuration"] == 0
        assert body["Legs"] == [{"OnCallDuration": 0, "Status": "busy", "AnsweredBy": "NA"}]
        assert [(c.attempt, c.status) for c in api.callbacks_of(sid)] == [
            (1, 500), (2, 500), (3, 500)]


async def test_exotel_multipart_callbacks_duplicated_and_reordered(light_server) -> None:
    quirks = Quirks.of(duplicate=["terminal"], hold=["answered"])
    line = lambda: QuietLine(dtmf="7", hang_up_after_s=0.6)  # noqa: E731
    async with receiver() as rec, running_exotel_api(
        fates={INDIAN_DEBTOR: Fate.answered(line, quirks=quirks)}
    ) as api:
        created = await create_call(light_server.http, carrier="exotel")
        stream = f"{light_server.ws}/media/exotel?sample-rate=16000&" + urlencode(
            created["custom_parameters"])
        sid = await exotel_connect(
            api, StreamUrl=stream, StreamType="bidirectional", StatusCallback=rec.base + "/status",
            StatusCallbackContentType="multipart/form-data",
            **{"StatusCallbackEvents[0]": "answered", "StatusCallbackEvents[1]": "terminal"})
        call = await api.finished(sid)
        assert rec.statuses() == ["completed", "completed", "in-progress"]
        assert rec.got[0].params == rec.got[1].params
        assert all(g.headers["Content-Type"].startswith("multipart/form-data") for g in rec.got)
        assert call.ended_by == "callee"
        assert call.phone is not None and call.phone.fmt.rate == 16000
        detail = await call_detail(light_server.http, created["call_id"])
        assert [e["data"]["digit"] for e in detail["events"] if e["kind"] == "dtmf"] == ["7"]


async def test_exotel_flow_call_goes_to_the_voicebot_then_the_connect_applet(
    base_settings,
) -> None:
    flow_url = "http://my.exotel.com/dialkit1/exoml/start_voice/4242"
    async with receiver() as rec, running_exotel_api(
        fates={INDIAN_DEBTOR: Fate.answered()}
    ) as api, dialkit_server(
        base_settings, policy_factory=goodbye_factory, **exotel_settings(api)
    ) as server:
        created = await create_call(server.http, carrier="exotel")
        voicebot = f"{server.ws}/media/exotel?" + urlencode(created["custom_parameters"])
        api.flows[flow_url] = ExotelFlow(voicebot, rec.base + "/connect")
        rec.answers["/connect"] = {"destination": {"numbers": ["+919800000000"]}}
        sid = await exotel_connect(api, Url=flow_url, CustomField="lead=42",
                                   StatusCallback=rec.base + "/status",
                                   **{"StatusCallbackEvents[]": "terminal"})
        call = await api.finished(sid, 30)
        assert call.ended_by == "server" and call.transferred_to == "+919800000000"
        assert rec.at("/connect")[0].url.split("?", 1)[1].count("CallSid=" + sid) == 1
        terminal = rec.at("/status")
        assert [g.param("Status") for g in terminal] == ["completed"]
        assert terminal[0].param("CustomField") == "lead=42"
        detail = await call_detail(server.http, created["call_id"])
        assert detail["call"]["status"] == "completed"


async def test_exotel_customer_hangup_ends_a_played_call(light_server) -> None:
    async with receiver() as rec, running_exotel_api(fates={INDIAN_DEBTOR: Fate.answered()}) as api:
        call_id, sid = await exotel_dial(api, light_server, rec.base + "/status")
        await asyncio.wait_for(api.calls[sid].stream_open.wait(), 10)
        await asyncio.sleep(0.3)
        await api.customer_hangup(sid)
        call = await api.finished(sid)
        assert call.ended_by == "callee" and call.status == "completed"
        assert rec.statuses() == ["in-progress", "completed"]
        detail = await call_detail(light_server.http, call_id)
        assert detail["call"]["status"] == "completed"


# ---- both carriers, seeded; a speaking debtor ------------------------------------------------


async def test_running_carriers_play_a_seeded_mix_on_both(light_server) -> None:
    statuses = {"answered": "completed", "voicemail": "completed", "no_answer": "no-answer",
                "busy": "busy", "failed": "failed"}
    lines = [lambda: QuietLine(hang_up_after_s=0.3)]
    async with receiver() as rec, running_carriers(seed=3, lines=lines) as carriers:
        assert set(carriers.settings()) >= {"twilio_api_base", "exotel_api_base"}
        fates = SeededFates(3, lines=lines)  # the same draws, to know what to expect
        numbers = [f"+1415555{i:04d}" for i in range(6)]
        expected: dict[str, str] = {}
        for n in numbers:
            created = await create_call(light_server.http, carrier="twilio")
            twilio = TwilioCallControl(carriers.twilio.account_sid, carriers.twilio.auth_token,
                                       base_url=carriers.twilio.base_url)
            async with twilio as cc:
                sid = await cc.dial(n, CALLER_ID, f"{light_server.ws}/media/twilio",
                                    rec.base + "/status", created["custom_parameters"])
            expected[sid] = statuses[fates(n).kind]
        await carriers.idle(60)
        assert {sid: carriers.twilio.calls[sid].status for sid in expected} == expected
        last = {g.param("CallSid"): g.param("CallStatus") for g in rec.at("/status")}
        assert last == expected
        assert len(set(expected.values())) > 1  # a mix, not one fate for all


@pytest.mark.slow
async def test_a_speaking_persona_answers_a_dialled_call(speech_server) -> None:
    url, providers = speech_server
    persona = load_persona("cooperative")
    async with receiver() as rec, running_twilio_api(
        fates={persona.phone: Fate.answered("cooperative")},
        speech=(providers.stt, providers.tts),
    ) as api:
        async with httpx.AsyncClient(base_url=url) as client:
            resp = await client.post("/api/calls", json={
                "carrier": "twilio", "context": persona.context(), "to": persona.phone})
            created = resp.json()
        async with TwilioCallControl(api.account_sid, api.auth_token, base_url=api.base_url) as cc:
            sid = await cc.dial(persona.phone, CALLER_ID, url.replace("http", "ws") + "/media/twilio",
                                rec.base + "/status", created["custom_parameters"])
        call = await api.finished(sid, 240)
        assert isinstance(call.line, PersonaLine)
        speakers = {who for who, _ in call.line.heard}
        assert speakers == {"agent", "debtor"}, call.line.heard
        assert rec.statuses()[-1] == "completed"
        detail = await call_detail(url, created["call_id"])
        assert detail["call"]["status"] == "completed"
        assert {t["speaker"] for t in detail["turns"]} == {"agent", "caller"}
        assert (detail["outcome"] or {}).get("outcome") == persona.expected_outcome
