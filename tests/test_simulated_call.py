"""End to end: a simulated debtor calls through a real WebSocket with real codecs, real
speech recognition (faster-whisper) and real synthesis (Piper); the call lands in PostgreSQL."""

from __future__ import annotations

import re

import pytest

from evaluation.audio_call import run_simulated_call

pytestmark = pytest.mark.slow

DEBT_WORDS = re.compile(r"\b(debt|balance|owe|collect\w*|payment|account|creditor|1,?250|northwind)\b", re.I)


async def test_cooperative_debtor_promises_to_pay(speech_server) -> None:
    url, providers = speech_server
    result = await run_simulated_call(url, "cooperative", providers.stt, providers.tts, max_seconds=180)
    assert result.status == "completed", result.failure_reason
    assert result.outcome == "promise_to_pay"
    assert result.promise_to_pay is not None and result.promise_to_pay["amount"] == 1250.0
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", result.promise_to_pay["date"])
    speakers = {t["speaker"] for t in result.turns}
    assert speakers == {"agent", "caller"}
    agent_text = " ".join(t["text"] for t in result.turns if t["speaker"] == "agent")
    assert "attempt to collect a debt" in agent_text  # the mini-Miranda was spoken
    assert all(t["end_ms"] >= t["start_ms"] for t in result.turns)
    assert result.latencies_ms, "voice-to-voice latency measured for agent turns"


async def test_wrong_person_never_hears_about_the_debt(speech_server) -> None:
    url, providers = speech_server
    result = await run_simulated_call(url, "wrong-person", providers.stt, providers.tts, max_seconds=120)
    assert result.status == "completed", result.failure_reason
    assert result.outcome == "wrong_party"
    assert result.promise_to_pay is None
    agent_lines = [t["text"] for t in result.turns if t["speaker"] == "agent"]
    assert agent_lines
    for line in agent_lines:
        assert not DEBT_WORDS.search(line), line
    # what the debtor actually heard, through speech recognition of the played audio
    for speaker, text in result.heard:
        if speaker == "agent":
            assert not DEBT_WORDS.search(text), text
