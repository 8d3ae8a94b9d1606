"""The text driver: a persona talks to the conversation engine on a virtual clock, with no
audio, no sockets and no database — the same engine, playbook and policy as a live call.

Only transport, STT and TTS differ from a live call. Agent sentences "play" for as long as
their words take at the agent's speaking rate; the debtor's utterances produce the voice
activity and the transcript a live call's VAD and STT would (onset, voiced time, end of
speech, final transcript after the endpointing delay), so barge-in, backchannels, reprompts
and hang-up after the goodbye are decided by the engine exactly as on a live call. Turn
times come from the virtual clock; the JSON is the audio mode's (`SimulationResult`).
"""

from __future__ import annotations

import heapq
import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ai.conversation import Conversation, conversation_for
from ai.conversation import commands as cmd
from ai.conversation import inputs as ev
from ai.playbook import Playbook
from ai.playbook_policy import ScriptedPolicy
from ai.protocols import Policy
from ai.types import Action
from ai.vocabulary import outcome_fields
from evaluation.personas import Persona, SimulatedDebtor

__all__ = ["TextCallResult", "VirtualClock", "run_text_call"]

AGENT_WORDS_PER_MINUTE = 160
DEBTOR_WORDS_PER_MINUTE = 170
DEBTOR_THINK_MS = 400  # from the end of the agent's turn to the debtor's first word
FRAME_MS = 20


class VirtualClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def speaking_ms(text: str, words_per_minute: float) -> float:
    return max(1, len(text.split())) * 60_000 / words_per_minute


@dataclass
class TextCallResult:
    """What a simulated call gives, as the audio mode gives it (`as_json`), plus the agent's
    actions and stages for the evaluator."""

    call_id: str
    persona: str
    outcome: str | None
    turns: list[dict[str, Any]]
    actions: list[Action]
    stages: list[str]
    barge_ins: int
    outcome_fields: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def promise_to_pay(self) -> dict[str, Any] | None:
        f = self.outcome_fields
        if f.get("ptp_amount") is None:
            return None
        return {"amount": f["ptp_amount"], "date": f.get("ptp_date"), "plan": f.get("ptp_plan")}

    def agent_lines(self) -> list[str]:
        return [t["text"] for t in self.turns if t["speaker"] == "agent"]

    def action(self, kind: str) -> Action | None:
        """The last action of this kind, if any."""
        return next((a for a in reversed(self.actions) if a.kind == kind), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "persona": self.persona,
            "carrier": "text",
            "mode": "text",
            "status": "completed",
            "failure_reason": None,
            "outcome": self.outcome,
            "promise_to_pay": self.promise_to_pay,
            "opt_out": bool(self.outcome_fields.get("opt_out")),
            "turns": self.turns,
            "latencies_ms": [t["voice_to_voice_ms"] for t in self.turns
                             if t["speaker"] == "agent" and t["voice_to_voice_ms"] is not None],
            "barge_ins": self.barge_ins,
            "stages": self.stages,
            "wav": None,
        }


@dataclass
class _Playing:
    reply_id: int
    index: int
    text: str
    remaining_ms: float
    resumed_t: float = 0.0


