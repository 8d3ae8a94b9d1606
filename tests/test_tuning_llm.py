"""The LLM writer over the real OpenAI SDK against the emulated chat-completions server on a
real socket: it sends the failure analysis, the playbook's tunable wording and the
system-prompt template; the model's JSON reply becomes typed edits the critique approves; a
reply that breaks a compliance rule is refused by the critique naming the rule; an empty,
malformed or unknown-kind reply is asked for once more and then given as a proposal without
edits whose error says why (a failed request too);
the critique's feedback and the blamed edit go into the next request; the proposal's text
records the whole exchange, with the server's token count and its cost."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest

from ai.llm_text import LLMSettings
from ai.playbook import PACKAGED_PLAYBOOKS, Playbook, load_playbook
from emulators.openai_api import OpenAIEmulator, OpenAIFault, Reply, running_openai, tokenize
from tests.test_tuning_writer import cooperative_not_offered_full, hardship_refused
from tuning import loop
from tuning.analysis import FailureAnalysis, analyse
from tuning.critique import review
from tuning.edits import SetOfferOrder, SetRoute, SetThreshold, SetTransition, UseWording
from tuning.writer_llm import LLMProposal, LLMWriter, cost_usd

FULL_FIRST = {"kind": "offer_order",
              "steps": ["offer_full", "offer_settlement", "offer_instalments", "ask_amount"]}
GOOD = [FULL_FIRST,
        {"kind": "route", "phase": "post_verification", "intent": "hardship", "target": "hardship"},
        {"kind": "wording", "state": "offer_instalments", "block": "empathy_understand"},
        {"kind": "threshold", "name": "max_reprompts", "value": 2}]


def answer(edits: list[dict[str, Any]], rationale: str = "Offer the full balance first.",
           symptom: str | None = "full_not_offered_first") -> str:
    return json.dumps({"rationale": rationale, "symptom": symptom, "edits": edits})


class Scripted:
    """Answers each request with the next text from `texts` (the last one repeats)."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.n = 0

    def __call__(self, messages: list[dict[str, Any]]) -> Reply:
        text = self.texts[min(self.n, len(self.texts) - 1)]
        self.n += 1
        return Reply(text)


@pytest.fixture(scope="module")
def weak() -> Playbook:
    return load_playbook(PACKAGED_PLAYBOOKS / "collections-weak.yaml")


@pytest.fixture
def analysis(weak: Playbook) -> FailureAnalysis:
    return analyse([hardship_refused(), cooperative_not_offered_full()], weak)


def writer_for(emu: OpenAIEmulator, model: str = "gpt-4o-mini", **kw: Any) -> LLMWriter:
    return LLMWriter(LLMSettings(api_key="test-openai-key", model=model, base_url=emu.base_url,
                                 temperature=0.4), seed=7, **kw)


def user_message(body: dict[str, Any]) -> str:
    content: str = body["messages"][1]["content"]
    return content


def counted(body: dict[str, Any], reply: str) -> tuple[int, int]:
    """The emulator's token count for one request: tokenize pieces of the messages and reply."""
    return sum(len(tokenize(m["content"])) for m in body["messages"]), len(tokenize(reply))


async def test_the_proposal_for_the_weak_playbook_is_typed_edits_the_critique_approves(
    weak: Playbook, analysis: FailureAnalysis
) -> None:
    reply = answer(GOOD)
    async with running_openai(reply=Scripted(reply)) as emu:
        proposal = await writer_for(emu).propose(weak, analysis, [])
    assert proposal.edits == (
        SetOfferOrder(steps=["offer_full", "offer_settlement", "offer_instalments", "ask_amount"]),
        SetRoute(phase="post_verification", intent="hardship", target="hardship"),
        UseWording(state="offer_instalments", block="empathy_understand"),
        SetThreshold(name="max_reprompts", value=2),
    )
    assert proposal.symptom == "full_not_offered_first"
    verdict = review(weak, list(proposal.edits))
    assert verdict.approved, verdict.text
    assert verdict.candidate is not None and verdict.candidate.states["disclosure"].next == "offer_full"
    # what the model was sent: the analysis, the playbook's wording, the template, the blocks
    [body] = emu.requests
    assert body["model"] == "gpt-4o-mini" and body["stream"] is True and body["seed"] == 7
    assert body["temperature"] == 0.4 and body["response_format"] == {"type": "json_object"}
    assert body["stream_options"] == {"include_usage": True}
    system, user = body["messages"][0]["content"], user_message(body)
    assert analysis.text() in user and "I lost my job last month" in user
    assert "ask: How much will you pay today?" in user and "hardship: refused" in user
    assert "max_reprompts: 0" in user
    assert "Compliance rules (these override everything else):" in user  # system_prompt.md
    assert "empathy_hardship (say, empathy" in system and "verification_before_debt" in system
    assert '"kind": "offer_order"' in system
    # the whole exchange is the proposal's text, with the server's tokens and their cost
    assert isinstance(proposal, LLMProposal) and not proposal.estimated
    assert system in proposal.text and user in proposal.text and reply in proposal.text
    assert proposal.text.startswith("Offer the full balance first.\n- offers: offer_full -> ")
    p, c = counted(body, reply)
    assert proposal.tokens == p + c and p > 500
    assert proposal.cost_usd == pytest.approx((p * 0.15 + c * 0.60) / 1e6)
    assert f"tokens {p + c}, counted by the server" in proposal.text


