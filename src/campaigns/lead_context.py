"""From a stored lead to the call context its playbook declares (`ai.context`).

The lead's own columns take the collections names (name → debtor_name, amount_due →
balance, currency, due_date, the time zone); a custom column of the file reaches the
context under its header's key (lower case, spaces and dashes as `_`: "Birth Year" is
`birth_year`). A playbook field that neither gives is a column the file must carry,
which `missing_columns` tells at upload time, before a row is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ai.context import META_FIELDS
from campaigns.leads import OPTIONAL_COLUMNS, REQUIRED_COLUMNS

if TYPE_CHECKING:
    from ai.playbook import Playbook

__all__ = ["LEAD_FIELDS", "call_context", "missing_columns"]

#: context field → the lead column that gives it
LEAD_FIELDS: dict[str, str] = {
    "debtor_name": "name",
    "balance": "amount_due",
    "currency": "currency",
    "due_date": "due_date",
    "account_ref": "account_ref",
    "timezone": "timezone",
}


def call_context(lead: Mapping[str, Any]) -> dict[str, Any]:
    """The context of a call to `lead` (a `leads` row): its custom fields, then its own
    columns under the context names. The time zone is the lead's when it has one zone; with
    several candidates the call's clock uses the first (the calling window, decided
    before the dial, held in all of them)."""
    context: dict[str, Any] = dict(lead.get("custom") or {})
    context.update({
        "debtor_name": lead["name"],
        "balance": str(lead["amount_due"]),
        "currency": lead["currency"],
        "due_date": lead["due_date"].isoformat(),
        "account_ref": lead["account_ref"],
    })
    zones = list(lead.get("zones") or ())
    if zones:
        context["timezone"] = zones[0]
    return context


def missing_columns(playbook: Playbook, columns: Iterable[str]) -> list[str]:
    """The playbook's required fields (without a default) that the file's columns do not
    give; empty when every lead of the file can make a call context."""
    given = set(columns) | set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    given |= {name for name, column in LEAD_FIELDS.items() if column in given}
    return [
        name for name, spec in playbook.context.items()
        if spec.required and spec.default is None and name not in given and name not in META_FIELDS
    ]
