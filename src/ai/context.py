"""A call's context: the facts about the debtor that a playbook declares it needs (its
`context` section), validated in full when a call is created, and what follows from them
for one call (the debtor's time zone, today and now there, offer amounts, spoken values).

Nothing here supplies a fact about a person: a declared field is given by the call or has a
default the playbook states (a product fact such as the currency), else the call is refused
with every missing or invalid field named.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_timezone
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ai.extract import spoken_date, spoken_money

if TYPE_CHECKING:
    from ai.playbook import Playbook

__all__ = [
    "COLLECTIONS_FIELDS",
    "META_FIELDS",
    "CallContext",
    "ContextError",
    "ContextField",
    "FieldType",
    "ResolvedContext",
    "parse_value",
    "resolve_context",
]

FieldType = Literal[
    "str", "int", "year", "decimal", "money", "bool", "date", "datetime", "phone", "timezone",
]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INTEGER = re.compile(r"^[+-]?\d{1,18}$")


class ContextError(ValueError):
    """A call context that does not satisfy its playbook: `problems` maps every missing or
    invalid field to the reason."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(f"{k}: {v}" for k, v in self.problems.items()))


class ContextField(BaseModel):
    """One declared context field. Bounds: `ge`/`le` inclusive, `gt`/`lt` exclusive; a
    `year` is at most the current year in the debtor's time zone unless `le` says less."""

    model_config = ConfigDict(extra="forbid")

    type: FieldType
    required: bool = True
    default: Any = None
    description: str = ""
    ge: float | None = None
    le: float | None = None
    gt: float | None = None
    lt: float | None = None
    max_length: int = Field(default=200, ge=1, le=10_000)
    choices: list[str] | None = None
    # a phone number without a leading + is read as a number of this region (ISO 3166)
    region: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ContextField:
        if self.default is not None:
            if self.required:
                raise ValueError("a field with a default cannot also be required")
            parse_value(self, self.default, dt.date(2000, 1, 1))  # raises when it does not fit
        return self


def _bounded(spec: ContextField, value: float | Decimal, shown: str) -> None:
    v = float(value)
    if spec.gt is not None and not v > spec.gt:
        raise ValueError(f"must be greater than {spec.gt:g}, got {shown}")
    if spec.lt is not None and not v < spec.lt:
        raise ValueError(f"must be less than {spec.lt:g}, got {shown}")
    if spec.ge is not None and v < spec.ge:
        raise ValueError(f"must be at least {spec.ge:g}, got {shown}")
    if spec.le is not None and v > spec.le:
        raise ValueError(f"must be at most {spec.le:g}, got {shown}")


def _as_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"must be a whole number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return int(value)
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    raise ValueError(f"must be a whole number, got {value!r}")


def parse_value(spec: ContextField, value: Any, today: dt.date) -> Any:
    """The value of one field, converted to its type; raises ValueError with the reason."""
    t = spec.type
    if t in ("str", "phone", "timezone", "date", "datetime"):
        if not isinstance(value, str):
            raise ValueError(f"must be a string ({_described(t)}), got {type(value).__name__}")
        if _CONTROL.search(value):
            raise ValueError("must not contain control characters")
        value = value.strip()
        if not value:
            raise ValueError("must not be empty")
        if len(value) > spec.max_length:
            raise ValueError(f"must be at most {spec.max_length} characters")
    if t == "str":
        if spec.choices is not None and value not in spec.choices:
            raise ValueError(f"must be one of {', '.join(spec.choices)}, got {value!r}")
        return value
    if t == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value
    if t in ("int", "year"):
        n = _as_int(value)
        if t == "year":
            low = spec.ge if spec.ge is not None else 1900
            high = min(spec.le, today.year) if spec.le is not None else today.year
            if not low <= n <= high:
                raise ValueError(f"must be a year from {low:g} to {high:g}, got {n}")
        _bounded(spec, n, str(n))
        return n
    if t in ("decimal", "money"):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(f"must be a number, got {type(value).__name__}")
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"must be a number, got {value!r}") from None
        if not d.is_finite():
            raise ValueError(f"must be a finite number, got {value!r}")
        _bounded(spec, d, str(value))
        if t == "money" and d.as_tuple().exponent < -2 and d != d.quantize(Decimal("0.01")):  # type: ignore[operator]
            raise ValueError(f"must have at most 2 decimal places, got {value!r}")
        return d
    if t == "date":
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"must be a date as YYYY-MM-DD, got {value!r}") from None
    if t == "datetime":
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"must be an ISO 8601 date-time, got {value!r}") from None
    if t == "phone":
        try:
            parsed = phonenumbers.parse(value, spec.region)
        except phonenumbers.NumberParseException:
            where = f" or a {spec.region} number" if spec.region else ""
            raise ValueError(f"must be a phone number in E.164 form{where}, got {value!r}") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError(f"is not a valid phone number: {value!r}")
        return value
    assert t == "timezone"
    zone_name(value)
    return value


