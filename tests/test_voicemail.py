"""Answering machines: the carrier's AMD verdict or the transcript classifier makes the agent
leave the playbook's limited-content message (no mention of a debt), hang up through the
carrier API once the message was played, and record the outcome `voicemail`."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from ai.conversation.voicemail import carrier_verdict, is_machine_result, sounds_like_voicemail
from ai.playbook import load_playbook
from emulators.twilio_api import running_twilio_api
from tests.carrier_client import TwilioClient, call_detail
from tests.test_call_end_transfer import (
    SILENCE,
    ScriptedSTT,
    dialkit_server,
    events,
    next_mark,
    twilio_call,
    twilio_settings,
    updates_of,
)

DEBT_WORDS = re.compile(r"\b(debt|balance|owe|payment|pay|account|collect\w*|bank)\b", re.I)


@pytest.mark.parametrize(
    ("text", "machine"),
    [
        ("Hi, you've reached John. Please leave a message after the tone.", True),
        ("The person you are calling is not available.", True),
        ("I'm not available right now, leave your name and number.", True),
        ("Your call has been forwarded to an automated voice messaging system.", True),
        ("Welcome to the voicemail of 4 1 5 5 5 5", True),
        ("He's not available, can I take a message?", False),
        ("Yes, this is John speaking.", False),
        ("Hello?", False),
        ("Who is this?", False),
    ],
)
def test_classifier_phrases(text: str, machine: bool) -> None:
    assert sounds_like_voicemail(text) is machine


def test_carrier_verdicts() -> None:
    for value in ("machine_start", "machine_end_beep", "machine_end_silence",
                  "machine_end_other", "fax"):
        assert is_machine_result(carrier_verdict({"answered_by": value.upper()}))
    assert carrier_verdict({"AnsweredBy": "human"}) == "human"
    assert not is_machine_result("human") and not is_machine_result("unknown")
    assert not is_machine_result(carrier_verdict({}))


async def _start(server: Any, call_sid: str, **params: str) -> tuple[str, TwilioClient]:
    return await twilio_call(server, call_sid, params, debtor_name="John Smith", balance=1250,
                             creditor="Northwind Bank")


async def _play_to_hangup(client: TwilioClient) -> list[dict[str, Any]]:
    """Echo every mark until the server closes the stream; returns what it sent."""
    sent: list[dict[str, Any]] = []
    try:
        while True:
            msg = await client.recv(15)
            sent.append(msg)
            if msg["event"] == "mark":
                await client.mark(msg["mark"]["name"])
            else:
                await client.media(SILENCE)
    except Exception:
        pass
    return sent


def _assert_voicemail_left(detail: dict[str, Any]) -> None:
    playbook = load_playbook()
    agent = [t for t in detail["turns"] if t["speaker"] == "agent"]
    message = agent[-1]
    assert not message["interrupted"]
    assert message["text"].startswith(f"Hello, this is {playbook.agent_name}")
    assert "John Smith" in message["text"] and "call us back" in message["text"]
    for turn in agent:
        assert not DEBT_WORDS.search(turn["text"]), turn["text"]
    assert detail["outcome"]["outcome"] == "voicemail"
    assert detail["call"]["status"] == "completed"


@pytest.mark.parametrize("answered_by", ["machine_end_beep", "machine_start", "fax"])
async def test_carrier_amd_result_leaves_message_and_hangs_up(base_settings, answered_by) -> None:
    async with running_twilio_api() as api, dialkit_server(
        base_settings, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await _start(server, call.sid, answered_by=answered_by)
        sent = await _play_to_hangup(client)
        assert client.ws.close_code == 1000
        assert any(m["event"] == "media" for m in sent)
        assert updates_of(api, call.sid) == [{"Status": "completed"}]
        detail = await call_detail(server.http, call_id)
        _assert_voicemail_left(detail)
        assert len([t for t in detail["turns"] if t["speaker"] == "agent"]) == 1  # no greeting
        assert events(detail, "machine_detected") == [
            {"source": "carrier", "answered_by": answered_by}
        ]
        kinds = [e["kind"] for e in detail["events"]]
        assert kinds.index("action.voicemail") < kinds.index("hangup")


async def test_carrier_says_human_gets_the_greeting(base_settings) -> None:
    async with running_twilio_api() as api, dialkit_server(
        base_settings, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await _start(server, call.sid, answered_by="human")
        await client.mark(await next_mark(client))
        await client.stop()
        await client.closed()
        detail = await call_detail(server.http, call_id)
        assert detail["turns"][0]["text"].startswith("Hello, this is Alex")
        assert events(detail, "answered_by") == [{"value": "human"}]
        assert events(detail, "machine_detected") == []
        assert updates_of(api, call.sid) == []


async def test_classifier_on_transcript_leaves_message_and_hangs_up(base_settings) -> None:
    stt = ScriptedSTT()
    async with running_twilio_api() as api, dialkit_server(
        base_settings, stt=stt, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await _start(server, call.sid)
        await client.recv_until("media", 10)  # the greeting plays to the machine...
        stt.streams[-1].say("Hi, you've reached John. Please leave a message after the tone.")
        sent = await _play_to_hangup(client)
        assert "clear" in [m["event"] for m in sent]  # ...and is cut for the message
        assert client.ws.close_code == 1000
        assert updates_of(api, call.sid) == [{"Status": "completed"}]
        detail = await call_detail(server.http, call_id)
        _assert_voicemail_left(detail)
        machine = events(detail, "machine_detected")
        assert machine == [{"source": "classifier", "text": machine[0]["text"]}]
        assert "leave a message" in machine[0]["text"]
        caller = [t for t in detail["turns"] if t["speaker"] == "caller"]
        assert caller and "leave a message" in caller[0]["text"]  # the greeting is kept


async def test_human_answer_is_not_taken_for_a_machine(base_settings) -> None:
    stt = ScriptedSTT()
    async with running_twilio_api() as api, dialkit_server(
        base_settings, stt=stt, **twilio_settings(api)
    ) as server:
        call = api.add_call()
        call_id, client = await _start(server, call.sid)
        for _ in range(2):
            await client.mark(await next_mark(client))
        for _ in range(10):
            await client.media(SILENCE)
            await asyncio.sleep(0.02)
        stt.streams[-1].say("Yes, this is John.")
        await client.mark(await next_mark(client))  # the agent goes on to verification
        await client.stop()
        await client.closed()
        detail = await call_detail(server.http, call_id)
        assert events(detail, "machine_detected") == []
        assert detail["outcome"] is None or detail["outcome"].get("outcome") != "voicemail"
        assert updates_of(api, call.sid) == []
