"""One call's conversation: the rules between what the caller does and what the agent says.

`handle(event)` is synchronous and deterministic: it updates the call's state and returns
the commands the driver must carry out. When the agent must answer, it returns
`StartReply(id)`; the driver then iterates `reply(id)`, which runs the policy and yields a
`Speak` per sentence (and the records of the actions taken). Playback progress comes back
as events (`SentenceStarted`, `SentenceAudio`, `SentencePlayed`), so the engine knows what
the caller actually heard, when a goodbye has been played (then `HangUp`) and whether the
agent is audible (barge-in, backchannels, reprompts).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ai.conversation import commands as cmd
from ai.conversation import inputs as ev
from ai.conversation.heard import Pauses, SpokenSentence, heard_text
from ai.conversation.history import action_note
from ai.conversation.rules import Lines, Rules
from ai.conversation.voicemail import is_machine_result, sounds_like_voicemail
from ai.events import CallStarted, DtmfEntry, PolicyEvent, Silence, UserTurn
from ai.playbook import CallContext, Playbook
from ai.protocols import Policy
from ai.types import Action, Message, PolicyOutput, Say

__all__ = ["Conversation", "conversation_for"]


@dataclass(slots=True)
class _Reply:
    id: int
    event: PolicyEvent | None
    script: list[PolicyOutput] | None
    trigger_t: float | None
    started_t: float
    stt_ms: float | None = None
    recovery: bool = False
    sentences: list[SpokenSentence] = field(default_factory=list)
    pauses: Pauses = field(default_factory=Pauses)
    generating: bool = True
    closed: bool = False
    first_audio_t: float | None = None
    seq: int | None = None
    llm_ttft_ms: float | None = None
    tts_ttfb_ms: float | None = None
    end_action: Action | None = None
    transfer_to: str | None = None

    @property
    def pending(self) -> bool:
        """Some of its sentences were handed to the driver and not all were played: audio
        may be queued even when none has reached the playhead yet."""
        return not self.closed and not all(s.played for s in self.sentences)

    @property
    def audible(self) -> bool:
        """Some of its audio is queued or playing and not all of it was confirmed played."""
        return not self.closed and any(s.started_t is not None for s in self.sentences) and not all(
            s.played for s in self.sentences
        )


class Conversation:
    """The engine of one call. `clock` is the call's clock (seconds); inputs carry times
    on the same clock."""

    def __init__(
        self, policy: Policy, rules: Rules, lines: Lines, clock: Callable[[], float]
    ) -> None:
        self.policy = policy
        self.rules = rules
        self.lines = lines
        self.clock = clock
        self.history: list[Message] = []
        self.actions: list[Action] = []
        self.stages: list[str] = []
        self.outcome: str | None = None
        self.machine: str | None = None
        self.ending = False  # the agent took an action that ends the call
        self.ended = False  # hang-up or transfer was commanded
        self.barge_ins = 0
        self.t0 = 0.0
        self._now = 0.0
        self._out: list[cmd.Command] = []
        self._replies: dict[int, _Reply] = {}
        self._reply: _Reply | None = None
        self._next_id = 0
        self._seq = 0
        self._paused: tuple[float, float] | None = None  # (speech onset, paused at)
        self._pause_voiced = 0  # speech in this pause's earlier stretches
        self._stretch_voiced = 0  # speech in its current stretch
        self._resume_at: float | None = None  # the caller went quiet: resume then
        self._handled_onset: float | None = None
        self._silences = 0
        self._idle_since = 0.0
        self._last_voice_t = 0.0
        self._in_speech = False
        self._speech_start_t: float | None = None
        self._dtmf = ""
        self._dtmf_last_t = 0.0
        self._greeting_t: float | None = None
        self._filler_done = False
        self._caller_turns = 0
        self._caller_spoke = False

    # ---- public ------------------------------------------------------------------------

    def handle(self, event: ev.Input) -> list[cmd.Command]:
        """Feed one input; returns the commands to carry out, in order."""
        self._now = event.t
        self._out = []
        match event:
            case ev.Started():
                self._started(event)
            case ev.CallerVoice():
                self._voice(event)
            case ev.SpeechStarted():
                self._speech_start_t = event.t
                self._silences = 0
            case ev.Partial():
                self._partial(event)
            case ev.Final():
                self._final(event)
            case ev.Digit():
                self._digit(event)
            case ev.SentenceStarted():
                self._sentence_started(event)
            case ev.SentenceAudio():
                r = self._live(event.reply_id)
                if r is not None and event.index < len(r.sentences):
                    r.sentences[event.index].audio_ms = event.audio_ms
            case ev.SentencePlayed():
                r = self._live(event.reply_id)
                if r is not None and event.index < len(r.sentences):
                    r.sentences[event.index].played = True
                    self._maybe_complete(r)
            case ev.FillerStarted():
                self._greeting_started(event.t, "filler")
            case ev.ReplyFailed():
                self._reply_failed(event)
            case ev.MachineVerdict():
                self._event("answered_by", value=event.answered_by)
                if is_machine_result(event.answered_by):
                    self._machine_detected("carrier", answered_by=event.answered_by)
            case ev.Tick():
                self._tick()
        out, self._out = self._out, []
        return out

    async def reply(self, reply_id: int) -> AsyncIterator[cmd.Command]:
        """Run the policy (or the engine's own script) for one reply: a `Speak` per
        sentence and a `RecordAction` per action. Exceptions reach the driver, which
        reports them as `ReplyFailed`."""
        r = self._replies.get(reply_id)
        if r is None or r.closed:
            return
        if r.script is not None:
            outputs = _iterate(r.script)
        else:
            assert r.event is not None
            outputs = self.policy.respond(list(self.history), r.event)
        async for out in outputs:
            if r.closed:
                return
            if isinstance(out, Say):
                if not out.text.strip():
                    continue
                if r.llm_ttft_ms is None:
                    r.llm_ttft_ms = (self.clock() - r.started_t) * 1000
                r.sentences.append(SpokenSentence(out.text))
                yield cmd.Speak(r.id, len(r.sentences) - 1, out.text)
            else:
                for c in self._action(out, r):
                    yield c
        if r.closed:
            return
        r.generating = False
        self._now = self.clock()
        self._out = []
        self._note_stage()
        self._maybe_complete(r)
        out_cmds, self._out = self._out, []
        for c in out_cmds:
            yield c

    def finish(self, t: float) -> list[cmd.Command]:
        """The call is over (carrier stop, hang-up, a vanished peer): what was heard of a
        reply still under way is recorded."""
        self._now = t
        self._out = []
        if self._paused is not None:
            self._cut(self._paused[0], self._paused[1], "call_end")
        elif self._reply is not None and not self._reply.closed:
            self._close(self._reply, complete=False)
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """The earliest time a `Tick` could change something (for virtual clocks)."""
        times: list[float] = []
        r = self.rules
        if self._dtmf:
            times.append(self._dtmf_last_t + r.dtmf_timeout_ms / 1000 + 1e-6)
        if self._resume_at is not None:
            times.append(self._resume_at)
        reply = self._reply
        if reply is not None and not reply.closed:
            times += [t for t in (self._mark_deadline(reply, s) for s in reply.sentences) if t]
        if not self.ending:
            if not self._filler_done and self._greeting_t is None:
                times.append(self.t0 + (r.greeting_deadline_ms - r.greeting_filler_margin_ms) / 1000)
            times.append(self.t0 + r.max_call_seconds + 1e-6)
            if not self._busy():
                quiet = max(self._idle_since, self._last_voice_t)
                times.append(quiet + r.reprompt_after_ms / 1000 + 1e-6)
        return min(times) if times else None

    @property
    def final_outcome(self) -> str:
        """How the call ended: the agent's outcome, else `hung_up` when the caller had
        taken part, else `no_contact`."""
        if self.outcome is not None:
            return self.outcome
        return "hung_up" if self._caller_spoke else "no_contact"

    @property
    def paused(self) -> bool:
        return self._paused is not None

    @property
    def agent_audible(self) -> bool:
        return self._reply is not None and self._reply.audible and not self.ending

    # ---- start, machines ---------------------------------------------------------------

    def _started(self, e: ev.Started) -> None:
        self.t0 = self._idle_since = e.t
        if e.answered_by:
            self._event("answered_by", value=e.answered_by)
        if is_machine_result(e.answered_by):
            self._machine_detected("carrier", answered_by=e.answered_by)
        else:
            self._respond(CallStarted(), trigger_t=e.t)

    def _machine_detected(self, source: str, **data: Any) -> None:
        """A machine answered: only the playbook's limited-content message is left (never
        the policy's words, whatever the policy), then the call ends once it is played."""
        if self.machine is not None or self.ending:
            return
        self.machine = source
        self._event("machine_detected", source=source, **data)
        self._respond(None, trigger_t=None, script=[
            Say(self.lines.voicemail), Action("voicemail"),
            Action("end_call", {"outcome": "voicemail"}),
        ])

    # ---- caller voice and speech -------------------------------------------------------

    def _voice(self, e: ev.CallerVoice) -> None:
        self._in_speech = e.in_speech
        if e.in_speech:
            self._last_voice_t = e.t
        r = self.rules
        if self._paused is not None:
            if not r.barge_in or self.machine is not None or not self.agent_audible:
                self._resume()  # the reply is ending (no barge-in on a goodbye): play on
            elif e.in_speech:
                # speech again within the hold: one utterance across the gaps between words
                self._resume_at = None
                self._stretch_voiced = e.voiced_ms
                if self._pause_voiced + e.voiced_ms >= r.barge_in_min_speech_ms:
                    self._cut(self._paused[0], self._paused[1], "speech")
            elif self._resume_at is None:
                self._pause_voiced += self._stretch_voiced
                self._stretch_voiced = 0
                self._resume_at = e.t + r.barge_in_resume_after_ms / 1000
            return
        if not r.barge_in or self.machine is not None or not self.agent_audible:
            return
        if not e.in_speech or e.onset_t is None or e.onset_t == self._handled_onset:
            return
        if 0 < r.barge_in_pause_ms < r.barge_in_min_speech_ms:
            if e.voiced_ms >= r.barge_in_pause_ms:
                self._pause(e.onset_t)
        elif e.voiced_ms >= r.barge_in_min_speech_ms:
            self._cut(e.onset_t, None, "speech")

    def _partial(self, e: ev.Partial) -> None:
        if self._paused is not None and not self.lines.is_backchannel(e.text):
            self._cut(self._paused[0], self._paused[1], "transcript")

    def _final(self, e: ev.Final) -> None:
        start_t = self._speech_start_t if self._speech_start_t is not None else e.speech_end_t
        self._speech_start_t = None
        text = e.text.strip()
        if not text:
            return  # noise, or a hallucination the recogniser dropped
        self._silences = 0
        self._turn("caller", text, start_t, e.speech_end_t, stt_ms=e.stt_ms)
        if self.ending:
            self._event("input_after_end", input="speech")
            return
        if self.machine is not None:
            return  # the machine talks on while the message is left
        self._caller_turns += 1
        if (
            self._caller_turns <= 2
            and (start_t - self.t0) * 1000 <= self.rules.machine_window_ms
            and sounds_like_voicemail(text)
        ):
            self._machine_detected("classifier", text=text)
            return
        if self.agent_audible or self._paused is not None:
            if self.lines.is_backchannel(text):
                self.history.append(Message("user", text))
                self._event("backchannel", text=text)
                if self._paused is not None and not self._in_speech:
                    self._resume()
                return
            # words, not a backchannel, over the agent: the transcript decides the barge-in
            cleared = self._paused[1] if self._paused is not None else None
            self._cut(start_t, cleared, "transcript")
        self.history.append(Message("user", text))
        self._respond(UserTurn(text), trigger_t=e.speech_end_t, stt_ms=e.stt_ms)

    # ---- DTMF --------------------------------------------------------------------------

    def _digit(self, e: ev.Digit) -> None:
        if self.ending:
            self._event("input_after_end", input="dtmf", digit=e.digit)
            return
        self._event("dtmf", digit=e.digit)
        self._dtmf_last_t = e.t
        reply = self._reply
        if (reply is not None and reply.pending) or self._paused is not None:
            self._paused = None
            self._out.append(cmd.Clear())
            if reply is not None:
                self._close(reply, complete=False)
        if e.digit == "#":
            self._flush_dtmf("#")
            return
        self._dtmf += e.digit
        if len(self._dtmf) >= self.rules.dtmf_max_digits:
            self._flush_dtmf("max")

    def _flush_dtmf(self, why: str) -> None:
        digits, self._dtmf = self._dtmf, ""
        if not digits and why != "#":
            return
        self._turn("caller", f"[keypad] {digits}{'#' if why == '#' else ''}", self._now, self._now)
        self._respond(DtmfEntry(digits, why), trigger_t=self._now)  # type: ignore[arg-type]

    # ---- barge-in ----------------------------------------------------------------------

    def _pause(self, onset_t: float) -> None:
        """First stage: the caller stops hearing the agent; its audio is kept to resume."""
        self._paused = (onset_t, self._now)
        self._pause_voiced = 0
        self._stretch_voiced = self.rules.barge_in_pause_ms
        self._resume_at = None
        self._handled_onset = onset_t
        if self._reply is not None:
            self._reply.pauses.begin(self._now)
        self._out.append(cmd.Pause())

    def _resume(self) -> None:
        """The caller's speech ended short of a barge-in (a backchannel, a cough)."""
        pause, self._paused = self._paused, None
        self._resume_at = None
        if pause is None:
            return
        if self._reply is not None:
            self._reply.pauses.end(self._now)
        self._out.append(cmd.Resume())
        self._event("barge_in_resumed", reaction_ms=round((pause[1] - pause[0]) * 1000, 1),
                    paused_ms=round((self._now - pause[1]) * 1000, 1))

    def _cut(self, onset_t: float, cleared_t: float | None, cut: str) -> None:
        """Second stage: the agent is cut off; the history keeps what was heard. Reaction
        is speech onset → `clear` (the pause's, when there was one)."""
        self._paused = None
        self._resume_at = None
        self._handled_onset = onset_t
        self._out.append(cmd.Clear())
        data: dict[str, Any] = {}
        if cleared_t is None:
            cleared_t = self._now
        else:
            data["paused_ms"] = round((self._now - cleared_t) * 1000, 1)
        if cut != "speech":
            data["cut"] = cut
        self.barge_ins += 1
        self._event("barge_in", reaction_ms=round(max(0.0, cleared_t - onset_t) * 1000, 1), **data)
        if self._reply is not None:
            self._reply.pauses.end(self._now)
            self._close(self._reply, complete=False)

    # ---- replies -----------------------------------------------------------------------

    def _respond(
        self, event: PolicyEvent | None, trigger_t: float | None, stt_ms: float | None = None,
        script: list[PolicyOutput] | None = None, recovery: bool = False,
    ) -> None:
        """Start the agent's next reply, replacing one still under way."""
        if self.ending:
            return
        previous = self._reply
        if previous is not None and not previous.closed:
            if previous.pending or self._paused is not None:
                self._paused = None
                self._out.append(cmd.Clear())
            self._close(previous, complete=False)
        self._next_id += 1
        r = _Reply(self._next_id, event, script, trigger_t, self._now, stt_ms=stt_ms,
                   recovery=recovery)
        self._replies = {r.id: r}  # only the current reply's playback events matter
        self._reply = r
        self._out.append(cmd.StartReply(r.id))

    def _live(self, reply_id: int) -> _Reply | None:
        r = self._replies.get(reply_id)
        return None if r is None or r.closed else r

    def _action(self, action: Action, r: _Reply) -> list[cmd.Command]:
        self.actions.append(action)
        # the history carries what the agent did, so a policy taking over the call (the
        # playbook after a failed LLM) or the LLM's next turn knows the stage reached
        self.history.append(Message("tool", action_note(action)))
        if action.kind == "end_call":
            r.end_action = action
            self.ending = True
            self.outcome = str(action.data.get("outcome") or "ended")
        elif action.kind == "transfer":
            r.transfer_to = str(action.data.get("number") or "")
            self.ending = True
            self.outcome = "transferred"
        return [cmd.RecordAction(action)]

    def _sentence_started(self, e: ev.SentenceStarted) -> None:
        r = self._live(e.reply_id)
        if r is None or e.index >= len(r.sentences):
            return
        r.sentences[e.index].started_t = e.t
        if r.first_audio_t is None:
            r.first_audio_t = e.t
            r.tts_ttfb_ms = e.tts_ttfb_ms
            self._seq += 1
            r.seq = self._seq  # turn order follows when the audio started
            self._greeting_started(e.t, "greeting")

    def _greeting_started(self, t: float, what: str) -> None:
        if self._greeting_t is not None:
            return
        self._greeting_t = t
        self._event("greeting_audio", latency_ms=round((t - self.t0) * 1000, 1), audio=what)

    def _maybe_complete(self, r: _Reply) -> None:
        if r.closed or r.generating or not all(s.played for s in r.sentences):
            return
        self._close(r, complete=True)
        self._idle_since = self._now
        if r.transfer_to is not None:
            self.ended = True
            self._out.append(cmd.Transfer(r.transfer_to))
        elif r.end_action is not None:
            self.ended = True
            self._out.append(cmd.HangUp(str(r.end_action.data.get("outcome") or "ended")))

    def _close(self, r: _Reply, complete: bool) -> None:
        """Record what the caller heard of the reply, in the history and as a turn."""
        if r.closed:
            return
        r.closed = True
        if self._reply is r:
            self._reply = None
        text = heard_text(r.sentences, r.pauses, self._now, self.rules.playback_lead_ms / 1000,
                          complete).strip()
        if text or not complete:
            self.history.append(Message("assistant", text, interrupted=not complete))
        if r.first_audio_t is None or r.seq is None:
            return  # nothing was played
        v2v = None if r.trigger_t is None else (r.first_audio_t - r.trigger_t) * 1000
        self._out.append(cmd.RecordTurn(
            r.seq, "agent", text, self._ms(r.first_audio_t), self._ms(max(r.first_audio_t, self._now)),
            interrupted=not complete, stt_ms=r.stt_ms, llm_ttft_ms=r.llm_ttft_ms,
            tts_ttfb_ms=r.tts_ttfb_ms, voice_to_voice_ms=v2v,
        ))

    def _reply_failed(self, e: ev.ReplyFailed) -> None:
        r = self._replies.get(e.reply_id)
        if r is None:
            return
        self._event("reply_failed", error=e.error, recovery=r.recovery)
        if r.closed:
            return
        r.generating = False
        nothing_said = r.first_audio_t is None
        self._close(r, complete=False)
        if r.end_action is not None or r.transfer_to is not None:
            self.ended = True
            self._out.append(cmd.HangUp(self.outcome or "ended"))
        elif nothing_said and not r.recovery and not self.ending:
            # the policy or TTS failed before a word was said: never leave the caller in
            # silence; the recovery line keeps the conversation going
            self._respond(None, trigger_t=r.trigger_t, recovery=True,
                          script=[Say(self.lines.recovery)])

    def _note_stage(self) -> None:
        stage = getattr(self.policy, "stage", None)
        if isinstance(stage, str) and (not self.stages or self.stages[-1] != stage):
            self.stages.append(stage)
            self._event("stage", stage=stage)

    # ---- time --------------------------------------------------------------------------

    def _busy(self) -> bool:
        return (
            (self._reply is not None and not self._reply.closed)
            or self._speech_start_t is not None
            or self._in_speech
        )

    def _mark_deadline(self, r: _Reply, s: SpokenSentence) -> float | None:
        if s.played or s.started_t is None or s.audio_ms is None or self._paused is not None:
            return None
        paused = r.pauses.within(s.started_t, self._now)
        return s.started_t + paused + (s.audio_ms + self.rules.mark_grace_ms) / 1000

    def _tick(self) -> None:
        now, r = self._now, self.rules
        if self._paused is not None and self._resume_at is not None and now >= self._resume_at:
            self._resume()
        if self._dtmf and now - self._dtmf_last_t > r.dtmf_timeout_ms / 1000:
            self._flush_dtmf("timeout")
        reply = self._reply
        if reply is not None and not reply.closed:
            for i, s in enumerate(reply.sentences):
                deadline = self._mark_deadline(reply, s)
                if deadline is not None and now >= deadline:
                    s.played = True  # the carrier never echoed the mark: assume it played
                    self._event("mark_timeout", reply=reply.id, sentence=i)
            self._maybe_complete(reply)
        if self.ending:
            return
        if (
            not self._filler_done
            and self._greeting_t is None
            and (now - self.t0) * 1000 >= r.greeting_deadline_ms - r.greeting_filler_margin_ms
        ):
            self._filler_done = True
            if self.lines.greeting_filler:
                self._out.append(cmd.PlayFiller(self.lines.greeting_filler))
        if now - self.t0 > r.max_call_seconds:
            self._event("max_duration")
            self._respond(None, trigger_t=None, script=[
                Say(self.lines.max_duration), Action("end_call", {"outcome": "timed_out"}),
            ])
            return
        if self._busy():
            return
        if now - max(self._idle_since, self._last_voice_t) > r.reprompt_after_ms / 1000:
            self._silences += 1
            self._idle_since = now
            self._event("silence", count=self._silences)
            self._respond(Silence(self._silences), trigger_t=None)

    # ---- records -----------------------------------------------------------------------

    def _event(self, kind: str, **data: Any) -> None:
        self._out.append(cmd.RecordEvent(kind, self._now, data))

    def _turn(self, speaker: str, text: str, start_t: float, end_t: float, **extra: Any) -> None:
        self._caller_spoke = self._caller_spoke or speaker == "caller"
        self._seq += 1
        self._out.append(cmd.RecordTurn(self._seq, speaker, text, self._ms(start_t),
                                        self._ms(max(start_t, end_t)), **extra))

    def _ms(self, t: float) -> int:
        return max(0, round((t - self.t0) * 1000))


async def _iterate(items: list[PolicyOutput]) -> AsyncIterator[PolicyOutput]:
    for item in items:
        yield item


def conversation_for(
    policy: Policy, playbook: Playbook, context: dict[str, Any] | None,
    clock: Callable[[], float], **rule_overrides: int | bool,
) -> Conversation:
    """The engine for one call of `playbook`: its rules, and its own lines rendered with
    the call's context."""
    values = CallContext.from_dict(context, playbook).template_values()
    lines = Lines.from_playbook(playbook, lambda template: template.format_map(values))
    return Conversation(policy, Rules.from_playbook(playbook, **rule_overrides), lines, clock)
