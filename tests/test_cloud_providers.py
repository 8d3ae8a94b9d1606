"""Cloud providers through their real SDKs over real sockets to the local vendor emulators:
Deepgram live STT, OpenAI chat-completions policy (streaming, tool calls), ElevenLabs TTS."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from prometheus_client import REGISTRY

from ai.events import CallStarted, DtmfEntry, MachineDetected, Silence, UserTurn
from ai.llm_openai import ChatCompletionsPolicyFactory, OpenAIPolicy
from ai.playbook import load_playbook
from ai.protocols import STTStream
from ai.stt_deepgram import DeepgramSTT, STTStreamFailed
from ai.tts_elevenlabs import ElevenLabsTTS, output_format_for
from ai.types import (
    Action,
    AudioChunk,
    AudioIn,
    AudioSpec,
    Message,
    PolicyOutput,
    Say,
    SpeechStarted,
    STTEvent,
    Transcript,
    UtteranceEnd,
)
from emulators.deepgram import running_deepgram
from emulators.elevenlabs import encode_mulaw, running_elevenlabs, tone
from emulators.openai_api import Reply, ToolCallSpec, running_openai
from evaluation.personas import load_persona

MULAW_8K = AudioSpec("mulaw", 8000)
PCM_16K = AudioSpec("pcm16", 16000)
DG_KEY = "test-deepgram-key"
OA_KEY = "test-openai-key"
EL_KEY = "test-elevenlabs-key"


# ---- helpers (also used by test_resilience) -------------------------------------------


def encode(pcm: np.ndarray, spec: AudioSpec) -> bytes:
    return encode_mulaw(pcm) if spec.encoding == "mulaw" else pcm.astype("<i2").tobytes()


def speech(seconds: float, rate: int) -> np.ndarray:
    return tone(seconds, rate, freq=220.0, amplitude=8000)


def silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


async def feed(stream: STTStream, pcm: np.ndarray, spec: AudioSpec, pace: float = 0.25) -> None:
    """Send 20 ms chunks, at `pace` × real time (carriers send in real time; tests go faster)."""
    data = encode(pcm, spec)
    width = 1 if spec.encoding == "mulaw" else 2
    step = spec.rate * width // 50
    loop = asyncio.get_running_loop()
    for i in range(0, len(data), step):
        raw = data[i : i + step]
        await stream.send(AudioIn(raw=raw, spec=spec, pcm=None, t=loop.time()))
        await asyncio.sleep(0.02 * pace)


class Collector:
    """Reads a stream's events in the background."""

    def __init__(self, stream: STTStream) -> None:
        self.events: list[STTEvent] = []
        self.error: BaseException | None = None
        self._task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: STTStream) -> None:
        try:
            async for ev in stream.events():
                self.events.append(ev)
        except Exception as exc:
            self.error = exc

    def ends(self) -> list[UtteranceEnd]:
        return [e for e in self.events if isinstance(e, UtteranceEnd)]

    async def wait_for(self, pred: Any, limit_s: float = 10.0) -> None:
        async def poll() -> None:
            while not pred():
                await asyncio.sleep(0.01)

        await asyncio.wait_for(poll(), limit_s)

    async def finish(self, limit_s: float = 10.0) -> None:
        await asyncio.wait_for(self._task, limit_s)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def collect(gen: AsyncIterator[PolicyOutput]) -> list[PolicyOutput]:
    return [item async for item in gen]


def says(items: list[PolicyOutput]) -> list[str]:
    return [i.text for i in items if isinstance(i, Say)]


def actions(items: list[PolicyOutput]) -> list[Action]:
    return [i for i in items if isinstance(i, Action)]


# ---- Deepgram -------------------------------------------------------------------------


