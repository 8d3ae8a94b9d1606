"""A whole call through the three cloud providers, each one emulated on 127.0.0.1 and
driven by its real SDK inside the running server: Deepgram hears the debtor, OpenAI
decides (and records the promise to pay through tool calls), ElevenLabs speaks. The phone
is a simulated Twilio leg on a real WebSocket; its "speech" is tone bursts, which the
Deepgram emulator's energy detector turns into the next line of the debtor's script.

Then the same call under each fault: the Deepgram socket dropped mid-utterance, OpenAI
answering 429 then 500, ElevenLabs slow to its first byte, and ElevenLabs answering with
something that is not audio. Each call must still end with every caller turn recorded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from ai.playbook import DEFAULT_PLAYBOOK
from dialkit.config import Settings
from dialkit.providers import ProviderConfigError, Providers, build_providers
from dialkit.server import start_server
from emulators.deepgram import DeepgramEmulator, running_deepgram
from emulators.elevenlabs import ElevenLabsEmulator, ElevenLabsFault, running_elevenlabs
from emulators.openai_api import OpenAIEmulator, OpenAIFault, Reply, ToolCallSpec, running_openai
from evaluation.personas import load_persona
from evaluation.phone import SimulatedPhone
from media.codec import AudioFormat
from tests.carrier_client import call_detail

PERSONA = load_persona("cooperative")
# What the cooperative persona answers to the playbook's questions, in order.
PLAYBOOK_LINES = [
    "Yes, this is John speaking.",
    "It's 1984.",
    "Yes, I can pay the full amount.",
    "Next Friday.",
    "Yes, that's correct.",
]
LLM_LINES = PLAYBOOK_LINES[:4]  # the LLM agent below records the promise without a read-back
MULAW = AudioFormat("mulaw", 8000)


def _next_friday(today: dt.date) -> dt.date:
    return today + dt.timedelta(days=(4 - today.weekday()) % 7 or 7)


PTP_DATE = _next_friday(dt.date.today())
GREETING = "Hello, this is Alex calling from Acme Services. May I please speak with John Smith?"
LLM_REPLIES = {
    LLM_LINES[0]: Reply("Thank you. For your security, could you tell me your year of birth?"),
    LLM_LINES[1]: Reply(
        "Thank you, John. This is an attempt to collect a debt by a debt collector. "
        "Are you able to pay the full balance of 1,250 dollars?"
    ),
    LLM_LINES[2]: Reply("Great. On what date will you make that payment?"),
    LLM_LINES[3]: Reply(
        "Thank you, John. I have recorded your payment of 1,250 dollars. Goodbye.",
        [
            ToolCallSpec("promise_to_pay", {"amount": 1250, "date": PTP_DATE.isoformat(),
                                             "plan": "full"}),
            ToolCallSpec("end_call", {"outcome": "promise_to_pay"}),
        ],
    ),
}


def collection_agent(messages: list[dict[str, Any]]) -> Reply:
    """The emulated model: answers the debtor's last words like a collection agent would."""
    said = [m["content"] for m in messages if m.get("role") == "user"]
    if not said:
        return Reply(GREETING)
    return LLM_REPLIES.get(said[-1].strip(), Reply("Sorry, could you repeat that?"))


# ---- fixtures ----------------------------------------------------------------------------