async def test_a_model_not_in_the_price_table_costs_nothing(weak: Playbook, analysis: FailureAnalysis) -> None:
    async with running_openai(reply=Scripted(answer(GOOD))) as emu:
        proposal = await writer_for(emu, model="local-llama").propose(weak, analysis, [])
    assert proposal.tokens > 0 and proposal.cost_usd == 0.0
    assert cost_usd("gpt-4o-mini-2024-07-18", 1_000_000, 0) == 0.15  # longest prefix, not gpt-4o
    assert cost_usd("gpt-4o", 0, 1_000_000) == 10.0


async def test_without_the_servers_count_the_tokens_are_estimated(
    weak: Playbook, analysis: FailureAnalysis
) -> None:
    reply = answer(GOOD)
    async with running_openai(reply=Scripted(reply)) as emu:
        proposal = await writer_for(emu, ask_usage=False).propose(weak, analysis, [])
    [body] = emu.requests
    assert "stream_options" not in body
    assert isinstance(proposal, LLMProposal) and proposal.estimated
    chars = sum(len(m["content"]) for m in body["messages"])
    assert proposal.tokens == (chars + 3) // 4 + (len(reply) + 3) // 4
    assert f"tokens {proposal.tokens}, estimated" in proposal.text and proposal.cost_usd > 0


@pytest.mark.parametrize(("bad", "rules"), [
    # the disclosure skipped: verification leads straight to the full-balance offer
    ({"kind": "transition", "state": "verify", "on": "verified", "target": "offer_full"}, ["disclosure"]),
    # the debt named before verification: a call-back request sent to the amount question
    ({"kind": "route", "phase": "pre_verification", "intent": "callback", "target": "ask_amount"},
     ["verification_before_debt"]),
    # a stop request before verification sent to an offer
    ({"kind": "route", "phase": "pre_verification", "intent": "stop", "target": "offer_full"},
     ["opt_out", "verification_before_debt"]),
])
async def test_a_reply_that_breaks_a_compliance_rule_is_refused_naming_the_rule(
    weak: Playbook, analysis: FailureAnalysis, bad: dict[str, Any], rules: list[str]
) -> None:
    async with running_openai(reply=Scripted(answer([FULL_FIRST, bad]))) as emu:
        proposal = await writer_for(emu).propose(weak, analysis, [])
    verdict = review(weak, list(proposal.edits))
    assert not verdict.approved and verdict.rules == rules
    assert verdict.culprit == proposal.edits[1]
    assert all(f"[{rule}]" in verdict.text for rule in rules)