async def test_deepgram_mulaw_utterance_maps_events_and_sends_raw_audio() -> None:
    async with running_deepgram(script=["I can pay fifty dollars on Friday."]) as emu:
        stt = DeepgramSTT(api_key=DG_KEY, base_url=emu.url)
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=300)
        got = Collector(stream)
        audio = np.concatenate([silence(0.4, 8000), speech(1.2, 8000), silence(0.8, 8000)])
        await feed(stream, audio, MULAW_8K)
        await got.wait_for(lambda: got.ends())
        await stream.close()
        await got.finish()

    assert got.error is None
    kinds = [type(e) for e in got.events]
    assert kinds[0] is SpeechStarted
    assert any(isinstance(e, Transcript) and not e.is_final for e in got.events)
    finals = [e for e in got.events if isinstance(e, Transcript) and e.is_final]
    assert [f.text for f in finals] == ["I can pay fifty dollars on Friday."]
    (end,) = got.ends()
    assert end.text == "I can pay fifty dollars on Friday."
    assert end.speech_end_t <= end.t
    conn = emu.connections[0]
    assert conn.authorization == "Token"
    assert conn.params["encoding"] == "mulaw" and conn.params["sample_rate"] == "8000"
    assert conn.params["endpointing"] == "300"
    assert conn.params["interim_results"] == "true" and conn.params["vad_events"] == "true"
    assert conn.params["model"] == "nova-2-phonecall"
    assert conn.audio_bytes == len(audio)  # µ-law went through untouched: one byte per sample
    assert conn.control[-1] == "CloseStream"


async def test_deepgram_linear16_two_turns_in_order() -> None:
    async with running_deepgram(script=["Hello?", "Yes, this is Maria."]) as emu:
        stt = DeepgramSTT(api_key=DG_KEY, base_url=emu.url)
        stream = await stt.open_stream(PCM_16K, endpointing_ms=200)
        got = Collector(stream)
        audio = np.concatenate(
            [speech(0.5, 16000), silence(0.6, 16000), speech(0.9, 16000), silence(0.6, 16000)]
        )
        await feed(stream, audio, PCM_16K)
        await got.wait_for(lambda: len(got.ends()) == 2)
        await stream.close()

    assert [e.text for e in got.ends()] == ["Hello?", "Yes, this is Maria."]
    assert emu.connections[0].params["encoding"] == "linear16"
    assert emu.connections[0].audio_bytes == len(audio) * 2


async def test_deepgram_keepalive_holds_the_socket_through_a_pause() -> None:
    async with running_deepgram(script=["Still here."], idle_timeout_s=0.6) as emu:
        stt = DeepgramSTT(api_key=DG_KEY, base_url=emu.url, keepalive_s=0.2)
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=200)
        got = Collector(stream)
        await feed(stream, silence(0.2, 8000), MULAW_8K)
        await asyncio.sleep(1.5)  # the carrier stopped sending audio
        await feed(stream, np.concatenate([speech(0.6, 8000), silence(0.5, 8000)]), MULAW_8K)
        await got.wait_for(lambda: got.ends())
        await stream.close()

    assert [e.text for e in got.ends()] == ["Still here."]
    assert len(emu.connections) == 1
    assert emu.connections[0].control.count("KeepAlive") >= 2


async def test_deepgram_without_keepalive_is_closed_by_the_server() -> None:
    """Control for the test above: the emulator really does close idle sockets."""
    async with running_deepgram(idle_timeout_s=0.4) as emu:
        stt = DeepgramSTT(api_key=DG_KEY, base_url=emu.url, keepalive_s=30, reconnect_attempts=0)
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=200)
        got = Collector(stream)
        await got.finish(limit_s=5)
        await stream.close()
    assert isinstance(got.error, STTStreamFailed)
    assert emu.connections[0].close_code == 1011


async def test_deepgram_wrong_key_fails_to_open() -> None:
    async with running_deepgram() as emu:
        stt = DeepgramSTT(api_key="wrong", base_url=emu.url)
        with pytest.raises(STTStreamFailed):
            await stt.open_stream(MULAW_8K, endpointing_ms=300)
    assert emu.rejected == [401]


