"""When the LLM fails mid-call, the scripted playbook takes over at the stage the call
reached: it never greets or verifies again, never repeats the disclosure, and continues
the offers. The LLM is the real OpenAI SDK against the emulated chat-completions server,
failed (HTTP 500) from a chosen request on; the call runs on the text driver, the same
engine as a live call."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from ai.events import UserTurn
from ai.llm_openai import OpenAIPolicy
from ai.playbook import MINI_MIRANDA, Playbook, load_playbook
from ai.playbook_policy import ScriptedPolicy
from ai.resilience import FallbackPolicy
from ai.types import Message
from emulators.openai_api import OpenAIEmulator, OpenAIFault, Reply, ToolCallSpec, running_openai
from evaluation.personas import load_persona
from evaluation.text_call import run_text_call

CLOCK = {"today": "2026-11-21", "now": "2026-11-21T09:00:00"}
GREETING = "Hello, this is Alex calling from Acme Services. May I please speak with John Smith?"
VERIFY = "Thank you. For your security, could you please tell me your year of birth?"
DISCLOSURE = (
    f"Thank you, John. My name is Alex and I'm calling from Acme Recovery Services. {MINI_MIRANDA} "
    "I'm calling about your Northwind Bank account, which has a past due balance of 1,250 "
    "dollars. Are you able to pay the full balance of 1,250 dollars?"
)


class CompliantAgent:
    """What a well-behaved model says to the cooperative debtor, turn by turn; every
    request from `fail_from` on gets an HTTP 500 (as a provider outage would)."""

    def __init__(self, emu_ref: list[OpenAIEmulator], fail_from: int) -> None:
        self.emu_ref = emu_ref
        self.fail_from = fail_from
        self.answered = 0

    def __call__(self, messages: list[dict[str, Any]]) -> Reply:
        users = sum(1 for m in messages if m["role"] == "user")
        self.answered += 1
        if self.answered == self.fail_from:
            self.emu_ref[0].faults.extend([OpenAIFault("status", 500)] * 50)
        if users == 0:
            return Reply(GREETING)
        if users == 1:
            return Reply(VERIFY)
        offered = {t["function"]["name"] for t in self.emu_ref[0].requests[-1]["tools"]}
        calls = [ToolCallSpec("right_party_verified", {})] if "right_party_verified" in offered else []
        if users == 2:
            return Reply(DISCLOSURE, calls)
        return Reply("Thank you. On what date will you make that payment?")


async def _call(playbook: Playbook, fail_from: int) -> tuple[Any, FallbackPolicy, OpenAIEmulator]:
    ref: list[OpenAIEmulator] = []
    agent = CompliantAgent(ref, fail_from)
    persona = load_persona("cooperative")
    context = {**persona.context(), **CLOCK}
    async with running_openai(reply=agent) as emu:
        ref.append(emu)
        if fail_from == 0:
            emu.faults.extend([OpenAIFault("status", 500)] * 50)
        llm = OpenAIPolicy(api_key="test-openai-key", base_url=emu.base_url, max_retries=0,
                           system_prompt="You are Alex from Acme Services.",
                           today=dt.date.fromisoformat(CLOCK["today"]))
        policy = FallbackPolicy([llm, ScriptedPolicy(playbook, context)], timeout_s=5.0)
        try:
            result = await run_text_call(playbook, persona, policy=policy, context=CLOCK)
        finally:
            await llm.client.close()
    return result, policy, emu


@pytest.mark.parametrize(("fail_from", "stage"), [
    (0, "before the greeting"),
    (1, "after the greeting"),
    (2, "after the verification question"),
    (3, "after the disclosure and the first offer"),
])
async def test_playbook_takes_over_where_the_llm_failed(fail_from: int, stage: str) -> None:
    playbook = load_playbook()
    result, policy, emu = await _call(playbook, fail_from)
    assert policy.index == 1, f"the LLM failed {stage}: the playbook runs the rest"
    assert result.outcome == "promise_to_pay", result.turns
    said = " ".join(result.agent_lines())
    assert said.count("May I please speak with John Smith") == 1, said
    assert said.count("year of birth") == 1, said
    assert said.count(MINI_MIRANDA) == 1, said
    ptp = result.action("promise_to_pay")
    assert ptp is not None and ptp.data["amount"] == 1250.0
    # the LLM answered until the outage; the failed request is the one the playbook took
    assert len(emu.requests) == fail_from + 1


def test_take_over_after_verification_gives_the_disclosure_first() -> None:
    playbook = load_playbook()
    persona = load_persona("cooperative")
    scripted = ScriptedPolicy(playbook, {**persona.context(), **CLOCK})
    scripted.take_over([
        Message("assistant", GREETING), Message("user", "Yes, this is John."),
        Message("assistant", VERIFY), Message("user", "1984"),
        Message("tool", "right_party_verified {}"),
    ])
    out = " ".join(getattr(o, "text", "") for o in scripted.handle(UserTurn("okay")))
    assert MINI_MIRANDA in out and "year of birth" not in out
    assert out.endswith("Are you able to pay the full balance of 1,250 dollars?")