@pytest.mark.parametrize(("reply", "why"), [
    ("", "the reply is empty"),
    ("Sure! Offer the full balance first.", "the reply is not JSON"),
    (json.dumps(GOOD), "the reply is JSON but not an object (a list)"),
    (json.dumps({"rationale": "x", "edits": GOOD, "template": "..."}), "unknown keys ['template']"),
    (answer([]), "edits: the reply proposes no edit"),
    (json.dumps({"edits": GOOD}), "rationale: missing"),
    (answer([{"kind": "rewrite", "state": "greeting", "text": "Hello"}]), "edits[0]: Input tag 'rewrite'"),
    (answer([FULL_FIRST, {"kind": "threshold", "name": "max_reprompts", "value": "lots"}]),
     "edits[1].threshold.value: Input should be a valid integer"),
    (answer(GOOD, symptom="bored"), "symptom: 'bored' is none of"),
])
async def test_a_malformed_reply_is_asked_for_again_then_refused_with_the_reason(
    weak: Playbook, analysis: FailureAnalysis, reply: str, why: str
) -> None:
    async with running_openai(reply=Scripted(reply)) as emu:
        writer = writer_for(emu)
        proposal = await writer.propose(weak, analysis, [])
        assert isinstance(proposal, LLMProposal) and proposal.edits == () and proposal.symptom == "malformed"
        assert proposal.error.startswith("the model gave no usable proposal (2 replies): ") and why in proposal.error
        assert len(emu.requests) == 2
        again = emu.requests[1]["messages"]
        assert again[:2] == emu.requests[0]["messages"] and again[2] == {"role": "assistant", "content": reply}
        assert again[3]["role"] == "user" and why in again[3]["content"]
        # the exchange is kept for the audit trail, with what it cost
        assert proposal.text.startswith(proposal.error) and user_message(emu.requests[0]) in proposal.text
        assert proposal.text.count("assistant:\n" + reply) == 2
        assert proposal.text.count("rejected: ") == 2 and why in proposal.text.split("rejected: ")[1]
        assert proposal.tokens > 0 and writer.tokens == proposal.tokens and writer.tried == []
        # the next request tells the model why its reply was refused
        await writer.propose(weak, analysis, ["rejected: [malformed] proposal: the writer proposed no edit"])
    assert "Earlier replies of yours could not be used:\n- " in user_message(emu.requests[2])
    assert why in user_message(emu.requests[2]).split("Earlier replies of yours could not be used:")[1]


async def test_a_malformed_reply_then_a_good_one_gives_the_proposal(
    weak: Playbook, analysis: FailureAnalysis
) -> None:
    async with running_openai(reply=Scripted("not json", answer(GOOD))) as emu:
        proposal = await writer_for(emu).propose(weak, analysis, [])
    assert len(proposal.edits) == 4 and len(emu.requests) == 2
    assert isinstance(proposal, LLMProposal)
    assert "assistant:\nnot json\n\nrejected: the reply is not JSON" in proposal.text
    first, second = (sum(counted(body, r)) for body, r in zip(emu.requests, ["not json", answer(GOOD)], strict=True))
    assert proposal.tokens == first + second


async def test_the_critiques_feedback_and_the_blamed_edit_go_into_the_next_request(
    weak: Playbook, analysis: FailureAnalysis
) -> None:
    skip = {"kind": "transition", "state": "verify", "on": "verified", "target": "offer_full"}
    async with running_openai(reply=Scripted(answer([FULL_FIRST, skip]), answer([skip]), answer(GOOD))) as emu:
        writer = writer_for(emu)
        feedback: list[str] = []
        first = await writer.propose(weak, analysis, feedback)
        verdict = review(weak, list(first.edits))
        assert not verdict.approved and verdict.culprit is not None
        writer.avoid(verdict.culprit)
        feedback.append(verdict.text)
        # the next proposal: the model repeats the blamed edit once, is told so, then complies
        second = await writer.propose(weak, analysis, feedback)
    assert review(weak, list(second.edits)).approved
    assert len(emu.requests) == 3
    sent = user_message(emu.requests[1])
    assert "The critique sent earlier proposals back:\n- " + verdict.text in sent
    assert SetTransition(state="verify", on="verified", target="offer_full").model_dump_json() in sent
    assert first.key in sent  # already proposed
    assert "The critique sent" not in user_message(emu.requests[0])
    refusal = emu.requests[2]["messages"][3]["content"]
    assert "edits[0] (step order: verify goes to offer_full (on verified)) was already blamed" in refusal
    # the writer's memory survives a restart through state()/restore()
    state = json.loads(json.dumps(writer.state()))
    assert state["tried"] == [first.key, second.key] and len(state["avoided"]) == 1
    assert state["tokens"] == first.tokens + second.tokens
    again = LLMWriter(writer.settings)
    again.restore(state)
    assert again.state() == writer.state()


@pytest.mark.parametrize(("fault", "why"), [
    (OpenAIFault("status", status=500), "the request failed: HTTP 500"),
    (OpenAIFault("drop", after_tokens=3), "the request failed: "),
])
async def test_a_failed_request_is_refused_with_the_reason(
    weak: Playbook, analysis: FailureAnalysis, fault: OpenAIFault, why: str
) -> None:
    async with running_openai(reply=Scripted(answer(GOOD))) as emu:
        emu.faults.append(fault)
        proposal = await writer_for(emu).propose(weak, analysis, [])
    assert isinstance(proposal, LLMProposal) and proposal.edits == ()
    assert proposal.symptom == "request_failed" and proposal.error.startswith(why)
    assert len(emu.requests) == 1 and user_message(emu.requests[0]) in proposal.text


