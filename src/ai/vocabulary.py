"""The vocabulary of call outcomes and agent actions, defined once.

The playbook schema, the scripted and LLM policies (their tools and the system prompt),
the store's outcome columns and the personas' expectations all take their names from
here, so a name one of them offers is a name every other one accepts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, get_args

if TYPE_CHECKING:
    from ai.types import Action

__all__ = [
    "ACTIONS",
    "ACTION_REASONS",
    "DISPUTE_REASONS",
    "OPT_OUT_REASONS",
    "OUTCOMES",
    "OUTCOME_COLUMNS",
    "PLAN_KINDS",
    "ActionKind",
    "DisputeReason",
    "OptOutReason",
    "Outcome",
    "PlanKind",
    "StateAction",
    "outcome_fields",
]

Outcome = Literal[
    "promise_to_pay", "callback", "dispute", "already_paid", "wrong_party", "opt_out",
    "voicemail", "transferred", "no_contact", "refused", "abusive", "unverified", "no_response",
    "hung_up", "timed_out",
]
#: how a call ended, one line each (the `end_call` outcome and `call_outcomes.outcome`)
OUTCOMES: dict[str, str] = {
    "promise_to_pay": "the verified debtor agreed to pay an amount on a date",
    "callback": "the person asked to be called back (at a time, when they gave one)",
    "dispute": "the verified debtor disputes the debt; validation follows in writing",
    "already_paid": "the verified debtor says the debt is already paid",
    "wrong_party": "whoever answered is not the debtor; nothing about the debt was said",
    "opt_out": "the person asked not to be called again, or is represented by an attorney",
    "voicemail": "an answering machine took a limited-content message",
    "transferred": "the person was transferred to a human agent",
    "no_contact": "nobody took part in the call (it dropped or ended before anyone spoke)",
    "refused": "the verified debtor declined every offer",
    "abusive": "the call was ended after a warning about abusive language",
    "unverified": "the right party could not be verified (or was not available)",
    "no_response": "the person stopped answering and the agent gave up",
    "hung_up": "the person ended the call before it reached an outcome",
    "timed_out": "the call reached the playbook's maximum duration",
}

PlanKind = Literal["full", "settlement", "instalment", "custom"]
#: the kind of plan a promise to pay is made under
PLAN_KINDS: dict[str, str] = {
    "full": "the whole balance in one payment",
    "settlement": "the playbook's settlement share of the balance, accepted in full",
    "instalment": "the balance split into the playbook's number of monthly payments",
    "custom": "an amount the debtor proposed",
}

DisputeReason = Literal["disputed", "already_paid"]
DISPUTE_REASONS: tuple[str, ...] = get_args(DisputeReason)
OptOutReason = Literal["stop_request", "attorney"]
OPT_OUT_REASONS: tuple[str, ...] = get_args(OptOutReason)

ActionKind = Literal[
    "right_party_verified", "wrong_party", "promise_to_pay", "schedule_callback",
    "record_dispute", "hardship", "opt_out", "transfer", "voicemail", "end_call", "note",
]
#: what an agent does during a call, one line each
ACTIONS: dict[str, str] = {
    "right_party_verified": "the person confirmed the identity check (year of birth)",
    "wrong_party": "the person is not the debtor",
    "promise_to_pay": "record a promise to pay: amount, date, plan and number of instalments",
    "schedule_callback": "record when the person asked to be called back",
    "record_dispute": "record that the debt is disputed or said to be already paid",
    "hardship": "record that the debtor described financial hardship",
    "opt_out": "the person asked to stop calls, or is represented by an attorney",
    "transfer": "transfer the call to a human agent",
    "voicemail": "a limited-content voicemail message was left",
    "end_call": "end the call with an outcome, after the closing line",
    "note": "a free-text note for the call record",
}

# actions a playbook state may take on entry, with the reasons each one accepts
StateAction = Literal["record_dispute", "opt_out", "hardship", "wrong_party"]
ACTION_REASONS: dict[str, frozenset[str | None]] = {
    "record_dispute": frozenset(DISPUTE_REASONS),
    "opt_out": frozenset(OPT_OUT_REASONS),
    "hardship": frozenset({None}),
    "wrong_party": frozenset({None}),
}

# each name is written twice (a Literal for the type checker, a documented dict for the
# prompt and the store); they must list the same names, in the same order
assert tuple(OUTCOMES) == get_args(Outcome)
assert tuple(PLAN_KINDS) == get_args(PlanKind)
assert tuple(ACTIONS) == get_args(ActionKind)
assert set(get_args(StateAction)) == set(ACTION_REASONS) <= set(ACTIONS)

#: the call_outcomes columns an action may set (see outcome_fields)
OUTCOME_COLUMNS = frozenset({
    "outcome", "right_party", "ptp_amount", "ptp_date", "ptp_plan", "ptp_instalments",
    "opt_out", "opt_out_reason", "dispute", "dispute_reason", "hardship", "callback_at",
    "callback_text",
})


def outcome_fields(action: Action) -> dict[str, Any]:
    """The call-outcome columns an agent action sets."""
    data = action.data
    match action.kind:
        case "promise_to_pay":
            return {"ptp_amount": data.get("amount"), "ptp_date": data.get("date"),
                    "ptp_plan": data.get("plan"), "ptp_instalments": data.get("instalments")}
        case "opt_out":
            return {"opt_out": True, "opt_out_reason": data.get("reason")}
        case "record_dispute":
            return {"dispute": True, "dispute_reason": data.get("reason")}
        case "schedule_callback":
            return {"callback_at": data.get("at"), "callback_text": data.get("text")}
        case "right_party_verified":
            return {"right_party": True}
        case "wrong_party":
            return {"right_party": False}
        case "hardship":
            return {"hardship": True}
        case "end_call":
            return {"outcome": data.get("outcome")}
        case "transfer":
            return {"outcome": "transferred"}
        case _:
            return {}
