"""Answering-machine detection: the carrier's verdict when it gives one, else the words.

Twilio's AMD reports `AnsweredBy` (`human`, `machine_start`, `machine_end_beep`,
`machine_end_silence`, `machine_end_other`, `fax`, `unknown`); a stream can carry it as the
custom parameter `answered_by`. Without it, the first seconds of what the callee says are
matched against the phrases voicemail greetings use ("leave a message", "after the tone").
"""

from __future__ import annotations

import re
from collections.abc import Mapping

MACHINE_RESULTS = frozenset(
    {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax"}
)
_PARAM_NAMES = ("answered_by", "AnsweredBy", "answeredBy")

# "He's not available" is a person answering for the debtor, not a machine: only the
# first-person and "to take your call" forms count.
_VOICEMAIL = re.compile(
    r"\b("
    r"leave (me |us )?(a |your )?(brief |short |detailed )?(message|voicemail|name and number)"
    r"|(after|at) the (tone|beep)"
    r"|(i'm|i am|we're|we are) (currently |not )?(not |un)?available"
    r"|(not|un)available to (take|answer) (your|the) (call|phone)"
    r"|can(no|')?t (take|come to|answer) (your|the) (call|phone)"
    r"|voice ?mail|voice messaging"
    r"|mailbox"
    r"|the (person|party|number|subscriber) you (are|have|were) (calling|called|dialed|trying)"
    r"|you('ve| have) reached"
    r"|record your message"
    r")\b",
    re.IGNORECASE,
)


def carrier_verdict(params: Mapping[str, str]) -> str | None:
    """The carrier's answering-machine result from stream parameters, lower-cased, or None."""
    for name in _PARAM_NAMES:
        value = params.get(name)
        if value:
            return value.strip().lower()
    return None


def is_machine_result(answered_by: str | None) -> bool:
    return bool(answered_by) and answered_by in MACHINE_RESULTS


def sounds_like_voicemail(text: str) -> bool:
    """True when a transcript reads like a voicemail greeting."""
    return bool(_VOICEMAIL.search(text.replace("\u2019", "'")))
