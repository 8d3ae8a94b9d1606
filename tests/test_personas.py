"""Every persona plays a whole text conversation against the default scripted playbook
and lands on its expected outcome; the simulated debtor copes with recogniser text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ai.playbook import CallContext, Playbook, find_debt_terms, load_playbook
from evaluation.audio_call import SimulationResult
from evaluation.personas import (
    Persona,
    PersonaError,
    SimulatedDebtor,
    list_personas,
    load_persona,
)
from evaluation.text_call import TextCallResult, run_text_call

CLOCK = {"today": "2026-11-21", "now": "2026-11-21T09:00:00"}  # a Saturday morning
ALL = ["already-paid", "callback", "cooperative", "disputer", "hardship", "hostile",
       "interrupter", "silent", "wrong-person"]


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


async def _play(playbook: Playbook, name: str) -> tuple[Persona, TextCallResult]:
    persona = load_persona(name)
    result = await run_text_call(playbook, persona, context=CLOCK)
    end = result.action("end_call")
    assert end is not None and result.outcome == end.data["outcome"]
    return persona, result


def test_list_personas() -> None:
    assert list_personas() == ALL


@pytest.mark.parametrize("name", ALL)
async def test_persona_reaches_expected_outcome(playbook: Playbook, name: str) -> None:
    persona, result = await _play(playbook, name)
    assert result.outcome == persona.expected_outcome, result.turns
    assert result.actions[-1].kind == "end_call"
    ptp = result.action("promise_to_pay")
    if persona.expected_outcome == "promise_to_pay":
        assert ptp is not None and ptp.data["amount"] > 0 and ptp.data["date"] >= CLOCK["today"]
        assert ptp.data["plan"] == persona.expected_plan
    else:
        assert ptp is None


async def test_cooperative_promise_is_read_back(playbook: Playbook) -> None:
    _, result = await _play(playbook, "cooperative")
    ptp = result.action("promise_to_pay")
    assert ptp is not None
    assert ptp.data == {"amount": 1250.0, "date": "2026-11-27", "plan": "full", "instalments": None}
    assert any("1,250 dollars on Friday, November 27. Is that correct?" in line
               for line in result.agent_lines())


async def test_hardship_is_recorded_and_instalments_agreed(playbook: Playbook) -> None:
    _, result = await _play(playbook, "hardship")
    assert result.action("hardship") is not None
    ptp = result.action("promise_to_pay")
    assert ptp is not None
    assert ptp.data == {"amount": 800.0, "date": "2026-12-01", "plan": "instalment",
                        "instalments": 3}


async def test_wrong_person_never_hears_about_the_debt(playbook: Playbook) -> None:
    persona, result = await _play(playbook, "wrong-person")
    ctx = CallContext.from_dict(persona.context(), playbook)
    lines = result.agent_lines()
    assert lines
    for line in lines:
        assert find_debt_terms(line, playbook, ctx) == [], line
        assert playbook.company not in line
    assert [a.kind for a in result.actions] == ["wrong_party", "end_call"]


async def test_hostile_is_warned_then_opted_out(playbook: Playbook) -> None:
    _, result = await _play(playbook, "hostile")
    assert any("respectful" in line for line in result.agent_lines())
    opt_out = result.action("opt_out")
    assert opt_out is not None and opt_out.data == {"reason": "stop_request"}


async def test_disputer_and_already_paid_record_the_reason(playbook: Playbook) -> None:
    _, disputed = await _play(playbook, "disputer")
    d = disputed.action("record_dispute")
    assert d is not None and d.data["reason"] == "disputed"
    assert any("validation information" in line for line in disputed.agent_lines())
    _, paid = await _play(playbook, "already-paid")
    p = paid.action("record_dispute")
    assert p is not None and p.data["reason"] == "already_paid"


async def test_callback_time_is_parsed(playbook: Playbook) -> None:
    _, result = await _play(playbook, "callback")
    cb = result.action("schedule_callback")
    assert cb is not None and cb.data["at"] == "2026-11-22T17:00:00"


async def test_silent_gets_reprompts_then_goodbye(playbook: Playbook) -> None:
    _, result = await _play(playbook, "silent")
    lines = result.agent_lines()
    reprompts = [line for line in lines if line.startswith("Are you still there?")]
    assert len(reprompts) == playbook.settings.max_reprompts
    assert all(t["speaker"] == "agent" for t in result.turns)
    assert "Goodbye" in lines[-1]


async def test_interrupter_barges_in_and_still_promises(playbook: Playbook) -> None:
    persona, result = await _play(playbook, "interrupter")
    assert persona.interrupt_after_ms == 1200
    cut = [i for i, t in enumerate(result.turns) if t["interrupted"]]
    assert len(cut) == persona.interrupt_max == result.barge_ins
    for i in cut:
        agent, caller = result.turns[i], result.turns[i + 1]
        assert agent["speaker"] == "agent" and agent["text"].endswith("—")
        assert (caller["speaker"], caller["text"]) == ("caller", persona.interrupt_line)
        # the caller started talking 1.2 s into the agent's turn, which stopped there
        assert caller["start_ms"] - agent["start_ms"] == persona.interrupt_after_ms


def test_debtor_matches_recogniser_text() -> None:
    debtor = SimulatedDebtor(load_persona("cooperative"))
    # no punctuation, lower case, a misheard word
    assert debtor.reply("for your security could you please tell me your year of birth") == (
        "It's 1984."
    )
    assert debtor.reply("are you able to pay the full balans of 1250 dollars") == (
        "Yes, I can pay the full amount."
    )
    # a fragment that is not a question gets no answer; a question it has no rule for does
    assert debtor.reply("Thank you, John.") is None
    assert debtor.reply("Do you like the weather?") == "Sorry, could you repeat that?"
    assert debtor.reply("Have a good day, goodbye.") is None
    assert debtor.hung_up and debtor.done


def test_rule_max_uses_and_silent_persona() -> None:
    hostile = SimulatedDebtor(load_persona("hostile"))
    first = hostile.reply("May I speak with Dave Miller?")
    again = hostile.reply("May I speak with Dave Miller?")
    assert first is not None and "hell" in first
    assert again == "I said stop calling me."
    silent = SimulatedDebtor(load_persona("silent"))
    assert silent.reply("Are you still there?") is None and not silent.hung_up


def test_unknown_and_invalid_personas(tmp_path: Path) -> None:
    with pytest.raises(PersonaError, match="choose from: already-paid"):
        load_persona("nobody")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nidentity: {}\nexpected_outcome: refused\n"
                   "rules: [{match: '(oops', reply: hi}]\n")
    with pytest.raises(PersonaError, match="bad regex"):
        load_persona(bad)


def test_cli_text_mode_prints_the_audio_modes_json() -> None:
    dialkit = Path(sys.executable).with_name("dialkit")
    env = {**os.environ, "DIALKIT_STT": "null", "DIALKIT_TTS": "tone"}
    out = subprocess.run(
        [str(dialkit), "call", "--simulate", "--mode", "text", "--persona", "hostile", "--json"],
        capture_output=True, text=True, timeout=120, env=env, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    audio_keys = set(SimulationResult("c", "p", "twilio", None, None, False, [], [], 0,
                                      "completed", None).as_json())
    assert set(data) == audio_keys
    assert data["mode"] == "text" and data["outcome"] == "opt_out" and data["opt_out"] is True
    assert data["stages"][0] == "greeting" and data["turns"][0]["speaker"] == "agent"
    assert set(data["turns"][0]) == {"speaker", "text", "start_ms", "end_ms", "interrupted",
                                     "voice_to_voice_ms"}
