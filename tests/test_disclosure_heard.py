"""A caller who talks over the disclosure hears it again: the scripted agent says the
sentences they missed before asking anything, unless what they said ends the call's
business (a stop request, a dispute, ...)."""

from __future__ import annotations

from typing import Any

import pytest

from ai.events import CallStarted, UserTurn
from ai.playbook import MINI_MIRANDA, Playbook, load_playbook
from ai.playbook_policy import ScriptedPolicy
from ai.types import Action, Message, PolicyOutput, Say

# a fictional debtor on a fixed clock
CONTEXT: dict[str, Any] = {
    "debtor_name": "Jordan Reyes", "birth_year": 1979, "balance": 640.0,
    "creditor": "Northwind Bank", "callback_number": "800-555-0142",
    "timezone": "America/Chicago", "today": "2026-11-21", "now": "2026-11-21T10:00:00",
}


@pytest.fixture(scope="module")
def playbook() -> Playbook:
    return load_playbook()


async def _respond(p: ScriptedPolicy, history: list[Message], text: str | None) -> list[PolicyOutput]:
    event = CallStarted() if text is None else UserTurn(text)
    return [o async for o in p.respond(history, event)]


def _says(outs: list[PolicyOutput]) -> list[str]:
    return [o.text for o in outs if isinstance(o, Say)]


async def _to_disclosure(p: ScriptedPolicy) -> tuple[list[Message], list[str]]:
    """Greeting, identity, year: returns the history so far and the disclosure reply."""
    history: list[Message] = []
    for text in (None, "Yes, speaking.", "1979"):
        said = _says(await _respond(p, history, text))
        if text is not None:
            history.append(Message("user", text))
        history.append(Message("assistant", " ".join(said)))
    return history[:-1], said


async def test_disclosure_talked_over_is_said_again_before_the_offer(playbook: Playbook) -> None:
    p = ScriptedPolicy(playbook, CONTEXT)
    history, reply = await _to_disclosure(p)
    assert any(MINI_MIRANDA in s for s in reply) and "full balance" in reply[-1]
    # the caller cut in after the agent's name: the mini-Miranda and the rest were not heard
    heard = " ".join(reply[:2])
    history += [Message("assistant", heard, interrupted=True), Message("user", "Sorry, go ahead.")]
    again = _says(await _respond(p, history, "Sorry, go ahead."))
    missed = reply[2:-1]
    assert again[: len(missed)] == missed and any(MINI_MIRANDA in s for s in again)
    assert "full balance" in again[-1]  # then the question the caller did not hear
    # heard in full this time: the next answer goes to the offer, with no third disclosure
    history += [Message("assistant", " ".join(again)), Message("user", "Yes, I can.")]
    after = _says(await _respond(p, history, "Yes, I can."))
    assert not any(MINI_MIRANDA in s for s in after)


async def test_disclosure_heard_in_full_is_not_repeated(playbook: Playbook) -> None:
    p = ScriptedPolicy(playbook, CONTEXT)
    history, reply = await _to_disclosure(p)
    history += [Message("assistant", " ".join(reply)), Message("user", "No, I can't.")]
    outs = _says(await _respond(p, history, "No, I can't."))
    assert not any(MINI_MIRANDA in s for s in outs) and "settle" in " ".join(outs)


async def test_a_stop_request_over_the_disclosure_is_honoured_at_once(playbook: Playbook) -> None:
    p = ScriptedPolicy(playbook, CONTEXT)
    history, reply = await _to_disclosure(p)
    history += [Message("assistant", reply[0], interrupted=True)]
    outs = await _respond(p, history, "Stop calling me.")
    assert not any(MINI_MIRANDA in s for s in _says(outs))
    assert [o.kind for o in outs if isinstance(o, Action)] == ["opt_out", "end_call"]
