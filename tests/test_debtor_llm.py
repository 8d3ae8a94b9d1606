"""The LLM debtor through the real `openai` SDK over a real socket to the OpenAI emulator:
framed as receiving a call, persona and backstory in the system prompt, one assistant
message per debtor line, the stop marker hangs up; model failures are clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from ai.llm_text import LLMSettings
from ai.playbook import load_playbook
from emulators.openai_api import OpenAIFault, Reply, running_openai
from evaluation.debtor_llm import END_CALL, LLMDebtorError
from evaluation.library_data import load_personalities, load_scenario_set
from evaluation.text_call import run_text_simulation

SCENARIO = next(s for s in load_scenario_set("default") if s.name == "dispute")
PERSONALITY = load_personalities()["disputer"]


def disputing_model(messages: list[dict[str, Any]]) -> Reply:
    """A stand-in for the model: answers the last agent turn as the system prompt says."""
    system, last = messages[0]["content"], messages[-1]["content"].lower()
    if "goodbye" in last or "bye" in last:
        return Reply(f"Okay, bye. {END_CALL}")
    if "speak with" in last:
        return Reply("Yes, speaking.")
    if "year of birth" in last:
        year = system.split("born in ")[1][:4]
        return Reply(f"{year}.")
    if "debt" in last:
        return Reply("That's not my debt, I never had an account with them. *sighs*")
    return Reply("Sorry?")


async def test_llm_debtor_plays_the_scenario_and_hangs_up_on_the_stop_marker() -> None:
    async with running_openai(reply=disputing_model) as emu:
        config = LLMSettings(api_key=emu.api_key, base_url=emu.base_url, model="debtor-model")
        call = await run_text_simulation(load_playbook(), SCENARIO, PERSONALITY, seed=5, llm=config)
    assert call.outcome == "dispute", [(t.speaker, t.text) for t in call.turns]
    system = emu.requests[0]["messages"][0]
    assert system["role"] == "system"
    prompt = system["content"]
    assert "picked up an outbound phone call" in prompt
    assert "You are Karen Lee, born in 1988." in prompt
    assert "Summit Telecom" in prompt and "640.00 USD" in prompt
    assert "reveal a fact only when" in prompt and "never invent" in prompt
    assert END_CALL in prompt and "dispute (says the debt is not theirs" in prompt
    body = emu.requests[-1]
    assert body["model"] == "debtor-model" and body["seed"] == 5
    roles = [m["role"] for m in body["messages"][1:]]
    assert roles[0] == "user" and roles.count("assistant") == len(emu.requests) - 1
    caller = [t.text for t in call.turns if t.speaker == "caller"]
    assert caller[:2] == ["Yes, speaking.", "1988."]
    assert all("*" not in line and END_CALL not in line for line in caller)
    assert call.debtor_hung_up


async def test_model_failures_are_clear_errors() -> None:
    async with running_openai(reply=disputing_model) as emu:
        emu.faults.extend([OpenAIFault("status", status=500), OpenAIFault("status", status=500)])
        config = LLMSettings(api_key=emu.api_key, base_url=emu.base_url)
        with pytest.raises(LLMDebtorError, match="debtor model gpt-4o-mini: InternalServerError"):
            await run_text_simulation(load_playbook(), SCENARIO, PERSONALITY, seed=1, llm=config)
    async with running_openai() as emu:
        config = LLMSettings(api_key="wrong-key", base_url=emu.base_url)
        with pytest.raises(LLMDebtorError, match="AuthenticationError"):
            await run_text_simulation(load_playbook(), SCENARIO, PERSONALITY, seed=1, llm=config)