class _TextCall:
    def __init__(self, engine: Conversation, clock: VirtualClock, debtor: SimulatedDebtor) -> None:
        self.engine = engine
        self.clock = clock
        self.debtor = debtor
        self.rules = engine.rules
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._ticks: set[float] = set()
        self._queue: list[_Playing] = []  # sentences waiting to play
        self._playing: _Playing | None = None
        self._epoch = 0  # bumped on pause and clear: playback ends scheduled before are void
        self._paused = False
        self._debtor_busy_until = 0.0
        self._reply_text: dict[int, list[str]] = {}
        self._reply_start: dict[int, float] = {}
        self._pending: list[int] = []  # replies the engine started, to run
        self.done = False
        self.turns: list[dict[str, Any]] = []
        self.fields: dict[str, Any] = {}
        self.t0 = 0.0

    # ---- event loop --------------------------------------------------------------------

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (t, next(self._order), fn))

    async def run(self, max_seconds: float) -> None:
        self.feed(ev.Started(0.0))
        await self.drain_replies()
        while self._heap and not self.done:
            t, _, fn = heapq.heappop(self._heap)
            if t > max_seconds:
                break
            self.clock.t = max(self.clock.t, t)
            fn()
            await self.drain_replies()
            if self.debtor.hung_up and self.clock.t >= self._debtor_busy_until and not self._playing:
                break
        self.apply(self.engine.finish(self.clock.t))

    def schedule_tick(self) -> None:
        deadline = self.engine.next_deadline()
        if deadline is not None and deadline not in self._ticks:
            self._ticks.add(deadline)

            def tick() -> None:
                self._ticks.discard(deadline)
                self.feed(ev.Tick(deadline))

            self.at(deadline, tick)

    # ---- engine ------------------------------------------------------------------------

    def feed(self, event: ev.Input) -> None:
        self.apply(self.engine.handle(event))

    def apply(self, commands: list[cmd.Command]) -> None:
        for c in commands:
            self.execute(c)
        self.schedule_tick()

    async def drain_replies(self) -> None:
        """Run the replies the engine started (instant on the virtual clock)."""
        while self._pending:
            reply_id = self._pending.pop(0)
            self._reply_start[reply_id] = self.clock.t
            async for c in self.engine.reply(reply_id):
                self.execute(c)
            self.schedule_tick()
            self.maybe_interrupt(reply_id)

    def execute(self, c: cmd.Command) -> None:
        now = self.clock.t
        match c:
            case cmd.StartReply():
                self._pending.append(c.reply_id)
            case cmd.Speak():
                self._reply_text.setdefault(c.reply_id, []).append(c.text)
                self._queue.append(_Playing(c.reply_id, c.index, c.text,
                                            speaking_ms(c.text, AGENT_WORDS_PER_MINUTE)))
                if self._playing is None and not self._paused:
                    self.play_next()
            case cmd.Pause():
                self._paused = True
                self._epoch += 1
                p = self._playing
                if p is not None:
                    p.remaining_ms -= (now - p.resumed_t) * 1000
            case cmd.Resume():
                self._paused = False
                if self._playing is not None:
                    self.schedule_end(self._playing)
                else:
                    self.play_next()
            case cmd.Clear():
                self._epoch += 1
                self._paused = False
                self._queue.clear()
                self._playing = None
            case cmd.HangUp() | cmd.Transfer():
                self.done = True
            case cmd.RecordTurn():
                self.record_turn(c)
            case cmd.RecordAction():
                self.fields.update(outcome_fields(c.action))
            case cmd.PlayFiller() | cmd.RecordEvent():
                pass

    # ---- agent playback ----------------------------------------------------------------

    def play_next(self) -> None:
        if not self._queue:
            return
        p = self._playing = self._queue.pop(0)
        p.resumed_t = self.clock.t
        self.feed(ev.SentenceStarted(self.clock.t, p.reply_id, p.index, tts_ttfb_ms=0.0))
        self.feed(ev.SentenceAudio(self.clock.t, p.reply_id, p.index, p.remaining_ms))
        self.schedule_end(p)

    def schedule_end(self, p: _Playing) -> None:
        p.resumed_t = self.clock.t
        epoch = self._epoch

        def end() -> None:
            if epoch != self._epoch or self._playing is not p:
                return
            self._playing = None
            self.feed(ev.SentencePlayed(self.clock.t, p.reply_id, p.index))
            if not self._paused:
                self.play_next()

        self.at(self.clock.t + max(0.0, p.remaining_ms) / 1000, end)

    # ---- the debtor --------------------------------------------------------------------

    def record_turn(self, c: cmd.RecordTurn) -> None:
        self.turns.append({
            "seq": c.seq, "speaker": c.speaker, "text": c.text,
            "start_ms": c.start_ms, "end_ms": c.end_ms,
            "interrupted": c.interrupted, "voice_to_voice_ms": c.voice_to_voice_ms,
        })
        if c.speaker != "agent" or c.interrupted or self.done:
            return
        if self.clock.t < self._debtor_busy_until:
            return  # the debtor is already talking over the agent
        reply = self.debtor.reply(c.text)
        if reply:
            self.speak(reply, self.clock.t + DEBTOR_THINK_MS / 1000)

    def maybe_interrupt(self, reply_id: int) -> None:
        """A persona that barges in on long agent turns starts talking `interrupt_after_ms`
        into the reply; the engine decides what that does."""
        text = " ".join(self._reply_text.get(reply_id, []))
        if not text or self.clock.t < self._debtor_busy_until or self.engine.ending:
            return
        line = self.debtor.interruption(text, AGENT_WORDS_PER_MINUTE)
        if line:
            after = (self.debtor.persona.interrupt_after_ms or 0) / 1000
            self.speak(line, self._reply_start.get(reply_id, self.clock.t) + after)

    def _voice(self, onset: float, voiced_ms: int) -> Callable[[], None]:
        return lambda: self.feed(ev.CallerVoice(self.clock.t, onset, voiced_ms, True))

    def speak(self, text: str, onset: float) -> None:
        """The voice activity and transcript a live call's VAD and STT would produce."""
        dur = speaking_ms(text, DEBTOR_WORDS_PER_MINUTE) / 1000
        end = onset + dur
        self._debtor_busy_until = end + self.rules.endpointing_ms / 1000
        self.at(onset, lambda: self.feed(ev.SpeechStarted(onset)))
        marks = sorted({FRAME_MS, self.rules.barge_in_pause_ms, self.rules.barge_in_min_speech_ms})
        for ms in marks:
            if 0 < ms <= dur * 1000:
                self.at(onset + ms / 1000, self._voice(onset, ms))
        self.at(end, lambda: self.feed(ev.CallerVoice(end, onset, 0, False)))
        final_t = self._debtor_busy_until
        self.at(final_t, lambda: self.feed(ev.Final(final_t, text, end, stt_ms=0.0)))


async def run_text_call(
    playbook: Playbook,
    persona: Persona,
    *,
    policy: Policy | None = None,
    context: dict[str, Any] | None = None,
    max_seconds: float | None = None,
) -> TextCallResult:
    """One whole simulated call in text mode. `policy` defaults to the scripted playbook;
    `context` overrides the persona's call context."""
    ctx = {**persona.context(), **(context or {})}
    clock = VirtualClock()
    engine = conversation_for(policy or ScriptedPolicy(playbook, ctx), playbook, ctx, clock,
                              playback_lead_ms=0)
    call = _TextCall(engine, clock, SimulatedDebtor(persona))
    await call.run(max_seconds or float(engine.rules.max_call_seconds) + 60)
    fields = call.fields
    outcome = fields.get("outcome") or engine.final_outcome
    return TextCallResult(
        call_id=str(uuid.uuid4()), persona=persona.name, outcome=outcome,
        turns=[{k: v for k, v in t.items() if k != "seq"}
               for t in sorted(call.turns, key=lambda t: t["seq"])],
        actions=list(engine.actions),
        stages=list(engine.stages), barge_ins=engine.barge_ins, outcome_fields=fields,
        seconds=clock.t,
    )
