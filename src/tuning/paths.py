"""The ways a call can walk through a playbook, as the scripted policy walks it: a state's
`on` transitions and `next`, and, from any state that waits for the caller, the routes of
the current phase (before or after right-party verification) and the engine's own fallbacks
(a reprompt, a line not understood, abuse, giving up). Only an `on: verified` transition
crosses from before verification to after.

`walk` gives every (state, verified) a call can reach from the greeting, with the path
that reaches it first, so a compliance check can show how a line could be heard too early.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from ai.playbook import Playbook, State

__all__ = ["VERIFIED", "Step", "edges", "waits", "walk"]

VERIFIED = "verified"
# states the engine enters by itself from a state that waits for the caller
_FALLBACKS_ALWAYS = ("still_there", "no_response", "not_understood", "abuse_warning", "abusive")
_GIVE_UP = {False: "unverified", True: "refused"}


@dataclass(frozen=True, slots=True)
class Step:
    state: str
    verified: bool


def waits(st: State) -> bool:
    """The state stops and listens to the caller (so routes and fallbacks apply)."""
    return not st.end and not st.next and not st.returns and (bool(st.ask) or st.expect != "none")


def edges(playbook: Playbook, step: Step) -> Iterator[tuple[str, Step]]:
    """(how, next step) from `step`."""
    st = playbook.states.get(step.state)
    if st is None:
        return
    # an ending state may still turn elsewhere on an engine event (a transfer with no
    # number to transfer to goes on to no_transfer)
    for key, target in st.on.items():
        yield f"on {key}", Step(target, step.verified or key == VERIFIED)
    if st.end:
        return
    if st.next:
        yield "next", Step(st.next, step.verified)
    if waits(st):
        routes = (playbook.routes.post_verification if step.verified
                  else playbook.routes.pre_verification)
        for intent, target in routes.items():
            yield f"route {intent}", Step(target, step.verified)
        for name in (*_FALLBACKS_ALWAYS, _GIVE_UP[step.verified]):
            if name in playbook.states:
                yield "engine", Step(name, step.verified)


def walk(playbook: Playbook, start: Step | None = None) -> dict[Step, list[str]]:
    """Every step reachable from `start` (default: the greeting, unverified), each with the
    first path found to it (state names, with how each was entered)."""
    first = start or Step("greeting", False)
    if first.state not in playbook.states:
        return {}
    seen: dict[Step, list[str]] = {first: [first.state]}
    queue = deque([first])
    while queue:
        step = queue.popleft()
        for how, nxt in edges(playbook, step):
            if nxt not in seen and nxt.state in playbook.states:
                seen[nxt] = [*seen[step], f"({how}) {nxt.state}"]
                queue.append(nxt)
    return seen
