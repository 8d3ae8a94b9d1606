"""A simulated debtor on a simulated phone: hears the agent through speech recognition,
answers through speech synthesis, all over the carrier protocol.

`run_audio_simulation` plays a scenario's debtor (`evaluation.debtor.Debtor`, scripted or
LLM), `run_simulated_call` a regex persona: each creates the call through the server's API,
dials its media WebSocket, plays the debtor until someone hangs up, then reads the stored
call back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np

from ai.llm_text import LLMSettings
from ai.protocols import STT, TTS
from ai.types import AudioIn, AudioSpec, SpeechStarted, UtteranceEnd
from ai.vocabulary import OUTCOME_COLUMNS
from evaluation.debtor import DEFAULT_STARTED_AT, Debtor, make_debtor
from evaluation.models import Personality, RecordedAction, Scenario, SimulatedCall, SimulatedTurn
from evaluation.personas import Persona, PersonaDebtor, load_persona
from evaluation.phone import SimulatedPhone
from evaluation.text_call import simulation_context
from media.codec import FRAME_MS, AudioFormat, decode
from media.tts_audio import synthesize_for_carrier

Printer = Callable[[str, str], None]
WORDS_PER_MINUTE = 160  # the agent's assumed speaking rate, for the persona's interruptions
AUDIBLE = 300  # peak PCM16 level of agent audio that is speech, not the line's silence
TURN_END_S = 1.5  # agent silence after which the debtor takes its turn


@dataclass
class SimulationResult:
    call_id: str
    persona: str
    carrier: str
    outcome: str | None
    promise_to_pay: dict[str, Any] | None
    opt_out: bool
    turns: list[dict[str, Any]]
    latencies_ms: list[float]
    barge_ins: int
    status: str
    failure_reason: str | None
    heard: list[tuple[str, str]] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)
    wav: str | None = None
    phone: dict[str, Any] = field(default_factory=dict)
    outcome_fields: dict[str, Any] = field(default_factory=dict)
    actions: list[RecordedAction] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "persona": self.persona,
            "carrier": self.carrier,
            "mode": "audio",
            "status": self.status,
            "failure_reason": self.failure_reason,
            "outcome": self.outcome,
            "promise_to_pay": self.promise_to_pay,
            "opt_out": self.opt_out,
            "turns": self.turns,
            "latencies_ms": self.latencies_ms,
            "barge_ins": self.barge_ins,
            "stages": self.stages,
            "wav": self.wav,
        }


def http_base(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme or "http")
    return f"{scheme}://{parts.netloc}"


def ws_base(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme or "ws")
    return f"{scheme}://{parts.netloc}"


class DebtorVoice:
    """The debtor's ears (STT over played agent audio) and mouth (TTS into the phone)."""

    def __init__(self, phone: SimulatedPhone, debtor: Debtor, stt: STT, tts: TTS,
                 printer: Printer | None) -> None:
        self.phone = phone
        self.debtor = debtor
        self.stt = stt
        self.tts = tts
        self.printer = printer
        self.heard: list[tuple[str, str]] = []
        self.loop = asyncio.get_running_loop()
        self._ears: Any = None
        self._queue: asyncio.Queue[tuple[np.ndarray, float]] = asyncio.Queue()
        self._agent_speech_t: float | None = None
        self._interrupted_this_utterance = False
        self.latencies_ms: list[float] = []
        self._awaiting_reply_since: float | None = None
        self._speaking_task: asyncio.Task[None] | None = None
        self._agent_audio_t = 0.0  # when audible agent audio last played
        self._unanswered: list[str] = []  # what the agent said since the debtor last spoke

    async def start(self) -> None:
        spec = AudioSpec("pcm16", self.phone.fmt.rate)
        self._ears = await self.stt.open_stream(spec, endpointing_ms=900)
        self._tasks = [
            asyncio.ensure_future(self._feed_ears()),
            asyncio.ensure_future(self._listen()),
            asyncio.ensure_future(self._answer_at_turn_end()),
        ]

    def on_played(self, pcm: np.ndarray, t: float) -> None:
        if np.abs(pcm).max() > AUDIBLE:
            self._agent_audio_t = t
            if self._awaiting_reply_since is not None:
                self.latencies_ms.append(round((t - self._awaiting_reply_since) * 1000, 1))
                self._awaiting_reply_since = None
        self._queue.put_nowait((pcm, t))

    async def _feed_ears(self) -> None:
        spec = AudioSpec("pcm16", self.phone.fmt.rate)
        while True:
            pcm, t = await self._queue.get()
            await self._ears.send(AudioIn(pcm.tobytes(), spec, pcm, t))
            self._maybe_interrupt(t)

    def _maybe_interrupt(self, t: float) -> None:
        """Barge in on agent speech that runs on, as the persona says (`interruption`).

        The words are not known until the agent stops (the ears transcribe utterances), so
        the persona judges what it has heard so far: the elapsed speech, as words at the
        speaking rate it assumes."""
        if self._agent_speech_t is None or self._interrupted_this_utterance:
            return
        if self.phone.speaking or len(self.heard) < 2:
            return
        elapsed_ms = (t - self._agent_speech_t) * 1000
        words = int(elapsed_ms * WORDS_PER_MINUTE / 60_000)
        if not words:
            return
        line = self.debtor.interruption(" ".join(["word"] * words), WORDS_PER_MINUTE)
        if line:
            self._interrupted_this_utterance = True
            self.say(line, interrupting=True)

    async def _listen(self) -> None:
        async for ev in self._ears.events():
            if isinstance(ev, SpeechStarted):
                self._agent_speech_t = ev.t
                self._interrupted_this_utterance = False
            elif isinstance(ev, UtteranceEnd):
                self._agent_speech_t = None
                text = ev.text.strip()
                if not text:
                    continue
                self.heard.append(("agent", text))
                if self.printer:
                    self.printer("agent", text)
                self._unanswered.append(text)

    async def _answer_at_turn_end(self) -> None:
        """Answer what the agent said once it has stopped talking, as text mode does: the
        ears end an utterance at each pause, and a slow TTS leaves pauses between the
        sentences of one turn."""
        while True:
            await asyncio.sleep(FRAME_MS / 1000)
            if not self._unanswered or self.phone.speaking:
                continue
            if self.loop.time() - self._agent_audio_t < TURN_END_S:
                continue
            text, self._unanswered = " ".join(self._unanswered), []
            reply = await self.debtor.reply(text)
            if reply:
                self.say(reply)

    def say(self, text: str, interrupting: bool = False) -> None:
        self.heard.append(("debtor", text))
        if self.printer:
            self.printer("debtor" + (" (interrupting)" if interrupting else ""), text)
        self._speaking_task = asyncio.ensure_future(self._speak(text))

    async def _speak(self, text: str) -> None:
        fmt = self.phone.fmt
        parts = [decode(data, fmt) async for data in synthesize_for_carrier(self.tts, text, fmt)]
        if parts:
            self.phone.speak(np.concatenate(parts))
            # latency clock starts when the last frame of this speech has been sent
            while self.phone.speaking:
                await asyncio.sleep(FRAME_MS / 1000)
            self._awaiting_reply_since = self.phone.last_caller_speech_t

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._ears is not None:
            with contextlib.suppress(Exception):
                await self._ears.close()


