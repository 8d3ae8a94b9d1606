"""Weak playbooks written by someone else (not the shipped one): variants of the default
made by hand, not with tuning's own edits, so tuning is shown to improve a playbook it did
not write."""

from __future__ import annotations

from typing import Any

from ai.playbook import Playbook, load_playbook, parse_playbook


def _default() -> dict[str, Any]:
    return load_playbook().model_dump(mode="json")


def reordered() -> Playbook:
    """Asks for an amount first, instalments next, the full balance last; no settlement;
    hardship goes straight to a refusal."""
    d = _default()
    d["name"], st = "collections-reordered", d["states"]
    del st["offer_settlement"]
    st["disclosure"]["next"] = "ask_amount"
    st["ask_amount"]["on"]["no"] = "offer_instalments"
    st["offer_instalments"]["on"]["no"] = "offer_full"
    st["offer_full"]["on"]["no"] = "refused"
    d["routes"]["post_verification"]["hardship"] = "refused"
    return parse_playbook(d)


def curt() -> Playbook:
    """The default order, but curt: terse questions, no empathy, and it gives up at the
    first answer it does not follow."""
    d = _default()
    d["name"], st = "collections-curt", d["states"]
    st["offer_full"]["ask"] = "{balance}. Today?"
    st["offer_settlement"].update(say=[], ask="{settlement_amount} closes it. Yes?")
    st["offer_instalments"].update(say=[], ask="{instalments} times {instalment_amount}. Yes?")
    st["ask_amount"].update(say=[], ask="Amount?")
    st["ask_date"].update(say=[], ask="Date?")
    st["hardship"]["say"] = ["Noted."]
    d["settings"]["max_reprompts"] = 0
    return parse_playbook(d)


def badly_worded() -> Playbook:
    """The default order, but its offers and questions are worded so a debtor cannot tell
    what is asked: jargon, no amounts, several questions at once."""
    d = _default()
    d["name"], st = "collections-badly-worded", d["states"]
    st["offer_full"]["ask"] = "Are you amenable to remitting the aggregate outstanding quantum forthwith?"
    st["offer_settlement"]["ask"] = ("Would a compromise of the liability, not otherwise unavailable,"
                                     " be something you would not decline?")
    st["offer_instalments"]["ask"] = "Might a periodic amortisation schedule or some other arrangement suit, or not?"
    st["ask_amount"]["ask"] = "What quantum, at what juncture, and by what modality?"
    st["ask_date"]["ask"] = "And the juncture of remittance would be when, in calendar terms?"
    return parse_playbook(d)
