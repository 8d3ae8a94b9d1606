"""A shipped scenario in audio mode: the scripted debtor's speech goes through Piper, the
Twilio media protocol over a real WebSocket to our server and its faster-whisper STT, and
the agent's speech back through the same STT to the debtor's ears."""

from __future__ import annotations

import pytest

from evaluation.audio_call import run_audio_simulation
from evaluation.library_data import load_personalities, load_scenario_set

pytestmark = pytest.mark.slow


async def test_a_scenario_runs_in_audio_mode(speech_server) -> None:
    url, providers = speech_server
    scenario = next(s for s in load_scenario_set("default") if s.name == "cooperative")
    call = await run_audio_simulation(url, scenario, load_personalities()["cooperative"], seed=1,
                                      stt=providers.stt, tts=providers.tts, max_seconds=180)
    transcript = [(t.speaker, t.text) for t in call.turns]
    assert call.status == "completed", call.failure_reason
    assert call.mode == "audio" and call.scenario == "cooperative"
    assert call.outcome in scenario.expected_outcomes, transcript
    assert {t.speaker for t in call.turns} == {"agent", "caller"}
    kinds = [a.kind for a in call.actions]
    assert "right_party_verified" in kinds and "promise_to_pay" in kinds
    verified = next(a for a in call.actions if a.kind == "right_party_verified")
    assert 0 < verified.turn <= len(call.turns)
    assert call.outcome_fields["ptp_amount"] == 1250.0