async def test_deepgram_reconnects_after_a_drop_mid_utterance_and_keeps_the_words() -> None:
    async with running_deepgram(script=["My account number is one two three."]) as emu:
        emu.faults.drop_after_audio_s.append(1.0)  # 0.3 s silence + 0.7 s into the speech
        stt = DeepgramSTT(api_key=DG_KEY, base_url=emu.url, reconnect_base_delay_s=0.05)
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=300)
        got = Collector(stream)
        await feed(
            stream,
            np.concatenate([silence(0.3, 8000), speech(1.5, 8000), silence(0.6, 8000)]),
            MULAW_8K,
        )
        await got.wait_for(lambda: got.ends())
        await stream.close()

    assert got.error is None
    assert [e.text for e in got.ends()] == ["My account number is one two three."]
    assert len(emu.connections) == 2 and emu.connections[0].dropped
    # The second socket heard the whole utterance, from its first syllable.
    (segment,) = emu.connections[1].segments
    assert segment[1] - segment[0] == pytest.approx(1.5, abs=0.03)


async def test_deepgram_skips_malformed_frames_and_counts_them() -> None:
    before = metric(
        "dialkit_provider_errors_total", role="stt", provider="deepgram", kind="malformed"
    )
    async with running_deepgram(script=["Okay."]) as emu:
        emu.faults.malformed_frames = 2
        stt = DeepgramSTT(api_key=DG_KEY, base_url=emu.url)
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=200)
        got = Collector(stream)
        await feed(stream, np.concatenate([speech(0.5, 8000), silence(0.5, 8000)]), MULAW_8K)
        await got.wait_for(lambda: got.ends())
        await stream.close()
    assert [e.text for e in got.ends()] == ["Okay."]
    after = metric(
        "dialkit_provider_errors_total", role="stt", provider="deepgram", kind="malformed"
    )
    assert after - before == 2


async def test_deepgram_gives_up_when_reconnects_keep_failing() -> None:
    async with running_deepgram() as emu:
        emu.faults.drop_after_audio_s.append(0.2)
        stt = DeepgramSTT(
            api_key=DG_KEY, base_url=emu.url, reconnect_attempts=2, reconnect_base_delay_s=0.01
        )
        stream = await stt.open_stream(MULAW_8K, endpointing_ms=200)
        emu.faults.reject_statuses.extend([500, 500])
        got = Collector(stream)
        await feed(stream, silence(0.4, 8000), MULAW_8K)
        await got.finish()
        await stream.close()
    assert isinstance(got.error, STTStreamFailed)
    assert emu.rejected == [500, 500]


# ---- OpenAI ---------------------------------------------------------------------------


def _policy(emu: Any, **kwargs: Any) -> OpenAIPolicy:
    return OpenAIPolicy(
        api_key=OA_KEY,
        base_url=emu.base_url,
        model="gpt-4o-mini",
        system_prompt="You are Alex from Acme Recovery.",
        max_retries=0,
        **kwargs,
    )


async def test_openai_streams_clauses_as_say_items() -> None:
    text = (
        "Hi, this is Alex from Acme Recovery. This is an attempt to collect a debt, "
        "and any information obtained will be used for that purpose. Is this Maria?"
    )
    async with running_openai(reply=lambda messages: Reply(text)) as emu:
        out = await collect(_policy(emu).respond([], CallStarted()))

    pieces = says(out)
    assert len(pieces) >= 3
    assert " ".join(pieces) == text
    assert pieces[0] == "Hi, this is Alex from Acme Recovery."
    body = emu.requests[0]
    assert body["stream"] is True and body["model"] == "gpt-4o-mini"
    assert body["messages"][0] == {"role": "system", "content": "You are Alex from Acme Recovery."}
    assert "greeting" in body["messages"][-1]["content"]
    names = {t["function"]["name"] for t in body["tools"]}
    assert names == {
        "right_party_verified", "wrong_party", "promise_to_pay", "schedule_callback",
        "record_dispute", "hardship", "opt_out", "transfer", "end_call",
    }


