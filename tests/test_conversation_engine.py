"""The conversation engine stepped by hand: no sockets, no audio, a clock the test sets.

Each rule of a call (reprompts, the goodbye after silence, barge-in and backchannels, DTMF,
voicemail, the recovery line, the greeting filler, maximum duration, hang-up only after the
goodbye is played, input after the goodbye) is checked on the commands it produces."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ai.conversation import Conversation, conversation_for
from ai.conversation import commands as cmd
from ai.conversation import inputs as ev
from ai.events import PolicyEvent
from ai.playbook import CallContext, Playbook, load_playbook
from ai.playbook_policy import ScriptedPolicy
from ai.protocols import Policy
from ai.types import Message, PolicyOutput, Say
from evaluation.personas import load_persona

# a simulator persona's demo debtor, on a fixed day
CONTEXT = {**load_persona("cooperative").context(), "today": "2026-11-21",
           "now": "2026-11-21T09:00:00"}


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Call:
    """Steps an engine: feeds inputs, runs the replies it starts, keeps every command."""

    def __init__(self, playbook: Playbook, policy: Policy | None = None, **rules: Any) -> None:
        self.clock = Clock()
        self.engine: Conversation = conversation_for(
            policy or ScriptedPolicy(playbook, CONTEXT), playbook, CONTEXT, self.clock,
            playback_lead_ms=0, **rules)
        self.log: list[cmd.Command] = []
        self.spoken: dict[int, list[str]] = {}
        self.fail_next = False

    async def feed(self, event: ev.Input) -> list[cmd.Command]:
        self.clock.t = event.t
        out = self.engine.handle(event)
        self.log += out
        for c in list(out):
            if isinstance(c, cmd.StartReply):
                out += await self.run_reply(c.reply_id)
        return out

    async def run_reply(self, reply_id: int) -> list[cmd.Command]:
        out: list[cmd.Command] = []
        try:
            async for c in self.engine.reply(reply_id):
                out.append(c)
                self.log.append(c)
                if isinstance(c, cmd.Speak):
                    self.spoken.setdefault(reply_id, []).append(c.text)
        except RuntimeError as exc:
            out += await self.feed(ev.ReplyFailed(self.clock.t, reply_id, type(exc).__name__))
        return out

    async def play(self, reply_id: int, start: float, ms_each: float = 1000) -> list[cmd.Command]:
        """Play every sentence of a reply to the end, marks echoed."""
        out: list[cmd.Command] = []
        t = start
        for i, _ in enumerate(self.spoken[reply_id]):
            out += await self.feed(ev.SentenceStarted(t, reply_id, i))
            out += await self.feed(ev.SentenceAudio(t, reply_id, i, ms_each))
            t += ms_each / 1000
            out += await self.feed(ev.SentencePlayed(t, reply_id, i))
        return out

    def last_reply(self) -> int:
        return max(self.spoken)

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [c.data for c in self.log if isinstance(c, cmd.RecordEvent) and c.kind == kind]

    def turns(self, speaker: str | None = None) -> list[cmd.RecordTurn]:
        return [c for c in self.log if isinstance(c, cmd.RecordTurn)
                and (speaker is None or c.speaker == speaker)]


def kinds(commands: list[cmd.Command]) -> list[str]:
    return [type(c).__name__ for c in commands]


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


async def test_greeting_played_then_silence_reprompts_then_goodbye_hangs_up_after_played(
    playbook: Playbook,
) -> None:
    call = Call(playbook)
    await call.feed(ev.Started(0.0))
    assert call.spoken[1] == ["Hello, this is Alex calling from Acme Services.",
                              "May I please speak with John Smith?"]
    await call.play(1, 0.01)
    greeting = call.turns("agent")[0]
    assert not greeting.interrupted and greeting.text.endswith("John Smith?")
    reprompt = playbook.settings.reprompt_after_ms / 1000
    # nothing before the reprompt delay, then "Are you still there?" and the question again
    assert "StartReply" not in kinds(await call.feed(ev.Tick(2.01 + reprompt - 0.1)))
    await call.feed(ev.Tick(2.01 + reprompt + 0.05))
    assert call.spoken[2][0] == "Are you still there?"
    t = 2.06 + reprompt
    for _ in range(playbook.settings.max_reprompts):
        await call.play(call.last_reply(), t)
        t += len(call.spoken[call.last_reply()]) + reprompt + 0.1
        await call.feed(ev.Tick(t))
    goodbye = call.last_reply()
    assert call.spoken[goodbye][-1] == "Goodbye." and call.engine.ending
    assert [e["count"] for e in call.events("silence")] == [1, 2, 3]
    # the hang-up waits until the last sentence of the goodbye is confirmed played
    out = await call.play(goodbye, t + 0.01)
    assert kinds(out)[-1] == "HangUp" and kinds(out).count("HangUp") == 1
    assert isinstance(out[-1], cmd.HangUp) and out[-1].outcome == "no_response"
    assert "HangUp" not in kinds(call.log[:-1])


async def test_backchannel_pauses_and_resumes_a_real_interruption_cuts(playbook: Playbook) -> None:
    call = Call(playbook)
    await call.feed(ev.Started(0.0))
    await call.feed(ev.SentenceStarted(0.01, 1, 0))
    await call.feed(ev.SentenceAudio(0.01, 1, 0, 2000))
    # "mhm": 100 ms of speech pauses the agent, the stretch ends at 500 ms: resume
    assert kinds(await call.feed(ev.CallerVoice(0.6, 0.5, 20, True))) == []
    assert kinds(await call.feed(ev.CallerVoice(0.7, 0.5, 100, True))) == ["Pause"]
    assert kinds(await call.feed(ev.CallerVoice(1.0, 0.5, 500, True))) == []
    assert kinds(await call.feed(ev.CallerVoice(1.08, 0.5, 0, False))) == []
    hold = playbook.settings.barge_in_resume_after_ms / 1000
    assert call.engine.next_deadline() == pytest.approx(1.08 + hold)
    assert kinds(await call.feed(ev.Tick(1.08 + hold - 0.01))) == []  # quiet, not yet long enough
    out = await call.feed(ev.Tick(1.08 + hold))
    assert kinds(out) == ["Resume", "RecordEvent"]
    assert call.events("barge_in_resumed") == [{"reaction_ms": 200.0, "paused_ms": 630.0}]
    # its transcript arrives later: a backchannel takes no turn and cuts nothing
    out = await call.feed(ev.Final(1.8, "Mhm.", speech_end_t=1.0))
    assert "StartReply" not in kinds(out) and call.events("backchannel") == [{"text": "Mhm."}]
    # a real interruption, "Sorry, [gap] can I stop you there": paused at 100 ms of
    # speech; the gap between words is shorter than the hold, so both stretches count
    await call.feed(ev.CallerVoice(2.1, 2.0, 100, True))
    await call.feed(ev.CallerVoice(2.4, 2.0, 400, True))
    await call.feed(ev.CallerVoice(2.46, 2.0, 0, False))
    assert kinds(await call.feed(ev.CallerVoice(2.6, 2.6, 20, True))) == []  # still paused
    out = await call.feed(ev.CallerVoice(2.9, 2.6, 300, True))
    assert kinds(out) == ["Clear", "RecordEvent", "RecordTurn"]
    assert call.events("barge_in") == [{"reaction_ms": 100.0, "paused_ms": 800.0}]
    assert len(call.events("barge_in_resumed")) == 1  # no resume in the gap
    cut = call.turns("agent")[0]
    assert cut.interrupted and cut.text.endswith("—")
    assert call.engine.history[-1] == Message("assistant", cut.text, interrupted=True)
    # only what was heard is remembered: paused time is not playback time
    assert call.engine.history[-1].content.startswith("Hello, this is")


async def test_words_over_the_agent_cut_it_by_transcript_and_get_an_answer(
    playbook: Playbook,
) -> None:
    call = Call(playbook)
    await call.feed(ev.Started(0.0))
    await call.feed(ev.SentenceStarted(0.01, 1, 0))
    await call.feed(ev.CallerVoice(0.6, 0.5, 100, True))  # paused
    await call.feed(ev.SpeechStarted(0.5))
    await call.feed(ev.CallerVoice(0.95, 0.5, 0, False))  # too short to cut: resumes soon
    out = await call.feed(ev.Final(1.6, "Wrong number.", speech_end_t=0.95))
    assert "Clear" in kinds(out) and "StartReply" in kinds(out)
    assert call.events("barge_in")[-1]["cut"] == "transcript"
    assert call.spoken[2][0].startswith("I'm sorry for the trouble")


async def test_keypad_entry_timeout_and_input_after_the_goodbye(playbook: Playbook) -> None:
    call = Call(playbook)
    await call.feed(ev.Started(0.0))
    await call.play(1, 0.01)
    await call.feed(ev.Final(3.0, "Yes, speaking.", speech_end_t=2.5))
    await call.play(2, 3.1)
    for i, d in enumerate("1985"):
        await call.feed(ev.Digit(6.0 + i * 0.2, d))
    assert call.turns("caller")[-1].text == "Yes, speaking."
    out = await call.feed(ev.Tick(6.6 + playbook.settings.dtmf_timeout_ms / 1000 + 0.1))
    assert call.turns("caller")[-1].text == "[keypad] 1985" and "StartReply" in kinds(out)
    assert call.spoken[3][0] == "I'm sorry, that doesn't match our records."
    await call.play(3, 10.0)
    for i, d in enumerate("1986#"):
        await call.feed(ev.Digit(14.0 + i * 0.2, d))
    assert call.engine.ending  # two mismatches: the goodbye is on its way
    late = await call.feed(ev.Digit(15.5, "9"))
    late += await call.feed(ev.Final(16.0, "wait, it's 1984", speech_end_t=15.8))
    assert "StartReply" not in kinds(late)
    assert [e["input"] for e in call.events("input_after_end")] == ["dtmf", "speech"]
    assert call.turns("caller")[-1].text == "wait, it's 1984"  # kept in the transcript


class DebtTalker:
    """A policy that would mention the debt to anyone (a badly prompted LLM)."""

    name = "debt-talker"

    async def respond(self, history: list[Message], event: PolicyEvent) -> AsyncIterator[PolicyOutput]:
        yield Say("You owe 1,250 dollars to Northwind Bank.")


async def test_voicemail_gets_only_the_playbook_message_whatever_the_policy(
    playbook: Playbook,
) -> None:
    call = Call(playbook, policy=DebtTalker())
    await call.feed(ev.Started(0.0, answered_by="machine_end_beep"))
    expected = playbook.settings.voicemail_message.format_map(
        CallContext.from_dict(CONTEXT, playbook).template_values())
    assert call.spoken == {1: [expected]}
    assert [c.action.kind for c in call.log if isinstance(c, cmd.RecordAction)] == [
        "voicemail", "end_call"]
    out = await call.play(1, 0.1)
    assert isinstance(out[-1], cmd.HangUp) and out[-1].outcome == "voicemail"
    # and mid-call, from the carrier's async verdict: the policy's reply is cleared first
    call = Call(playbook, policy=DebtTalker())
    await call.feed(ev.Started(0.0))
    await call.feed(ev.SentenceStarted(0.1, 1, 0))
    out = await call.feed(ev.MachineVerdict(0.5, "machine_start"))
    assert kinds(out)[:3] == ["RecordEvent", "RecordEvent", "Clear"]
    assert call.spoken[2] == [expected]


class Flaky:
    name = "flaky"

    def __init__(self) -> None:
        self.calls = 0

    async def respond(self, history: list[Message], event: PolicyEvent) -> AsyncIterator[PolicyOutput]:
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("policy exploded")
        yield Say("Hello there.")


async def test_failed_reply_gets_the_recovery_line_once(playbook: Playbook) -> None:
    call = Call(playbook, policy=Flaky())
    await call.feed(ev.Started(0.0))
    await call.play(1, 0.0)
    await call.feed(ev.Final(2.0, "What is this about?", speech_end_t=1.5))
    assert call.spoken[3] == [playbook.settings.recovery_line]
    assert call.events("reply_failed") == [{"error": "RuntimeError", "recovery": False}]
    await call.play(3, 2.1)
    await call.feed(ev.Final(5.0, "Hello?", speech_end_t=4.5))
    assert call.spoken[5] == [playbook.settings.recovery_line]  # recovered again, no loop


async def test_greeting_filler_max_duration_and_a_mark_that_never_comes(playbook: Playbook) -> None:
    call = Call(playbook)
    await call.feed(ev.Started(0.0))
    deadline = (playbook.settings.greeting_deadline_ms - 500) / 1000
    assert "PlayFiller" not in kinds(await call.feed(ev.Tick(deadline - 0.1)))
    out = await call.feed(ev.Tick(deadline))
    assert [c for c in out if isinstance(c, cmd.PlayFiller)] == [
        cmd.PlayFiller(playbook.settings.greeting_filler)]
    await call.feed(ev.FillerStarted(deadline + 0.02))
    assert call.events("greeting_audio") == [{"latency_ms": 1520.0, "audio": "filler"}]
    # the greeting's marks never come back: each sentence counts as played after its audio
    # plus the grace period, then the call goes on
    for i in range(2):
        await call.feed(ev.SentenceStarted(2.0 + i, 1, i))
        await call.feed(ev.SentenceAudio(2.0 + i, 1, i, 1000))
    assert call.engine.next_deadline() == pytest.approx(2.0 + 1 + 3)
    await call.feed(ev.Tick(7.0))
    assert [e["sentence"] for e in call.events("mark_timeout")] == [0, 1]
    assert not call.turns("agent")[0].interrupted
    out = await call.feed(ev.Tick(playbook.settings.max_call_seconds + 0.5))
    assert call.spoken[call.last_reply()] == [playbook.settings.max_duration_line]
    out = await call.play(call.last_reply(), playbook.settings.max_call_seconds + 0.6)
    assert isinstance(out[-1], cmd.HangUp) and out[-1].outcome == "timed_out"


async def test_stop_mid_reply_keeps_what_was_heard(playbook: Playbook) -> None:
    call = Call(playbook)
    await call.feed(ev.Started(0.0))
    await call.feed(ev.SentenceStarted(0.0, 1, 0))
    await call.feed(ev.SentenceAudio(0.0, 1, 0, 3000))
    call.clock.t = 1.5
    out = call.engine.finish(1.5)
    assert kinds(out) == ["RecordTurn"]
    turn = out[0]
    assert isinstance(turn, cmd.RecordTurn) and turn.interrupted
    assert turn.text == "Hello, this is Alex —"



async def test_a_new_turn_clears_audio_queued_before_it_reached_the_playhead(
    playbook: Playbook,
) -> None:
    call = Call(playbook)
    await call.feed(ev.Started(0.0))  # the greeting's sentences went to the TTS, none heard yet
    out = await call.feed(ev.Final(0.5, "Wrong number.", speech_end_t=0.3))
    assert kinds(out)[:3] == ["RecordTurn", "Clear", "StartReply"]
    assert call.turns("agent") == []  # nothing of the greeting was heard, so no agent turn
