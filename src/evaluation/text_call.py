"""The text driver: a simulated debtor talks to the conversation engine on a virtual clock,
with no audio, no sockets and no database — the same engine, playbook and policy as a live
call. `run_text_simulation` plays a scenario; `run_text_call` a regex persona.

Only transport, STT and TTS differ from a live call. Agent sentences "play" for as long as
their words take at the agent's speaking rate; the debtor's utterances produce the voice
activity and the transcript a live call's VAD and STT would (onset, voiced time, end of
speech, final transcript after the endpointing delay), so barge-in, backchannels, reprompts
and hang-up after the goodbye are decided by the engine exactly as on a live call. Turn
times come from the virtual clock; the JSON is the audio mode's (`SimulationResult`). A
debtor's reply may take real time (an LLM debtor): the driver awaits it with the virtual
clock stopped, so the call's timing does not depend on the model's latency.
"""

from __future__ import annotations

import datetime as dt
import heapq
import itertools
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ai.conversation import Conversation, conversation_for
from ai.conversation import commands as cmd
from ai.conversation import inputs as ev
from ai.llm_text import LLMSettings
from ai.playbook import Playbook
from ai.playbook_policy import ScriptedPolicy
from ai.protocols import Policy, PolicyFactory
from ai.types import Action
from ai.vocabulary import outcome_fields
from evaluation.debtor import DEFAULT_STARTED_AT, Debtor, make_debtor
from evaluation.models import Personality, RecordedAction, Scenario, SimulatedCall, SimulatedTurn
from evaluation.personas import Persona, PersonaDebtor

__all__ = ["TextCallResult", "VirtualClock", "run_text_call", "run_text_simulation",
           "simulation_context"]

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
    action_turns: list[int] = field(default_factory=list)  # turns recorded before each action
    debtor_hung_up: bool = False

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

    def simulated_call(self, scenario: str, started_at: dt.datetime) -> SimulatedCall:
        """This call in the evaluation vocabulary."""
        return SimulatedCall(
            call_id=self.call_id, mode="text", scenario=scenario, outcome=self.outcome,
            outcome_fields=self.outcome_fields,
            turns=[SimulatedTurn.model_validate(t) for t in self.turns],
            actions=[RecordedAction(kind=a.kind, data=dict(a.data), turn=n)
                     for a, n in zip(self.actions, self.action_turns, strict=True)],
            stages=self.stages, barge_ins=self.barge_ins, seconds=round(self.seconds, 3),
            started_at=started_at, debtor_hung_up=self.debtor_hung_up,
        )

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
    def __init__(self, engine: Conversation, clock: VirtualClock, debtor: Debtor) -> None:
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
        self.actions: list[tuple[Action, int]] = []
        self._unanswered: list[tuple[str, float]] = []  # agent turns the debtor is to answer
        self.t0 = 0.0

    # ---- event loop --------------------------------------------------------------------

    def at(self, t: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._heap, (t, next(self._order), fn))

    async def run(self, max_seconds: float) -> None:
        self.feed(ev.Started(0.0))
        opening = self.debtor.opening()
        if opening:
            self.speak(opening, DEBTOR_THINK_MS / 1000)
        await self.drain_replies()
        await self.answer()
        while self._heap and not self.done:
            t, _, fn = heapq.heappop(self._heap)
            if t > max_seconds:
                break
            self.clock.t = max(self.clock.t, t)
            fn()
            await self.drain_replies()
            await self.answer()
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
                self.actions.append((c.action, len(self.turns)))
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
        self._unanswered.append((c.text, self.clock.t))

    async def answer(self) -> None:
        """The debtor's replies to the agent turns recorded since the last step."""
        while self._unanswered:
            text, t = self._unanswered.pop(0)
            reply = await self.debtor.reply(text)
            if reply and not self.done:
                self.speak(reply, t + DEBTOR_THINK_MS / 1000)

    def maybe_interrupt(self, reply_id: int) -> None:
        """A persona that barges in on long agent turns starts talking `interrupt_after_ms`
        into the reply; the engine decides what that does."""
        text = " ".join(self._reply_text.get(reply_id, []))
        if not text or self.clock.t < self._debtor_busy_until or self.engine.ending:
            return
        line = self.debtor.interruption(text, AGENT_WORDS_PER_MINUTE)
        if line:
            after = (self.debtor.interrupt_after_ms or 0) / 1000
            self.speak(line, self._reply_start.get(reply_id, self.clock.t) + after)

    def _voice(self, onset: float, voiced_ms: int) -> Callable[[], None]:
        return lambda: self.feed(ev.CallerVoice(self.clock.t, onset, voiced_ms, True))

    def speak(self, text: str, onset: float) -> None:
        """The voice activity and transcript a live call's VAD and STT would produce."""
        dur = speaking_ms(text, self.debtor.words_per_minute or DEBTOR_WORDS_PER_MINUTE) / 1000
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


