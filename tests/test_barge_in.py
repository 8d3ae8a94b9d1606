"""Two-stage barge-in: a short onset pauses the agent (`clear`, audio held), sustained
speech cuts it off, a cough lets it resume; the player's pause/resume underneath."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import pytest_asyncio

from dialkit.providers import Providers
from dialkit.server import start_server
from evaluation.phone import SimulatedPhone
from media.codec import AudioFormat, decode
from media.player import OutboundPlayer
from media.twilio import TwilioProtocol
from tests.carrier_client import TwilioClient, call_detail, create_call
from tests.conftest import RunningServer
from tests.test_media_session import SILENCE, voiced_frames

ULAW = AudioFormat("mulaw", 8000)
FIRST_SENTENCE = "Hello, this is Alex calling from Acme Services."

# ---- the player ----------------------------------------------------------------------


class Wire:
    """What the player sent, decoded: ("media", frame id) / ("mark", name) / ("clear", "")."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str | int]] = []

    async def send(self, text: str) -> None:
        msg = json.loads(text)
        if msg["event"] == "media":
            self.sent.append(("media", base64.b64decode(msg["media"]["payload"])[0]))
        elif msg["event"] == "mark":
            self.sent.append(("mark", msg["mark"]["name"]))
        else:
            self.sent.append((msg["event"], ""))

    def media(self, start: int = 0, end: int | None = None) -> list[int]:
        return [int(v) for k, v in self.sent[start:end] if k == "media"]

    async def wait_for(self, pred: Any, timeout: float = 3.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred():
            assert loop.time() < deadline, f"timed out; sent {self.sent}"
            await asyncio.sleep(0.002)


def frame(i: int) -> bytes:
    return bytes([i]) * 160  # one 20 ms µ-law frame whose bytes say which it is


@pytest_asyncio.fixture
async def player() -> AsyncIterator[tuple[OutboundPlayer, Wire]]:
    wire = Wire()
    p = OutboundPlayer(wire.send, TwilioProtocol(), "MZ1", ULAW, lead_frames=3)
    task = asyncio.ensure_future(p.run())
    yield p, wire
    p.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_pause_holds_unplayed_audio_and_resume_replays_it_in_order(player) -> None:
    p, wire = player
    for i in range(1, 11):
        p.enqueue_audio(frame(i))
    m0 = p.mark("m0")
    for i in range(11, 16):
        p.enqueue_audio(frame(i))
    m1 = p.mark("m1")
    await wire.wait_for(lambda: len(wire.media()) >= 5)
    held_ms = await p.pause()
    assert wire.sent[-1] == ("clear", "") and p.paused
    before = wire.media()
    cleared_at = len(wire.sent)
    await asyncio.sleep(0.1)
    assert len(wire.sent) == cleared_at, "nothing goes out while paused"
    assert p.resume()
    await wire.wait_for(lambda: ("mark", "m1") in wire.sent)
    after = wire.sent[cleared_at:]
    frames = [int(v) for k, v in after if k == "media"]
    # the chunks the carrier dropped on `clear` come first, then the queue, nothing lost
    assert frames == list(range(frames[0], 16))
    # held: at most the lead (3 frames ahead, +1 in flight) and a frame of margin
    assert before[-1] - 3 - 2 < frames[0] <= before[-1]
    assert held_ms == (16 - frames[0]) * 20
    marks = [(i, v) for i, (k, v) in enumerate(after) if k == "mark"]
    assert [v for _, v in marks] == ["m0", "m1"]  # never sent before the pause: same names
    assert after[marks[0][0] - 1] == ("media", 10) and after[marks[1][0] - 1] == ("media", 15)
    assert not m0.played.done() and not m1.played.done()


async def test_marks_echoed_after_pause_are_not_taken_as_played(player) -> None:
    p, wire = player
    for i in range(1, 4):
        p.enqueue_audio(frame(i))
    a = p.mark("a")
    for i in range(4, 30):
        p.enqueue_audio(frame(i))
    await wire.wait_for(lambda: ("mark", "a") in wire.sent)
    await p.pause()  # "a" is sent; its audio has not played (it is inside the lead)
    cleared_at = len(wire.sent)
    assert p.on_mark("a") is False  # the carrier echoes pending marks when cleared
    assert not a.played.done() and p.stale_echoes == 1
    p.resume()
    await wire.wait_for(lambda: ("mark", "a~1") in wire.sent)
    after = wire.sent[cleared_at:]
    at = after.index(("mark", "a~1"))
    assert after[at - 1] == ("media", 3), "the re-sent mark follows its re-sent audio"
    assert a.name == "a~1"
    assert p.on_mark("a") is False and not a.played.done()
    assert p.on_mark("a~1") is True and a.played.result() is True


async def test_sent_mark_not_yet_echoed_is_held_even_when_its_audio_played(player) -> None:
    p, wire = player
    p.enqueue_audio(frame(1) + frame(2))
    b = p.mark("b")
    await wire.wait_for(lambda: ("mark", "b") in wire.sent)
    await asyncio.sleep(0.15)  # by the clock both frames have played; no echo yet
    cleared_at = len(wire.sent)
    assert await p.pause() == 0
    p.resume()
    await wire.wait_for(lambda: len(wire.sent) > cleared_at + 1)
    assert wire.sent[cleared_at:] == [("clear", ""), ("mark", "b~1")]
    assert p.on_mark("b~1") and b.played.result() is True


async def test_clear_while_paused_drops_held_audio_and_marks(player) -> None:
    p, wire = player
    for i in range(1, 4):
        p.enqueue_audio(frame(i))
    a = p.mark("a")
    for i in range(4, 20):
        p.enqueue_audio(frame(i))
    q = p.mark("q")
    await wire.wait_for(lambda: ("mark", "a") in wire.sent)
    await p.pause()
    cleared_at = len(wire.sent)
    cleared = await p.clear()
    assert sorted(cleared) == ["a~1", "q"]
    assert a.played.result() is False and q.played.result() is False
    assert not p.paused and not p.busy and p.queued_ms() == 0
    assert len(wire.sent) == cleared_at, "the carrier was cleared at the pause already"
    assert p.resume() is False
    # after that, clear() behaves as always
    p.enqueue_audio(frame(40))
    await wire.wait_for(lambda: ("media", 40) in wire.sent)
    await p.clear()
    assert wire.sent[-1] == ("clear", "")


async def test_pause_twice_and_resume_twice(player) -> None:
    p, wire = player
    for i in range(1, 30):
        p.enqueue_audio(frame(i))
    m = p.mark("m")
    await wire.wait_for(lambda: len(wire.media()) >= 4)
    assert await p.pause() > 0
    assert await p.pause() == -1
    p.resume()
    await wire.wait_for(lambda: len(wire.media()) >= 12)
    await p.pause()
    p.resume()
    assert not p.resume()
    await wire.wait_for(lambda: ("mark", "m") in wire.sent)
    played = wire.media()
    assert played[-1] == 29 and sorted(set(played)) == list(range(1, 30))
    assert [k for k, _ in wire.sent].count("clear") == 2
    assert p.on_mark("m") and m.played.result() is True


# ---- over real sockets -----------------------------------------------------------------


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def long_lead_server(base_settings, light_providers: Providers) -> AsyncIterator[RunningServer]:
    """Half a second of lead: a mark is sent well before its audio is played, so a pause
    can land between the two."""
    providers = dataclasses.replace(light_providers, extra={**light_providers.extra, "lead_frames": 25})
    runner, port = await start_server(base_settings, providers, port=0)
    yield RunningServer(runner, port, base_settings)
    await runner.cleanup()


def events(detail: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [e["data"] for e in detail["events"] if e["kind"] == kind]


async def agent_turns(http: str, call_id: str, timeout: float = 15.0) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        detail = await call_detail(http, call_id, until_ended=False)
        turns = [t for t in detail["turns"] if t["speaker"] == "agent"]
        if turns:
            return turns
        await asyncio.sleep(0.05)
    raise AssertionError("the agent's turn was never recorded")


async def phone_call(server: RunningServer, cough_after_s: float | None) -> tuple[dict[str, Any], int, SimulatedPhone]:
    """A Twilio phone that plays the agent in real time (marks echoed at playback, `clear`
    honoured) and, `cough_after_s` into the greeting, sends a ~150 ms voiced burst.
    Returns the call detail, the number of agent frames the caller heard, the phone."""
    created = await create_call(server.http, debtor_name="Carla Diaz")
    heard = [0]

    def on_played(pcm: np.ndarray, t: float) -> None:
        heard[0] += bool(np.any(pcm))

    phone = SimulatedPhone(f"{server.ws}/media/twilio", "twilio", created["call_id"],
                           created["token"], ULAW, on_played=on_played)
    await phone.connect()
    try:
        if cough_after_s is not None:
            loop = asyncio.get_running_loop()
            while not phone.agent_audio_started:
                await asyncio.sleep(0.01)
            await asyncio.sleep(max(0.0, phone.agent_audio_started[0] + cough_after_s - loop.time()))
            phone.speak(decode(b"".join(voiced_frames(0.15)), ULAW))
        await agent_turns(server.http, created["call_id"])
        await asyncio.sleep(0.1)
    finally:
        await phone.hangup()
    return await call_detail(server.http, created["call_id"]), heard[0], phone


async def test_cough_pauses_then_agent_resumes_and_finishes_its_turn(light_server) -> None:
    control, heard_control, _ = await phone_call(light_server, None)
    detail, heard, phone = await phone_call(light_server, 0.8)
    assert phone.stats.clears == 1, "the burst paused the agent (a `clear` went out)"
    resumed = events(detail, "barge_in_resumed")
    assert len(resumed) == 1 and resumed[0]["reaction_ms"] >= 0 and resumed[0]["paused_ms"] > 0
    assert events(detail, "barge_in") == []
    agent = [t for t in detail["turns"] if t["speaker"] == "agent"]
    expected = [t for t in control["turns"] if t["speaker"] == "agent"]
    assert agent[0]["interrupted"] is False
    assert agent[0]["text"] == expected[0]["text"] and agent[0]["text"].startswith(FIRST_SENTENCE)
    # the audio the carrier dropped on `clear` was played again: nothing of the sentence
    # lost, at most the lead (and a frame of margin) heard twice
    assert heard_control <= heard <= heard_control + 3 + 2


async def _speak_over_agent(client: TwilioClient, voiced_s: float, echo_on_clear: list[str],
                            until_mark: bool) -> list[dict[str, Any]]:
    """Send `voiced_s` of speech then silence, one frame per 20 ms, while reading what the
    server sends. On `clear`, echo `echo_on_clear` (as Twilio echoes pending marks); marks
    after that are echoed at once. Stops at the first mark after `clear` (until_mark) or
    after 1.5 s. Returns the messages received from the first speech frame on."""
    frames = voiced_frames(voiced_s) + [SILENCE] * 75
    got: list[dict[str, Any]] = []
    cleared = False
    for f in frames:
        await client.media(f)
        try:
            while True:
                msg = await client.recv(0.001)
                got.append(msg)
                if msg["event"] == "clear":
                    cleared = True
                    for name in echo_on_clear:
                        await client.mark(name)
                elif msg["event"] == "mark" and cleared:
                    await client.mark(msg["mark"]["name"])
                    if until_mark:
                        return got
        except TimeoutError:
            pass
        await asyncio.sleep(0.02)
    return got


async def test_sustained_speech_pauses_then_cuts_without_resuming(light_server) -> None:
    created = await create_call(light_server.http, debtor_name="Dana Cole")
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    await client.recv_until("media", 10)
    got = await _speak_over_agent(client, 1.0, [], until_mark=False)
    kinds = [m["event"] for m in got]
    assert kinds.count("clear") == 1
    after = kinds[kinds.index("clear") + 1 :]
    assert "media" not in after and "mark" not in after, "no audio after the cut"
    await client.stop()
    await client.closed()
    detail = await call_detail(light_server.http, created["call_id"])
    cut = events(detail, "barge_in")
    assert len(cut) == 1 and cut[0]["reaction_ms"] >= 0 and cut[0]["paused_ms"] >= 0
    assert "cut" not in cut[0]
    assert events(detail, "barge_in_resumed") == []
    agent = [t for t in detail["turns"] if t["speaker"] == "agent"]
    assert agent[0]["interrupted"] is True
    assert not agent[0]["text"].startswith(FIRST_SENTENCE)  # cut inside the first sentence


async def test_backchannel_length_speech_pauses_then_resumes(light_server) -> None:
    """Half a second of speech over the agent (a "mhm", an "okay": 520 ms measured for
    Piper's "Mhm.") pauses it and lets it go on; it used to cut the agent off."""
    created = await create_call(light_server.http, debtor_name="Dana Cole")
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    await client.recv_until("media", 10)
    got = await _speak_over_agent(client, 0.52, [], until_mark=False)
    kinds = [m["event"] for m in got]
    assert kinds.count("clear") == 1
    assert "media" in kinds[kinds.index("clear") + 1 :], "the agent went on after the pause"
    await client.stop()
    await client.closed()
    detail = await call_detail(light_server.http, created["call_id"])
    assert events(detail, "barge_in") == []
    resumed = events(detail, "barge_in_resumed")
    assert len(resumed) == 1 and resumed[0]["reaction_ms"] > 0


@pytest.mark.parametrize("voiced_s", [0.15, 1.0], ids=["cough-resumes", "speech-cuts"])
async def test_mark_echoed_on_clear_is_not_taken_as_played(long_lead_server, voiced_s) -> None:
    server = long_lead_server
    created = await create_call(server.http, debtor_name="Eli Moss")
    client = await TwilioClient.connect(f"{server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    first = await client.recv_until("mark", 10)  # the first sentence is sent, not yet heard
    name = first["mark"]["name"]
    got = await _speak_over_agent(client, voiced_s, [name], until_mark=voiced_s < 0.5)
    kinds = [m["event"] for m in got]
    assert kinds.count("clear") == 1
    if voiced_s < 0.5:
        # resumed: the held first sentence's tail is re-sent with its mark under a new name
        assert got[-1]["event"] == "mark" and got[-1]["mark"]["name"] == f"{name}~1"
        assert "media" in kinds[kinds.index("clear") + 1 :]
        while True:  # play the rest of the reply, echoing its marks
            msg = await client.recv(10)
            if msg["event"] == "mark":
                await client.mark(msg["mark"]["name"])
                break
    await client.stop()
    await client.closed()
    detail = await call_detail(server.http, created["call_id"])
    agent = [t for t in detail["turns"] if t["speaker"] == "agent"]
    if voiced_s < 0.5:
        assert events(detail, "barge_in_resumed") and not events(detail, "barge_in")
        assert agent[0]["interrupted"] is False and agent[0]["text"].startswith(FIRST_SENTENCE)
    else:
        # had the echo counted, the first sentence would be confirmed and kept whole
        assert len(events(detail, "barge_in")) == 1
        assert agent[0]["interrupted"] is True
        assert not agent[0]["text"].startswith(FIRST_SENTENCE)


def test_heard_text_does_not_count_paused_time_as_played() -> None:
    from ai.conversation.heard import Pauses, SpokenSentence, heard_text

    words = "one two three four five six seven eight nine ten"
    sentences = [SpokenSentence(words, started_t=0.0, audio_ms=1000)]
    pauses = Pauses()
    assert heard_text(sentences, pauses, 0.35, 0.0, complete=False) == "one two three —"
    pauses.begin(0.35)  # the caller coughed; nothing plays until the resume
    assert heard_text(sentences, pauses, 0.95, 0.0, complete=False) == "one two three —"
    pauses.end(0.85)
    assert heard_text(sentences, pauses, 1.05, 0.0, complete=False) == "one two three four five —"
    assert heard_text(sentences, pauses, 1.05, 0.1, complete=False) == "one two three four —"  # lead
    assert heard_text(sentences, pauses, 1.05, 0.0, complete=True) == words