@dataclass
class Cloud:
    deepgram: DeepgramEmulator
    openai: OpenAIEmulator
    elevenlabs: ElevenLabsEmulator
    http: str
    ws: str
    providers: Providers

    def reset(self, script: list[str]) -> None:
        self.deepgram.script.clear()
        self.deepgram.add_script(*script)
        self.deepgram.faults.drop_after_audio_s.clear()
        self.openai.faults.clear()
        self.elevenlabs.faults.clear()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def cloud(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cloud]:
    playbook = tmp_path_factory.mktemp("playbook") / "fast.yaml"
    text = DEFAULT_PLAYBOOK.read_text(encoding="utf-8")
    assert "endpointing_ms: 700" in text
    playbook.write_text(text.replace("endpointing_ms: 700", "endpointing_ms: 300"))
    async with (
        running_deepgram(api_key="dg-key") as dg,
        running_openai(api_key="oa-key", reply=collection_agent) as oa,
        running_elevenlabs(api_key="el-key", seconds_per_char=0.01) as el,
    ):
        settings = base_settings.model_copy(
            update={
                "stt": "deepgram",
                "tts": "elevenlabs",
                "policy": "openai",
                "playbook": playbook,
                "deepgram_api_key": SecretStr("dg-key"),
                "deepgram_url": dg.url,
                "openai_api_key": SecretStr("oa-key"),
                "openai_base_url": oa.base_url,
                "elevenlabs_api_key": SecretStr("el-key"),
                "elevenlabs_base_url": el.base_url,
                "tts_first_byte_timeout_ms": 600,
            }
        )
        providers = await build_providers(settings, warmup=False)
        runner, port = await start_server(settings, providers, port=0)
        try:
            yield Cloud(dg, oa, el, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", providers)
        finally:
            await runner.cleanup()


# ---- the simulated debtor ----------------------------------------------------------------


def burst(seconds: float) -> np.ndarray:
    """Caller "speech": a loud 220 Hz tone, whole 20 ms frames long."""
    n = round(seconds / 0.02) * 160
    t = np.arange(n) / 8000
    return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


async def agent_finished(phone: SimulatedPhone, seen: int, quiet_s: float = 0.4,
                         limit_s: float = 20.0) -> None:
    """Wait for agent audio that started after `seen` starts, then `quiet_s` of silence."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    quiet_since: float | None = None
    while loop.time() < deadline and not phone.closed.is_set():
        now = loop.time()
        if len(phone.agent_audio_started) > seen and not phone.agent_playing():
            quiet_since = quiet_since or now
            if now - quiet_since >= quiet_s:
                return
        else:
            quiet_since = None
        await asyncio.sleep(0.02)
    raise AssertionError("the agent did not speak (and finish) in time")


async def run_call(cloud: Cloud, lines: list[str], context: dict[str, Any] | None = None,
                   first_line_at_s: float | None = None, agent_hangs_up: bool = True,
                   ) -> dict[str, Any]:
    """Dial, answer each agent turn with the next line (a burst), wait for the agent to
    hang up (or hang up after its next turn); returns the stored call."""
    ctx = {**PERSONA.context(), **(context or {})}
    async with httpx.AsyncClient(base_url=cloud.http) as api:
        resp = await api.post("/api/calls", json={"carrier": "twilio", "context": ctx})
        assert resp.status_code == 201, resp.text
        created = resp.json()
    phone = SimulatedPhone(f"{cloud.ws}/media/twilio", "twilio", created["call_id"],
                           created["token"], MULAW)
    await phone.connect()
    try:
        for i, line in enumerate(lines):
            await agent_finished(phone, len(phone.agent_audio_started) if i else 0)
            if i == 0 and first_line_at_s is not None:
                while phone.stats.frames_sent < first_line_at_s / 0.02:
                    await asyncio.sleep(0.005)
            phone.speak(burst(0.6 + 0.01 * len(line)))
        if agent_hangs_up:
            await asyncio.wait_for(phone.closed.wait(), 25)
        else:
            await agent_finished(phone, len(phone.agent_audio_started))
            await phone.hangup()
    finally:
        await phone.close()
    return await call_detail(cloud.http, created["call_id"])


def turns(detail: dict[str, Any], speaker: str) -> list[dict[str, Any]]:
    return [t for t in detail["turns"] if t["speaker"] == speaker]


def squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


async def scrape(http: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(base_url=http) as client:
        text = (await client.get("/metrics")).text
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def assert_complete(detail: dict[str, Any], lines: list[str]) -> None:
    assert detail["call"]["status"] == "completed", detail["call"]
    assert [t["text"] for t in turns(detail, "caller")] == lines
    assert detail["outcome"]["ptp_amount"] == 1250.0


# ---- configuration -----------------------------------------------------------------------


async def test_cloud_choice_without_key_is_a_startup_error(base_settings: Settings) -> None:
    for update, env in (
        ({"stt": "deepgram"}, "DEEPGRAM_API_KEY"),
        ({"tts": "elevenlabs"}, "ELEVENLABS_API_KEY"),
        ({"policy": "openai"}, "OPENAI_API_KEY"),
    ):
        settings = base_settings.model_copy(update=update)
        with pytest.raises(ProviderConfigError, match=env):
            await build_providers(settings, warmup=False)


async def test_settings_read_cloud_choices_and_keys_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DIALKIT_STT", "deepgram")
    monkeypatch.setenv("DIALKIT_TTS", "elevenlabs")
    monkeypatch.setenv("DIALKIT_POLICY", "openai")
    monkeypatch.setenv("DEEPGRAM_API_KEY", "k1")
    monkeypatch.setenv("OPENAI_API_KEY", "k2")
    monkeypatch.setenv("ELEVENLABS_API_KEY", "k3")
    monkeypatch.setenv("DIALKIT_DEEPGRAM_URL", "ws://127.0.0.1:1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:2/v1")
    monkeypatch.setenv("DIALKIT_ELEVENLABS_BASE_URL", "http://127.0.0.1:3")
    s = Settings()
    assert (s.stt, s.tts, s.policy) == ("deepgram", "elevenlabs", "openai")
    assert s.deepgram_api_key is not None and s.deepgram_api_key.get_secret_value() == "k1"
    assert s.openai_api_key is not None and s.openai_api_key.get_secret_value() == "k2"
    assert s.elevenlabs_api_key is not None and s.elevenlabs_api_key.get_secret_value() == "k3"
    assert (s.deepgram_url, s.openai_base_url, s.elevenlabs_base_url) == (
        "ws://127.0.0.1:1", "http://127.0.0.1:2/v1", "http://127.0.0.1:3"
    )
    assert "k1" not in repr(s)


async def test_health_shows_providers_and_fallbacks(cloud: Cloud) -> None:
    async with httpx.AsyncClient(base_url=cloud.http) as client:
        body = (await client.get("/health")).json()
    p = body["providers"]
    assert (p["stt"], p["tts"], p["policy"]) == ("deepgram+whisper", "elevenlabs+piper", "openai")
    assert p["chains"] == {
        "stt": ["deepgram", "whisper"],
        "tts": ["elevenlabs", "piper"],
        "policy": ["openai", "playbook"],
    }
    assert "tone" in p["selectable"]["tts"] and "playbook" in p["selectable"]["policy"]
    with pytest.raises(ValueError, match="not available"):
        cloud.providers.check_context({"providers": {"tts": "polly"}})


# ---- the calls ---------------------------------------------------------------------------


@pytest.mark.slow
async def test_call_through_all_three_cloud_providers(cloud: Cloud) -> None:
    cloud.reset(LLM_LINES)
    before = await scrape(cloud.http)
    detail = await run_call(cloud, LLM_LINES)
    assert_complete(detail, LLM_LINES)
    assert detail["outcome"]["ptp_date"] == PTP_DATE.isoformat()
    assert detail["outcome"]["outcome"] == "promise_to_pay"
    agent = [squash(t["text"]) for t in turns(detail, "agent")]
    assert agent == [GREETING] + [squash(LLM_REPLIES[line].text) for line in LLM_LINES]
    # every provider was really used, in the carrier's own format
    assert len(cloud.deepgram.connections) >= 1
    assert cloud.deepgram.connections[-1].params["encoding"] == "mulaw"
    assert cloud.elevenlabs.requests[-1].output_format == "ulaw_8000"
    assert "Acme" in cloud.openai.requests[0]["messages"][0]["content"]  # playbook prompt
    # per-turn latencies stored with the turns
    for t in turns(detail, "caller"):
        assert t["stt_ms"] is not None and t["stt_ms"] >= 0
    replies = turns(detail, "agent")[1:]
    for t in replies:
        for key in ("stt_ms", "llm_ttft_ms", "tts_ttfb_ms", "voice_to_voice_ms"):
            assert t[key] is not None and t[key] > 0, (key, t)
    after = await scrape(cloud.http)
    for name in ("dialkit_llm_ttft_seconds_count", "dialkit_tts_ttfb_seconds_count",
                 "dialkit_stt_final_latency_seconds_count", "dialkit_voice_to_voice_seconds_count"):
        assert total(after, name) - total(before, name) >= len(replies), name
    assert total(after, "dialkit_provider_fallbacks_total") == total(
        before, "dialkit_provider_fallbacks_total"
    )


@pytest.mark.slow
async def test_call_may_choose_its_providers(cloud: Cloud) -> None:
    """A call whose context asks for the tone TTS: ElevenLabs is never asked."""
    lines = LLM_LINES[:1]  # the tone speaks slowly (60 ms a character): keep it short
    cloud.reset(lines)
    asked = len(cloud.elevenlabs.requests)
    detail = await run_call(cloud, lines, context={"providers": {"tts": "tone"}},
                            agent_hangs_up=False)
    assert detail["call"]["status"] == "completed", detail["call"]
    assert [t["text"] for t in turns(detail, "caller")] == lines
    assert len(turns(detail, "agent")) == 2
    assert len(cloud.elevenlabs.requests) == asked


@pytest.mark.slow
async def test_deepgram_dropped_mid_utterance(cloud: Cloud) -> None:
    cloud.reset(LLM_LINES)
    # The first line starts 3.0 s into the call's audio and lasts 0.87 s; cut it at 3.3 s.
    cloud.deepgram.faults.drop_after_audio_s.append(3.3)
    before = await scrape(cloud.http)
    sockets = len(cloud.deepgram.connections)
    detail = await run_call(cloud, LLM_LINES, first_line_at_s=3.0)
    assert_complete(detail, LLM_LINES)
    assert cloud.deepgram.connections[sockets].dropped
    assert len(cloud.deepgram.connections) - sockets >= 2  # reconnected
    after = await scrape(cloud.http)
    assert total(after, "dialkit_provider_errors_total", role="stt", provider="deepgram") > total(
        before, "dialkit_provider_errors_total", role="stt", provider="deepgram"
    )


@pytest.mark.slow
async def test_openai_429_then_500_falls_back_to_the_playbook(cloud: Cloud) -> None:
    cloud.reset(PLAYBOOK_LINES)
    cloud.openai.faults.extend([OpenAIFault("status", 429), OpenAIFault("status", 500)])
    before = await scrape(cloud.http)
    asked = len(cloud.openai.requests)
    detail = await run_call(cloud, PLAYBOOK_LINES)
    assert_complete(detail, PLAYBOOK_LINES)
    assert len(cloud.openai.requests) - asked == 2  # the SDK retried the 429 once
    agent = " ".join(t["text"] for t in turns(detail, "agent"))
    assert "attempt to collect a debt" in agent  # the scripted playbook carried the call
    after = await scrape(cloud.http)
    labels = {"role": "llm", "from_provider": "openai", "to_provider": "playbook"}
    assert total(after, "dialkit_provider_fallbacks_total", **labels) == total(
        before, "dialkit_provider_fallbacks_total", **labels
    ) + 1


@pytest.mark.slow
@pytest.mark.parametrize("fault", [ElevenLabsFault("slow", delay_s=3.0),
                                   ElevenLabsFault("malformed")], ids=["slow", "malformed"])
async def test_elevenlabs_fault_falls_back_to_piper(cloud: Cloud, fault: ElevenLabsFault) -> None:
    piper = cloud.providers.catalog.tts["piper"] if cloud.providers.catalog else None
    assert piper is not None
    await asyncio.to_thread(piper.warmup)  # type: ignore[attr-defined]
    cloud.reset(LLM_LINES)
    cloud.elevenlabs.faults.append(fault)  # the greeting's first sentence
    before = await scrape(cloud.http)
    detail = await run_call(cloud, LLM_LINES)
    assert_complete(detail, LLM_LINES)
    greeting = turns(detail, "agent")[0]
    assert squash(greeting["text"]) == GREETING  # said in full, by the fallback
    after = await scrape(cloud.http)
    labels = {"role": "tts", "from_provider": "elevenlabs", "to_provider": "piper"}
    assert total(after, "dialkit_provider_fallbacks_total", **labels) == total(
        before, "dialkit_provider_fallbacks_total", **labels
    ) + 1

