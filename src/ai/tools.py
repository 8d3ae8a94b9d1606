"""The agent's tools for a function-calling LLM, built from ai.vocabulary.

One argument model per action the LLM may take; their JSON schemas are the `tools` the
client offers, and `tools_doc` is the list the system prompt shows, so the two cannot
disagree. `validate_tool_call` turns a call into an `Action` or raises ToolArgumentError
with the reason (the policy logs it and tells the model).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ai.types import Action
from ai.vocabulary import ACTIONS, DisputeReason, OptOutReason, Outcome, PlanKind

__all__ = [
    "TOOL_MODELS",
    "ToolArgumentError",
    "tool_schemas",
    "tools_doc",
    "validate_tool_call",
]


class _Args(BaseModel):
    model_config = ConfigDict(extra="ignore")


class NoArgs(_Args):
    pass


class PromiseToPayArgs(_Args):
    amount: float = Field(gt=0, lt=1e9, description="Amount the debtor promises to pay.")
    date: str = Field(description="Payment date, YYYY-MM-DD, today or later.")
    plan: PlanKind = Field(description="The plan the promise is made under.")
    instalments: int | None = Field(
        default=None, ge=2, le=120, description="Number of monthly payments (plan instalment)."
    )

    @model_validator(mode="after")
    def _instalments_match_plan(self) -> PromiseToPayArgs:
        if self.plan == "instalment" and self.instalments is None:
            raise ValueError("plan instalment needs the number of instalments")
        if self.plan != "instalment" and self.instalments is not None:
            raise ValueError(f"instalments only go with plan instalment, not {self.plan}")
        return self


class ScheduleCallbackArgs(_Args):
    at: str | None = Field(default=None, description="ISO 8601 date-time of the callback.")
    text: str = Field(default="", max_length=500, description="The caller's words about when.")

    @field_validator("at")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        if v is not None:
            dt.datetime.fromisoformat(v)
        return v


class RecordDisputeArgs(_Args):
    reason: DisputeReason
    text: str = Field(default="", max_length=500, description="What the caller said.")


class HardshipArgs(_Args):
    text: str = Field(default="", max_length=500, description="What the caller said.")


class OptOutArgs(_Args):
    reason: OptOutReason


class TransferArgs(_Args):
    reason: str = Field(min_length=1, max_length=200, description="Why the caller is transferred.")
    number: str | None = Field(default=None, description="Leave empty to use the default line.")


class EndCallArgs(_Args):
    outcome: Outcome


TOOL_MODELS: dict[str, type[_Args]] = {
    "right_party_verified": NoArgs,
    "wrong_party": NoArgs,
    "promise_to_pay": PromiseToPayArgs,
    "schedule_callback": ScheduleCallbackArgs,
    "record_dispute": RecordDisputeArgs,
    "hardship": HardshipArgs,
    "opt_out": OptOutArgs,
    "transfer": TransferArgs,
    "end_call": EndCallArgs,
}
assert set(TOOL_MODELS) <= set(ACTIONS)


class ToolArgumentError(ValueError):
    pass


@functools.cache
def tool_schemas() -> list[dict[str, Any]]:
    """The `tools` parameter of the chat completions request. Built once (pydantic JSON
    schemas cost milliseconds of CPU); callers must not modify the returned list."""
    return [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": ACTIONS[name],
                "parameters": model.model_json_schema(),
            },
        }
        for name, model in TOOL_MODELS.items()
    ]


def _param_doc(name: str, prop: dict[str, Any], defs: dict[str, Any], required: bool) -> str:
    if "$ref" in prop:
        prop = defs[prop["$ref"].rsplit("/", 1)[-1]]
    options = prop.get("anyOf") or [prop]
    kinds = []
    for o in options:
        if "enum" in o:
            kinds.append("|".join(f'"{v}"' for v in o["enum"]))
        elif o.get("type") == "null":
            kinds.append("null")
        else:
            kinds.append(str(o.get("type", "any")))
    return f'"{name}": {"|".join(kinds)}' + ("" if required else " (optional)")


@functools.cache
def tools_doc() -> str:
    """The tools as the system prompt lists them, one line each, from the same schemas."""
    lines = []
    for tool in tool_schemas():
        f = tool["function"]
        params = f["parameters"]
        props = params.get("properties", {})
        required = set(params.get("required", []))
        args = ", ".join(
            _param_doc(n, p, params.get("$defs", {}), n in required) for n, p in props.items()
        )
        lines.append(f"- {f['name']} {{{args}}}: {f['description']}")
    return "\n".join(lines)


def validate_tool_call(
    name: str, arguments: str, *, today: dt.date, transfer_number: str | None = None
) -> Action:
    """Parse and validate one tool call into an `Action`; raises `ToolArgumentError`.
    `today` is the call's date in the debtor's time zone."""
    model = TOOL_MODELS.get(name)
    if model is None:
        raise ToolArgumentError(f"unknown tool {name!r}; the tools are: {', '.join(TOOL_MODELS)}")
    try:
        raw = json.loads(arguments or "{}")
    except json.JSONDecodeError as exc:
        raise ToolArgumentError(f"arguments are not valid JSON: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise ToolArgumentError("arguments must be a JSON object")
    try:
        args = model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in exc.errors()
        )
        raise ToolArgumentError(problems) from exc
    if isinstance(args, PromiseToPayArgs):
        try:
            date = dt.date.fromisoformat(args.date)
        except ValueError as exc:
            raise ToolArgumentError("date: must be YYYY-MM-DD") from exc
        if date < today:
            raise ToolArgumentError(f"date: {args.date} is in the past (today is {today})")
        return Action("promise_to_pay", {
            "amount": float(args.amount), "date": date.isoformat(), "plan": args.plan,
            "instalments": args.instalments,
        })
    if isinstance(args, ScheduleCallbackArgs):
        if args.at is not None and dt.datetime.fromisoformat(args.at).date() < today:
            raise ToolArgumentError(f"at: {args.at} is in the past (today is {today})")
        return Action("schedule_callback", {"at": args.at, "text": args.text})
    if isinstance(args, RecordDisputeArgs):
        return Action("record_dispute", {"reason": args.reason, "text": args.text})
    if isinstance(args, HardshipArgs):
        return Action("hardship", {"text": args.text})
    if isinstance(args, OptOutArgs):
        return Action("opt_out", {"reason": args.reason})
    if isinstance(args, TransferArgs):
        number = args.number or transfer_number or ""
        if not number:
            raise ToolArgumentError("no transfer number is configured for this call")
        return Action("transfer", {"number": number, "reason": args.reason})
    if isinstance(args, EndCallArgs):
        return Action("end_call", {"outcome": args.outcome})
    assert name in ("right_party_verified", "wrong_party")
    return Action("right_party_verified" if name == "right_party_verified" else "wrong_party", {})