def _described(t: str) -> str:
    return {"date": "YYYY-MM-DD", "datetime": "ISO 8601", "timezone": "an IANA time zone",
            "phone": "a phone number"}.get(t, "text")


def zone_name(value: str) -> ZoneInfo:
    """The IANA zone of that name; raises ValueError for anything else."""
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"must be an IANA time zone name such as America/New_York, got {value!r}"
        ) from None


#: the years a call's `today` / `now` override may name
CLOCK_YEARS = (2000, 2999)

#: keys any call may carry whatever its playbook declares: clock overrides (simulations,
#: tests), per-call overrides of playbook facts, and the transfer line
META_FIELDS: dict[str, ContextField] = {
    "today": ContextField(type="date", required=False),
    "now": ContextField(type="datetime", required=False),
    "agent_name": ContextField(type="str", required=False, max_length=80),
    "company": ContextField(type="str", required=False, max_length=120),
    "caller_brand": ContextField(type="str", required=False, max_length=120),
    "settlement_pct": ContextField(type="decimal", required=False, gt=0, le=100),
    "instalments": ContextField(type="int", required=False, ge=2, le=120),
    "transfer_number": ContextField(type="phone", required=False),
}

#: the fields a collections playbook must declare (its policies read them), and the
#: types each may be declared with
COLLECTIONS_FIELDS: dict[str, tuple[str, ...]] = {
    "debtor_name": ("str",),
    "birth_year": ("year",),
    "balance": ("money", "decimal"),
    "creditor": ("str",),
    "currency": ("str",),
    "first_contact": ("bool",),
    "callback_number": ("phone", "str"),
    "timezone": ("timezone",),
}


