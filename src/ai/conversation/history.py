"""How a conversation's history records what the agent did, beside what was said.

The engine adds a `tool` message per action, so the LLM's next turn and a policy taking
over the call (the playbook after a failed LLM) know the stage the call reached.
"""

from __future__ import annotations

import json

from ai.types import Action, Message


def action_note(action: Action) -> str:
    """How an action appears in the history: its kind, then its data as JSON."""
    return f"{action.kind} {json.dumps(action.data, sort_keys=True, default=str)}"


def actions_in(history: list[Message]) -> list[str]:
    """The kinds of the actions recorded in a history (see `action_note`)."""
    return [m.content.split(" ", 1)[0] for m in history if m.role == "tool"]