async def _run(playbook: Playbook, debtor: Debtor, name: str, ctx: dict[str, Any],
               policy: Policy | PolicyFactory | None, max_seconds: float | None) -> TextCallResult:
    if policy is None:
        policy = ScriptedPolicy(playbook, ctx)
    elif not hasattr(policy, "respond"):
        policy = policy(ctx, playbook)  # a factory: the policy for this call's context
    clock = VirtualClock()
    engine = conversation_for(policy, playbook, ctx, clock, playback_lead_ms=0)  # type: ignore[arg-type]
    call = _TextCall(engine, clock, debtor)
    await call.run(max_seconds or float(engine.rules.max_call_seconds) + 60)
    fields = call.fields
    outcome = fields.get("outcome") or engine.final_outcome
    return TextCallResult(
        call_id=str(uuid.uuid4()), persona=name, outcome=outcome,
        turns=[{k: v for k, v in t.items() if k != "seq"}
               for t in sorted(call.turns, key=lambda t: t["seq"])],
        actions=[a for a, _ in call.actions], action_turns=[n for _, n in call.actions],
        stages=list(engine.stages), barge_ins=engine.barge_ins, outcome_fields=fields,
        seconds=clock.t, debtor_hung_up=debtor.hung_up,
    )


async def run_text_call(
    playbook: Playbook,
    persona: Persona,
    *,
    policy: Policy | None = None,
    context: dict[str, Any] | None = None,
    max_seconds: float | None = None,
) -> TextCallResult:
    """One whole simulated call of a regex persona in text mode. `policy` defaults to the
    scripted playbook; `context` overrides the persona's call context."""
    ctx = {**persona.context(), **(context or {})}
    return await _run(playbook, PersonaDebtor(persona), persona.name, ctx, policy, max_seconds)


def simulation_context(scenario: Scenario, started_at: dt.datetime) -> dict[str, Any]:
    """The call context the agent gets for a scenario: the backstory's, on the call's clock."""
    return {**scenario.backstory.call_context(), "now": started_at.isoformat()}


async def run_text_simulation(
    playbook: Playbook,
    scenario: Scenario,
    personality: Personality,
    *,
    seed: int,
    policy: Policy | PolicyFactory | None = None,
    llm: LLMSettings | None = None,
    started_at: dt.datetime | None = None,
    context: Mapping[str, Any] | None = None,
    max_seconds: float | None = None,
) -> SimulatedCall:
    """One scenario's call in text mode: its debtor (scripted, or the model in `llm`)
    against `policy` (a policy, a policy factory, or by default the scripted playbook)."""
    started_at = started_at or DEFAULT_STARTED_AT
    ctx = {**simulation_context(scenario, started_at), **(context or {})}
    debtor = make_debtor(scenario, personality, seed=seed, llm=llm, started_at=started_at)
    try:
        result = await _run(playbook, debtor, scenario.name, ctx, policy, max_seconds)
    finally:
        close = getattr(debtor, "close", None)
        if close is not None:
            await close()
    return result.simulated_call(scenario.name, started_at)
