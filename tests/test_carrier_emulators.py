"""The Twilio emulator plays outbound calls out as Twilio does: signed status callbacks in
order with the documented fields, duplicated / held back / delayed / dropped on demand, AMD
results, and for an answered call the media WebSocket opened to our real server with a
callee on the line, until someone hangs up; both emulators together with seeded fates; a
speaking persona on the line. (Exotel: test_carrier_emulators_exotel.py.)"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulators.carrier_line import PersonaLine, QuietLine
from emulators.carriers import running_carriers
from emulators.fates import Fate, Quirks, SeededFates
from emulators.twilio_api import TwilioApi, running_twilio_api
from evaluation.personas import load_persona
from media.twilio_control import TwilioCallControl, stream_twiml
from media.twilio_signature import validate_twilio_signature
from tests.callback_receiver import Got, receiver, wait_until
from tests.carrier_client import call_detail, create_call
from tests.conftest import RunningServer
from tests.test_call_end_transfer import dialkit_server, goodbye_factory, twilio_settings

DEBTOR = "+14155550123"
CALLER_ID = "+18005550100"


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


async def test_twilio_ring_timeout_and_time_limit(light_server) -> None:
    async with receiver() as rec, running_twilio_api(
        fates={DEBTOR: Fate.answered(ring_s=3)}
    ) as api:
        created = await create_call(light_server.http, carrier="twilio")
        twiml = stream_twiml(f"{light_server.ws}/media/twilio", created["custom_parameters"])
        late = await twilio_create(api, Twiml=twiml, Timeout="1",
                                   StatusCallback=rec.base + "/status")
        assert (await api.finished(late, 5)).status == "no-answer"
        assert rec.statuses() == ["no-answer"]
    async with running_twilio_api(fates={DEBTOR: Fate.answered(ring_s=0.05)}) as api:
        limited = await twilio_create(api, Twiml=twiml, TimeLimit="1")
        call = await api.finished(limited, 10)
        assert (call.status, call.ended_by, call.duration) == ("completed", "timeout", 1)
        async with httpx.AsyncClient(auth=(api.account_sid, api.auth_token)) as client:
            resp = await client.post(
                f"{api.base_url}/2010-04-01/Accounts/{api.account_sid}/Calls.json",
                data={"To": DEBTOR, "From": CALLER_ID, "Twiml": twiml, "Timeout": "soon"})
        assert resp.status_code == 400 and "Timeout" in resp.json()["message"]


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