async def test_openai_maps_history_and_events_to_messages() -> None:
    history = [
        Message("assistant", "Hello, is this Maria?"),
        Message("user", "Who is calling?"),
        Message("assistant", "This is Alex from Acme, I am calling about", interrupted=True),
    ]
    async with running_openai() as emu:
        policy = _policy(emu)
        await collect(policy.respond(history, DtmfEntry("1984", "#")))
        await collect(policy.respond(history, Silence(2)))
        await collect(policy.respond(history, MachineDetected("carrier")))
        await collect(policy.respond(history, UserTurn("What is this about?")))

    first = emu.requests[0]["messages"]
    assert first[1:4] == [
        {"role": "assistant", "content": "Hello, is this Maria?"},
        {"role": "user", "content": "Who is calling?"},
        {
            "role": "assistant",
            "content": "This is Alex from Acme, I am calling about [interrupted]",
        },
    ]
    assert first[-1] == {"role": "user", "content": "[keypad: 1984#]"}
    assert emu.requests[1]["messages"][-1]["role"] == "system"
    assert "#2" in emu.requests[1]["messages"][-1]["content"]
    assert "answering machine" in emu.requests[2]["messages"][-1]["content"]
    assert emu.requests[3]["messages"][-1] == {"role": "user", "content": "What is this about?"}


async def test_openai_valid_tool_call_becomes_an_action() -> None:
    date = (dt.date.today() + dt.timedelta(days=3)).isoformat()

    def reply(messages: list[dict[str, Any]]) -> Reply:
        return Reply(
            "Thank you, I have noted that.",
            [ToolCallSpec("promise_to_pay", {"amount": 125.5, "date": date, "plan": "custom"})],
        )

    async with running_openai(reply=reply) as emu:
        out = await collect(_policy(emu).respond([], UserTurn(f"I will pay 125.50 on {date}")))

    assert actions(out) == [
        Action(
            "promise_to_pay", {"amount": 125.5, "date": date, "plan": "custom", "instalments": None}
        )
    ]
    assert says(out) == ["Thank you, I have noted that."]
    assert len(emu.requests) == 1


async def test_openai_invalid_tool_call_is_reported_back_and_not_yielded() -> None:
    past = (dt.date.today() - dt.timedelta(days=2)).isoformat()
    future = (dt.date.today() + dt.timedelta(days=5)).isoformat()

    def reply(messages: list[dict[str, Any]]) -> Reply:
        if messages[-1]["role"] != "tool":
            return Reply("", [ToolCallSpec("promise_to_pay", {"amount": 80, "date": past, "plan": "custom"})])
        return Reply(
            "Sorry, let me correct that date.",
            [ToolCallSpec("promise_to_pay", {"amount": 80, "date": future, "plan": "custom"})],
        )

    async with running_openai(reply=reply) as emu:
        out = await collect(_policy(emu).respond([], UserTurn("I'll pay 80 dollars")))

    assert [a.data["date"] for a in actions(out)] == [future]
    assert len(emu.requests) == 2
    second = emu.requests[1]["messages"]
    call = second[-2]
    assert (
        call["role"] == "assistant"
        and call["tool_calls"][0]["function"]["name"] == "promise_to_pay"
    )
    result = second[-1]
    assert result["role"] == "tool" and result["tool_call_id"] == call["tool_calls"][0]["id"]
    assert "in the past" in result["content"]


async def test_openai_rejects_bad_arguments_for_each_tool() -> None:
    bad = [
        ToolCallSpec("promise_to_pay", {"amount": -5, "date": "2999-01-01"}),
        ToolCallSpec("record_dispute", {"reason": "too expensive"}),
        ToolCallSpec("opt_out", {"reason": "bored"}),
        ToolCallSpec("schedule_callback", {"at": "tomorrow-ish"}),
        ToolCallSpec("end_call", "{not json"),
    ]
    good = [ToolCallSpec("opt_out", {"reason": "attorney"})]

    def reply(messages: list[dict[str, Any]]) -> Reply:
        return Reply("", good if messages[-1]["role"] == "tool" else bad)

    async with running_openai(reply=reply) as emu:
        out = await collect(_policy(emu).respond([], UserTurn("Talk to my lawyer.")))

    assert actions(out) == [Action("opt_out", {"reason": "attorney"})]
    results = [m for m in emu.requests[1]["messages"] if m["role"] == "tool"]
    assert len(results) == len(bad)
    assert all(r["content"].startswith("error") for r in results)


