"""The conversation engine: one for live calls and simulations.

It keeps the history the agent is allowed to remember (only what the caller actually
heard) and turns policy events into a stream of `Say` and `Action` items.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ai.events import PolicyEvent, UserTurn
from ai.protocols import Policy
from ai.types import Action, Message, PolicyOutput, Say


class ConversationEngine:
    def __init__(self, policy: Policy, context: dict[str, Any] | None = None) -> None:
        self.policy = policy
        self.context = dict(context or {})
        self.history: list[Message] = []
        self.actions: list[Action] = []
        self.ended: Action | None = None

    async def handle(self, event: PolicyEvent) -> AsyncIterator[PolicyOutput]:
        """Feed one event; yields what the agent says and does, in order."""
        if isinstance(event, UserTurn):
            self.history.append(Message("user", event.text))
        async for out in self.policy.respond(list(self.history), event):
            if isinstance(out, Action):
                self.actions.append(out)
                if out.kind == "end_call":
                    self.ended = out
            yield out

    def agent_said(self, text: str, interrupted: bool = False) -> None:
        """Record what the caller actually heard of the agent's reply."""
        text = text.strip()
        if text or interrupted:
            self.history.append(Message("assistant", text, interrupted=interrupted))

    @staticmethod
    def say_text(outputs: list[PolicyOutput]) -> str:
        return " ".join(o.text for o in outputs if isinstance(o, Say))
