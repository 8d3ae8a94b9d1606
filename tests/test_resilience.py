"""Resilience: retries, circuit breaking and the per-call fallback chains, driven through the
real SDKs against the vendor emulators with injected faults (429/500, dropped sockets,
slow first bytes, malformed payloads)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from ai.events import PolicyEvent, UserTurn
from ai.llm_openai import OpenAIPolicy
from ai.resilience import (
    CircuitBreaker,
    FallbackPolicy,
    FallbackPolicyFactory,
    FallbackSTT,
    FallbackTTS,
    ProviderUnavailable,
    retry_async,
)
from ai.stt_deepgram import DeepgramSTT
from ai.tts_tone import ToneTTS
from ai.types import AudioChunk, AudioSpec, Message, PolicyOutput, Say
from emulators.deepgram import running_deepgram
from emulators.elevenlabs import ElevenLabsFault, running_elevenlabs
from emulators.openai_api import OpenAIFault, Reply, running_openai
from tests.test_cloud_providers import (
    DG_KEY,
    MULAW_8K,
    OA_KEY,
    Collector,
    collect,
    feed,
    metric,
    says,
    silence,
    speech,
)

# ---- primitives -----------------------------------------------------------------------


def test_circuit_breaker_opens_half_opens_and_closes() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=10, clock=lambda: now[0])
    assert breaker.allow() and breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow()  # one trial
    assert not breaker.allow()
    breaker.record_failure()  # trial failed: open again for a full timeout
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


async def test_retry_async_retries_transient_errors_only() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("reset")
        return "ok"

    assert await retry_async(flaky, attempts=3, base_delay=0.001) == "ok"
    assert len(calls) == 3

    calls.clear()

    async def broken() -> str:
        calls.append(1)
        raise KeyError("bug")

    with pytest.raises(KeyError):
        await retry_async(broken, attempts=5, base_delay=0.001)
    assert len(calls) == 1

    calls.clear()
    with pytest.raises(ConnectionError):
        await retry_async(flaky, attempts=2, base_delay=0.001, retry_on=(ConnectionError,))
    assert len(calls) == 2


# ---- STT ------------------------------------------------------------------------------


async def test_fallback_stt_switches_mid_utterance_and_keeps_the_utterance() -> None:
    before = metric(
        "dialkit_provider_fallbacks_total",
        role="stt",
        from_provider="deepgram",
        to_provider="deepgram",
    )
    async with (
        running_deepgram(script=["primary heard this"]) as primary,
        running_deepgram(script=["I already paid that bill."]) as secondary,
    ):
        primary.faults.drop_after_audio_s.append(0.9)
        stt = FallbackSTT(
            [
                DeepgramSTT(api_key=DG_KEY, base_url=primary.url, reconnect_attempts=0),
                DeepgramSTT(api_key=DG_KEY, base_url=secondary.url),
            ]
        )
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=300)
        got = Collector(stream)
        audio = np.concatenate([silence(0.3, 8000), speech(1.4, 8000), silence(0.6, 8000)])
        await feed(stream, audio, MULAW_8K)
        await got.wait_for(lambda: got.ends())
        await stream.close()

    assert got.error is None
    assert [e.text for e in got.ends()] == ["I already paid that bill."]
    assert primary.connections[0].dropped and primary.connections[0].segments == []
    (segment,) = secondary.connections[0].segments
    assert segment[1] - segment[0] == pytest.approx(1.4, abs=0.03)  # the whole utterance
    after = metric(
        "dialkit_provider_fallbacks_total",
        role="stt",
        from_provider="deepgram",
        to_provider="deepgram",
    )
    assert after - before == 1


async def test_fallback_stt_opens_the_next_provider_when_the_first_refuses() -> None:
    async with running_deepgram() as primary, running_deepgram(script=["Hello?"]) as secondary:
        primary.faults.reject_statuses.append(429)
        stt = FallbackSTT(
            [
                DeepgramSTT(api_key=DG_KEY, base_url=primary.url),
                DeepgramSTT(api_key=DG_KEY, base_url=secondary.url),
            ]
        )
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=200)
        got = Collector(stream)
        await feed(stream, np.concatenate([speech(0.5, 8000), silence(0.5, 8000)]), MULAW_8K)
        await got.wait_for(lambda: got.ends())
        await stream.close()
    assert primary.rejected == [429] and primary.connections == []
    assert [e.text for e in got.ends()] == ["Hello?"]


async def test_fallback_stt_raises_when_every_provider_fails() -> None:
    async with running_deepgram() as only:
        only.faults.reject_statuses.extend([500])
        stt = FallbackSTT([DeepgramSTT(api_key=DG_KEY, base_url=only.url)])
        with pytest.raises(ProviderUnavailable):
            await stt.open_stream(MULAW_8K, endpointing_ms=200)


# ---- TTS ------------------------------------------------------------------------------


async def _synth(tts: FallbackTTS, text: str, spec: AudioSpec = MULAW_8K) -> list[AudioChunk]:
    return [c async for c in tts.synthesize(text, spec)]


@pytest.mark.parametrize("status", [429, 500])
async def test_fallback_tts_error_status_goes_to_the_next_provider(status: int, elevenlabs_tts: Any) -> None:
    text = "Thanks for your time today."
    before = metric(
        "dialkit_provider_fallbacks_total",
        role="tts",
        from_provider="elevenlabs",
        to_provider="tone",
    )
    async with running_elevenlabs() as emu:
        emu.faults.append(ElevenLabsFault("status", status=status))
        tts = FallbackTTS(
            [elevenlabs_tts(base_url=emu.base_url), ToneTTS()]
        )
        chunks = await _synth(tts, text)
    assert {c.spec.encoding for c in chunks} == {"pcm16"}  # all from the tone provider
    assert sum(len(c.data) for c in chunks) == 2 * 8000 * ToneTTS().duration_ms(text) // 1000
    after = metric(
        "dialkit_provider_fallbacks_total",
        role="tts",
        from_provider="elevenlabs",
        to_provider="tone",
    )
    assert after - before == 1


async def test_fallback_tts_resynthesises_only_the_unspoken_rest_after_a_drop(elevenlabs_tts: Any) -> None:
    text = "Your payment of two hundred dollars is due on the fifth of next month."
    async with running_elevenlabs(chunk_delay_s=0.02) as primary, running_elevenlabs() as secondary:
        primary.faults.append(ElevenLabsFault("drop", after_bytes=2400))  # 0.3 s of µ-law
        tts = FallbackTTS(
            [
                elevenlabs_tts(base_url=primary.base_url),
                elevenlabs_tts(base_url=secondary.base_url),
            ],
            chars_per_second=1 / primary.seconds_per_char,
        )
        chunks = await _synth(tts, text)
    rest = secondary.requests[0].text
    assert rest and rest != text and text.endswith(rest)
    assert text[len(text) - len(rest) - 1] == " "  # cut at a word boundary
    spoken = sum(len(c.data) for c in chunks) / 8000
    assert spoken >= len(text) * primary.seconds_per_char - 0.2  # nothing lost


async def test_fallback_tts_slow_first_byte_times_out_to_the_next_provider(elevenlabs_tts: Any) -> None:
    async with running_elevenlabs() as emu:
        emu.faults.append(ElevenLabsFault("slow", delay_s=2.0))
        tts = FallbackTTS(
            [elevenlabs_tts(base_url=emu.base_url), ToneTTS()],
            first_byte_timeout_s=0.2,
        )
        chunks = await _synth(tts, "Hello there.")
    assert chunks and {c.spec.encoding for c in chunks} == {"pcm16"}


async def test_fallback_tts_last_resort_is_given_time_rather_than_silence(elevenlabs_tts: Any) -> None:
    """Both providers slow to first byte: the last one is waited for, not timed out."""
    async with running_elevenlabs() as first, running_elevenlabs() as last:
        first.faults.append(ElevenLabsFault("slow", delay_s=2.0))
        last.faults.append(ElevenLabsFault("slow", delay_s=0.6))
        tts = FallbackTTS(
            [
                elevenlabs_tts(base_url=first.base_url),
                elevenlabs_tts(base_url=last.base_url),
            ],
            first_byte_timeout_s=0.2,
        )
        chunks = await _synth(tts, "Hello there.")
    assert chunks and len(last.requests) == 1
    assert {c.spec.encoding for c in chunks} == {"mulaw"}


async def test_fallback_tts_malformed_body_is_counted_and_replaced(elevenlabs_tts: Any) -> None:
    before = metric(
        "dialkit_provider_errors_total", role="tts", provider="elevenlabs", kind="malformed"
    )
    async with running_elevenlabs() as emu:
        emu.faults.append(ElevenLabsFault("malformed"))
        tts = FallbackTTS(
            [elevenlabs_tts(base_url=emu.base_url), ToneTTS()]
        )
        chunks = await _synth(tts, "Hello there.")
    assert chunks and {c.spec.encoding for c in chunks} == {"pcm16"}
    after = metric(
        "dialkit_provider_errors_total", role="tts", provider="elevenlabs", kind="malformed"
    )
    assert after - before >= 1


async def test_fallback_tts_breaker_skips_a_failing_provider_on_later_calls(elevenlabs_tts: Any) -> None:
    async with running_elevenlabs() as emu:
        emu.faults.extend([ElevenLabsFault("status", status=500)] * 2)
        tts = FallbackTTS(
            [elevenlabs_tts(base_url=emu.base_url), ToneTTS()],
            breakers=[CircuitBreaker(failure_threshold=2, reset_timeout_s=60), CircuitBreaker()],
        )
        for _ in range(3):
            assert await _synth(tts, "Hi.")
    assert len(emu.requests) == 2  # the third sentence did not even try the open circuit


# ---- policy ---------------------------------------------------------------------------


class ScriptedPolicy:
    """A stand-in for the playbook policy: fixed lines, records the events it got."""

    name = "scripted"

    def __init__(self) -> None:
        self.events: list[PolicyEvent] = []

    async def respond(
        self, history: list[Message], event: PolicyEvent
    ) -> AsyncIterator[PolicyOutput]:
        self.events.append(event)
        yield Say("Let me repeat that.")


def _openai(emu: Any, **kw: Any) -> OpenAIPolicy:
    return OpenAIPolicy(api_key=OA_KEY, base_url=emu.base_url, system_prompt="Be brief.", **kw)


async def test_fallback_policy_server_error_hands_the_call_to_the_script() -> None:
    before = metric(
        "dialkit_provider_fallbacks_total",
        role="llm",
        from_provider="openai",
        to_provider="scripted",
    )
    async with running_openai(reply=lambda m: Reply("Sure thing.")) as emu:
        emu.faults.append(OpenAIFault("status", status=500))
        scripted = ScriptedPolicy()
        policy = FallbackPolicy([_openai(emu, max_retries=0), scripted], filler_after_ms=5000)
        first = await collect(policy.respond([], UserTurn("Hello?")))
        second = await collect(policy.respond([], UserTurn("Are you there?")))
    assert says(first) == ["Let me repeat that."]
    assert says(second) == ["Let me repeat that."]
    assert len(emu.requests) == 1  # the rest of the call stays on the script
    assert [e.text for e in scripted.events if isinstance(e, UserTurn)] == [
        "Hello?",
        "Are you there?",
    ]
    after = metric(
        "dialkit_provider_fallbacks_total",
        role="llm",
        from_provider="openai",
        to_provider="scripted",
    )
    assert after - before == 1


async def test_openai_rate_limit_is_retried_by_the_sdk() -> None:
    async with running_openai(reply=lambda m: Reply("Sure thing.")) as emu:
        emu.faults.append(OpenAIFault("status", status=429))
        out = await collect(_openai(emu, max_retries=2).respond([], UserTurn("Hi")))
    assert says(out) == ["Sure thing."]
    assert len(emu.requests) == 2


async def test_fallback_policy_says_one_filler_when_the_first_token_is_slow() -> None:
    async with running_openai(reply=lambda m: Reply("Your balance is 1,250.50 dollars.")) as emu:
        emu.faults.append(OpenAIFault("slow", delay_s=0.6))
        policy = FallbackPolicy(
            [_openai(emu, max_retries=0), ScriptedPolicy()],
            filler_after_ms=100,
            filler_lines=["One moment."],
            timeout_s=10,
        )
        out = await collect(policy.respond([], UserTurn("How much do I owe?")))
        quick = await collect(policy.respond([], UserTurn("Okay.")))
    assert says(out) == ["One moment.", "Your balance is 1,250.50 dollars."]
    assert says(quick) == ["Your balance is 1,250.50 dollars."]  # no filler when on time
    assert policy.current.name == "openai"


async def test_fallback_policy_timeout_says_filler_then_falls_back() -> None:
    async with running_openai(reply=lambda m: Reply("Too late.")) as emu:
        emu.faults.append(OpenAIFault("slow", delay_s=3.0))
        policy = FallbackPolicy(
            [_openai(emu, max_retries=0), ScriptedPolicy()],
            filler_after_ms=50,
            filler_lines=["One moment."],
            timeout_s=0.4,
        )
        out = await collect(policy.respond([], UserTurn("Hello?")))
    assert says(out) == ["One moment.", "Let me repeat that."]
    assert policy.current.name == "scripted"


async def test_fallback_policy_malformed_stream_is_counted_and_falls_back() -> None:
    before = metric(
        "dialkit_provider_errors_total", role="llm", provider="openai", kind="malformed"
    )
    async with running_openai(reply=lambda m: Reply("A long enough answer for the test.")) as emu:
        emu.faults.append(OpenAIFault("malformed", after_tokens=2))
        policy = FallbackPolicy(
            [_openai(emu, max_retries=0), ScriptedPolicy()], filler_after_ms=5000
        )
        out = await collect(policy.respond([], UserTurn("Hello?")))
    assert says(out)[-1] == "Let me repeat that."
    after = metric("dialkit_provider_errors_total", role="llm", provider="openai", kind="malformed")
    assert after - before >= 1


async def test_fallback_policy_dropped_stream_falls_back() -> None:
    async with running_openai(reply=lambda m: Reply("One two three four five six.")) as emu:
        emu.faults.append(OpenAIFault("drop", after_tokens=3))
        policy = FallbackPolicy(
            [_openai(emu, max_retries=0), ScriptedPolicy()], filler_after_ms=5000
        )
        out = await collect(policy.respond([], UserTurn("Hello?")))
    assert says(out) == ["Let me repeat that."]


async def test_fallback_policy_factory_builds_one_chain_per_call() -> None:
    async with running_openai(reply=lambda m: Reply("Hi there.")) as emu:
        factory = FallbackPolicyFactory(
            [lambda ctx, pb: _openai(emu, max_retries=0), lambda ctx, pb: ScriptedPolicy()],
            filler_after_ms=5000,
        )
        emu.faults.append(OpenAIFault("status", status=500))
        first_call, second_call = factory({}), factory({})
        assert says(await collect(first_call.respond([], UserTurn("a")))) == ["Let me repeat that."]
        assert says(await collect(second_call.respond([], UserTurn("b")))) == ["Hi there."]
