"""The vetted material an edit may draw on: wording blocks (empathy lines, clearer
questions) and whole states (the standard offers, a hardship step), each already written to
pass the compliance rules. An edit never invents text; it picks from here, so a tuned
playbook only ever says what someone reviewed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["OFFER_STATES", "STATE_TEMPLATES", "WORDING_BLOCKS", "WordingBlock", "state_template"]


@dataclass(frozen=True, slots=True)
class WordingBlock:
    """One vetted line. `field` says where it goes: `say` lines are spoken on entry to the
    state (added before its other lines), an `ask` replaces the state's question. `fits`
    lists the states it was written for (empty: any post-verification state)."""

    text: str
    field: Literal["say", "ask"]
    purpose: Literal["empathy", "clarity", "courtesy"]
    fits: tuple[str, ...] = ()


WORDING_BLOCKS: dict[str, WordingBlock] = {
    "empathy_understand": WordingBlock("I understand.", "say", "empathy"),
    "empathy_hardship": WordingBlock(
        "I'm sorry to hear that, and thank you for telling me.", "say", "empathy",
        ("hardship", "offer_instalments", "offer_settlement", "ask_amount"),
    ),
    "empathy_find_way": WordingBlock(
        "Let's find something that works for you.", "say", "empathy",
        ("hardship", "offer_instalments", "offer_settlement", "ask_amount"),
    ),
    "courtesy_thanks": WordingBlock("Thank you.", "say", "courtesy"),
    "clear_offer_full": WordingBlock(
        "Are you able to pay the full balance of {balance}?", "ask", "clarity", ("offer_full",),
    ),
    "clear_offer_settlement": WordingBlock(
        "{company} can accept {settlement_amount} to settle the account in full. "
        "Would that work for you?", "ask", "clarity", ("offer_settlement",),
    ),
    "clear_offer_instalments": WordingBlock(
        "That would be {instalments} monthly payments of {instalment_amount}. "
        "Would that work for you?", "ask", "clarity", ("offer_instalments",),
    ),
    "clear_ask_amount": WordingBlock(
        "How much could you pay, and on what date?", "ask", "clarity", ("ask_amount",),
    ),
    "clear_ask_date": WordingBlock(
        "On what date will you make that payment?", "ask", "clarity", ("ask_date",),
    ),
    "clear_confirm": WordingBlock(
        "Just to confirm, you will pay {ptp_amount} on {ptp_date}. Is that correct?", "ask",
        "clarity", ("confirm",),
    ),
    "clear_verify": WordingBlock(
        "For your security, could you please tell me your year of birth?", "ask", "clarity",
        ("verify", "verify_retry"),
    ),
    "clear_greeting": WordingBlock(
        "May I please speak with {debtor_name}?", "ask", "clarity", ("greeting",),
    ),
    "clear_callback": WordingBlock(
        "When would be a good time to call you back?", "ask", "clarity", ("callback_ask",),
    ),
}

#: the offer states by plan, as a playbook names them
OFFER_STATES: dict[str, str] = {
    "full": "offer_full", "settlement": "offer_settlement", "instalment": "offer_instalments",
}

# whole states an edit may add when a playbook lacks them; `on.no` of an offer is rewired
# by the edit that places it in the negotiation
STATE_TEMPLATES: dict[str, dict[str, Any]] = {
    "offer_full": {
        "expect": "offer", "plan": "full",
        "ask": WORDING_BLOCKS["clear_offer_full"].text, "on": {"no": "refused"},
    },
    "offer_settlement": {
        "expect": "offer", "plan": "settlement", "say": ["I understand."],
        "ask": WORDING_BLOCKS["clear_offer_settlement"].text, "on": {"no": "refused"},
    },
    "offer_instalments": {
        "expect": "offer", "plan": "instalment",
        "say": ["We can also split the balance into {instalments} monthly payments."],
        "ask": WORDING_BLOCKS["clear_offer_instalments"].text, "on": {"no": "refused"},
    },
    "ask_amount": {
        "expect": "amount", "say": ["Let's find an amount that works for you."],
        "ask": WORDING_BLOCKS["clear_ask_amount"].text, "on": {"no": "refused"},
    },
    "hardship": {
        "action": "hardship",
        "say": [WORDING_BLOCKS["empathy_hardship"].text, WORDING_BLOCKS["empathy_find_way"].text],
        "next": "offer_instalments",
    },
}


def state_template(name: str) -> dict[str, Any]:
    """A fresh copy of a template state (KeyError when there is none by that name)."""
    t = STATE_TEMPLATES[name]
    return {k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
            for k, v in t.items()}
