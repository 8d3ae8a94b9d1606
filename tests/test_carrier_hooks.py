"""Carrier webhooks during a live call: Twilio's async answering-machine verdict and the
Exotel Connect applet's dynamic transfer URL, over real sockets."""

from __future__ import annotations

import base64

import httpx
from pydantic import SecretStr

from dialkit.carrier_hooks import ReplayGuard
from dialkit.live import MemoryRegistry
from emulators.exotel_api import running_exotel_api
from emulators.twilio_api import running_twilio_api
from media.exotel_control import ExotelCallControl, TransferTarget
from media.twilio_signature import twilio_signature
from tests.carrier_client import call_detail
from tests.test_call_end_transfer import dialkit_server, next_mark, twilio_call, twilio_settings

SILENCE = b"\xff" * 160
EXOTEL_SECRET = "exotel-webhook-secret-for-tests"
#: a multipart body whose boundary never closes and whose part has no headers' end
BROKEN_MULTIPART = b"--XyZ\r\nContent-Disposition: form-data; name=\"CallSid\"\r\n\r\nCA1\r\n--XyZ"
MULTIPART = {"Content-Type": "multipart/form-data; boundary=XyZ"}


async def test_twilio_async_amd_machine_leaves_voicemail_and_hangs_up(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(base_settings, **twilio_settings(api)) as server:
        call = api.add_call()
        call_id, client = await twilio_call(server, call.sid, debtor_name="Dana Scully")
        await next_mark(client)  # the greeting is out
        url = f"{server.http}/carriers/twilio/amd"
        form = {"CallSid": call.sid, "AnsweredBy": "machine_end_beep", "AccountSid": api.account_sid}
        async with httpx.AsyncClient() as http:
            forged = await http.post(url, data=form, headers={"X-Twilio-Signature": "bm9wZQ=="})
            assert forged.status_code == 403
            good = await http.post(url, data=form, headers={
                "X-Twilio-Signature": twilio_signature(url, form, api.auth_token)})
            assert good.status_code == 200 and good.json() == {"delivered": True}
            replay = await http.post(url, data=form, headers={
                "X-Twilio-Signature": twilio_signature(url, form, api.auth_token)})
            assert replay.status_code == 200
            assert replay.json() == {"delivered": False, "duplicate": True}
        # the voicemail message plays; every mark is echoed; then the REST hang-up
        while True:
            try:
                name = await next_mark(client, timeout=10)
            except Exception:
                break
            await client.mark(name)
        detail = await call_detail(server.http, call_id)
        assert detail["outcome"]["outcome"] == "voicemail"
        agent_text = " ".join(t["text"] for t in detail["turns"] if t["speaker"] == "agent")
        for word in ("debt", "balance", "owe", "payment"):
            assert word not in agent_text.lower()
        assert any(e["kind"] == "hangup" for e in detail["events"])
        assert api.calls[call.sid].status == "completed"


async def test_twilio_amd_for_unknown_call_is_acknowledged(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(base_settings, **twilio_settings(api)) as server:
        url = f"{server.http}/carriers/twilio/amd"
        form = {"CallSid": "CA" + "9" * 32, "AnsweredBy": "human"}
        async with httpx.AsyncClient() as http:
            resp = await http.post(url, data=form, headers={
                "X-Twilio-Signature": twilio_signature(url, form, api.auth_token)})
            assert resp.status_code == 200 and resp.json() == {"delivered": False}
            missing = {"CallSid": "CA1"}
            resp = await http.post(url, data=missing, headers={
                "X-Twilio-Signature": twilio_signature(url, missing, api.auth_token)})
            assert resp.status_code == 400


async def test_exotel_connect_applet_gets_pending_transfer_once(base_settings) -> None:
    async with running_exotel_api() as api, dialkit_server(
        base_settings,
        exotel_account_sid=api.account_sid,
        exotel_api_key=SecretStr(api.api_key),
        exotel_api_token=SecretStr(api.api_token),
        exotel_api_base=api.base_url,
        exotel_webhook_secret=SecretStr(EXOTEL_SECRET),
    ) as server:
        control = server.state.providers.controls["exotel"]
        assert isinstance(control, ExotelCallControl)
        await control.transfers.put("EXO123", TransferTarget("+919876543210", "+918047000000"))
        async with httpx.AsyncClient(base_url=server.http, params={"secret": EXOTEL_SECRET}) as http:
            first = await http.get("/carriers/exotel/connect", params={"CallSid": "EXO123"})
            assert first.status_code == 200
            body = first.json()
            assert body["destination"] == {"numbers": ["+919876543210"]}
            assert body["outgoing_phone_number"] == "+918047000000"
            again = await http.get("/carriers/exotel/connect", params={"CallSid": "EXO123"})
            assert again.status_code == 404


async def test_exotel_transfer_through_flow_reaches_the_connect_applet(base_settings) -> None:
    """Agent decides to transfer → stream closed after the line is played → Exotel's
    Connect applet asks our dynamic URL and gets the playbook's transfer number."""
    import asyncio

    from ai.playbook import load_playbook
    from media.codec import AudioFormat
    from tests.carrier_client import create_call
    from tests.test_call_end_transfer import TRANSFER_NUMBER, ScriptedSTT
    from tests.test_exotel_session import ExotelClient

    base_pb = load_playbook()
    playbook = base_pb.model_copy(update={
        "settings": base_pb.settings.model_copy(update={"transfer_number": TRANSFER_NUMBER})
    })
    stt = ScriptedSTT()
    async with running_exotel_api(send_audio=False) as api, dialkit_server(
        base_settings, stt=stt, playbook=playbook,
        exotel_account_sid=api.account_sid, exotel_api_key=SecretStr(api.api_key),
        exotel_api_token=SecretStr(api.api_token), exotel_api_base=api.base_url,
        exotel_flow_url="http://my.exotel.com/acme/exoml/start_voice/1234",
        exotel_webhook_secret=SecretStr(EXOTEL_SECRET),
    ) as server:
        call = api.add_call()
        created = await create_call(server.http, carrier="exotel", debtor_name="Dana Cole")
        client = await ExotelClient.connect(f"{server.ws}/media/exotel", AudioFormat("pcm16", 8000))
        client.call_sid = call.sid
        await client.connected()
        await client.start(created["call_id"], created["token"])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        asked = False
        marks = 0
        while loop.time() < deadline:
            try:
                msg = await client.recv(0.1)
            except TimeoutError:
                await client.silence()
                if marks >= 2 and not asked:  # greeting played: ask for a person
                    stt.streams[-1].say("Can I talk to a real person please?")
                    asked = True
                continue
            except Exception:
                break  # the server closed the stream
            if msg["event"] == "mark":
                marks += 1
                await client.mark(msg["mark"]["name"])
        assert client.ws.close_code == 1000
        async with httpx.AsyncClient(base_url=server.http) as http:
            resp = await http.get(
                "/carriers/exotel/connect", params={"CallSid": call.sid, "secret": EXOTEL_SECRET})
        assert resp.status_code == 200
        assert resp.json()["destination"] == {"numbers": [TRANSFER_NUMBER]}
        detail = await call_detail(server.http, created["call_id"])
        assert detail["outcome"]["outcome"] == "transferred"
        assert any(e["kind"] == "transferred" for e in detail["events"])


async def test_twilio_amd_checks_the_signature_and_never_fails_on_a_broken_body(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(base_settings, **twilio_settings(api)) as server:
        url = f"{server.http}/carriers/twilio/amd"
        async with httpx.AsyncClient() as http:
            unsigned = await http.post(url, content=BROKEN_MULTIPART, headers=MULTIPART)
            assert unsigned.status_code == 403 and "X-Twilio-Signature" in unsigned.json()["error"]
            signed = await http.post(url, content=BROKEN_MULTIPART, headers={
                **MULTIPART, "X-Twilio-Signature": twilio_signature(url, {}, api.auth_token)})
            assert signed.status_code == 400 and signed.json()["error"]
            bad_form = await http.post(url, content=b"CallSid=%ff%fe&AnsweredBy=human", headers={
                "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": "x"})
            assert bad_form.status_code == 400 and bad_form.json()["error"]
            odd_header = await http.post(url, data={"CallSid": "CA1"}, headers={
                "X-Twilio-Signature": "sig\u00e9".encode()})
            assert odd_header.status_code == 403


async def test_an_amd_result_for_no_live_call_can_be_retried() -> None:
    """Only a delivery that acted is remembered: a result that reached no call yet (the
    stream was not up) may act when it comes again."""
    guard = ReplayGuard(MemoryRegistry())
    assert await guard.first("amd:CA1:human")
    assert not await guard.first("amd:CA1:human")
    assert await guard.first("amd:CA1:machine_start")
    await guard.release("amd:CA1:human")
    assert await guard.first("amd:CA1:human")


async def test_exotel_connect_needs_its_secret(base_settings) -> None:
    async with running_exotel_api() as api:
        exotel = {
            "exotel_account_sid": api.account_sid, "exotel_api_key": SecretStr(api.api_key),
            "exotel_api_token": SecretStr(api.api_token), "exotel_api_base": api.base_url,
        }
        async with dialkit_server(base_settings, **exotel) as server, httpx.AsyncClient(
            base_url=server.http
        ) as http:
            # no secret configured: closed, whatever the request carries
            resp = await http.get("/carriers/exotel/connect", params={"CallSid": "EXO1", "secret": "x"})
            assert resp.status_code == 404 and "DIALKIT_EXOTEL_WEBHOOK_SECRET" in resp.json()["error"]
        async with dialkit_server(
            base_settings, **exotel, exotel_webhook_secret=SecretStr(EXOTEL_SECRET)
        ) as server, httpx.AsyncClient(base_url=server.http) as http:
            control = server.state.providers.controls["exotel"]
            await control.transfers.put("EXO7", TransferTarget("+919876543210", None))
            path = "/carriers/exotel/connect"
            for params, headers in [
                ({"CallSid": "EXO7"}, {}),
                ({"CallSid": "EXO7", "secret": "wrong"}, {}),
                ({"CallSid": "EXO7"}, {"Authorization": "Basic !!!"}),
                ({"CallSid": "EXO7"}, {"Authorization": _basic("exotel", "wrong")}),
            ]:
                refused = await http.get(path, params=params, headers=headers)
                assert refused.status_code == 403, (params, headers)
            # an unauthenticated broken body is refused before it is read
            resp = await http.post(path, content=BROKEN_MULTIPART, headers=MULTIPART)
            assert resp.status_code == 403
            # an authenticated one is a 400, not an error page
            resp = await http.post(path, params={"secret": EXOTEL_SECRET}, content=BROKEN_MULTIPART,
                                   headers=MULTIPART)
            assert resp.status_code == 400 and resp.json()["error"]
            # nothing refused took the pending transfer; the right secret gets it, once
            ok = await http.post(path, data={"CallSid": "EXO7"},
                                 headers={"Authorization": _basic("exotel", EXOTEL_SECRET)})
            assert ok.status_code == 200 and ok.json()["destination"] == {"numbers": ["+919876543210"]}
            again = await http.get(path, params={"CallSid": "EXO7", "secret": EXOTEL_SECRET})
            assert again.status_code == 404


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
