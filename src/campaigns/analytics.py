"""Campaign analytics: the figures of one campaign, or of all of them, over a date range,
read from the rollups that sql/005_analytics.sql keeps up to date (two statements per
report, whatever the number of attempts).

Definitions (each attempt counts once, in the state it ended in; campaigns.attempts):
- attempts: dial attempts created in the range (attempts.created_at), live ones included;
  `in_flight` of them have not ended yet, `ended` have.
- connected: attempts that ended `completed`: the carrier says someone answered and the
  call ended normally, and no answering-machine verdict turned it into `voicemail`.
  `connect_rate` = connected / ended. Voicemail is counted apart: `voicemail_rate` =
  voicemail / ended; no-answer, busy, failed and canceled are counted too.
- right-party contacts: calls whose outcome has right_party = true (the identity check
  passed); `right_party_rate` = right-party contacts / connected.
- promises to pay: calls whose outcome holds a promise (ptp_amount set, or outcome
  `promise_to_pay`); `promise_rate` = promises / right-party contacts; `promised` sums the
  amounts per currency (the lead's currency), as exact decimals.
- opt-outs: calls whose outcome is an opt-out (opt_out = true, or outcome `opt_out`).
- average handle time: over connected calls, answered_at → ended_at of the attempt (the
  media session's started_at → ended_at of the call when the carrier gave no times).
- voice-to-voice latency: over the agent turns of the range's calls (turns.voice_to_voice_ms).
- greeting latency: over connected calls, from the start of the media session to the first
  agent audio reaching the caller (the greeting, or the playbook's filler when the greeting
  is late): the call_events row 'greeting_audio' the conversation engine writes.
- abandoned: connected calls whose agent spoke more than 2 s after the media started, or not
  at all (47 CFR 64.1200(a)(7) caps them at 3 % of live-answered calls);
  `abandonment_rate` = abandoned / connected.
- by local hour: the same counts per hour of the lead's local day when the attempt was
  made (attempts.local_hour; None when the scheduler recorded none).

Rates are None when their denominator is 0.

Percentiles come from histograms with log-spaced buckets, each 5 % wider than the one
below: the reported value is the bucket's geometric middle, within 2.5 % of the exact
nearest-rank percentile (values under 1 ms are reported as 0.5 ms).

Date range: whole UTC hours. `since` is rounded down to its hour and `until` up, so an
attempt is included when its hour [h, h+1) lies in [floor(since), ceil(until)). Either bound
may be None (unbounded).
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

__all__ = [
    "BUCKET_GROWTH",
    "CampaignAnalytics",
    "CampaignSummary",
    "HourOutcomes",
    "Latency",
    "Metrics",
    "Overview",
    "bucket_of",
    "bucket_value_ms",
    "campaign_analytics",
    "hour_range",
    "overview",
]

BUCKET_GROWTH = 1.05
ABANDON_AFTER_MS = 2000  # as written in sql/005_analytics.sql
_V2V, _GREETING = 1, 2
_LOW = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
_HIGH = dt.datetime(9999, 12, 30, tzinfo=dt.UTC)
_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)
_COUNTERS = ("attempts", "ended", "completed", "voicemail", "no_answer", "busy", "failed",
             "canceled", "right_party", "promises", "opt_outs", "handled", "handle_ms",
             "greeted", "abandoned")


class Latency(BaseModel):
    samples: int
    p50_ms: float | None
    p95_ms: float | None


class PromisedAmount(BaseModel):
    currency: str
    promises: int
    amount: Decimal


class Metrics(BaseModel):
    attempts: int
    in_flight: int
    ended: int
    connected: int
    voicemail: int
    no_answer: int
    busy: int
    failed: int
    canceled: int
    connect_rate: float | None
    voicemail_rate: float | None
    right_party_contacts: int
    right_party_rate: float | None
    promises: int
    promise_rate: float | None
    promised: list[PromisedAmount]
    opt_outs: int
    handled_calls: int
    average_handle_s: float | None
    voice_to_voice: Latency
    greeting: Latency
    abandoned: int
    abandonment_rate: float | None


class HourOutcomes(BaseModel):
    local_hour: int | None = Field(description="hour of the lead's local day (0-23)")
    attempts: int
    connected: int
    voicemail: int
    no_answer: int
    busy: int
    failed: int
    canceled: int
    right_party_contacts: int
    promises: int
    opt_outs: int


class CampaignAnalytics(BaseModel):
    campaign_id: str
    name: str
    since: dt.datetime | None = Field(description="start of the first hour included")
    until: dt.datetime | None = Field(description="end of the last hour included")
    metrics: Metrics
    by_local_hour: list[HourOutcomes]


class CampaignSummary(BaseModel):
    campaign_id: str
    name: str
    metrics: Metrics


class Overview(BaseModel):
    since: dt.datetime | None
    until: dt.datetime | None
    totals: Metrics
    by_local_hour: list[HourOutcomes]
    campaigns: list[CampaignSummary]


def bucket_of(ms: float) -> int:
    """The histogram bucket of a latency (the SQL function analytics_bucket)."""
    if ms < 1:
        return 0
    return min(255, 1 + math.floor(math.log(ms) / math.log(BUCKET_GROWTH)))


def bucket_value_ms(bucket: int) -> float:
    """What a bucket reports: the geometric middle of [1.05^(b-1), 1.05^b)."""
    return 0.5 if bucket == 0 else BUCKET_GROWTH ** (bucket - 0.5)


def _percentile(hist: dict[int, int], q: float) -> float | None:
    total = sum(hist.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))  # nearest rank
    seen = 0
    for bucket in sorted(hist):
        seen += hist[bucket]
        if seen >= rank:
            return round(bucket_value_ms(bucket), 1)
    raise AssertionError("unreachable")


def _latency(hist: dict[int, int]) -> Latency:
    return Latency(samples=sum(hist.values()), p50_ms=_percentile(hist, 0.50),
                   p95_ms=_percentile(hist, 0.95))


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def hour_range(since: dt.datetime | None, until: dt.datetime | None
               ) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The whole UTC hours a range covers: since rounded down, until rounded up (naive
    datetimes are UTC). Raises ValueError when since is after until."""
    lo = hi = None
    if since is not None:
        s = _utc(since)
        lo = s.replace(minute=0, second=0, microsecond=0)
    if until is not None:
        u = _utc(until)
        hi = u.replace(minute=0, second=0, microsecond=0)
        if hi < u:
            hi += _HOUR
    if since is not None and until is not None and _utc(since) > _utc(until):
        raise ValueError("'from' is after 'to'")
    return lo, hi


