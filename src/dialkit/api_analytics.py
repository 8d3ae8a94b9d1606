"""HTTP routes of campaign analytics: one campaign's report and the overview across
campaigns, over an optional date range (campaigns.analytics defines every figure).

`from` / `to` are ISO 8601 dates or date-times (UTC unless they carry an offset). A date
alone means its whole UTC day: `from=2026-11-30&to=2026-11-30` is that one day. The range is
widened to whole UTC hours (from rounded down, to rounded up). A range whose `from` is after
its `to` is a 422; a value that is not a date (or whose year is outside 1970-9998) is a 400
from the registry's validation.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from campaigns.analytics import CampaignAnalytics, Overview, campaign_analytics, overview
from dialkit.openapi import ApiError, ErrorBody, Routes
from dialkit.state import STATE

routes = Routes(tag="analytics")

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_EARLIEST, _LATEST = 1970, 9998


class DateRange(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    from_: dt.datetime | dt.date | None = Field(
        None, alias="from", description="start: a date (its 00:00 UTC) or a date-time")
    to: dt.datetime | dt.date | None = Field(
        None, description="end: a date (up to its end, inclusive) or a date-time (exclusive)")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _date_alone(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        text = value.strip()
        try:
            parsed = (dt.date.fromisoformat(text) if _DATE_ONLY.match(text)
                      else dt.datetime.fromisoformat(text))
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not an ISO 8601 date or date-time") from None
        if not _EARLIEST <= parsed.year <= _LATEST:
            raise ValueError(f"the year must be between {_EARLIEST} and {_LATEST}")
        return parsed

    def bounds(self) -> tuple[dt.datetime | None, dt.datetime | None]:
        """The range as UTC date-times; ApiError 422 when `from` is after `to`."""
        since = _start(self.from_)
        until = _start(self.to, end_of_day=True)
        days_reversed = (type(self.from_) is dt.date and type(self.to) is dt.date
                         and self.from_ > self.to)
        if since is not None and until is not None and (since > until or days_reversed):
            raise ApiError(422, f"'from' ({since.isoformat()}) is after 'to' ({until.isoformat()})",
                           field="from")
        return since, until


def _start(value: dt.datetime | dt.date | None, end_of_day: bool = False) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
    day = value + dt.timedelta(days=1) if end_of_day else value
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)


_NOT_FOUND = {404: ErrorBody, 422: ErrorBody}


@routes.get("/api/campaigns/{campaign_id}/analytics", query=DateRange, response=CampaignAnalytics,
            scope="read", summary="A campaign's analytics over a date range", responses=_NOT_FOUND)
async def get_campaign_analytics(request: web.Request, query: DateRange) -> CampaignAnalytics:
    """Attempts, connect / right-party / promise-to-pay rates, amounts promised per currency,
    opt-outs, average handle time, voice-to-voice and greeting latency p50 / p95, the share
    of answered calls where the agent spoke after 2 s, and outcomes by the lead's local hour."""
    raw = request.match_info["campaign_id"]
    since, until = query.bounds()
    try:
        uuid.UUID(raw)
    except ValueError:
        raise ApiError(404, f"no campaign {raw[:64]!r}", field="campaign_id") from None
    pool = request.app[STATE].pool
    assert pool is not None
    found = await campaign_analytics(pool, raw, since, until)
    if found is None:
        raise ApiError(404, f"no campaign {raw}", field="campaign_id")
    return found


@routes.get("/api/analytics/overview", query=DateRange, response=Overview, scope="read",
            summary="Analytics of every campaign, together and one by one",
            responses={422: ErrorBody})
async def get_overview(request: web.Request, query: DateRange) -> Overview:
    """The same figures as a campaign's report, summed over every campaign (deleted ones
    left out), and for each campaign."""
    since, until = query.bounds()
    pool = request.app[STATE].pool
    assert pool is not None
    return await overview(pool, since, until)