async def test_a_timeout_is_refused_with_the_reason(weak: Playbook, analysis: FailureAnalysis) -> None:
    async with running_openai(reply=Scripted(answer(GOOD)), first_token_delay_s=2.0) as emu:
        writer = LLMWriter(LLMSettings(api_key="test-openai-key", base_url=emu.base_url, timeout_s=0.3))
        proposal = await writer.propose(weak, analysis, [])
    assert isinstance(proposal, LLMProposal) and proposal.edits == ()
    assert proposal.error == "the model did not answer within 0.3 s"


@pytest.mark.skipif(not inspect.iscoroutinefunction(loop.exchange),
                    reason="the tuning loop's exchange is not yet async over the Writer protocol")
async def test_the_loops_exchange_records_every_round_and_sends_the_critique_back(
    weak: Playbook
) -> None:
    exchange: Any = loop.exchange
    skip = {"kind": "transition", "state": "verify", "on": "verified", "target": "offer_full"}
    async with running_openai(reply=Scripted("not json", "not json", answer([skip]), answer(GOOD))) as emu:
        writer = writer_for(emu)
        ex = await exchange(writer, weak, [hardship_refused(), cooperative_not_offered_full()])
    assert len(emu.requests) == 4 and len(ex.rounds) == 3
    (malformed, r1), (breaking, r2), (good, r3) = ex.rounds
    assert malformed.edits == () and not r1.approved
    assert not r2.approved and r2.rules == ["disclosure"]
    assert r3.approved and ex.approved is not None and good.edits[0] == SetOfferOrder(**FULL_FIRST)
    # the malformed round's reason and the critique's verdicts reach the next requests
    third, fourth = user_message(emu.requests[2]), user_message(emu.requests[3])
    assert "Earlier replies of yours could not be used:\n- the reply is not JSON" in third
    assert "- " + r1.text in third
    assert "- " + r2.text in fourth and skip["target"] in fourth
    # the whole exchange is recorded: every prompt and reply, and what it cost
    text = ex.text()
    assert all(user_message(body) in text for body in emu.requests)
    assert answer(GOOD) in text and "critique: approved" in text and "[disclosure]" in text
    assert ex.tokens == malformed.tokens + breaking.tokens + good.tokens == writer.tokens > 0
    assert ex.cost_usd == pytest.approx(writer.cost_usd) and ex.cost_usd > 0


async def test_the_model_edits_the_system_prompt_template_and_the_critique_holds_its_rules(
    weak: Playbook
) -> None:
    """A template edit that drops the opt-out rule is sent back naming `opt_out`; the next,
    outside the rules and with a line in the model's own words, is approved and carried as
    the candidate's template; the next request quotes the template it was given."""
    from ai.prompt import load_template

    template = load_template(weak).template
    opt_out = ("If they ask you to stop calling, or say they have an attorney, confirm you will not"
               " call again, record opt_out and end the call.")
    breaking = [{"kind": "template", "find": opt_out, "replace": "Keep them on the line."}]
    fine = [{"kind": "template", "find": "Speak in short, plain sentences",
             "replace": "Speak calmly and kindly, in short, plain sentences"},
            {"kind": "line", "state": "offer_full", "field": "ask",
             "text": "Would you be able to pay {balance} today?"}]
    async with running_openai(reply=Scripted(answer(breaking), answer(fine))) as emu:
        ex = await loop.exchange(writer_for(emu), weak, [hardship_refused(), cooperative_not_offered_full()],
                                 template=template)
    (_, r1), (_, r2) = ex.rounds
    assert not r1.approved and "opt_out" in r1.rules and "system_prompt_template" in r1.text
    assert r2.approved and ex.approved is not None
    assert ex.template is not None and "Speak calmly and kindly" in ex.template and opt_out in ex.template
    assert ex.approved[1].states["offer_full"].ask == "Would you be able to pay {balance} today?"
    first, second = user_message(emu.requests[0]), user_message(emu.requests[1])
    assert opt_out in first and "- " + r1.text in second
    assert "system prompt: 'Speak in short, plain sentences' becomes" in ex.text()