async def run_simulated_call(
    url: str,
    persona_name: str,
    stt: STT,
    tts: TTS,
    carrier: str = "twilio",
    exotel_rate: int = 8000,
    printer: Printer | None = None,
    wav: Path | None = None,
    max_seconds: float = 240.0,
    api_key: str | None = None,
) -> SimulationResult:
    """A regex persona's call over the carrier protocol."""
    persona: Persona = load_persona(persona_name)
    return await _call(url, PersonaDebtor(persona), persona_name, persona.context(), persona.phone,
                       stt, tts, carrier, exotel_rate, printer, wav, max_seconds, api_key)


async def _call(
    url: str, debtor: Debtor, name: str, context: dict[str, Any], to: str, stt: STT, tts: TTS,
    carrier: str, exotel_rate: int, printer: Printer | None, wav: Path | None,
    max_seconds: float, api_key: str | None,
) -> SimulationResult:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(base_url=http_base(url), headers=headers, timeout=30) as api:
        resp = await api.post("/api/calls", json={"carrier": carrier, "context": context, "to": to})
        resp.raise_for_status()
        created = resp.json()
        call_id, token = created["call_id"], created["token"]
        media_url = f"{ws_base(url)}/media/{carrier}"
        if carrier == "exotel":
            fmt = AudioFormat("pcm16", exotel_rate)
            media_url += f"?sample-rate={exotel_rate}"
        else:
            fmt = AudioFormat("mulaw", 8000)
        phone = SimulatedPhone(media_url, carrier, call_id, token, fmt, record=wav is not None)
        voice = DebtorVoice(phone, debtor, stt, tts, printer)
        phone.on_played = voice.on_played
        await voice.start()
        await phone.connect()
        opening = debtor.opening()
        if opening:
            voice.say(opening)
        deadline = time.monotonic() + max_seconds
        try:
            while not phone.closed.is_set():
                if time.monotonic() > deadline:
                    await phone.hangup()
                    break
                if debtor.hung_up and not phone.speaking:
                    await asyncio.sleep(0.5)
                    await phone.hangup()
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(phone.closed.wait(), 0.2)
        finally:
            await phone.close()
            await voice.close()
        detail: dict[str, Any] = {}
        for _ in range(50):  # the server persists the end of the call asynchronously
            detail = (await api.get(f"/api/calls/{call_id}")).json()
            if detail["call"]["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
    if wav is not None:
        phone.write_wav(wav)
    outcome = detail.get("outcome") or {}
    ptp = None
    if outcome.get("ptp_amount") is not None:
        ptp = {"amount": outcome["ptp_amount"], "date": outcome.get("ptp_date"),
               "plan": outcome.get("ptp_plan")}
    turns = [
        {k: t[k] for k in ("speaker", "text", "start_ms", "end_ms", "interrupted")}
        | {"voice_to_voice_ms": t.get("voice_to_voice_ms")}
        for t in detail.get("turns", [])
    ]
    events = detail.get("events", [])
    barge_ins = sum(1 for e in events if e["kind"] == "barge_in")
    stages = [e["data"]["stage"] for e in events if e["kind"] == "stage"]
    return SimulationResult(
        call_id=call_id,
        persona=name,
        carrier=carrier,
        outcome=outcome.get("outcome"),
        promise_to_pay=ptp,
        opt_out=bool(outcome.get("opt_out")),
        turns=turns,
        latencies_ms=voice.latencies_ms,
        barge_ins=barge_ins,
        status=detail["call"]["status"],
        failure_reason=detail["call"].get("failure_reason"),
        heard=voice.heard,
        stages=stages,
        wav=str(wav) if wav else None,
        phone={"close_code": phone.close_code, "clears": phone.stats.clears,
               "bad_chunks": phone.stats.bad_chunks},
        outcome_fields={k: v for k, v in outcome.items() if k in OUTCOME_COLUMNS},
        actions=[RecordedAction(kind=e["kind"].removeprefix("action."), data=e.get("data") or {},
                                turn=sum(1 for t in turns if (t["end_ms"] or 0) <= e["t_ms"]))
                 for e in events if e["kind"].startswith("action.")],
        seconds=max((t["end_ms"] or 0 for t in turns), default=0) / 1000,
    )


async def run_audio_simulation(
    server_url: str,
    scenario: Scenario,
    personality: Personality,
    *,
    seed: int,
    stt: STT,
    tts: TTS,
    carrier: str = "twilio",
    exotel_rate: int = 8000,
    llm: LLMSettings | None = None,
    started_at: dt.datetime | None = None,
    printer: Printer | None = None,
    wav: Path | None = None,
    max_seconds: float = 240.0,
    api_key: str | None = None,
) -> SimulatedCall:
    """One scenario's call in audio mode: its debtor's speech through `tts`, the carrier
    protocol over a real WebSocket to the server at `server_url`, the agent heard through
    `stt`; the call as the server stored it."""
    started_at = started_at or DEFAULT_STARTED_AT
    debtor = make_debtor(scenario, personality, seed=seed, llm=llm, started_at=started_at)
    context = simulation_context(scenario, started_at)
    try:
        r = await _call(server_url, debtor, scenario.name, context, scenario.backstory.phone, stt, tts,
                        carrier, exotel_rate, printer, wav, max_seconds, api_key)
    finally:
        close = getattr(debtor, "close", None)
        if close is not None:
            await close()
    return SimulatedCall(
        call_id=r.call_id, mode="audio", scenario=scenario.name, outcome=r.outcome,
        outcome_fields=r.outcome_fields, turns=[SimulatedTurn.model_validate(t) for t in r.turns],
        actions=r.actions, stages=r.stages, barge_ins=r.barge_ins, seconds=r.seconds,
        started_at=started_at, debtor_hung_up=debtor.hung_up, status=r.status,
        failure_reason=r.failure_reason,
    )
