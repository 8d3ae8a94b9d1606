"""The Exotel emulator plays connect-API calls out as Exotel does: StatusCallback with the
documented fields (form, multipart or JSON; retried when not answered 2xx), duplicated or
held back on demand, and for an answered call the Voicebot stream to our real server with a
callee on the line, until one side hangs up. Flow calls end at the Connect applet."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from pydantic import SecretStr

from emulators.carrier_line import QuietLine
from emulators.exotel_api import ExotelApi, ExotelFlow, running_exotel_api
from emulators.fates import Fate, Quirks
from media.exotel_control import ExotelCallControl
from tests.callback_receiver import receiver
from tests.carrier_client import call_detail, create_call
from tests.conftest import RunningServer
from tests.test_call_end_transfer import dialkit_server, goodbye_factory

INDIAN_DEBTOR = "+919876543210"
EXOPHONE = "08047091234"


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




async def test_exotel_ring_timeout_and_bad_limits(light_server) -> None:
    async with receiver() as rec, running_exotel_api(
        fates={INDIAN_DEBTOR: Fate.answered(ring_s=3)}
    ) as api:
        sid = await exotel_connect(api, StreamUrl=f"{light_server.ws}/media/exotel",
                                   StreamType="bidirectional", TimeOut="1",
                                   StatusCallback=rec.base + "/status")
        assert (await api.finished(sid, 5)).status == "no-answer"
        assert rec.statuses() == ["no-answer"]
        async with httpx.AsyncClient(auth=(api.api_key, api.api_token)) as client:
            resp = await client.post(
                f"{api.base_url}/v1/Accounts/{api.account_sid}/Calls/connect.json",
                data={"From": INDIAN_DEBTOR, "CallerId": EXOPHONE, "Url": "x",
                      "TimeLimit": "99999"})
        assert resp.status_code == 400
        assert "TimeLimit" in resp.json()["RestException"]["Message"]
