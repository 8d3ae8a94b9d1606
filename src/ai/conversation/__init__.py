"""The conversation engine: every rule of a call, for live calls and simulations alike.

Inputs are typed events with times on an injected clock (`inputs`); outputs are typed
commands (`commands`) that a driver carries out: the live call's media transport, or the
text driver of the evaluation package. Nothing about the conversation is decided in a
driver; the rules can be stepped deterministically without sockets or audio.

- `engine.Conversation`: one call's state machine and its replies (the policy runs here)
- `rules`: the timing knobs and the lines the engine says itself, from the playbook
- `heard`: what a cut-off reply leaves in the caller's ears
- `voicemail`: answering-machine verdicts and the voicemail-greeting classifier
"""

from ai.conversation.engine import Conversation, conversation_for
from ai.conversation.rules import Lines, Rules

__all__ = ["Conversation", "Lines", "Rules", "conversation_for"]
