"""Scenario generation from a brief: offline templates are deterministic per seed, draw
fictional people with 555-01xx numbers, and pick the personality that resists the way the
brief says; the LLM path (the openai SDK over a real socket to the OpenAI emulator) is
validated as Scenario, and a malformed answer, an invalid one, an HTTP error or a timeout
fails with the reason."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from ai.llm_text import LLMSettings
from emulators.openai_api import OpenAIEmulator, OpenAIFault, Reply, running_openai
from evaluation.models import Personality
from evaluation.scenario_gen import (
    KINDS,
    GenerationError,
    GenerationTimeout,
    NoPersonality,
    generate_offline,
    generate_with_llm,
    kinds_for,
)

PEOPLE = {p.name: p for p in [
    Personality(name="easy", willingness_to_pay=0.9),
    Personality(name="broke", willingness_to_pay=0.4, resistance=["stalling", "hardship"]),
    Personality(name="broke-first", willingness_to_pay=0.3, resistance=["hardship"]),
    Personality(name="furious", willingness_to_pay=0.1, resistance=["anger", "opt_out"]),
]}
BACKSTORY = {"debtor_name": "Lee Fictional", "birth_year": 1970, "creditor": "Sample Bank",
             "balance": 300.0}


def test_the_same_brief_and_seed_give_the_same_scenarios() -> None:
    a = generate_offline("hardship after a job loss", 4, seed=9, personalities=PEOPLE)
    assert a == generate_offline("Hardship  after a job LOSS", 4, seed=9, personalities=PEOPLE)
    b = generate_offline("hardship after a job loss", 4, seed=10, personalities=PEOPLE)
    assert [s.backstory for s in a] != [s.backstory for s in b]
    assert len({s.name for s in a}) == 4
    for s in a:
        assert s.personality == "broke-first"  # resists by hardship first
        assert s.expected_outcomes == ["promise_to_pay", "refused"] and s.tags == ["generated", "hardship"]
        assert re.fullmatch(r"\+1\d{3}55501\d\d", s.backstory.phone)
        assert re.fullmatch(r"800-555-01\d\d", s.backstory.callback_number)
        assert 1950 <= s.backstory.birth_year <= 2000 and 150 <= s.backstory.balance <= 9000
        assert s.backstory.monthly_income is not None and s.backstory.monthly_income < 1600


def test_the_brief_picks_the_kinds_in_its_order() -> None:
    assert kinds_for("an angry one, then someone who already paid") == ["hostile", "already-paid"]
    assert kinds_for("anything at all") == list(KINDS)
    made = generate_offline("a hostile debtor and a cooperative one", 4, seed=1, personalities=PEOPLE)
    assert [(s.tags[1], s.personality) for s in made] == [
        ("hostile", "furious"), ("cooperative", "easy"), ("hostile", "furious"), ("cooperative", "easy")]
    third = generate_offline("wrong number, a relative answers", 1, seed=1,
                             personalities={"x": Personality(name="x", resistance=["wrong_person"])})
    assert third[0].backstory.answered_by == "third_party" and third[0].backstory.answerer_name


def test_a_brief_no_personality_can_play_is_refused() -> None:
    with pytest.raises(NoPersonality, match="no personality resists by dispute"):
        generate_offline("disputes the debt", 1, seed=1, personalities=PEOPLE)


def _llm(emu: OpenAIEmulator, **kw: Any) -> LLMSettings:
    return LLMSettings(api_key=emu.api_key, base_url=emu.base_url, **kw)


def _answer(*items: dict[str, Any]) -> str:
    return json.dumps({"scenarios": list(items)})


GOOD = {"name": "llm-one", "personality": "furious", "backstory": BACKSTORY, "weight": 4,
        "expected_outcomes": ["opt_out", "abusive"], "tags": ["hostile"]}


async def test_the_llm_writes_scenarios_that_are_validated() -> None:
    async with running_openai(reply=lambda messages: Reply(_answer(GOOD, {**GOOD, "name": "extra"}))) as emu:
        made = await generate_with_llm("an angry debtor", 1, 3, PEOPLE, _llm(emu, model="m-gen"))
        sent = emu.requests[-1]
    assert [s.name for s in made] == ["llm-one"] and made[0].tags == ["hostile", "generated", "llm"]
    assert sent["model"] == "m-gen" and sent["seed"] == 3
    assert '"furious"' in sent["messages"][0]["content"] and "exactly 1 scenarios" in sent["messages"][0]["content"]


@pytest.mark.parametrize(("text", "reason"), [
    ('{"scenarios": [', "the LLM's answer is not JSON"),
    ('{"items": []}', 'has no "scenarios" list'),
    (_answer(GOOD), "asked for 2 scenarios, the LLM wrote 1"),
    (_answer(GOOD, {**GOOD, "name": "two", "weight": 0}), "scenario 2 is invalid: weight"),
    (_answer(GOOD, {**GOOD, "name": "two", "personality": "nobody"}), "unknown personality 'nobody'"),
    (_answer(GOOD, GOOD), "the same name"),
])
async def test_a_bad_llm_answer_fails_with_the_reason(text: str, reason: str) -> None:
    async with running_openai(reply=lambda messages: Reply(text)) as emu:
        with pytest.raises(GenerationError, match=re.escape(reason)):
            await generate_with_llm("anything", 2, 1, PEOPLE, _llm(emu))


async def test_an_llm_error_or_timeout_fails_with_the_reason() -> None:
    async with running_openai(reply=lambda messages: Reply(_answer(GOOD))) as emu:
        emu.faults.append(OpenAIFault("status", status=500))
        with pytest.raises(GenerationError, match="the LLM refused: HTTP 500"):
            await generate_with_llm("anything", 1, 1, PEOPLE, _llm(emu))
        emu.faults.append(OpenAIFault("slow", delay_s=2.0))
        with pytest.raises(GenerationTimeout, match=r"did not answer within 0.2 s"):
            await generate_with_llm("anything", 1, 1, PEOPLE, _llm(emu, timeout_s=0.2))
        emu.faults.append(OpenAIFault("malformed", after_tokens=2))
        with pytest.raises(GenerationError, match="the LLM request failed: JSONDecodeError"):
            await generate_with_llm("anything", 1, 1, PEOPLE, _llm(emu))