@dataclass(frozen=True, slots=True)
class ResolvedContext:
    """A validated context: every declared field converted (defaults applied), the debtor's
    time zone and where it came from, and the call's today and now in that zone."""

    values: dict[str, Any]
    timezone: str
    timezone_source: Literal["context", "number", "playbook default", "not declared"]
    timezone_candidates: tuple[str, ...]
    today: dt.date
    now: dt.datetime

    def stored(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """The context as a call should store it: as given, plus the time zone chosen and
        why (so a later session and a reader of the call see the same zone)."""
        out = dict(context)
        if self.timezone_source == "not declared":
            return out
        out["timezone"] = self.timezone
        if self.timezone_source != "context":
            out["timezone_source"] = self.timezone_source
        if len(self.timezone_candidates) > 1:
            out["timezone_candidates"] = list(self.timezone_candidates)
        return out


def _zones_for_number(number: str | None) -> tuple[str, ...]:
    if not number:
        return ()
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(z for z in phone_timezone.time_zones_for_number(parsed) if z != "Etc/Unknown")


def resolve_context(
    context: Mapping[str, Any] | None,
    playbook: Playbook,
    *,
    now: dt.datetime | None = None,
    phone: str | None = None,
) -> ResolvedContext:
    """Validate `context` against the playbook's declared fields; raises ContextError
    naming every missing or invalid field.

    The time zone is the context's `timezone`, else the first zone the called number
    (`phone`) maps to, else the playbook's default for `timezone`. `now` (aware; the real
    clock when None) is read in that zone, unless the context overrides `now` / `today`.
    """
    if context is not None and not isinstance(context, Mapping):
        raise ContextError({"context": "must be an object"})
    c = dict(context or {})
    if now is None:
        now = dt.datetime.now(dt.UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    problems: dict[str, str] = {}
    declared = playbook.context

    zone, source = "UTC", "not declared"
    candidates: tuple[str, ...] = ()
    tz_spec = declared.get("timezone")
    if tz_spec is not None:
        if c.get("timezone") is not None:
            try:
                zone, source = parse_value(tz_spec, c["timezone"], now.date()), "context"
            except ValueError as exc:
                problems["timezone"] = str(exc)
        elif candidates := _zones_for_number(phone):
            zone, source = candidates[0], "number"
        elif tz_spec.default is not None:
            zone, source = str(tz_spec.default), "playbook default"
        else:
            problems["timezone"] = (
                "missing, and the called number gives no time zone: send an IANA name "
                "such as America/New_York"
            )
    tz = ZoneInfo(zone) if "timezone" not in problems else dt.UTC
    local_now = now.astimezone(tz)
    today = local_now.date()
    meta: dict[str, Any] = {}
    for key, spec in META_FIELDS.items():
        if c.get(key) is not None:
            try:
                meta[key] = parse_value(spec, c[key], today)
            except ValueError as exc:
                problems[key] = str(exc)
    for key in ("today", "now"):
        # the call adds days and months to its today (due dates, "next Friday")
        if key in meta and not CLOCK_YEARS[0] <= meta[key].year <= CLOCK_YEARS[1]:
            kind = "date" if key == "today" else "date-time"
            problems[key] = f"must be a {kind} from {CLOCK_YEARS[0]} to {CLOCK_YEARS[1]}"
            del meta[key]
    if "now" in meta:
        local_now = meta["now"].replace(tzinfo=tz) if meta["now"].tzinfo is None else meta["now"].astimezone(tz)
        today = local_now.date()
    if "today" in meta:
        today = meta["today"]
        if "now" not in meta:
            local_now = dt.datetime.combine(today, local_now.time().replace(microsecond=0), tz)

    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name == "timezone":
            continue
        raw = c.get(name)
        if raw is None:
            if spec.default is not None:
                values[name] = parse_value(spec, spec.default, today)
            elif spec.required:
                problems[name] = f"missing ({spec.type}{': ' + spec.description if spec.description else ''})"
            continue
        try:
            values[name] = parse_value(spec, raw, today)
        except ValueError as exc:
            problems[name] = str(exc)
    if problems:
        raise ContextError(problems)
    values.update(meta)
    return ResolvedContext(values, zone, source, candidates, today, local_now)  # type: ignore[arg-type]


@dataclass
class CallContext:
    """A collections call's context, validated: the debtor's facts as the call gave them,
    the playbook's product facts, and the call's today / now in the debtor's time zone."""

    debtor_name: str
    birth_year: int
    balance: float
    creditor: str
    currency: str
    first_contact: bool
    callback_number: str
    today: dt.date
    now: dt.datetime
    timezone: str
    agent_name: str
    company: str
    caller_brand: str
    settlement_pct: float
    instalments: int
    transfer_number: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(
        cls,
        context: Mapping[str, Any] | None,
        playbook: Playbook,
        *,
        now: dt.datetime | None = None,
        phone: str | None = None,
    ) -> CallContext:
        """Validate `context` for `playbook` (see resolve_context); raises ContextError."""
        r = resolve_context(context, playbook, now=now, phone=phone)
        return cls.from_resolved(r, playbook)

    @classmethod
    def from_resolved(cls, r: ResolvedContext, playbook: Playbook) -> CallContext:
        v = r.values
        s = playbook.settings
        return cls(
            debtor_name=v["debtor_name"],
            birth_year=v["birth_year"],
            balance=float(v["balance"]),
            creditor=v["creditor"],
            currency=v["currency"],
            first_contact=v["first_contact"],
            callback_number=v["callback_number"],
            today=r.today,
            now=r.now,
            timezone=r.timezone,
            agent_name=v.get("agent_name", playbook.agent_name),
            company=v.get("company", playbook.company),
            caller_brand=v.get("caller_brand", playbook.caller_brand),
            settlement_pct=float(v.get("settlement_pct", s.settlement_pct)),
            instalments=int(v.get("instalments", s.instalments)),
            transfer_number=v.get("transfer_number", s.transfer_number),
            extra={k: x for k, x in v.items() if k not in COLLECTIONS_FIELDS and k not in META_FIELDS},
        )

    @property
    def debtor_first_name(self) -> str:
        return self.debtor_name.split()[0] if self.debtor_name.split() else self.debtor_name

    @property
    def settlement_amount(self) -> float:
        return round(self.balance * self.settlement_pct / 100, 2)

    @property
    def instalment_amount(self) -> float:
        return round(self.balance / self.instalments, 2)

    def money(self, amount: float) -> str:
        return spoken_money(amount, self.currency)

    def template_values(self, **extra: Any) -> dict[str, str]:
        values = {
            "agent_name": self.agent_name,
            "company": self.company,
            "caller_brand": self.caller_brand,
            "debtor_name": self.debtor_name,
            "debtor_first_name": self.debtor_first_name,
            "balance": self.money(self.balance),
            "creditor": self.creditor,
            "settlement_amount": self.money(self.settlement_amount),
            "instalment_amount": self.money(self.instalment_amount),
            "instalments": str(self.instalments),
            "ptp_amount": self.money(self.balance),
            "ptp_date": spoken_date(self.today, self.today),
            "callback_number": self.callback_number,
            "callback_time": "at a better time",
        }
        values.update({k: str(v) for k, v in extra.items()})
        return values
