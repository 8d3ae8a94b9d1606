"""A policy that fails mid-call must not leave the caller in silence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from ai.events import CallStarted, PolicyEvent, UserTurn
from ai.playbook import load_playbook
from ai.types import Message, PolicyOutput, Say
from tests.carrier_client import call_detail
from tests.test_call_end_transfer import (
    SILENCE,
    ScriptedSTT,
    dialkit_server,
    next_mark,
    twilio_call,
)

RECOVERY_LINE = load_playbook().settings.recovery_line


class BrokenPolicy:
    """Greets, then fails on every caller turn (a crashed LLM client, a bug in a script)."""

    name = "broken"

    async def respond(self, history: list[Message], event: PolicyEvent) -> AsyncIterator[PolicyOutput]:
        if isinstance(event, CallStarted):
            yield Say("Hello there.")
            return
        if isinstance(event, UserTurn):
            raise RuntimeError("policy exploded")
        if False:  # pragma: no cover - makes this an async generator in every branch
            yield Say("")


def broken_factory(context: Any, playbook: Any = None) -> BrokenPolicy:
    return BrokenPolicy()


async def test_failed_reply_is_followed_by_a_recovery_line(base_settings) -> None:
    stt = ScriptedSTT()
    async with dialkit_server(base_settings, stt=stt, policy_factory=broken_factory) as server:
        call_id, client = await twilio_call(server, "CA" + "7" * 32)
        await client.mark(await next_mark(client))  # greeting played
        for _ in range(10):
            await client.media(SILENCE)
            await asyncio.sleep(0.02)
        stt.streams[-1].say("What is this about?")
        recovery_mark = await next_mark(client)  # the caller hears something, not silence
        await client.mark(recovery_mark)
        for _ in range(10):
            await client.media(SILENCE)
            await asyncio.sleep(0.02)
        stt.streams[-1].say("Hello?")  # fails again: recovered again, not a loop
        await client.mark(await next_mark(client))
        await client.stop()
        await client.closed()
        detail = await call_detail(server.http, call_id)
    agent = [t["text"] for t in detail["turns"] if t["speaker"] == "agent"]
    assert agent == ["Hello there.", RECOVERY_LINE, RECOVERY_LINE]
    failures = [e["data"] for e in detail["events"] if e["kind"] == "reply_failed"]
    assert failures == [{"error": "RuntimeError", "recovery": False}] * 2
