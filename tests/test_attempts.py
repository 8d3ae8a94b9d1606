"""Attempt states from carrier status callbacks: repeats, late and reordered callbacks end
in the same state whatever the order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from campaigns.attempts import TERMINAL, AttemptState, advance, from_exotel, from_twilio

STATES: list[AttemptState] = ["queued", "dialing", "ringing", "in_progress", "completed",
                              "no_answer", "busy", "failed", "canceled", "voicemail"]


def fold(events: list[AttemptState]) -> AttemptState:
    state: AttemptState = "queued"
    for e in events:
        state = advance(state, e) or state
    return state


@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=12), st.randoms())
def test_any_order_and_any_repeats_end_in_the_same_state(events: list[AttemptState], rnd) -> None:
    shuffled = list(events)
    rnd.shuffle(shuffled)
    assert fold(events) == fold(shuffled) == fold(events + shuffled)


@given(st.lists(st.sampled_from(STATES), min_size=1, max_size=12))
def test_an_ended_attempt_never_goes_back(events: list[AttemptState]) -> None:
    state: AttemptState = "queued"
    ended = False
    for e in events:
        state = advance(state, e) or state
        ended = ended or state in TERMINAL
        assert not ended or state in TERMINAL


def test_the_usual_sequences() -> None:
    assert fold(["dialing", "ringing", "in_progress", "completed"]) == "completed"
    assert fold(["ringing", "no_answer", "ringing"]) == "no_answer"  # a late ringing
    assert fold(["completed", "in_progress"]) == "completed"
    assert fold(["completed", "voicemail"]) == "voicemail"  # async AMD after the end
    assert advance("in_progress", "in_progress") is None


def test_carrier_status_names() -> None:
    assert [from_twilio(s) for s in ("queued", "initiated", "ringing", "in-progress",
                                     "completed", "busy", "no-answer", "canceled", "failed")] == [
        "queued", "dialing", "ringing", "in_progress", "completed", "busy", "no_answer",
        "canceled", "failed"]
    assert from_twilio("Teleported") is None
    assert from_exotel("no-answer") == from_exotel("No_Answer") == "no_answer"
    assert from_exotel("in-progress") == "in_progress" and from_exotel("cancelled") == "canceled"
