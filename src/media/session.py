"""One live call's transport: carrier events in, the conversation engine's commands out.

The session reads the carrier WebSocket, authenticates `start`, decodes audio for the VAD
and the STT stream, and turns what it sees into engine inputs (`ai.conversation.inputs`);
it carries out the engine's commands (speak, pause, resume, clear, hang up, transfer,
record). No rule of the conversation lives here. Whatever goes wrong, `run` ends with the
call marked completed or failed with a reason, the WebSocket closed with a code, and every
turn recorded so far kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Mapping
from typing import Any

import structlog
from aiohttp import WSMsgType, web

from ai.conversation import Conversation
from ai.conversation import commands as cmd
from ai.conversation import inputs as ev
from ai.conversation.voicemail import carrier_verdict
from ai.protocols import STTStream
from ai.types import AudioIn, AudioSpec, SpeechStarted, Transcript, UtteranceEnd
from media import metrics
from media.admission import StartGate
from media.agent_speech import AgentSpeech
from media.apology import play_apology
from media.caller_voice import VoiceActivity
from media.claim import claim_start
from media.codec import AudioFormat, decode
from media.echo import EchoAgent
from media.events import (
    CLOSE_INTERNAL,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    CLOSE_PROTOCOL,
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
from media.ports import CallInfo
from media.protocol import CarrierProtocol
from media.recording import CallRecording
from media.sanitize import close_reason, peer_text
from media.send_backlog import unsent_seconds
from media.session_services import SessionConfig, SessionServices

log = structlog.get_logger("media.session")

TICK_S = 0.1
#: how often the read guard checks the start deadline, the idle timer and the send backlog
GUARD_S = 0.5
#: a close handshake that takes longer than this (a peer that stopped reading) is cut short
CLOSE_TIMEOUT_S = 3.0


class StartFailed(Exception):
    """An authenticated call that cannot go on (its engine, STT or playbook failed): the
    caller hears the apology, the carrier hangs up, the call is marked failed."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class CallSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        protocol: CarrierProtocol,
        services: SessionServices,
        query: Mapping[str, str],
        *,
        peer: str = "unknown",
        gate: StartGate | None = None,
        transport: asyncio.BaseTransport | None = None,
    ) -> None:
        """`gate` has already admitted this connection; the session releases it once the
        call is claimed or the connection ends. `transport` is the connection's, for
        measuring the send backlog and for cutting off a peer that stopped reading."""
        self.ws = ws
        self.protocol = protocol
        self.svc = services
        self.query = query
        self.peer = peer
        self._gate = gate
        self.transport = transport
        self.loop = asyncio.get_running_loop()
        self.opened_at = self.loop.time()
        self.log = log.bind(carrier=protocol.name)
        self.call_id: str | None = None
        self.info: CallInfo | None = None
        self.start: Start | None = None
        self.fmt: AudioFormat | None = None
        self.spec: AudioSpec | None = None
        self.cfg = SessionConfig()
        self.t0 = 0.0
        self.player: OutboundPlayer | None = None
        self.engine: Conversation | None = None
        self.speech: AgentSpeech | None = None
        self.echo: EchoAgent | None = None
        self.stt_stream: STTStream | None = None
        self.voice: VoiceActivity | None = None
        self.recording = CallRecording(services.recorder, protocol.name, self.log)
        self._tasks: list[asyncio.Task[Any]] = []
        self._reply_task: asyncio.Task[None] | None = None
        self._commands: asyncio.Queue[cmd.Command] = asyncio.Queue()
        self._stopped = False
        self._hung_up = False
        self._last_in_t = self.loop.time()
        self._voice_state: tuple[int, bool] = (0, False)
        self.frames_in = 0
        self._sending = 0  # sends awaiting the transport
        self._sending_since = 0.0
        self._abort = False  # the peer stopped reading: drop the connection after closing
        self._claiming = False  # a start is being checked and claimed: the deadline waits

    @property
    def barge_ins(self) -> int:
        return self.engine.barge_ins if self.engine is not None else 0

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.append(task)
        return task

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        self._sending += 1
        if self._sending == 1:
            self._sending_since = self.loop.time()
        try:
            await self.ws.send_str(text)
        finally:
            self._sending -= 1

    def _release_gate(self) -> None:
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release(self.peer)

    def send_backlog_s(self) -> float:
        """Seconds of outbound audio the carrier has not taken (see media.send_backlog)."""
        player = self.player
        rate = player.wire_bytes_per_s if player is not None else 0.0
        blocked = self.loop.time() - self._sending_since if self._sending else 0.0
        return unsent_seconds(self.transport, rate, blocked)

    # ---- main loop -------------------------------------------------------------------

    async def run(self) -> None:
        status, reason, code = "completed", "carrier stop", CLOSE_NORMAL
        self.recording.start()
        try:
            try:
                await self._read_with_idle_guard()
            except StartFailed as exc:
                status, reason, code = "failed", exc.reason, exc.code
                await self._apologise()
                return
            if self._hung_up or (self.engine is not None and self.engine.ended):
                reason = "agent ended the call"
            elif not self._stopped:
                status, reason, code = "failed", "carrier connection closed without stop", CLOSE_NORMAL
                if self.ws.close_code not in (None, CLOSE_NORMAL):
                    reason = f"carrier vanished (close code {self.ws.close_code})"
        except ProtocolError as exc:
            status, reason, code = "failed", peer_text(exc.reason), exc.code
            metrics.PROTOCOL_ERRORS.labels(self.protocol.name, str(exc.code)).inc()
            self.log.warning("media_protocol_error", call_id=self.call_id, code=exc.code, reason=reason)
        except asyncio.CancelledError:
            status, reason, code = "failed", "server shutting down", 1001
            raise
        except Exception as exc:  # a bug must not take other calls down
            status, reason, code = "failed", f"internal error: {type(exc).__name__}", CLOSE_INTERNAL
            self.log.exception("media_session_error", call_id=self.call_id)
        finally:
            await self._shutdown(status, reason, code)

    async def _read_with_idle_guard(self) -> None:
        reader = asyncio.ensure_future(self._read_loop())
        idle: list[ProtocolError] = []

        def check() -> ProtocolError | None:
            now = self.loop.time()
            if self.start is None and not self._claiming:
                # from the opening, not the last message: a peer that keeps talking
                # without ever authenticating is closed all the same
                deadline = self.svc.start_deadline_s
                if now - self.opened_at > deadline:
                    metrics.CONNECTIONS_REFUSED.labels("start_deadline").inc()
                    return ProtocolError(CLOSE_POLICY, f"no valid start within {deadline:g} s")
                return None
            if self.start is None:
                return None
            limit = self.cfg.inbound_idle_timeout_s
            if now - self._last_in_t > limit:
                return ProtocolError(CLOSE_POLICY, f"no message from carrier for {limit:.0f} s")
            backlog = self.send_backlog_s()
            if backlog > self.svc.send_backlog_s:
                metrics.SEND_BACKLOG_ENDS.labels(self.protocol.name).inc()
                self._abort = True
                return ProtocolError(
                    CLOSE_POLICY, f"carrier is not reading: {backlog:.1f} s of audio not taken"
                )
            return None

        async def guard() -> None:
            while not reader.done():
                await asyncio.sleep(GUARD_S)
                if (err := check()) is not None:
                    idle.append(err)
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
                code = getattr(exc, "code", None)
                if code == CLOSE_TOO_BIG or "limit" in text or "too big" in text:
                    raise ProtocolError(CLOSE_TOO_BIG, "message larger than the limit")
                if code == CLOSE_INVALID_PAYLOAD:
                    raise ProtocolError(CLOSE_INVALID_PAYLOAD, "text frame is not valid UTF-8")
                if code == CLOSE_PROTOCOL:
                    raise ProtocolError(CLOSE_PROTOCOL, f"WebSocket protocol error: {peer_text(exc)}")
                raise ProtocolError(CLOSE_INTERNAL, f"WebSocket error: {peer_text(exc)}")
            else:  # CLOSE, CLOSING, CLOSED
                return

    async def _on_text(self, raw: str) -> None:
        msg = self.protocol.parse(raw)
        if isinstance(msg, Media):
            if self.start is None:
                raise ProtocolError(CLOSE_POLICY, "media before start")
            await self._on_media(msg)
        elif isinstance(msg, Mark):
            if self.player is not None and not self.player.on_mark(msg.name):
                self.log.debug("unknown_mark", name=peer_text(msg.name, 40))
        elif isinstance(msg, Start):
            if self.start is not None:
                raise ProtocolError(CLOSE_POLICY, "second start event")
            self._claiming = True
            try:
                await self._on_start(msg)
            finally:
                self._claiming = False
        elif isinstance(msg, Dtmf):
            if self.start is None:
                raise ProtocolError(CLOSE_POLICY, "dtmf before start")
            self._feed(ev.Digit(self.loop.time(), msg.digit))
        elif isinstance(msg, Stop):
            self._stopped = True
        elif isinstance(msg, Connected):
            pass

    # ---- start -----------------------------------------------------------------------

    async def _on_start(self, msg: Start) -> None:
        info = await claim_start(msg, self.svc, self.query, self.protocol.name, self.peer, self.log)
        call_id = info.call_id
        self._release_gate()
        self.call_id, self.info, self.start = call_id, info, msg
        self.fmt = msg.fmt
        self.spec = AudioSpec(msg.fmt.encoding, msg.fmt.rate)
        self.t0 = self.loop.time()
        self.recording.bind(call_id, self.t0)
        self.log = self.recording.log = self.log.bind(call_id=call_id)
        self.log.info("call_started", stream=peer_text(msg.stream_id[-6:]), rate=msg.fmt.rate,
                      encoding=msg.fmt.encoding)
        metrics.ACTIVE_CALLS.labels(self.protocol.name).inc()
        try:
            await self._open_call(msg, info)
        except asyncio.CancelledError:
            raise
        except ProtocolError as exc:
            self.log.warning("call_start_failed", reason=peer_text(exc.reason), close_code=exc.code)
            raise StartFailed(exc.code, peer_text(exc.reason)) from None
        except Exception as exc:
            self.log.exception("call_start_failed")
            raise StartFailed(
                CLOSE_INTERNAL, peer_text(f"call could not start: {type(exc).__name__}: {exc}")
            ) from None

    async def _open_call(self, msg: Start, info: CallInfo) -> None:
        """Everything a claimed call needs before its engine takes the first input."""
        self.cfg = self.svc.config_for(info)
        if self.svc.speech_for is not None:
            stt, tts = self.svc.speech_for(info)
            self.svc = dataclasses.replace(self.svc, stt=stt, tts=tts)
        await self.svc.registry.register(
            info.call_id,
            {"carrier": self.protocol.name, "started": time.time(), "kind": self.cfg.kind,
             "call_sid": msg.call_sid},  # carrier webhooks find the call's node by it
        )
        self.player = OutboundPlayer(
            self._send, self.protocol, msg.stream_id, msg.fmt, self.cfg.lead_frames,
            keep_pacing_errors=self.cfg.keep_pacing_errors,
        )
        self._spawn(self.player.run(), "player")
        if self.cfg.kind == "echo":
            self.echo = EchoAgent(self.player, self.cfg.echo_delay_ms)
            return
        self.engine = self.svc.engine_for(info, self.loop.time, self.cfg)
        self.recording.providers = {
            "stt": str(getattr(self.svc.stt, "name", "stt")),
            "tts": str(getattr(self.svc.tts, "name", "tts")),
            "policy": str(getattr(self.engine.policy, "name", "policy")),
        }
        self.speech = AgentSpeech(self.player, self.svc.tts, msg.fmt, self._feed)
        self.voice = VoiceActivity(self.svc.vad_factory(), msg.fmt.rate)
        assert self.spec is not None
        self.stt_stream = await self.svc.stt.open_stream(self.spec, self.cfg.endpointing_ms)
        self._spawn(self._execute_commands(), "commands")
        self._spawn(self._stt_events(self.stt_stream), "stt-events")
        self._spawn(self._ticks(), "ticks")
        self._spawn(self.speech.prepare_filler(self.engine.lines.greeting_filler), "filler-synth")
        params = msg.custom_parameters
        verdict = carrier_verdict(params) or carrier_verdict(self.query)
        self._feed(ev.Started(self.t0, verdict))

    async def _apologise(self) -> None:
        """The call was claimed but cannot go on: say the playbook's apology (if the TTS
        can), wait until the carrier has played it, and hang up through the carrier."""
        assert self.start is not None and self.fmt is not None and self.info is not None
        line, spoken = "", False
        if self.svc.apology_for is not None:
            try:
                line = self.svc.apology_for(self.info)
            except Exception as exc:
                self.log.warning("apology_unavailable", error=type(exc).__name__)
        # the engine's own tasks (if it got that far) must not speak over the apology
        await self._stop_tasks()
        if line and not self.ws.closed:
            player = self.player = OutboundPlayer(
                self._send, self.protocol, self.start.stream_id, self.fmt, self.cfg.lead_frames
            )
            self._spawn(player.run(), "player")
            try:
                spoken, stopped = await play_apology(
                    self.ws, self.protocol, player, self.svc.tts, self.fmt, line
                )
                self._stopped = self._stopped or stopped
            except Exception as exc:
                self.log.warning("apology_failed", error=peer_text(exc))
        result = await self._carrier_hangup()
        self.recording.event("apology", self.loop.time(), spoken=spoken, hangup=result)

    # ---- inputs ----------------------------------------------------------------------

    def _feed(self, event: ev.Input) -> None:
        """Give the engine one input and carry out its commands: records and replies at
        once, audio control and call control in order on the command task."""
        if self.engine is None:
            return
        for c in self.engine.handle(event):
            self._dispatch(c)

    def _dispatch(self, c: cmd.Command) -> None:
        if isinstance(c, cmd.RecordTurn | cmd.RecordAction | cmd.RecordEvent):
            self.recording.record(c)
        elif isinstance(c, cmd.StartReply):
            self._start_reply(c.reply_id)
        elif isinstance(c, cmd.Clear):
            self._cancel_reply()
            self._commands.put_nowait(c)
        else:
            self._commands.put_nowait(c)

    async def _on_media(self, msg: Media) -> None:
        assert self.fmt is not None and self.spec is not None
        now = self.loop.time()
        self.frames_in += 1
        if msg.track not in ("inbound", "inbound_track"):
            return
        if self.echo is not None:
            self.echo.on_audio(msg.payload)
            return
        try:
            pcm = decode(msg.payload, self.fmt)
        except ValueError as exc:
            raise ProtocolError(1007, str(exc)) from None
        if self.stt_stream is not None:
            await self.stt_stream.send(AudioIn(msg.payload, self.spec, pcm, now))
        voice = self.voice
        if voice is None:
            return
        voice.push(pcm, now)
        state = (voice.voiced_ms, voice.in_speech)
        if state != self._voice_state:
            self._voice_state = state
            self._feed(ev.CallerVoice(now, voice.onset_t, voice.voiced_ms, voice.in_speech))

    def answered_by(self, value: str) -> None:
        """The carrier's answering-machine verdict arrived mid-call (e.g. Twilio's async
        AMD callback, routed here by call SID)."""
        self._feed(ev.MachineVerdict(self.loop.time(), value.strip().lower()))

    async def _stt_events(self, stream: STTStream) -> None:
        async for e in stream.events():
            if isinstance(e, SpeechStarted):
                self._feed(ev.SpeechStarted(e.t))
            elif isinstance(e, Transcript):
                if not e.is_final and e.text.strip():
                    self._feed(ev.Partial(e.t, e.text))
            elif isinstance(e, UtteranceEnd):
                stt_ms = max(0.0, (e.t - e.speech_end_t) * 1000)
                self._feed(ev.Final(e.t, e.text, e.speech_end_t, stt_ms))

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._feed(ev.Tick(self.loop.time()))

    # ---- commands --------------------------------------------------------------------

    def _start_reply(self, reply_id: int) -> None:
        self._cancel_reply()
        self._reply_task = asyncio.ensure_future(self._run_reply(reply_id))

    def _cancel_reply(self) -> None:
        task = self._reply_task
        if task is not None and not task.done():
            task.cancel()
        self._reply_task = None

    async def _run_reply(self, reply_id: int) -> None:
        assert self.engine is not None and self.speech is not None
        try:
            async for c in self.engine.reply(reply_id):
                if isinstance(c, cmd.Speak):
                    await self.speech.speak(c)
                else:
                    self._dispatch(c)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.exception("reply_failed", reply=reply_id)
            self._feed(ev.ReplyFailed(self.loop.time(), reply_id, type(exc).__name__))

    async def _execute_commands(self) -> None:
        while True:
            c = await self._commands.get()
            try:
                await self._execute(c)
            except Exception:
                self.log.exception("command_failed", command=type(c).__name__)

    async def _execute(self, c: cmd.Command) -> None:
        player = self.player
        assert player is not None
        if isinstance(c, cmd.Pause):
            await player.pause()
        elif isinstance(c, cmd.Resume):
            player.resume()
        elif isinstance(c, cmd.Clear):
            await player.clear()
        elif isinstance(c, cmd.PlayFiller):
            assert self.speech is not None
            played = self.speech.play_filler(c.text)
            kind = "greeting_filler" if played else "greeting_filler_unavailable"
            self.recording.event(kind, self.loop.time(), text=c.text)
        elif isinstance(c, cmd.HangUp):
            await self._hangup(c.outcome)
        elif isinstance(c, cmd.Transfer):
            await self._transfer(c.number)

    async def _carrier_hangup(self) -> str:
        result = "closed"
        if self.svc.hangup is not None and self.start is not None:
            try:
                result = await self.svc.hangup(self.protocol.name, self.start.call_sid)
            except Exception as exc:
                result = f"error: {peer_text(exc)}"
                self.log.warning("hangup_failed", error=peer_text(exc))
        return result

    async def _hangup(self, why: str) -> None:
        result = await self._carrier_hangup()
        self._hung_up = True
        self.recording.event("hangup", self.loop.time(), outcome=why, result=result)
        await self.ws.close(code=CLOSE_NORMAL, message=close_reason("call ended by agent"))

    async def _transfer(self, number: str) -> None:
        now = self.loop.time
        if self.svc.transfer is None or self.start is None or not number:
            self.recording.event("transfer_unavailable", now())
            await self._hangup("transfer unavailable")
            return
        try:
            await self.svc.transfer(self.protocol.name, self.start.call_sid, number)
        except Exception as exc:
            self.recording.event("transfer_failed", now(), error=peer_text(exc))
            self.log.warning("transfer_failed", error=peer_text(exc))
            await self._hangup("transfer failed")
            return
        self.recording.event("transferred", now())
        # The call now follows the carrier's new instructions (<Dial>, or Exotel's
        # Connect applet once the stream closes); our stream has no further use.
        self._hung_up = True
        await self.ws.close(code=CLOSE_NORMAL, message=close_reason("call transferred"))

    # ---- shutdown --------------------------------------------------------------------

    async def _close(self, code: int, reason: str) -> None:
        """Close with `code` and `reason`. A peer that does not read (or does not answer the
        close) gets its connection dropped: the handshake would wait behind unsent audio."""
        if not self.ws.closed:
            try:
                await asyncio.wait_for(
                    self.ws.close(code=code, message=close_reason(reason)),
                    1.0 if self._abort else CLOSE_TIMEOUT_S,
                )
            except Exception:
                self._abort = True
        abort = getattr(self.transport, "abort", None)  # uvloop's transports are not asyncio's
        if self._abort and abort is not None:
            abort()

    async def _stop_tasks(self) -> None:
        """Stop the player and every task of the call, and wait until they have stopped."""
        if self.player is not None:
            self.player.close()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _shutdown(self, status: str, reason: str, code: int) -> None:
        if self.engine is not None:
            for c in self.engine.finish(self.loop.time()):
                if isinstance(c, cmd.RecordTurn | cmd.RecordAction | cmd.RecordEvent):
                    self.recording.record(c)
        self._cancel_reply()
        await self._stop_tasks()
        if self.stt_stream is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.stt_stream.close(), 5)
        self._release_gate()
        reason = peer_text(reason)
        await self._close(code, reason)
        if self.call_id is not None:
            call_id, rec = self.call_id, self.recording
            if self.player is not None:
                stats = self.player.stats
                metrics.CHUNKS_OUT.labels(self.protocol.name).inc(stats.chunks_sent)
                metrics.LATE_CHUNKS.labels(self.protocol.name).inc(stats.late_chunks)
                rec.event("media_stats", self.loop.time(), frames_in=self.frames_in,
                          chunks_out=stats.chunks_sent, late_chunks=stats.late_chunks,
                          max_late_ms=round(stats.max_late_ms, 1), barge_ins=self.barge_ins)
            if status == "completed" and not rec.has_outcome and self.engine is not None:
                rec.outcome({"outcome": self.engine.final_outcome})
            rec.write(lambda: self.svc.recorder.call_ended(call_id, status, reason, code))
            metrics.FRAMES_IN.labels(self.protocol.name).inc(self.frames_in)
            metrics.ACTIVE_CALLS.labels(self.protocol.name).dec()
            metrics.CALLS_TOTAL.labels(self.protocol.name, status).inc()
            with contextlib.suppress(Exception):
                await self.svc.registry.unregister(call_id)
        await self.recording.drain()
        log_fn = self.log.info if status == "completed" else self.log.warning
        log_fn("call_ended", status=status, reason=reason, close_code=code)
