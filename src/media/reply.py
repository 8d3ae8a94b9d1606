"""The call-outcome columns each agent action sets, for the store."""

from __future__ import annotations

from typing import Any

from ai.types import Action


def outcome_fields(action: Action) -> dict[str, Any]:
    """The call-outcome columns an agent action sets."""
    data = action.data
    match action.kind:
        case "promise_to_pay":
            return {"ptp_amount": data.get("amount"), "ptp_date": data.get("date"),
                    "ptp_plan": data.get("plan")}
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