async def test_openai_tool_rounds_are_bounded() -> None:
    def reply(messages: list[dict[str, Any]]) -> Reply:
        return Reply("", [ToolCallSpec("opt_out", {"reason": "nope"})])

    async with running_openai(reply=reply) as emu:
        out = await collect(_policy(emu, max_tool_rounds=2).respond([], UserTurn("stop")))
    assert out == []
    assert len(emu.requests) == 2


async def test_policy_factory_renders_the_prompt_per_call() -> None:
    playbook = load_playbook()
    base = load_persona("cooperative").context()
    async with running_openai() as emu:
        factory = ChatCompletionsPolicyFactory(
            playbook,
            system_prompt_renderer=lambda pb, ctx: f"{pb.agent_name} calls {ctx.debtor_name}",
            api_key=OA_KEY,
            base_url=emu.base_url,
            max_retries=0,
        )
        policy = factory({**base, "debtor_name": "Maria"})
        await collect(policy.respond([], CallStarted()))
        assert factory({**base, "debtor_name": "Ravi"}).client is policy.client
        await factory.aclose()
    assert policy.name == "openai"
    assert emu.requests[0]["messages"][0]["content"] == "Alex calls Maria"


# ---- ElevenLabs -----------------------------------------------------------------------


async def _synth(tts: ElevenLabsTTS, text: str, spec: AudioSpec) -> list[AudioChunk]:
    return [c async for c in tts.synthesize(text, spec)]


async def test_elevenlabs_ulaw_for_mulaw_carriers(elevenlabs_tts: Any) -> None:
    text = "Your balance is one hundred dollars."
    async with running_elevenlabs() as emu:
        tts = elevenlabs_tts(voice_id="voice123", base_url=emu.base_url)
        chunks = await _synth(tts, text, MULAW_8K)

    assert len(chunks) > 1
    assert {c.spec for c in chunks} == {AudioSpec("mulaw", 8000)}
    assert sum(len(c.data) for c in chunks) == int(len(text) * emu.seconds_per_char * 8000)
    (req,) = emu.requests
    assert (req.voice_id, req.output_format, req.model_id, req.text) == (
        "voice123",
        "ulaw_8000",
        "eleven_flash_v2_5",
        text,
    )
    assert req.streamed


@pytest.mark.parametrize(
    ("preferred", "fmt", "rate"),
    [
        (AudioSpec("pcm16", 8000), "pcm_8000", 8000),
        (AudioSpec("pcm16", 24000), "pcm_24000", 24000),
        (AudioSpec("pcm16", 11025), "pcm_16000", 16000),
    ],
)
async def test_elevenlabs_pcm_formats(preferred: AudioSpec, fmt: str, rate: int, elevenlabs_tts: Any) -> None:
    async with running_elevenlabs() as emu:
        tts = elevenlabs_tts(base_url=emu.base_url, optimize_streaming_latency=3)
        chunks = await _synth(tts, "Thank you.", preferred)
    assert output_format_for(preferred)[0] == fmt
    assert emu.requests[0].output_format == fmt
    assert emu.requests[0].optimize_streaming_latency == "3"
    assert {c.spec for c in chunks} == {AudioSpec("pcm16", rate)}
    assert all(len(c.data) % 2 == 0 for c in chunks)
    assert sum(len(c.data) for c in chunks) == 2 * int(len("Thank you.") * 0.06 * rate)


async def test_elevenlabs_wrong_key_raises(elevenlabs_tts: Any) -> None:
    from elevenlabs.core.api_error import ApiError

    async with running_elevenlabs() as emu:
        tts = elevenlabs_tts(api_key="nope", base_url=emu.base_url)
        with pytest.raises(ApiError) as info:
            await _synth(tts, "Hello.", MULAW_8K)
    assert info.value.status_code == 401
