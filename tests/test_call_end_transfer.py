"""The agent ends and hands over calls through the carriers' REST APIs (local emulators of
Twilio's and Exotel's, on real sockets), and only once the goodbye has been played."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pydantic import SecretStr

from ai.events import CallStarted, PolicyEvent
from ai.playbook import Playbook, load_playbook
from ai.playbook_policy import ScriptedPolicyFactory
from ai.protocols import PolicyFactory
from ai.stt_null import NullSTT
from ai.tts_tone import ToneTTS
from ai.types import (
    Action,
    AudioIn,
    AudioSpec,
    Message,
    PolicyOutput,
    Say,
    SpeechStarted,
    STTEvent,
    UtteranceEnd,
)
from dialkit.config import Settings
from dialkit.providers import Providers, carrier_controls
from dialkit.server import start_server
from emulators.exotel_api import running_exotel_api
from emulators.twilio_api import TwilioApi, running_twilio_api
from media.codec import AudioFormat
from tests.carrier_client import TwilioClient, call_detail, create_call
from tests.conftest import RunningServer
from tests.test_exotel_session import ExotelClient

SILENCE = b"\xff" * 160
TRANSFER_NUMBER = "+14155550199"


# ---- test providers ----------------------------------------------------------------------


class ScriptedStream:
    """An STT stream whose utterances the test decides: `say(text)` emits a SpeechStarted
    and an UtteranceEnd as a recogniser would at the end of a turn."""

    def __init__(self) -> None:
        self._events: asyncio.Queue[STTEvent | None] = asyncio.Queue()
        self.chunks = 0

    async def send(self, audio: AudioIn) -> None:
        self.chunks += 1

    def say(self, text: str, seconds: float = 1.0) -> None:
        now = asyncio.get_running_loop().time()
        self._events.put_nowait(SpeechStarted(now - seconds))
        self._events.put_nowait(UtteranceEnd(text, speech_end_t=now, t=now))

    async def events(self) -> AsyncIterator[STTEvent]:
        while (ev := await self._events.get()) is not None:
            yield ev

    async def close(self) -> None:
        self._events.put_nowait(None)


class ScriptedSTT:
    name = "scripted"

    def __init__(self) -> None:
        self.streams: list[ScriptedStream] = []

    async def open_stream(self, spec: AudioSpec, endpointing_ms: int) -> ScriptedStream:
        stream = ScriptedStream()
        self.streams.append(stream)
        return stream


class GoodbyePolicy:
    """Says two sentences and ends the call as soon as it starts."""

    name = "goodbye"

    async def respond(self, history: list[Message], event: PolicyEvent) -> AsyncIterator[PolicyOutput]:
        if isinstance(event, CallStarted):
            yield Say("Thanks for your time.")
            yield Say("Goodbye.")
            yield Action("end_call", {"outcome": "refused"})


def goodbye_factory(context: Any, playbook: Any = None) -> GoodbyePolicy:
    return GoodbyePolicy()


@asynccontextmanager
async def dialkit_server(
    base: Settings,
    *,
    stt: Any = None,
    tts: Any = None,
    policy_factory: PolicyFactory | None = None,
    playbook: Playbook | None = None,
    **settings: Any,
) -> AsyncIterator[RunningServer]:
    """A server (tone TTS) with its own settings, e.g. carrier API credentials and base URL."""
    cfg = base.model_copy(update=settings)
    pb = playbook or load_playbook()
    providers = Providers(
        stt=stt or NullSTT(),
        tts=tts or ToneTTS(),
        policy_factory=policy_factory or ScriptedPolicyFactory(pb),
        playbook=pb,
        controls=carrier_controls(cfg),
    )
    runner, port = await start_server(cfg, providers, port=0)
    try:
        yield RunningServer(runner, port, cfg)
    finally:
        await runner.cleanup()


def twilio_settings(api: TwilioApi) -> dict[str, Any]:
    return {"twilio_account_sid": api.account_sid,
            "twilio_auth_token": SecretStr(api.auth_token), "twilio_api_base": api.base_url}


async def twilio_call(
    server: RunningServer, call_sid: str, params: dict[str, str] | None = None, **ctx: Any
) -> tuple[str, TwilioClient]:
    """Create a call with context `ctx` and start its Twilio stream (custom `params` added)."""
    created = await create_call(server.http, carrier="twilio", **ctx)
    client = await TwilioClient.connect(f"{server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"], call_sid, **(params or {}))
    return created["call_id"], client


async def next_mark(client: TwilioClient, timeout: float = 10.0) -> str:
    """Receive (answering each message with 20 ms of inbound silence) until a mark."""
    while True:
        msg = await client.recv(timeout)
        if msg["event"] == "mark":
            return str(msg["mark"]["name"])
        await client.media(SILENCE)


def updates_of(api: TwilioApi, call_sid: str) -> list[dict[str, str]]:
    path = f"/2010-04-01/Accounts/{api.account_sid}/Calls/{call_sid}.json"
    return [dict(r.form) for r in api.requests if r.method == "POST" and r.path == path]


def events(detail: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in detail["events"] if e["kind"] == kind]


# ---- Twilio ------------------------------------------------------------------------------


async def test_twilio_hangup_only_after_goodbye_mark_echoed(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(
        base_settings, policy_factory=goodbye_factory, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await twilio_call(server, call.sid)
        assert await next_mark(client) == "r1s1"
        await client.mark("r1s1")
        goodbye = await next_mark(client)
        assert goodbye == "r1s2"
        # the goodbye is still "playing": hold its echo a while; no hang-up may happen
        for _ in range(25):
            await client.media(SILENCE)
            await asyncio.sleep(0.02)
        assert updates_of(api, call.sid) == []
        await client.mark(goodbye)
        code, _ = await client.closed()
        assert code == 1000
        assert updates_of(api, call.sid) == [{"Status": "completed"}]
        assert api.calls[call.sid].status == "completed"
        detail = await call_detail(server.http, call_id)
        assert detail["call"]["status"] == "completed"
        assert events(detail, "hangup") == [{"outcome": "refused", "result": "completed"}]
        assert detail["outcome"]["outcome"] == "refused"
        agent = detail["turns"][0]
        assert agent["text"] == "Thanks for your time. Goodbye." and not agent["interrupted"]


async def test_twilio_404_counts_as_already_ended(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(
        base_settings, policy_factory=goodbye_factory, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await twilio_call(server, call.sid)
        await client.mark(await next_mark(client))
        goodbye = await next_mark(client)
        api.calls[call.sid].status = "completed"  # the callee hung up meanwhile
        await client.mark(goodbye)
        code, _ = await client.closed()
        assert code == 1000
        assert updates_of(api, call.sid) == [{"Status": "completed"}]  # answered 404 / 20404
        detail = await call_detail(server.http, call_id)
        assert detail["call"]["status"] == "completed"
        assert events(detail, "hangup")[0]["result"] == "already_ended"


async def test_marks_never_echoed_hang_up_after_timeout(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(
        base_settings, policy_factory=goodbye_factory, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await twilio_call(server, call.sid)
        marks: list[str] = []
        try:
            while True:  # a carrier that never echoes marks
                msg = await client.recv(15)
                if msg["event"] == "mark":
                    marks.append(msg["mark"]["name"])
                await client.media(SILENCE)
        except Exception:
            pass
        assert marks == ["r1s1", "r1s2"]
        assert client.ws.close_code == 1000
        assert updates_of(api, call.sid) == [{"Status": "completed"}]
        detail = await call_detail(server.http, call_id)
        kinds = [e["kind"] for e in detail["events"]]
        assert kinds.index("mark_timeout") < kinds.index("hangup")
        # each sentence whose mark never came counts as played once its audio is over
        assert events(detail, "mark_timeout") == [{"reply": 1, "sentence": 0},
                                                  {"reply": 1, "sentence": 1}]


async def test_twilio_transfer_dials_playbook_number_after_mark(base_settings) -> None:
    base_pb = load_playbook()
    playbook = base_pb.model_copy(update={
        "settings": base_pb.settings.model_copy(update={"transfer_number": TRANSFER_NUMBER})
    })
    stt = ScriptedSTT()
    async with running_twilio_api() as api, dialkit_server(
        base_settings, stt=stt, playbook=playbook, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await twilio_call(server, call.sid, debtor_name="Dana Cole")
        for _ in range(2):  # the greeting, played and confirmed
            await client.mark(await next_mark(client))
        for _ in range(10):  # let the server take the echo: the agent has finished speaking
            await client.media(SILENCE)
            await asyncio.sleep(0.02)
        stt.streams[-1].say("Can I talk to a real person please?")
        first = await next_mark(client)  # "Of course."
        await client.mark(first)
        last = await next_mark(client)  # "Please hold while I transfer you."
        assert updates_of(api, call.sid) == []
        await client.mark(last)
        code, reason = await client.closed()
        assert code == 1000 and "transferred" in reason
        assert updates_of(api, call.sid) == [
            {"Twiml": f"<Response><Dial>{TRANSFER_NUMBER}</Dial></Response>"}
        ]
        assert api.calls[call.sid].status == "in-progress"  # transferred, not hung up
        detail = await call_detail(server.http, call_id)
        assert detail["call"]["status"] == "completed"
        assert detail["outcome"]["outcome"] == "transferred"
        assert events(detail, "action.transfer")[0]["number"] == TRANSFER_NUMBER
        assert "transferred" in [e["kind"] for e in detail["events"]]
        assert "hangup" not in [e["kind"] for e in detail["events"]]


# ---- Exotel ------------------------------------------------------------------------------


async def test_exotel_hangup_closes_stream_after_goodbye_mark(base_settings) -> None:
    async with running_exotel_api(send_audio=False) as api, dialkit_server(
        base_settings, policy_factory=goodbye_factory,
        exotel_account_sid=api.account_sid, exotel_api_key=SecretStr(api.api_key),
        exotel_api_token=SecretStr(api.api_token), exotel_api_base=api.base_url,
    ) as server:
        call = api.add_call()
        created = await create_call(server.http, carrier="exotel")
        fmt = AudioFormat("pcm16", 8000)
        client = await ExotelClient.connect(f"{server.ws}/media/exotel", fmt)
        client.call_sid = call.sid
        await client.connected()
        await client.start(created["call_id"], created["token"])
        status_path = f"/v1/Accounts/{api.account_sid}/Calls/{call.sid}.json"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 15
        while True:
            assert loop.time() < deadline
            try:
                msg = await client.recv(0.1)
            except TimeoutError:
                await client.silence()
                continue
            if msg["event"] == "mark":
                name = msg["mark"]["name"]
                if name == "r1s2":
                    await asyncio.sleep(0.3)
                    # no call-control request before the goodbye is confirmed played
                    assert [r.path for r in api.requests] == []
                await client.mark(name)
                if name == "r1s2":
                    break
        code, _ = await client.closed()
        assert code == 1000
        assert [(r.method, r.path) for r in api.requests] == [("GET", status_path)]
        detail = await call_detail(server.http, created["call_id"])
        assert detail["call"]["status"] == "completed"
        assert events(detail, "hangup") == [{"outcome": "refused", "result": "completed"}]
