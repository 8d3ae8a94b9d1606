"""The callee on an emulated carrier's media stream: who (or what) answers the phone.

The carrier emulators open the media WebSocket of an answered call with a
`evaluation.phone.SimulatedPhone` (the carrier's framing: 20 ms inbound media, outbound
audio played in real time, marks echoed, `clear` honoured) and put a `Line` on it:

- `QuietLine`: a light callee with no speech: silence, optional keypad digits, an optional
  hang-up after a while; for tests that need no speech models.
- `MachineLine`: an answering machine: a greeting (silence, or spoken when given a TTS), a
  beep, then it records until the caller hangs up or its message time runs out.
- `PersonaLine`: the simulated debtor of `evaluation` (a persona that hears the agent through
  STT and answers through TTS); it hangs up when the persona does.

`run_media` plays one call's stream to its end and says who ended it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Literal

import numpy as np
import websockets

from ai.protocols import STT, TTS
from evaluation.audio_call import DebtorVoice
from evaluation.personas import Persona, PersonaDebtor, load_persona
from evaluation.phone import SimulatedPhone
from media.codec import decode
from media.tts_audio import synthesize_for_carrier

log = logging.getLogger(__name__)

Ender = Literal["callee", "server", "carrier", "timeout", "unreachable"]


class Line:
    """The callee's side of one answered call. `attach` runs before the stream opens, `play`
    after; `play` returns when the callee hangs up (the default never does)."""

    async def attach(self, phone: SimulatedPhone) -> None:
        return None

    async def play(self, phone: SimulatedPhone) -> None:
        await asyncio.Event().wait()

    async def detach(self) -> None:
        return None


LineFactory = Callable[[], Line]
#: a line for an answered call: a factory, or the name of a persona to voice with `speech`
LineChoice = LineFactory | str
Speech = tuple[STT, TTS]


def make_line(choice: LineChoice, speech: Speech | None) -> Line:
    """A fresh line for one call: the factory's, or a persona voiced by `speech`."""
    if isinstance(choice, str):
        if speech is None:
            raise ValueError(
                f"the persona line {choice!r} needs speech (an STT and a TTS) on the emulator")
        return PersonaLine(load_persona(choice), *speech)
    return choice()


class QuietLine(Line):
    """Says nothing; presses `dtmf` after `dtmf_after_s`; hangs up after `hang_up_after_s`
    (None: waits for the other side)."""

    def __init__(
        self, dtmf: str = "", dtmf_after_s: float = 0.5, hang_up_after_s: float | None = None
    ) -> None:
        self.dtmf = dtmf
        self.dtmf_after_s = dtmf_after_s
        self.hang_up_after_s = hang_up_after_s

    async def play(self, phone: SimulatedPhone) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        if self.dtmf:
            await asyncio.sleep(self.dtmf_after_s)
            await phone.send_dtmf(self.dtmf)
        if self.hang_up_after_s is None:
            await super().play(phone)
            return
        await asyncio.sleep(max(0.0, t0 + self.hang_up_after_s - loop.time()))


def beep(rate: int, seconds: float = 0.4, hz: float = 1000.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


class MachineLine(Line):
    """An answering machine: `greeting_s` of greeting (spoken with `tts` when given, else
    silence), a beep, then recording until hung up or `max_message_s` passes."""

    GREETING = "Hi, you've reached my voicemail. Please leave a message after the tone."

    def __init__(
        self,
        greeting_s: float = 1.0,
        max_message_s: float = 30.0,
        tts: TTS | None = None,
        greeting: str = GREETING,
    ) -> None:
        self.greeting_s = greeting_s
        self.max_message_s = max_message_s
        self.tts = tts
        self.greeting = greeting

    async def play(self, phone: SimulatedPhone) -> None:
        if self.tts is not None:
            parts = [decode(d, phone.fmt)
                     async for d in synthesize_for_carrier(self.tts, self.greeting, phone.fmt)]
            if parts:
                phone.speak(np.concatenate(parts))
            while phone.speaking:
                await asyncio.sleep(0.02)
        else:
            await asyncio.sleep(self.greeting_s)
        phone.speak(beep(phone.fmt.rate))
        await asyncio.sleep(self.max_message_s)


class PersonaLine(Line):
    """A persona of `evaluation.personas` on the phone, with its ears (`stt`) and mouth
    (`tts`); it hangs up once the persona is done and has finished speaking."""

    def __init__(self, persona: Persona, stt: STT, tts: TTS) -> None:
        self.persona = persona
        self.debtor = PersonaDebtor(persona)
        self.stt = stt
        self.tts = tts
        self.voice: DebtorVoice | None = None

    async def attach(self, phone: SimulatedPhone) -> None:
        self.voice = DebtorVoice(phone, self.debtor, self.stt, self.tts, None)
        phone.on_played = self.voice.on_played
        await self.voice.start()

    async def play(self, phone: SimulatedPhone) -> None:
        while not (self.debtor.hung_up and not phone.speaking):
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # the last words reach the other side before the click

    async def detach(self) -> None:
        if self.voice is not None:
            await self.voice.close()

    @property
    def heard(self) -> list[tuple[str, str]]:
        return self.voice.heard if self.voice is not None else []


def persona_line(name: str, stt: STT, tts: TTS) -> LineFactory:
    """A factory of `PersonaLine`s for the packaged persona `name` (checked now)."""
    persona = load_persona(name)
    return lambda: PersonaLine(persona, stt, tts)


async def run_media(
    phone: SimulatedPhone,
    line: Line,
    carrier_ended: asyncio.Event,
    max_s: float,
    on_open: Callable[[], None] | None = None,
) -> Ender:
    """Open the stream, let `line` play until someone ends the call, close the stream.

    "server": our side closed the WebSocket; "carrier": the call was ended or redirected
    through the REST API (`carrier_ended`); "callee": the line hung up; "timeout": `max_s`
    passed; "unreachable": the stream URL refused the connection. The carrier (this side)
    sends `stop` before closing whenever the other side did not close first. `on_open` runs
    once the stream is open (`start` sent)."""
    try:
        return await _play_stream(phone, line, carrier_ended, max_s, on_open)
    finally:  # also when the emulator shuts down mid-call
        await line.detach()
        await phone.close()


async def _play_stream(
    phone: SimulatedPhone,
    line: Line,
    carrier_ended: asyncio.Event,
    max_s: float,
    on_open: Callable[[], None] | None,
) -> Ender:
    try:
        await line.attach(phone)
        await phone.connect()
    except (OSError, TimeoutError, websockets.WebSocketException) as exc:
        log.info("media stream of %s not opened: %s", phone.call_sid[-6:], type(exc).__name__)
        return "unreachable"
    if on_open is not None:
        on_open()
    tasks = {
        "callee": asyncio.ensure_future(line.play(phone)),
        "server": asyncio.ensure_future(phone.closed.wait()),
        "carrier": asyncio.ensure_future(carrier_ended.wait()),
    }
    try:
        done, _ = await asyncio.wait(
            tasks.values(), timeout=max_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks.values():
            task.cancel()
    ender: Ender = "timeout"
    for name in ("server", "carrier", "callee"):
        if tasks[name] in done:
            ender = name  # type: ignore[assignment]
            break
    for task in tasks.values():
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    player = tasks["callee"]
    if player in done and not player.cancelled() and player.exception() is not None:
        log.warning("line of %s failed: %r", phone.call_sid[-6:], player.exception())
    if ender != "server":
        await phone.hangup()
    return ender
