"""One vocabulary of outcomes and actions: the LLM's tools and the system prompt list the same
tools and plans (checked through the real OpenAI SDK against the emulator), a tool call
outside the vocabulary is refused with its reason and the model is told, and the playbook,
the personas and the store accept only vocabulary names."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
import yaml

from ai.context import CallContext
from ai.events import CallStarted, UserTurn
from ai.llm_openai import ChatCompletionsPolicyFactory, OpenAIPolicy
from ai.playbook import DEFAULT_PLAYBOOK, PlaybookError, YamlLoader, load_playbook, parse_playbook
from ai.prompt import load_template, render_system_prompt
from ai.types import Action
from ai.vocabulary import OUTCOMES, PLAN_KINDS, outcome_fields
from dialkit import db
from dialkit.store import CallStore
from emulators.openai_api import Reply, ToolCallSpec, running_openai
from evaluation.personas import PERSONA_DIR, PersonaError, load_persona

OA_KEY = "test-openai-key"
CONTEXT = {**load_persona("cooperative").context(), "today": "2026-11-21"}


def _section(prompt: str, heading: str) -> list[str]:
    lines = prompt.split(heading, 1)[1].strip("\n").split("\n")
    out = []
    for line in lines:
        if not line.startswith("- "):
            break
        out.append(line)
    return out


async def _collect(policy: OpenAIPolicy, text: str) -> list[Any]:
    return [o async for o in policy.respond([], UserTurn(text))]


async def test_tools_offered_are_the_tools_the_prompt_lists() -> None:
    playbook = load_playbook()
    async with running_openai() as emu:
        factory = ChatCompletionsPolicyFactory(playbook, api_key=OA_KEY, base_url=emu.base_url,
                                               max_retries=0)
        policy = factory(CONTEXT)
        _ = [o async for o in policy.respond([], CallStarted())]
        await factory.aclose()
    body = emu.requests[0]
    prompt = body["messages"][0]["content"]
    assert prompt == render_system_prompt(playbook, CallContext.from_dict(CONTEXT, playbook))
    offered = [t["function"]["name"] for t in body["tools"]]
    listed = [re.match(r"- (\w+) \{", line).group(1)  # type: ignore[union-attr]
              for line in _section(prompt, "Actions you can take (tools):")]
    assert offered == listed
    assert {"right_party_verified", "wrong_party", "hardship"} <= set(offered)
    # the outcomes end_call accepts are the ones the prompt documents
    end_call = next(t for t in body["tools"] if t["function"]["name"] == "end_call")
    outcome_enum = end_call["function"]["parameters"]["properties"]["outcome"]["enum"]
    prompt_outcomes = [re.match(r'- "(\w+)"', x).group(1)  # type: ignore[union-attr]
                       for x in _section(prompt, "Outcomes for end_call:")]
    assert outcome_enum == prompt_outcomes == list(OUTCOMES)


async def test_every_plan_the_prompt_offers_is_accepted_by_the_tool() -> None:
    playbook = load_playbook()
    prompt = render_system_prompt(playbook, CallContext.from_dict(CONTEXT, playbook))
    plans = [re.match(r'- "(\w+)"', x).group(1)  # type: ignore[union-attr]
             for x in _section(prompt, "Plans a promise to pay can be made under:")]
    assert plans == list(PLAN_KINDS)
    for plan in plans:  # also named in the offers line, in the words the tool takes
        assert f'plan "{plan}"' in prompt
    calls = [ToolCallSpec("promise_to_pay", {"amount": 100, "date": "2026-12-04", "plan": plan,
                                             **({"instalments": 3} if plan == "instalment" else {})})
             for plan in plans]
    async with running_openai(reply=lambda m: Reply("Thank you.", calls)) as emu:
        policy = OpenAIPolicy(api_key=OA_KEY, base_url=emu.base_url, system_prompt=prompt,
                              max_retries=0, today=CallContext.from_dict(CONTEXT, playbook).today)
        out = await _collect(policy, "I'll pay a hundred dollars on Friday.")
    assert [a.data["plan"] for a in out if isinstance(a, Action)] == plans
    assert len(emu.requests) == 1  # nothing was refused


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        (ToolCallSpec("end_call", {"outcome": "ptp"}), "outcome: Input should be 'promise_to_pay'"),
        (ToolCallSpec("promise_to_pay", {"amount": 10, "date": "2026-12-04", "plan": "single"}),
         "plan: Input should be 'full', 'settlement', 'instalment' or 'custom'"),
        (ToolCallSpec("promise_to_pay", {"amount": 10, "date": "2026-12-04", "plan": "instalment"}),
         "plan instalment needs the number of instalments"),
        (ToolCallSpec("record_dispute", {"reason": "too expensive"}),
         "reason: Input should be 'disputed' or 'already_paid'"),
        (ToolCallSpec("opt_out", {"reason": "bored"}), "reason: Input should be 'stop_request' or 'attorney'"),
        (ToolCallSpec("promise_to_pay", {"amount": 10, "date": "2026-11-20", "plan": "full"}),
         "2026-11-20 is in the past (today is 2026-11-21)"),
        (ToolCallSpec("collect_harder", {}), "unknown tool 'collect_harder'"),
    ],
)
async def test_out_of_vocabulary_tool_call_is_refused_and_the_model_told(
    call: ToolCallSpec, reason: str
) -> None:
    def reply(messages: list[dict[str, Any]]) -> Reply:
        if messages[-1]["role"] == "tool":
            return Reply("Let me put that right.")
        return Reply("", [call])

    async with running_openai(reply=reply) as emu:
        policy = OpenAIPolicy(api_key=OA_KEY, base_url=emu.base_url, system_prompt="Be brief.",
                              max_retries=0, today=CallContext.from_dict(CONTEXT, load_playbook()).today)
        with structlog.testing.capture_logs() as logs:
            out = await _collect(policy, "Okay.")
    assert not [o for o in out if isinstance(o, Action)]
    refused = [e for e in logs if e["event"] == "tool_call_rejected"]
    assert len(refused) == 1 and reason in refused[0]["error"]
    told = [m for m in emu.requests[1]["messages"] if m["role"] == "tool"]
    assert len(told) == 1 and told[0]["content"].startswith("error: ") and reason in told[0]["content"]


def test_playbook_ends_and_plans_come_from_the_vocabulary() -> None:
    data = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    data["states"]["refused"]["end"] = "gave_up"
    data["states"]["offer_full"]["plan"] = "single"
    data["states"]["dispute"]["reason"] = "too expensive"
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data)
    msg = str(err.value)
    assert "states.refused.end" in msg and "'promise_to_pay'" in msg
    assert "states.offer_full.plan" in msg
    assert "action record_dispute needs reason in ['already_paid', 'disputed']" in msg


def test_personas_expect_vocabulary_names(tmp_path: Path) -> None:
    base = yaml.safe_load((PERSONA_DIR / "cooperative.yaml").read_text())
    for change, field in (({"expected_outcome": "ptp"}, "expected_outcome"),
                          ({"expected_plan": "single"}, "expected_plan"),
                          ({"expected_outcome": "dispute", "expected_plan": "full"}, "expected_plan")):
        path = tmp_path / "p.yaml"
        path.write_text(yaml.safe_dump({**base, **change}))
        with pytest.raises(PersonaError, match=field):
            load_persona(path)


@pytest_asyncio.fixture
async def store(database_url: str) -> AsyncIterator[CallStore]:
    pool = await db.create_pool(database_url)
    await db.migrate(pool)
    yield CallStore(pool)
    await pool.close()


async def test_store_keeps_vocabulary_names_and_refuses_others(store: CallStore) -> None:
    call_id = await store.create_call("twilio", CONTEXT, None, ("collections-default", "1.0"))
    promise = Action("promise_to_pay", {"amount": 100.0, "date": "2026-12-04", "plan": "instalment",
                                        "instalments": 3})
    await store.set_outcome(call_id, outcome_fields(promise))
    await store.set_outcome(call_id, outcome_fields(Action("end_call", {"outcome": "promise_to_pay"})))
    row = await store.pool.fetchrow("SELECT * FROM call_outcomes WHERE call_id = $1", uuid.UUID(call_id))
    assert (row["outcome"], row["ptp_plan"], row["ptp_instalments"]) == ("promise_to_pay", "instalment", 3)
    with pytest.raises(ValueError, match="outcome 'ptp' is not in the vocabulary"):
        await store.set_outcome(call_id, {"outcome": "ptp"})
    with pytest.raises(ValueError, match="ptp_plan 'single' is not in the vocabulary"):
        await store.set_outcome(call_id, {"ptp_plan": "single"})
    info = await store.get_call(call_id)
    assert info is not None and info.playbook_ref == "collections-default@1.0"



def test_a_playbook_may_name_its_own_prompt_template(tmp_path: Path) -> None:
    data = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    data["system_prompt"] = "short.md"
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "short.md").write_text("You are $agent_name. Balance: $balance ($$).\n$tools\n")
    playbook = load_playbook(tmp_path / "short.yaml")
    prompt = render_system_prompt(playbook, CallContext.from_dict(CONTEXT, playbook))
    assert prompt.startswith("You are Alex. Balance: 1,250 dollars ($).\n- right_party_verified {}")
    other = tmp_path / "other"
    other.mkdir()
    data["system_prompt"] = "bad.md"
    (other / "bad.yaml").write_text(yaml.safe_dump(data))
    (other / "bad.md").write_text("You are $agent_name, owed $amount_due.\n")
    with pytest.raises(PlaybookError, match=r"unknown placeholders \['amount_due'\]"):
        load_template(load_playbook(other / "bad.yaml"))
    data["system_prompt"] = "../short.md"
    with pytest.raises(PlaybookError, match="must be a file name"):
        load_template(parse_playbook(data))


def test_an_edited_template_is_read_again(tmp_path: Path) -> None:
    data = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    data["system_prompt"] = "tuned.md"
    (tmp_path / "tuned.yaml").write_text(yaml.safe_dump(data))
    template = tmp_path / "tuned.md"
    template.write_text("Version one, $agent_name.\n")
    playbook = load_playbook(tmp_path / "tuned.yaml")
    ctx = CallContext.from_dict(CONTEXT, playbook)
    assert render_system_prompt(playbook, ctx) == "Version one, Alex.\n"
    template.write_text("Version two, $agent_name.\n")
    os.utime(template, ns=(1, template.stat().st_mtime_ns + 1_000_000))
    assert render_system_prompt(playbook, ctx) == "Version two, Alex.\n"