def _utc(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def _spans(lo: dt.datetime | None, hi: dt.datetime | None) -> list[dt.datetime]:
    """Query bounds: whole UTC days [d_lo, d_hi) from the daily rollups, and the hours of the
    partial days at either end [h1_lo, h1_hi) and [h2_lo, h2_hi) from the hourly ones."""
    lo_, hi_ = lo or _LOW, hi or _HIGH
    d_lo = lo_.replace(hour=0)
    if d_lo < lo_:
        d_lo += _DAY
    d_hi = hi_.replace(hour=0)
    if d_lo < d_hi:
        return [d_lo, d_hi, lo_, d_lo, d_hi, hi_]
    return [lo_, lo_, lo_, hi_, hi_, hi_]


_SUMS = ", ".join(f"sum(h.{c})::bigint AS {c}" for c in _COUNTERS)
_COLUMNS = ", ".join(("local_hour", "currency", *_COUNTERS, "ptp_amount"))
# counters of whole days [$d_lo, $d_hi) and of the hours of the partial days at either end
_SPANS_SQL = """
    SELECT campaign_id, {cols} FROM analytics_daily
    WHERE {campaign} day >= ${a} AND day < ${b}
    UNION ALL
    SELECT campaign_id, {cols} FROM analytics_hourly
    WHERE {campaign} hour >= ${c} AND hour < ${d}
    UNION ALL
    SELECT campaign_id, {cols} FROM analytics_hourly
    WHERE {campaign} hour >= ${e} AND hour < ${f}"""

_CAMPAIGN_SQL = f"""
SELECT c.name, s.*
FROM campaigns c
LEFT JOIN LATERAL (
    SELECT h.local_hour, h.currency, GROUPING(h.local_hour) AS g_hour,
           GROUPING(h.currency) AS g_currency, {_SUMS}, sum(h.ptp_amount) AS ptp_amount
    FROM ({_SPANS_SQL.format(cols=_COLUMNS, campaign="campaign_id = c.id AND",
                             a=2, b=3, c=4, d=5, e=6, f=7)}) h
    GROUP BY GROUPING SETS ((), (h.local_hour), (h.currency))
) s ON true
WHERE c.id = $1 AND c.deleted_at IS NULL
"""

_CAMPAIGN_LATENCY_SQL = """
SELECT NULL::uuid AS campaign_id, metric, bucket, sum(n)::bigint AS n
FROM (
    SELECT metric, bucket, n FROM analytics_daily_latency
    WHERE campaign_id = $1 AND day >= $2 AND day < $3
    UNION ALL
    SELECT metric, bucket, n FROM analytics_latency
    WHERE campaign_id = $1 AND hour >= $4 AND hour < $5
    UNION ALL
    SELECT metric, bucket, n FROM analytics_latency
    WHERE campaign_id = $1 AND hour >= $6 AND hour < $7
) s
GROUP BY metric, bucket HAVING sum(n) > 0
"""

_OVERVIEW_SQL = f"""
SELECT s.*, c.name
FROM (
    SELECT h.campaign_id, h.local_hour, h.currency, GROUPING(h.campaign_id) AS g_campaign,
           GROUPING(h.local_hour) AS g_hour, GROUPING(h.currency) AS g_currency, {_SUMS},
           sum(h.ptp_amount) AS ptp_amount
    FROM ({_SPANS_SQL.format(cols=_COLUMNS, campaign="", a=1, b=2, c=3, d=4, e=5, f=6)}) h
    JOIN campaigns c ON c.id = h.campaign_id AND c.deleted_at IS NULL
    GROUP BY GROUPING SETS ((), (h.local_hour), (h.currency), (h.campaign_id),
                            (h.campaign_id, h.currency))
) s
LEFT JOIN campaigns c ON c.id = s.campaign_id
"""

_OVERVIEW_LATENCY_SQL = """
SELECT s.campaign_id, s.metric, s.bucket, sum(s.n)::bigint AS n
FROM (
    SELECT campaign_id, metric, bucket, n FROM analytics_daily_latency
    WHERE day >= $1 AND day < $2
    UNION ALL
    SELECT campaign_id, metric, bucket, n FROM analytics_latency
    WHERE hour >= $3 AND hour < $4
    UNION ALL
    SELECT campaign_id, metric, bucket, n FROM analytics_latency
    WHERE hour >= $5 AND hour < $6
) s
JOIN campaigns c ON c.id = s.campaign_id AND c.deleted_at IS NULL
GROUP BY GROUPING SETS ((s.metric, s.bucket), (s.campaign_id, s.metric, s.bucket))
HAVING sum(s.n) > 0
"""


def _metrics(total: dict[str, Any], currencies: list[dict[str, Any]],
             v2v: dict[int, int], greeting: dict[int, int]) -> Metrics:
    t = {c: int(total.get(c) or 0) for c in _COUNTERS}
    ended, connected = t["ended"], t["completed"]
    promised = sorted(
        (PromisedAmount(currency=r["currency"], promises=int(r["promises"]),
                        amount=r["ptp_amount"])
         for r in currencies if r["promises"]),
        key=lambda p: p.currency,
    )
    return Metrics(
        attempts=t["attempts"], in_flight=t["attempts"] - ended, ended=ended,
        connected=connected, voicemail=t["voicemail"], no_answer=t["no_answer"],
        busy=t["busy"], failed=t["failed"], canceled=t["canceled"],
        connect_rate=_rate(connected, ended), voicemail_rate=_rate(t["voicemail"], ended),
        right_party_contacts=t["right_party"], right_party_rate=_rate(t["right_party"], connected),
        promises=t["promises"], promise_rate=_rate(t["promises"], t["right_party"]),
        promised=promised, opt_outs=t["opt_outs"], handled_calls=t["handled"],
        average_handle_s=(t["handle_ms"] / t["handled"] / 1000) if t["handled"] else None,
        voice_to_voice=_latency(v2v), greeting=_latency(greeting),
        abandoned=t["abandoned"], abandonment_rate=_rate(t["abandoned"], connected),
    )


def _hour(r: dict[str, Any]) -> HourOutcomes:
    return HourOutcomes(
        local_hour=None if r["local_hour"] == -1 else r["local_hour"],
        attempts=r["attempts"], connected=r["completed"], voicemail=r["voicemail"],
        no_answer=r["no_answer"], busy=r["busy"], failed=r["failed"], canceled=r["canceled"],
        right_party_contacts=r["right_party"], promises=r["promises"], opt_outs=r["opt_outs"],
    )


def _by_hour(rows: list[dict[str, Any]]) -> list[HourOutcomes]:
    hours = [_hour(r) for r in rows]
    return sorted(hours, key=lambda h: -1 if h.local_hour is None else h.local_hour)


def _histograms(rows: list[asyncpg.Record]) -> dict[tuple[str | None, int], dict[int, int]]:
    out: dict[tuple[str | None, int], dict[int, int]] = {}
    for r in rows:
        key = (str(r["campaign_id"]) if r["campaign_id"] is not None else None, r["metric"])
        out.setdefault(key, {})[r["bucket"]] = int(r["n"])
    return out


async def campaign_analytics(
    conn: asyncpg.Connection | asyncpg.Pool, campaign_id: str,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
) -> CampaignAnalytics | None:
    """One campaign's figures over [since, until) in whole UTC hours (module docstring);
    None when there is no such campaign. Raises ValueError for a bad campaign id or range."""
    cid = uuid.UUID(campaign_id)
    lo, hi = hour_range(since, until)
    spans = _spans(lo, hi)
    rows = [dict(r) for r in await conn.fetch(_CAMPAIGN_SQL, cid, *spans)]
    if not rows:
        return None
    hist = _histograms(await conn.fetch(_CAMPAIGN_LATENCY_SQL, cid, *spans))
    total = next((r for r in rows if r["g_hour"] == 1 and r["g_currency"] == 1), {})
    return CampaignAnalytics(
        campaign_id=str(cid), name=rows[0]["name"], since=lo, until=hi,
        metrics=_metrics(total, [r for r in rows if r["g_hour"] == 1 and r["g_currency"] == 0],
                         hist.get((None, _V2V), {}), hist.get((None, _GREETING), {})),
        by_local_hour=_by_hour([r for r in rows if r["g_hour"] == 0]),
    )


async def overview(
    conn: asyncpg.Connection | asyncpg.Pool,
    since: dt.datetime | None = None, until: dt.datetime | None = None,
) -> Overview:
    """The figures of every campaign (not deleted) together, and of each one, over
    [since, until) in whole UTC hours. Raises ValueError for a bad range."""
    lo, hi = hour_range(since, until)
    spans = _spans(lo, hi)
    rows = [dict(r) for r in await conn.fetch(_OVERVIEW_SQL, *spans)]
    hist = _histograms(await conn.fetch(_OVERVIEW_LATENCY_SQL, *spans))
    everyone = [r for r in rows if r["g_campaign"] == 1]
    total = next((r for r in everyone if r["g_hour"] == 1 and r["g_currency"] == 1), {})
    per_campaign: dict[str, dict[str, Any]] = {}
    currencies: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["g_campaign"] == 0:
            key = str(r["campaign_id"])
            if r["g_currency"] == 1:
                per_campaign[key] = r
            else:
                currencies.setdefault(key, []).append(r)
    campaigns = [
        CampaignSummary(
            campaign_id=key, name=r["name"] or "",
            metrics=_metrics(r, currencies.get(key, []), hist.get((key, _V2V), {}),
                             hist.get((key, _GREETING), {})),
        )
        for key, r in sorted(per_campaign.items(), key=lambda kv: (kv[1]["name"] or "", kv[0]))
    ]
    return Overview(
        since=lo, until=hi,
        totals=_metrics(total, [r for r in everyone if r["g_hour"] == 1 and r["g_currency"] == 0],
                        hist.get((None, _V2V), {}), hist.get((None, _GREETING), {})),
        by_local_hour=_by_hour([r for r in everyone if r["g_hour"] == 0]),
        campaigns=campaigns,
    )
