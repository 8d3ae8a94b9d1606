"""A campaign as clients send it (pydantic, validated once) and the rules it turns into.

Scalar fields the scheduler filters on are columns of `campaigns`; the rest is stored as
`CampaignSettings` in `campaigns.settings`.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

import phonenumbers
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator

from campaigns.compliance import CallingWindow, ComplianceRules

__all__ = [
    "DISPOSITIONS",
    "CampaignCreate",
    "CampaignSettings",
    "CampaignUpdate",
    "CountryRules",
    "RetryRule",
    "RetryRules",
]

#: attempt end states that may be retried, each with its own rule
DISPOSITIONS = ("no_answer", "busy", "failed", "voicemail")


def _hhmm(value: str) -> dt.time:
    try:
        return dt.time.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a time of day (HH:MM)") from None


class RetryRule(BaseModel):
    """Retry a disposition after `delay_minutes`, then after `delay_minutes * backoff`,
    `* backoff²`, ... (widening gaps), at most `max_retries` times."""

    model_config = ConfigDict(extra="forbid")
    delay_minutes: int = Field(ge=1, le=10080)
    max_retries: int = Field(ge=0, le=20)
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)

    def delay(self, retry_number: int) -> dt.timedelta:
        """The wait before retry number `retry_number` (1 = the first retry)."""
        return dt.timedelta(minutes=self.delay_minutes * self.backoff ** max(0, retry_number - 1))


class RetryRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    no_answer: RetryRule = RetryRule(delay_minutes=120, max_retries=3)
    busy: RetryRule = RetryRule(delay_minutes=30, max_retries=3)
    failed: RetryRule = RetryRule(delay_minutes=60, max_retries=2)
    voicemail: RetryRule = RetryRule(delay_minutes=240, max_retries=2)

    def for_state(self, state: str) -> RetryRule | None:
        rule = getattr(self, state, None) if state in DISPOSITIONS else None
        return rule if isinstance(rule, RetryRule) else None


class CountryRules(BaseModel):
    """One country's calling rules; every field left out keeps the legal default."""

    model_config = ConfigDict(extra="forbid")
    window_start: str | None = Field(default=None, description="local time HH:MM, e.g. 08:00")
    window_end: str | None = Field(default=None, description="local time HH:MM, e.g. 21:00")
    max_attempts_per_period: int | None = Field(default=None, ge=1, le=50)
    period_days: int | None = Field(default=None, ge=1, le=90)
    quiet_days_after_conversation: int | None = Field(default=None, ge=0, le=90)

    @field_validator("window_start", "window_end")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None:
            _hhmm(value)
        return value

    def apply(self, base: ComplianceRules) -> ComplianceRules:
        window = CallingWindow(
            _hhmm(self.window_start) if self.window_start else base.window.start,
            _hhmm(self.window_end) if self.window_end else base.window.end,
        )
        return ComplianceRules(
            window=window,
            max_attempts=self.max_attempts_per_period or base.max_attempts,
            attempt_period=(dt.timedelta(days=self.period_days) if self.period_days
                            else base.attempt_period),
            quiet_after_conversation=(
                dt.timedelta(days=self.quiet_days_after_conversation)
                if self.quiet_days_after_conversation is not None
                else base.quiet_after_conversation
            ),
        )


class CampaignSettings(BaseModel):
    """What `campaigns.settings` holds."""

    model_config = ConfigDict(extra="forbid")
    default_region: str = Field(
        default="US", pattern=r"^[A-Z]{2}$",
        description="region for lead numbers written without a country code",
    )
    country_rules: dict[str, CountryRules] = Field(
        default_factory=dict, description="per ISO country code (US, IN, ...): calling rules"
    )
    retry: RetryRules = Field(default_factory=RetryRules)
    #: the campaign pauses itself when, over its last `failure_window` ended attempts,
    #: the share that failed reaches this
    pause_failure_rate: float = Field(default=0.5, gt=0.0, le=1.0)
    failure_window: int = Field(default=20, ge=5, le=1000)

    @field_validator("country_rules")
    @classmethod
    def _countries(cls, value: dict[str, CountryRules]) -> dict[str, CountryRules]:
        for code in value:
            if len(code) != 2 or not code.isalpha() or not code.isupper():
                raise ValueError(f"{code!r} is not an ISO country code (two capital letters)")
        return value

    def compliance_overrides(self) -> dict[str, ComplianceRules]:
        from campaigns.compliance import DEFAULT_RULES, rules_for

        return {code: rules.apply(DEFAULT_RULES.get(code) or rules_for(code))
                for code, rules in self.country_rules.items()}


def _e164(value: str) -> str:
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("must be an E.164 number (+ and country code)") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


class _CampaignFields(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    playbook: str = Field(min_length=1, max_length=200, description="name@version, or a name")
    carrier: Literal["twilio", "exotel"] = "twilio"
    caller_id: str = Field(description="E.164 number calls come from (an Exophone for Exotel)")
    max_concurrent: int = Field(default=5, ge=1, le=1000)
    max_attempts: int = Field(default=6, ge=1, le=50, description="dials per lead, in all")
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    webhook_url: AnyHttpUrl | None = Field(default=None, description="outcome webhooks go here")
    settings: CampaignSettings = Field(default_factory=CampaignSettings)

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, value: str) -> str:
        return _e164(value)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _aware(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a time zone offset (e.g. 2026-12-01T09:00:00Z)")
        return value

    @model_validator(mode="after")
    def _dates(self) -> _CampaignFields:
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CampaignCreate(_CampaignFields):
    """`POST /api/campaigns`."""


class CampaignUpdate(BaseModel):
    """`PATCH /api/campaigns/{id}`: any subset of the fields."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    playbook: str | None = Field(default=None, min_length=1, max_length=200)
    caller_id: str | None = None
    max_concurrent: int | None = Field(default=None, ge=1, le=1000)
    max_attempts: int | None = Field(default=None, ge=1, le=50)
    starts_at: dt.datetime | None = None
    ends_at: dt.datetime | None = None
    webhook_url: AnyHttpUrl | None = None
    settings: CampaignSettings | None = None

    @field_validator("caller_id")
    @classmethod
    def _caller_id(cls, value: str | None) -> str | None:
        return None if value is None else _e164(value)
