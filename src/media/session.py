"""One live call: carrier events in, the ai pipeline in the middle, paced audio out.

The session owns the call's tasks (STT events, the agent's current reply, the pacing
player, a watchdog for silence/DTMF/duration, and an ordered writer for persistence).
Whatever goes wrong, `run` ends with the call marked completed or failed with a reason,
the WebSocket closed with a code, and every turn recorded so far kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from ai import metrics as ai_metrics
from ai.engine import ConversationEngine
from ai.events import CallStarted, DtmfEntry, MachineDetected, PolicyEvent, Silence, UserTurn
from ai.protocols import STT, TTS, VAD, PolicyFactory, STTStream
from ai.types import (
    Action,
    AudioIn,
    AudioSpec,
    Message,
    PolicyOutput,
    Say,
    SpeechStarted,
    UtteranceEnd,
)
from media import metrics
from media.caller_voice import VoiceActivity
from media.codec import FRAME_MS, AudioFormat, decode
from media.events import (
    CLOSE_INTERNAL,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_UNSUPPORTED,
    Connected,
    Dtmf,
    Mark,
    Media,
    ProtocolError,
    Start,
    Stop,
)
from media.player import OutboundPlayer
from media.ports import CallInfo, CallRecorder, LiveRegistry, TurnRecord
from media.protocol import CarrierProtocol
from media.reply import AgentReply, Sentence, outcome_fields
from media.tts_audio import synthesize_for_carrier
from media.voicemail import carrier_verdict, is_machine_result, sounds_like_voicemail

log = structlog.get_logger("media.session")

#: said when the policy or speech synthesis fails before the agent said anything
RECOVERY_LINE = "Sorry, could you say that again?"

#: short pre-synthesised clips ("Hello?") in carrier format, by (TTS name, encoding, rate, text)
_FILLER_CLIPS: dict[tuple[str, str, int, str], bytes] = {}


async def _scripted(outputs: list[PolicyOutput]) -> AsyncIterator[PolicyOutput]:
    for out in outputs:
        yield out


@dataclass(slots=True)
class SessionConfig:
    kind: str = "collections"  # "collections" (policy-driven) or "echo"
    endpointing_ms: int = 700
    reprompt_after_ms: int = 7000
    max_call_seconds: int = 900
    barge_in: bool = True
    barge_in_min_speech_ms: int = 200
    barge_in_pause_ms: int = 100  # 0 or >= min speech: no pause stage
    greeting_deadline_ms: int = 2000
    dtmf_timeout_ms: int = 3000
    dtmf_max_digits: int = 8
    lead_frames: int = 3
    mark_grace_s: float = 2.0
    echo_delay_ms: int = 500
    inbound_idle_timeout_s: float = 10.0
    keep_pacing_errors: bool = False
    # greeting deadline: when no agent audio is out this long before the deadline, a cached
    # short clip is played so the callee hears the line is live (47 CFR 64.1200(a)(7))
    greeting_filler: str = "Hello?"
    greeting_filler_margin_ms: int = 500
    # answering-machine classifier: caller utterances starting this soon after `start`
    machine_window_ms: int = 10_000


@dataclass(slots=True)
class SessionServices:
    stt: STT
    tts: TTS
    policy_factory: PolicyFactory
    vad_factory: Callable[[], VAD]
    recorder: CallRecorder
    registry: LiveRegistry
    authenticate: Callable[[str, Mapping[str, str], Mapping[str, str]], None]
    config_for: Callable[[CallInfo], SessionConfig] = lambda info: SessionConfig()
    #: the STT and TTS one call uses, when calls may choose their own (else `stt`, `tts`)
    speech_for: Callable[[CallInfo], tuple[STT, TTS]] | None = None
    hangup: Callable[[str, str], Awaitable[str]] | None = None
    transfer: Callable[[str, str, str], Awaitable[None]] | None = None


class CallSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        protocol: CarrierProtocol,
        services: SessionServices,
        query: Mapping[str, str],
    ) -> None:
        self.ws = ws
        self.protocol = protocol
        self.svc = services
        self.query = query
        self.loop = asyncio.get_running_loop()
        self.log = log.bind(carrier=protocol.name)
        self.call_id: str | None = None
        self.info: CallInfo | None = None
        self.start: Start | None = None
        self.fmt: AudioFormat | None = None
        self.spec: AudioSpec | None = None
        self.cfg = SessionConfig()
        self.t0 = 0.0
        self.player: OutboundPlayer | None = None
        self.engine: ConversationEngine | None = None
        self.stt_stream: STTStream | None = None
        self.voice: VoiceActivity | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._reply_task: asyncio.Task[None] | None = None
        self._reply: AgentReply | None = None
        self._reply_seq = 0
        self._turn_seq = 0
        self._writes: asyncio.Queue[Callable[[], Awaitable[Any]] | None] = asyncio.Queue()
        self._stopped = False
        self._ending = False
        self._hung_up = False
        self._last_in_t = self.loop.time()
        self._caller_speech_start_t: float | None = None
        self._agent_idle_since = 0.0
        self._silence_count = 0
        self._dtmf = ""
        self._dtmf_last_t = 0.0
        self._outcome: dict[str, Any] = {}
        self.barge_ins = 0
        self.frames_in = 0
        self.machine: str | None = None  # "carrier" / "classifier" once a machine answered
        self._greeting_t: float | None = None
        self._agent_audio_queued = False
        self._caller_turns = 0
        self._echo_held: list[bytes] | None = None  # echo audio waiting out the echo delay
        # (speech onset, `clear` sent) while the agent is paused for caller speech
        self._pause: tuple[float, float] | None = None

    # ---- helpers ---------------------------------------------------------------------

    def _ms(self, t: float) -> int:
        return max(0, round((t - self.t0) * 1000))

    def _write(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Queue a persistence call; the writer runs them in order without blocking audio."""
        self._writes.put_nowait(fn)

    def _event(self, kind: str, **data: Any) -> None:
        call_id = self.call_id
        if call_id is None:
            return
        t_ms = self._ms(self.loop.time())
        self._write(lambda: self.svc.recorder.add_event(call_id, kind, t_ms, data))

    async def _send(self, text: str) -> None:
        if not self.ws.closed:
            await self.ws.send_str(text)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)
        return task

    # ---- main loop -------------------------------------------------------------------

    async def run(self) -> None:
        status, reason, code = "completed", "carrier stop", CLOSE_NORMAL
        writer = asyncio.ensure_future(self._writer())
        try:
            await self._read_with_idle_guard()
            if self._hung_up or self._ending:
                reason = "agent ended the call"
            elif not self._stopped:
                status, reason, code = "failed", "carrier connection closed without stop", CLOSE_NORMAL
                if self.ws.close_code not in (None, CLOSE_NORMAL):
                    reason = f"carrier vanished (close code {self.ws.close_code})"
        except ProtocolError as exc:
            status, reason, code = "failed", exc.reason, exc.code
            metrics.PROTOCOL_ERRORS.labels(self.protocol.name, str(exc.code)).inc()
            self.log.warning("media_protocol_error", call_id=self.call_id, code=exc.code, reason=exc.reason)
        except asyncio.CancelledError:
            status, reason, code = "failed", "server shutting down", 1001
            raise
        except Exception as exc:  # a bug must not take other calls down
            status, reason, code = "failed", f"internal error: {type(exc).__name__}", CLOSE_INTERNAL
            self.log.exception("media_session_error", call_id=self.call_id)
        finally:
            await self._shutdown(status, reason, code, writer)

    async def _read_with_idle_guard(self) -> None:
        reader = asyncio.ensure_future(self._read_loop())
        idle: list[ProtocolError] = []

        async def guard() -> None:
            while not reader.done():
                await asyncio.sleep(1.0)
                limit = self.cfg.inbound_idle_timeout_s if self.start else 30.0
                if self.loop.time() - self._last_in_t > limit:
                    idle.append(ProtocolError(CLOSE_POLICY, f"no message from carrier for {limit:.0f} s"))
                    reader.cancel()
                    return

        watcher = asyncio.ensure_future(guard())
        try:
            await reader
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if idle and not (task is not None and task.cancelling()):
                raise idle[0] from None
            raise
        finally:
            watcher.cancel()

    async def _read_loop(self) -> None:
        """Read carrier messages until stop or close. Idle carriers are caught by
        `_read_with_idle_guard` (one timer per call, not one per message)."""
        while True:
            msg = await self.ws.receive()
            self._last_in_t = self.loop.time()
            if msg.type == WSMsgType.TEXT:
                await self._on_text(msg.data)
                if self._stopped:
                    return
            elif msg.type == WSMsgType.BINARY:
                raise ProtocolError(CLOSE_UNSUPPORTED, "binary frames are not part of the protocol")
            elif msg.type == WSMsgType.ERROR:
                exc = self.ws.exception()
                text = str(exc).lower()
                if getattr(exc, "code", None) == CLOSE_TOO_BIG or "limit" in text or "too big" in text:
                    raise ProtocolError(CLOSE_TOO_BIG, "message larger than the limit")
                raise ProtocolError(CLOSE_INTERNAL, f"WebSocket error: {exc}")
            else:  # CLOSE, CLOSING, CLOSED
                return

    async def _on_text(self, raw: str) -> None:
        ev = self.protocol.parse(raw)
        if isinstance(ev, Media):
            if self.start is None:
                raise ProtocolError(CLOSE_POLICY, "media before start")
            await self._on_media(ev)
        elif isinstance(ev, Mark):
            if self.player is not None and not self.player.on_mark(ev.name):
                self.log.debug("unknown_mark", name=ev.name)
        elif isinstance(ev, Start):
            if self.start is not None:
                raise ProtocolError(CLOSE_POLICY, "second start event")
            await self._on_start(ev)
        elif isinstance(ev, Dtmf):
            if self.start is None:
                raise ProtocolError(CLOSE_POLICY, "dtmf before start")
            await self._on_dtmf(ev)
        elif isinstance(ev, Stop):
            self._stopped = True
        elif isinstance(ev, Connected):
            pass

    # ---- start -----------------------------------------------------------------------

    async def _on_start(self, ev: Start) -> None:
        params = ev.custom_parameters
        call_id = params.get("call_id") or params.get("callId") or self.query.get("call_id")
        if not call_id:
            raise ProtocolError(CLOSE_POLICY, "start without a call_id custom parameter")
        try:
            uuid.UUID(call_id)
        except ValueError:
            raise ProtocolError(CLOSE_POLICY, "call_id is not a UUID") from None
        try:
            self.svc.authenticate(call_id, params, self.query)
        except ProtocolError:
            raise
        except Exception as exc:
            raise ProtocolError(CLOSE_POLICY, f"media token refused: {exc}") from None
        info = await self.svc.recorder.get_call(call_id)
        if info is None:
            raise ProtocolError(CLOSE_POLICY, "unknown call_id")
        if info.status in ("completed", "failed"):
            raise ProtocolError(CLOSE_POLICY, f"call already {info.status}")
        self.call_id, self.info, self.start = call_id, info, ev
        self.fmt = ev.fmt
        self.spec = AudioSpec(ev.fmt.encoding, ev.fmt.rate)
        self.cfg = self.svc.config_for(info)
        if self.svc.speech_for is not None:
            stt, tts = self.svc.speech_for(info)
            self.svc = dataclasses.replace(self.svc, stt=stt, tts=tts)
        self.t0 = self.loop.time()
        self._agent_idle_since = self.t0
        self.log = self.log.bind(call_id=call_id)
        self.log.info("call_started", stream=ev.stream_id[-6:], rate=ev.fmt.rate, encoding=ev.fmt.encoding)
        await self.svc.recorder.call_started(
            call_id, self.protocol.name, ev.call_sid, ev.stream_id,
            {"format": {"encoding": ev.fmt.encoding, "rate": ev.fmt.rate}, "tracks": ev.tracks},
        )
        await self.svc.registry.register(
            call_id, {"carrier": self.protocol.name, "started": time.time(), "kind": self.cfg.kind}
        )
        metrics.ACTIVE_CALLS.labels(self.protocol.name).inc()
        self.player = OutboundPlayer(
            self._send, self.protocol, ev.stream_id, ev.fmt, self.cfg.lead_frames,
            keep_pacing_errors=self.cfg.keep_pacing_errors,
        )
        self._spawn(self.player.run(), "player")
        if self.cfg.kind == "echo":
            return
        self.voice = VoiceActivity(self.svc.vad_factory(), ev.fmt.rate)
        self.stt_stream = await self.svc.stt.open_stream(self.spec, self.cfg.endpointing_ms)
        self.engine = ConversationEngine(self.svc.policy_factory(info.context, info.playbook), info.context)
        self._spawn(self._stt_events(self.stt_stream), "stt-events")
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self._greeting_guard(), "greeting-guard")
        verdict = carrier_verdict(params) or carrier_verdict(self.query)
        if verdict is not None:
            self._event("answered_by", value=verdict)
        if is_machine_result(verdict):
            self._machine_detected("carrier", answered_by=verdict)
        else:
            self._respond(CallStarted(), trigger_t=self.t0)

    # ---- inbound audio ---------------------------------------------------------------

    async def _on_media(self, ev: Media) -> None:
        assert self.fmt is not None and self.spec is not None and self.player is not None
        now = self.loop.time()
        self._last_in_t = now
        self.frames_in += 1
        if ev.track not in ("inbound", "inbound_track"):
            return
        if self.cfg.kind == "echo":
            self._echo(ev.payload, now)
            return
        try:
            pcm = decode(ev.payload, self.fmt)
        except ValueError as exc:
            raise ProtocolError(1007, str(exc)) from None
        if self.stt_stream is not None:
            await self.stt_stream.send(AudioIn(ev.payload, self.spec, pcm, now))
        await self._detect_voice(pcm, now)

    def _echo(self, payload: bytes, now: float) -> None:
        """Echo agent: the first audio after silence is held for the echo delay, then
        released in one piece and played continuously. One list and one timer keep frames
        in order, and the player starts with the delay's worth queued, so it keeps its lead
        ahead of real time while inbound frames jitter."""
        assert self.player is not None
        if self._echo_held is not None:
            self._echo_held.append(payload)
        elif self.player.busy:
            self.player.enqueue_audio(payload)
        else:
            self._echo_held = [payload]
            self.loop.call_later(self.cfg.echo_delay_ms / 1000, self._echo_release)

    def _echo_release(self) -> None:
        held, self._echo_held = self._echo_held, None
        if held and self.player is not None:
            self.player.enqueue_audio(b"".join(held))

    async def _detect_voice(self, pcm: Any, now: float) -> None:
        """Session-side VAD: caller activity for silence timing and barge-in.

        Barge-in has two stages. `barge_in_pause_ms` of speech over the agent pauses it:
        `clear` goes out at once, the unplayed audio and its marks are held. If the speech
        reaches `barge_in_min_speech_ms` it is a barge-in (held audio dropped, reply cut);
        if the stretch of speech ends first (a cough), the agent resumes where the caller
        stopped hearing it."""
        assert self.voice is not None and self.player is not None
        voice = self.voice
        voice.push(pcm, now)
        if self._pause is not None and not self.player.paused:
            self._pause = None  # cleared meanwhile (DTMF, a new reply): nothing to resume
        if self._pause is not None:
            if not self.cfg.barge_in or self.machine is not None or not self._agent_speaking():
                self._resume()  # the reply is ending (no barge-in on a goodbye): play on
            elif voice.sustained(self.cfg.barge_in_min_speech_ms) is not None:
                pause, self._pause = self._pause, None
                self._spawn(self._barge_in(pause[0], pause[1]), "barge-in")
            elif not voice.in_speech:
                self._resume()
            return
        if not self.cfg.barge_in or self.machine is not None or not self._agent_speaking():
            return
        pause_ms = self.cfg.barge_in_pause_ms
        if 0 < pause_ms < self.cfg.barge_in_min_speech_ms:
            onset = voice.onset(pause_ms)
            if onset is not None:
                await self._pause_agent(onset)
            return
        onset = voice.sustained(self.cfg.barge_in_min_speech_ms)
        if onset is not None:
            self._spawn(self._barge_in(onset, None), "barge-in")

    def _agent_speaking(self) -> bool:
        return (
            self._reply_task is not None
            and not self._reply_task.done()
            and self.player is not None
            and self.player.busy
            and not self._ending
        )

    async def _pause_agent(self, onset_t: float) -> None:
        """First stage: the caller stops hearing the agent; its audio is kept to resume."""
        assert self.player is not None
        now = self.loop.time()
        self._pause = (onset_t, now)
        if self._reply is not None:
            self._reply.pause(now)  # paused time is not playback time for the heard text
        await self.player.pause()
        self._pause = (onset_t, self.loop.time())

    def _resume(self) -> None:
        """The caller's speech ended short of a barge-in: play the held audio on."""
        pause, self._pause = self._pause, None
        if pause is None or self.player is None:
            return
        held_ms = self.player.queued_ms()
        if not self.player.resume():
            return
        now = self.loop.time()
        if self._reply is not None:
            self._reply.resume(now)
        reaction_ms = round((pause[1] - pause[0]) * 1000, 1)
        paused_ms = round((now - pause[1]) * 1000, 1)
        self._event("barge_in_resumed", reaction_ms=reaction_ms, paused_ms=paused_ms,
                    held_ms=held_ms)
        self.log.info("barge_in_resumed", reaction_ms=reaction_ms, paused_ms=paused_ms)

    async def _barge_in(self, onset_t: float, cleared_t: float | None, cut: str = "speech") -> None:
        """Second stage: cut the agent off. Its unplayed (or held) audio is dropped, its
        marks resolve as not played, the reply is cancelled (history keeps what was
        heard). `cleared_t`: when a pause already sent `clear`; None = no pause, clear now.
        Reaction is always speech onset → `clear` sent."""
        if self.player is None:
            return
        data: dict[str, Any] = {}
        if cleared_t is None:
            if not self._agent_speaking():
                return
            await self.player.clear()
            cleared_t = self.loop.time()
        else:
            await self.player.clear()  # drops the held audio; the carrier has nothing
            data["paused_ms"] = round((self.loop.time() - cleared_t) * 1000, 1)
        if cut != "speech":
            data["cut"] = cut
        reaction = cleared_t - onset_t
        self.barge_ins += 1
        metrics.BARGE_INS.labels(self.protocol.name).inc()
        metrics.BARGE_IN_REACTION.observe(reaction)
        self._event("barge_in", reaction_ms=round(reaction * 1000, 1), **data)
        self.log.info("barge_in", reaction_ms=round(reaction * 1000, 1), **data)
        await self._cancel_reply()

    # ---- STT -------------------------------------------------------------------------

    async def _stt_events(self, stream: STTStream) -> None:
        async for ev in stream.events():
            if isinstance(ev, SpeechStarted):
                self._caller_speech_start_t = ev.t
                self._silence_count = 0
            elif isinstance(ev, UtteranceEnd):
                text = ev.text.strip()
                start_t = self._caller_speech_start_t or ev.speech_end_t
                self._caller_speech_start_t = None
                if not text:
                    continue  # noise or a dropped hallucination
                self._silence_count = 0
                stt_ms = max(0.0, (ev.t - ev.speech_end_t) * 1000)
                self._record_turn("caller", text, start_t, ev.speech_end_t, stt_ms=stt_ms)
                # transcripts go to the database; logs carry them only at debug level (personal data)
                self.log.info("caller_turn", chars=len(text), stt_ms=round(stt_ms))
                self.log.debug("caller_text", text=text)
                if self.machine is not None:
                    continue  # the machine talks on; the message is being left
                self._caller_turns += 1
                if (
                    self._caller_turns <= 2
                    and (start_t - self.t0) * 1000 <= self.cfg.machine_window_ms
                    and sounds_like_voicemail(text)
                ):
                    self._machine_detected("classifier", text=text)
                    continue
                if self._agent_speaking() and self.engine is not None:
                    # Too short to barge in ("mhm"): remember it, let the agent go on.
                    self.engine.history.append(Message("user", text))
                    self._event("backchannel", text=text)
                    continue
                self._respond(UserTurn(text), trigger_t=ev.speech_end_t, stt_ms=stt_ms)

    # ---- DTMF ------------------------------------------------------------------------

    async def _on_dtmf(self, ev: Dtmf) -> None:
        self._event("dtmf", digit=ev.digit)
        self._dtmf_last_t = self.loop.time()
        if self._agent_speaking() and self.player is not None:
            await self.player.clear()
            await self._cancel_reply()
        if ev.digit == "#":
            self._flush_dtmf("#")
            return
        self._dtmf += ev.digit
        if len(self._dtmf) >= self.cfg.dtmf_max_digits:
            self._flush_dtmf("max")

    def _flush_dtmf(self, why: str) -> None:
        digits, self._dtmf = self._dtmf, ""
        if self.engine is None or (not digits and why != "#"):
            return
        now = self.loop.time()
        self._record_turn("caller", f"[keypad] {digits}{'#' if why == '#' else ''}", now, now)
        self._respond(DtmfEntry(digits, why), trigger_t=now)  # type: ignore[arg-type]

    # ---- agent replies ---------------------------------------------------------------

    def _respond(
        self,
        event: PolicyEvent,
        trigger_t: float | None,
        stt_ms: float | None = None,
        script: list[PolicyOutput] | None = None,
        recovery: bool = False,
    ) -> None:
        """Start the agent's next reply (to `event`, or a fixed `script`), replacing any
        reply still running."""
        if self._ending or self.engine is None:
            return
        previous = self._reply_task
        self._reply_seq += 1
        reply = AgentReply(self._reply_seq, trigger_t, stt_ms=stt_ms, started_t=self.loop.time(),
                           recovery=recovery)
        self._reply_task = asyncio.ensure_future(self._run_reply(event, reply, previous, script))

    async def _cancel_reply(self) -> None:
        task = self._reply_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run_reply(
        self,
        event: PolicyEvent,
        reply: AgentReply,
        previous: asyncio.Task[None] | None,
        script: list[PolicyOutput] | None,
    ) -> None:
        if previous is not None and not previous.done():
            if self.player is not None and self.player.busy:
                await self.player.clear()
            previous.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        assert self.engine is not None and self.player is not None
        self._reply = reply
        try:
            outputs = _scripted(script) if script is not None else self.engine.handle(event)
            async for out in outputs:
                if isinstance(out, Say):
                    if reply.llm_ttft_ms is None:
                        reply.llm_ttft_ms = (self.loop.time() - reply.started_t) * 1000
                    await self._speak(reply, out.text)
                else:
                    self._on_action(out, reply)
            played = await self._await_playback(reply)
            self._finish_reply(reply, interrupted=not played)
            if not played:
                return
        except asyncio.CancelledError:
            self._finish_reply(reply, interrupted=True)
            raise
        except Exception as exc:
            self.log.exception("reply_failed", reply=reply.id)
            self._event("reply_failed", error=type(exc).__name__, recovery=reply.recovery)
            self._finish_reply(reply, interrupted=True)
            if reply.first_frame_t is None and not reply.recovery and not self._ending:
                # The policy or TTS failed before a word was said: never leave the caller
                # in silence; a recovery line keeps the conversation going.
                self._respond(Silence(0), trigger_t=reply.trigger_t, recovery=True,
                              script=[Say(RECOVERY_LINE)])
            return
        self._agent_idle_since = self.loop.time()
        if reply.transfer_to:
            await self._do_transfer(reply.transfer_to)
        elif reply.end_action is not None:
            await self._hangup(str(reply.end_action.data.get("outcome", "ended")))

    async def _speak(self, reply: AgentReply, text: str) -> None:
        assert self.player is not None and self.spec is not None and self.fmt is not None
        sentence = Sentence(text)
        reply.sentences.append(sentence)
        first_of_reply = len(reply.sentences) == 1

        def started(t: float, s: Sentence = sentence) -> None:
            s.first_frame_t = t
            if first_of_reply:
                reply.first_frame_t = t
                self._on_first_frame(reply, t)

        hooked = False
        t_req = self.loop.time()
        async with contextlib.aclosing(
            synthesize_for_carrier(self.svc.tts, text, self.fmt)
        ) as audio:
            async for data in audio:
                if reply.tts_ttfb_ms is None:
                    reply.tts_ttfb_ms = (self.loop.time() - t_req) * 1000
                if not hooked and data:
                    # "first frame" = when the pacing reaches this sentence's audio, not
                    # when the text was handed to TTS
                    hooked = True
                    self.player.at_playhead(started)
                    self._agent_audio_queued = True
                sentence.bytes += len(data)
                self.player.enqueue_audio(data)
        sentence.mark = self.player.mark(f"r{reply.id}s{len(reply.sentences)}")

    def _on_first_frame(self, reply: AgentReply, t: float) -> None:
        self._turn_seq += 1
        reply.seq = self._turn_seq
        if reply.id == 1:
            self._greeting_started(t, "greeting")

    def _greeting_started(self, t: float, what: str) -> None:
        """The first agent audio of the call went out (the greeting or the filler clip)."""
        if self._greeting_t is not None:
            return
        self._greeting_t = t
        greeting = t - self.t0
        metrics.GREETING_LATENCY.observe(greeting)
        if greeting * 1000 > self.cfg.greeting_deadline_ms:
            self.log.warning("greeting_late", ms=round(greeting * 1000))
        self._event("greeting_audio", latency_ms=round(greeting * 1000, 1), audio=what)

    # ---- greeting deadline -----------------------------------------------------------

    def _filler_key(self) -> tuple[str, str, int, str]:
        assert self.fmt is not None
        name = str(getattr(self.svc.tts, "name", type(self.svc.tts).__name__))
        return (name, self.fmt.encoding, self.fmt.rate, self.cfg.greeting_filler)

    async def _greeting_guard(self) -> None:
        """Make the first agent audio start within `greeting_deadline_ms` of `start`.

        The filler clip is synthesised once per TTS and format and kept in memory (any
        node can take any call, so it cannot be tied to the call); when the greeting's
        audio is not out by the deadline minus a margin, the clip goes first. A late
        greeting then follows it naturally ("Hello? Hello, this is Alex ...")."""
        if not self.cfg.greeting_filler or self.fmt is None or self.player is None:
            return
        key = self._filler_key()
        if key not in _FILLER_CLIPS:
            prepare = self._spawn(self._prepare_filler(key), "filler-synth")
        else:
            prepare = None
        wait_s = max(0, self.cfg.greeting_deadline_ms - self.cfg.greeting_filler_margin_ms) / 1000
        await asyncio.sleep(max(0.0, self.t0 + wait_s - self.loop.time()))
        if self._greeting_t is not None or self._agent_audio_queued or self._ending:
            return
        clip = _FILLER_CLIPS.get(key)
        if clip is None:
            self._event("greeting_filler_unavailable", ready=bool(prepare and prepare.done()))
            return
        self._agent_audio_queued = True
        self.player.at_playhead(lambda t: self._greeting_started(t, "filler"))
        self.player.enqueue_audio(clip)
        self.player.flush_audio()
        self._event("greeting_filler", text=self.cfg.greeting_filler)
        self.log.info("greeting_filler", text=self.cfg.greeting_filler)

    async def _prepare_filler(self, key: tuple[str, str, int, str]) -> None:
        assert self.spec is not None and self.fmt is not None
        parts: list[bytes] = []
        try:
            async for data in synthesize_for_carrier(self.svc.tts, self.cfg.greeting_filler, self.fmt):
                parts.append(data)
        except Exception as exc:
            self.log.warning("greeting_filler_failed", error=str(exc))
            return
        if parts:
            _FILLER_CLIPS[key] = b"".join(parts)

    # ---- answering machine -----------------------------------------------------------

    def answered_by(self, value: str) -> None:
        """The carrier's answering-machine verdict arrived mid-call (e.g. Twilio's async
        AMD callback, routed here by call SID)."""
        verdict = value.strip().lower()
        self._event("answered_by", value=verdict)
        if is_machine_result(verdict) and self.machine is None and not self._ending:
            self._machine_detected("carrier", answered_by=verdict)

    def _machine_detected(self, source: str, **data: Any) -> None:
        """A machine answered: the policy leaves its limited-content message, then the
        call ends through the normal path (hang-up after the message's mark is echoed)."""
        if self.machine is not None or self._ending:
            return
        self.machine = source
        self._event("machine_detected", source=source, **data)
        self.log.info("machine_detected", source=source)
        event = MachineDetected("carrier" if source == "carrier" else "classifier")
        self._respond(event, trigger_t=None)

    async def _await_playback(self, reply: AgentReply) -> bool:
        """Wait until the carrier confirms the reply was played; False if it was cleared."""
        if not reply.sentences or self.fmt is None:
            return True
        last = reply.sentences[-1].mark
        if last is None:
            return True
        total_bytes = sum(s.bytes for s in reply.sentences)
        seconds = total_bytes / (self.fmt.rate * self.fmt.bytes_per_sample)
        timeout = seconds + self.cfg.mark_grace_s + 1.0
        try:
            return await asyncio.wait_for(asyncio.shield(last.played), timeout)
        except TimeoutError:
            # The carrier never echoed the mark: assume it played, carry on.
            self._event("mark_timeout", mark=last.name)
            self.log.warning("mark_timeout", mark=last.name)
            return True

    def _finish_reply(self, reply: AgentReply, interrupted: bool) -> None:
        if reply.recorded or self.engine is None:
            return
        reply.recorded = True
        if self._reply is reply:
            self._reply = None
        assert self.fmt is not None
        text = reply.heard_text(
            interrupted, self.loop.time(), self.cfg.lead_frames * FRAME_MS / 1000,
            self.fmt.rate * self.fmt.bytes_per_sample,
        )
        self.engine.agent_said(text, interrupted)
        if reply.first_frame_t is None:
            return  # nothing was played
        now = self.loop.time()
        v2v = None
        if reply.trigger_t is not None:
            v2v = (reply.first_frame_t - reply.trigger_t) * 1000
        self._record_turn(
            "agent", text, reply.first_frame_t, now, interrupted=interrupted,
            stt_ms=reply.stt_ms, llm_ttft_ms=reply.llm_ttft_ms, tts_ttfb_ms=reply.tts_ttfb_ms,
            voice_to_voice_ms=v2v, seq=reply.seq,
        )
        self._observe_latency(reply, v2v)
        self.log.debug("agent_text", text=text)
        self.log.info("agent_turn", chars=len(text), interrupted=interrupted,
                      v2v_ms=None if v2v is None else round(v2v))

    def _observe_latency(self, reply: AgentReply, v2v_ms: float | None) -> None:
        stt = getattr(self.svc.stt, "name", "stt")
        tts = getattr(self.svc.tts, "name", "tts")
        policy = getattr(self.engine.policy if self.engine else None, "name", "policy")
        if reply.stt_ms is not None:
            ai_metrics.STT_FINAL_LATENCY.labels(provider=stt).observe(reply.stt_ms / 1000)
        if reply.llm_ttft_ms is not None:
            ai_metrics.LLM_TTFT.labels(provider=policy).observe(reply.llm_ttft_ms / 1000)
        if reply.tts_ttfb_ms is not None:
            ai_metrics.TTS_TTFB.labels(provider=tts).observe(reply.tts_ttfb_ms / 1000)
        if v2v_ms is not None:
            ai_metrics.VOICE_TO_VOICE.observe(v2v_ms / 1000)

    def _record_turn(
        self, speaker: str, text: str, start_t: float, end_t: float, seq: int | None = None,
        **extra: Any,
    ) -> None:
        call_id = self.call_id
        if call_id is None:
            return
        if seq is None:
            self._turn_seq += 1
            seq = self._turn_seq
        turn = TurnRecord(
            seq, speaker, text, self._ms(start_t), max(self._ms(start_t), self._ms(end_t)),
            **extra,
        )
        self._write(lambda: self.svc.recorder.add_turn(call_id, turn))

    # ---- actions ---------------------------------------------------------------------

    def _on_action(self, action: Action, reply: AgentReply) -> None:
        self._event(f"action.{action.kind}", **action.data)
        self.log.info("agent_action", kind=action.kind)
        fields = outcome_fields(action)
        if action.kind == "end_call":
            reply.end_action = action
            self._ending = True
        elif action.kind == "transfer":
            reply.transfer_to = str(action.data.get("number") or "")
            self._ending = True
        if fields:
            self._outcome.update(fields)
            call_id = self.call_id
            if call_id is not None:
                snapshot = dict(fields)
                self._write(lambda: self.svc.recorder.set_outcome(call_id, snapshot))

    async def _hangup(self, why: str) -> None:
        self._ending = True
        result = "closed"
        if self.svc.hangup is not None and self.start is not None:
            try:
                result = await self.svc.hangup(self.protocol.name, self.start.call_sid)
            except Exception as exc:
                result = f"error: {exc}"
                self.log.warning("hangup_failed", error=str(exc))
        self._hung_up = True
        self._event("hangup", outcome=why, result=result)
        await self.ws.close(code=CLOSE_NORMAL, message=b"call ended by agent")

    async def _do_transfer(self, number: str) -> None:
        if self.svc.transfer is None or self.start is None or not number:
            self._event("transfer_unavailable")
            await self._hangup("transfer unavailable")
            return
        try:
            await self.svc.transfer(self.protocol.name, self.start.call_sid, number)
            self._event("transferred")
            # The call now follows the carrier's new instructions (<Dial>, or Exotel's
            # Connect applet once the stream closes); our stream has no further use.
            self._hung_up = True
            await self.ws.close(code=CLOSE_NORMAL, message=b"call transferred")
        except Exception as exc:
            self._event("transfer_failed", error=str(exc))
            self.log.warning("transfer_failed", error=str(exc))
            await self._hangup("transfer failed")

    # ---- timers ----------------------------------------------------------------------

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            now = self.loop.time()
            if self._dtmf and now - self._dtmf_last_t > self.cfg.dtmf_timeout_ms / 1000:
                self._flush_dtmf("timeout")
            if self._ending:
                continue
            if now - self.t0 > self.cfg.max_call_seconds:
                self._event("max_duration")
                await self._say_and_end("I'm sorry, we have run out of time for this call. Goodbye.",
                                        "max_duration")
                continue
            busy = (self._reply_task is not None and not self._reply_task.done()) or (
                self.player is not None and self.player.busy
            )
            if busy or self._caller_speech_start_t is not None:
                continue
            last_voice = self.voice.last_voice_t if self.voice is not None else 0.0
            quiet_since = max(self._agent_idle_since, last_voice)
            if now - quiet_since > self.cfg.reprompt_after_ms / 1000:
                self._silence_count += 1
                self._agent_idle_since = now
                self._event("silence", count=self._silence_count)
                self._respond(Silence(self._silence_count), trigger_t=None)

    async def _say_and_end(self, text: str, outcome: str) -> None:
        self._respond(Silence(0), trigger_t=None,
                      script=[Say(text), Action("end_call", {"outcome": outcome})])

    # ---- shutdown --------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            fn = await self._writes.get()
            if fn is None:
                return
            try:
                await fn()
            except Exception:
                self.log.exception("persist_failed")

    async def _shutdown(
        self, status: str, reason: str, code: int, writer: asyncio.Future[None]
    ) -> None:
        pause, self._pause = self._pause, None
        if pause is not None and self.player is not None and self.player.paused:
            # the call ended while the agent was paused for the caller: it never resumed
            await self._barge_in(pause[0], pause[1], cut="call_end")
        await self._cancel_reply()
        if self.player is not None:
            self.player.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.stt_stream is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.stt_stream.close(), 5)
        if not self.ws.closed:
            with contextlib.suppress(Exception):
                await self.ws.close(code=code, message=reason[:120].encode())
        if self.call_id is not None:
            call_id = self.call_id
            if self.player is not None:
                stats = self.player.stats
                metrics.CHUNKS_OUT.labels(self.protocol.name).inc(stats.chunks_sent)
                metrics.LATE_CHUNKS.labels(self.protocol.name).inc(stats.late_chunks)
                self._event("media_stats", frames_in=self.frames_in, chunks_out=stats.chunks_sent,
                            late_chunks=stats.late_chunks, max_late_ms=round(stats.max_late_ms, 1),
                            barge_ins=self.barge_ins)
            if status == "completed" and "outcome" not in self._outcome:
                self._write(lambda: self.svc.recorder.set_outcome(call_id, {"outcome": "ended_by_caller"}))
            self._write(lambda: self.svc.recorder.call_ended(call_id, status, reason, code))
            metrics.FRAMES_IN.labels(self.protocol.name).inc(self.frames_in)
            metrics.ACTIVE_CALLS.labels(self.protocol.name).dec()
            metrics.CALLS_TOTAL.labels(self.protocol.name, status).inc()
            with contextlib.suppress(Exception):
                await self.svc.registry.unregister(call_id)
        self._writes.put_nowait(None)
        try:
            await asyncio.wait_for(writer, 10)
        except (TimeoutError, Exception):
            self.log.error("persist_drain_failed", call_id=self.call_id)
        log_fn = self.log.info if status == "completed" else self.log.warning
        log_fn("call_ended", status=status, reason=reason, close_code=code)
