"""A whole call as text: a policy talks to a simulated debtor, no audio and no server.
The cheapest way to check a playbook against every persona, and the base of offline
evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ai.events import CallStarted, PolicyEvent, Silence, UserTurn
from ai.protocols import Policy
from ai.types import Action, Message, Say
from evaluation.personas import SimulatedDebtor

__all__ = ["TextCallResult", "run_text_conversation"]


@dataclass
class TextCallResult:
    turns: list[tuple[str, str]] = field(default_factory=list)  # ("agent" | "debtor", text)
    actions: list[Action] = field(default_factory=list)
    outcome: str | None = None  # end_call outcome; "hung_up" / "max_turns" when none came
    interrupted: list[int] = field(default_factory=list)  # indexes of agent turns cut short

    def agent_lines(self) -> list[str]:
        return [text for speaker, text in self.turns if speaker == "agent"]

    def action(self, kind: str) -> Action | None:
        """The last action of this kind, if any."""
        return next((a for a in reversed(self.actions) if a.kind == kind), None)

    def as_json(self) -> dict[str, Any]:
        return {
            "turns": [{"speaker": s, "text": t} for s, t in self.turns],
            "actions": [{"kind": a.kind, "data": a.data} for a in self.actions],
            "outcome": self.outcome,
            "interrupted": self.interrupted,
        }


async def run_text_conversation(
    policy: Policy, debtor: SimulatedDebtor, max_turns: int = 30
) -> TextCallResult:
    """Play CallStarted, then alternate: the debtor's reply as a UserTurn, or a Silence
    (with the count of consecutive silences) when the debtor says nothing. A persona
    with `interrupt_after_ms` barges in on long agent turns (its `interrupt_line`); the
    agent turn is then cut to what was said by that point. Ends on end_call, a hang-up,
    or after `max_turns` debtor turns."""
    result = TextCallResult()
    history: list[Message] = []
    silences = 0

    async def agent(event: PolicyEvent) -> str:
        said: list[str] = []
        async for out in policy.respond(history, event):
            if isinstance(out, Say):
                said.append(out.text)
            else:
                result.actions.append(out)
                if out.kind == "end_call":
                    result.outcome = str(out.data.get("outcome"))
        text = " ".join(said)
        if text:
            result.turns.append(("agent", text))
            history.append(Message("assistant", text))
        return text

    agent_text = await agent(CallStarted())
    for _ in range(max_turns):
        if result.outcome is not None:
            break
        barge_in = debtor.interruption(agent_text) if agent_text else None
        if barge_in is not None:
            _cut_short(result, history, debtor)
            reply: str | None = barge_in
        else:
            reply = debtor.reply(agent_text) if agent_text else None
        if debtor.hung_up and reply is None:
            result.outcome = "hung_up"
            break
        if reply is None:
            silences += 1
            event: PolicyEvent = Silence(silences)
        else:
            silences = 0
            result.turns.append(("debtor", reply))
            history.append(Message("user", reply))
            event = UserTurn(reply)
        agent_text = await agent(event)
    if result.outcome is None:
        result.outcome = "hung_up" if debtor.hung_up else "max_turns"
    return result


def _cut_short(result: TextCallResult, history: list[Message], debtor: SimulatedDebtor) -> None:
    """Trim the last agent turn to the words spoken before the debtor barged in."""
    after_ms = debtor.persona.interrupt_after_ms or 0
    speaker, text = result.turns[-1]
    words = text.split()
    keep = max(1, int(after_ms / 60_000 * 160))
    heard = " ".join(words[:keep])
    result.turns[-1] = (speaker, heard)
    result.interrupted.append(len(result.turns) - 1)
    history[-1] = Message("assistant", heard, interrupted=True)
