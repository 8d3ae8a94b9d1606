"""The LLM judge over the real OpenAI SDK against the emulated chat-completions server on a
real socket: an anchored rubric in the prompt, >= 3 samples at temperature > 0, the mean and
spread reported, quoted evidence checked against the transcript; malformed JSON is asked for
once more and then fails, a timeout and an HTTP error fail with the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ai.llm_text import LLMSettings
from ai.playbook import Playbook, load_playbook
from emulators.openai_api import OpenAIEmulator, OpenAIFault, Reply, running_openai
from evaluation.judge_llm import ANCHORS, LLMJudge, parse_verdict
from evaluation.judges import JudgeError
from evaluation.models import Scenario, SimulatedCall
from evaluation.scoring import evaluate_call
from tests.evaluator_calls import simulate

QUOTE = "Yes, I can pay the full amount."


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


@pytest.fixture
async def cooperative(playbook: Playbook, monkeypatch: pytest.MonkeyPatch) -> tuple[SimulatedCall, Scenario]:
    return await simulate(playbook, "cooperative", monkeypatch)


def verdict(task: float, efficiency: float, quote: str = QUOTE) -> str:
    return json.dumps({
        "task_completion": {"score": task, "analysis": "Promise to pay in full, confirmed.",
                            "evidence": [quote]},
        "efficiency": {"score": efficiency, "analysis": "No wasted turns.",
                       "evidence": ["Next Friday."]},
    })


class Scripted:
    """Answers each request with the next text from `texts` (the last one repeats)."""

    def __init__(self, *texts: str) -> None:
        self.texts = list(texts)
        self.n = 0

    def __call__(self, messages: list[dict[str, Any]]) -> Reply:
        text = self.texts[min(self.n, len(self.texts) - 1)]
        self.n += 1
        return Reply(text)


def judge_for(emu: OpenAIEmulator, samples: int = 3, **kw: Any) -> LLMJudge:
    return LLMJudge(LLMSettings(model="gpt-4o-mini", api_key="test-openai-key",
                                base_url=emu.base_url, **kw), samples=samples)


async def test_samples_mean_and_spread(playbook: Playbook, cooperative: tuple[SimulatedCall, Scenario]) -> None:
    call, scenario = cooperative
    async with running_openai(reply=Scripted(verdict(70, 90), verdict(80, 90), verdict(90, 60))) as emu:
        j = await judge_for(emu).judge(call, scenario, playbook)
    assert len(emu.requests) == 3
    for body in emu.requests:
        assert body["temperature"] == 0.7 and body["stream"] is True
        assert body["response_format"] == {"type": "json_object"}
        system, user = body["messages"][0]["content"], body["messages"][1]["content"]
        assert all(text in system for anchors in ANCHORS.values() for text in anchors.values())
        assert "[5] caller: Yes, I can pay the full amount." in user
        assert "Expected outcomes, best first: promise_to_pay." in user
    assert j.kind == "llm" and sorted(j.samples) == [(70, 90), (80, 90), (90, 60)]
    assert j.task_completion.score == 80 and j.efficiency.score == 80
    assert "spread 20" in j.task_completion.analysis and "spread 30" in j.efficiency.analysis
    assert j.task_completion.evidence == [QUOTE]


async def test_evaluate_call_with_the_llm_judge(
    playbook: Playbook, cooperative: tuple[SimulatedCall, Scenario]
) -> None:
    call, scenario = cooperative
    async with running_openai(reply=Scripted(verdict(70, 90), verdict(80, 90), verdict(90, 90))) as emu:
        score = await evaluate_call(call, scenario, playbook, judge=judge_for(emu, samples=4))
    assert len(emu.requests) == 4 and score.judge == "llm"
    assert len(score.samples) == 4 and score.spread == pytest.approx(0.7 * 20, abs=0.01)
    assert score.compliance_passed and score.passed
    assert score.score == pytest.approx(0.7 * score.task_completion + 0.3 * score.efficiency, abs=0.01)


async def test_malformed_json_is_asked_for_once_more(
    playbook: Playbook, cooperative: tuple[SimulatedCall, Scenario]
) -> None:
    call, scenario = cooperative
    async with running_openai(reply=Scripted("Sure! The agent did well.", verdict(80, 80))) as emu:
        j = await judge_for(emu).judge(call, scenario, playbook)
    assert len(emu.requests) == 4  # 3 samples, one of them retried
    assert j.task_completion.score == 80


@pytest.mark.parametrize(("reply", "why"), [
    ("not json at all", "not JSON"),
    ('{"task_completion": {"score": 80}}', "task_completion.analysis"),
    (verdict(180, 80), "task_completion.score: must be a number from 0 to 100"),
    (verdict(80, 80, quote="I will pay ten thousand dollars today."), "is not in the transcript"),
])
async def test_malformed_twice_fails_with_the_reason(
    playbook: Playbook, cooperative: tuple[SimulatedCall, Scenario], reply: str, why: str
) -> None:
    call, scenario = cooperative
    async with running_openai(reply=Scripted(reply)) as emu:
        with pytest.raises(JudgeError, match="malformed JSON twice") as err:
            await judge_for(emu).judge(call, scenario, playbook)
    assert why in str(err.value)


async def test_a_timeout_fails_with_the_reason(
    playbook: Playbook, cooperative: tuple[SimulatedCall, Scenario]
) -> None:
    call, scenario = cooperative
    async with running_openai(reply=Scripted(verdict(80, 80))) as emu:
        emu.faults.extend([OpenAIFault("slow", delay_s=1.0)] * 3)
        with pytest.raises(JudgeError, match=r"timed out after 0.2 s"):
            await judge_for(emu, timeout_s=0.2).judge(call, scenario, playbook)


async def test_an_http_error_fails_with_the_reason(
    playbook: Playbook, cooperative: tuple[SimulatedCall, Scenario]
) -> None:
    call, scenario = cooperative
    async with running_openai(reply=Scripted(verdict(80, 80))) as emu:
        emu.faults.extend([OpenAIFault("status", 500)] * 3)
        with pytest.raises(JudgeError, match="HTTP 500"):
            await judge_for(emu).judge(call, scenario, playbook)
    async with running_openai(api_key="another-key") as emu:
        with pytest.raises(JudgeError, match="HTTP 401"):
            await judge_for(emu).judge(call, scenario, playbook)


def test_config_needs_three_samples_and_some_temperature() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        LLMJudge(LLMSettings(model="m", api_key="k"), samples=2)
    with pytest.raises(ValueError, match="temperature"):
        LLMJudge(LLMSettings(model="m", api_key="k", temperature=0))


def test_fenced_json_is_read(cooperative: tuple[SimulatedCall, Scenario]) -> None:
    call, _ = cooperative
    got = parse_verdict(f"```json\n{verdict(75, 50)}\n```", call)
    assert got["task_completion"].score == 75 and got["efficiency"].score == 50
