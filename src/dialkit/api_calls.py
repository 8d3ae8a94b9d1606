"""The call API: create a call (POST /api/calls), the call history (GET /api/calls, with
filters), the live calls of every node, one call's record, and its transcript as a download
(JSON, text or CSV)."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import phonenumbers
import structlog
from aiohttp import web
from pydantic import BaseModel, Field, field_validator

from ai.context import ContextError, resolve_context
from ai.playbook import UnknownPlaybook
from ai.vocabulary import Outcome
from campaigns.leads import neutralise_cell
from dialkit import call_list, single_dial
from dialkit.api_analytics import DateRange
from dialkit.bodies import BodyError, check_storable
from dialkit.openapi import ApiError, Routes
from dialkit.state import STATE, AppState
from media.auth import issue_token

log = structlog.get_logger("dialkit.api_calls")

routes = Routes(tag="calls")
INVALID = "invalid call request"


class CreateCall(BaseModel):
    carrier: Literal["twilio", "exotel"] = "twilio"
    to: str | None = Field(default=None, description="E.164 number of the person called")
    playbook: str | None = Field(
        default=None, max_length=200,
        description="name@version, or a name (its highest version); the server default if absent",
    )
    context: dict[str, Any] = Field(
        default_factory=dict, description="the facts the playbook declares (debtor_name, balance, …)"
    )
    # placing the call through the carrier (dialkit.single_dial)
    dial: bool = Field(default=False, description="place the call now through the carrier")
    caller_id: str | None = Field(
        default=None, description="E.164 number the call comes from (needed with dial)")

    @field_validator("playbook")
    @classmethod
    def _playbook_ref(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)):
            raise ValueError("must be a playbook name (name or name@version), without control characters")
        return value

    @field_validator("to", "caller_id")
    @classmethod
    def e164(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            parsed = phonenumbers.parse(value, None)
        except phonenumbers.NumberParseException as exc:
            raise ValueError(f"not a phone number in E.164 form: {exc}") from None
        if not phonenumbers.is_valid_number(parsed):
            raise ValueError("not a valid phone number")
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class CallCreated(BaseModel):
    call_id: str
    token: str = Field(description="the media token the carrier's stream presents")
    media_url: str = Field(description="the WebSocket URL the carrier streams the call's audio to")
    custom_parameters: dict[str, str] = Field(description="the stream's parameters: call_id and token")
    playbook: str = Field(description="name@version of the playbook the call runs")
    attempt_id: str | None = Field(default=None, description="with dial: the dial attempt")
    carrier_sid: str | None = Field(default=None, description="with dial: the carrier's call SID")


class CallDetail(BaseModel):
    call: dict[str, Any]
    turns: list[dict[str, Any]]
    outcome: dict[str, Any] | None
    events: list[dict[str, Any]]


def _body_error(exc: BodyError) -> ApiError:
    """A 400 naming the value refused; a context field is also named in `fields`, as the
    context's own validation names it."""
    extra: dict[str, Any] = {}
    if exc.field:
        top, _, rest = exc.field.partition(".")
        if top == "context" and rest:
            name = re.split(r"[.\[]", rest, maxsplit=1)[0]
            extra["fields"] = {name: exc.reason}
    return ApiError(400, f"{INVALID}: {exc}", field=exc.field, **extra)


def _providers_problem(context: Mapping[str, Any]) -> str | None:
    wanted = context.get("providers")
    if wanted is None:
        return None
    if not isinstance(wanted, Mapping):
        return 'context.providers must be an object like {"tts": "piper"}'
    for role, name in wanted.items():
        if not isinstance(name, str):
            return f"context.providers.{role} must be a provider name (a string), got {type(name).__name__}"
    return None


@routes.post(
    "/api/calls", body=CreateCall, response=CallCreated, status=201, scope="write",
    summary="Create a call", error_prefix=INVALID, check_storable=False,
    responses={503: "the database is unavailable (or, with dial, no carrier / public URL)",
               409: "with dial: the number is on the do-not-call list or outside its calling window",
               429: "with dial: the global concurrent-call cap is reached",
               502: "with dial: the carrier refused the call"},
)
async def create_call(request: web.Request, body: CreateCall) -> CallCreated:
    """Stores the call with its validated context and answers the media URL and token the
    carrier's stream needs. Every missing or invalid context field is named in `fields`."""
    state = request.app[STATE]
    assert state.store is not None and state.providers is not None
    if (problem := _providers_problem(body.context)) is not None:
        raise ApiError(400, f"{INVALID}: {problem}", field="context.providers")
    try:
        playbook = state.providers.registry.get(body.playbook)
    except UnknownPlaybook as exc:
        raise ApiError(400, str(exc), field="playbook", available=state.providers.registry.refs()) from None
    try:
        state.providers.check_context(body.context)
    except ValueError as exc:
        raise ApiError(400, f"{INVALID}: {exc}") from None
    try:
        resolved = resolve_context(body.context, playbook, phone=body.to)
    except ContextError as exc:
        raise ApiError(400, f"invalid call context for playbook {playbook.ref}: {exc}",
                       fields=exc.problems) from None
    try:
        check_storable(request["json"])
    except BodyError as exc:
        raise _body_error(exc) from None
    dialed: dict[str, Any] = {}
    if body.dial:  # through the carrier, by the campaigns' dialer
        dialed = await single_dial.place(state, body.carrier, body.to, body.caller_id, playbook,
                                         resolved, body.context)
    try:
        call_id = dialed.get("call_id") or await state.store.create_call(
            body.carrier, resolved.stored(body.context), body.to, (playbook.name, playbook.version)
        )
    except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("call_not_stored", error=type(exc).__name__)
        raise ApiError(503, f"database unavailable: {type(exc).__name__}") from None
    token = issue_token(state.settings.resolved_media_secret(), call_id, state.settings.media_token_ttl_s)
    base = state.settings.public_url or f"http://{request.host}"
    ws_base = base.replace("https://", "wss://").replace("http://", "ws://").rstrip("/")
    return CallCreated(
        call_id=call_id, token=token, media_url=f"{ws_base}/media/{body.carrier}",
        custom_parameters={"call_id": call_id, "token": token}, playbook=playbook.ref,
        attempt_id=dialed.get("attempt_id"), carrier_sid=dialed.get("carrier_sid"),
    )


# registered before /api/calls/{call_id}, which would match it
@routes.get("/api/calls/live", response=list[dict[str, Any]], summary="Live calls of every node",
            responses={503: "the live-call registry is unavailable"})
async def live_calls(request: web.Request) -> list[dict[str, Any]]:
    """The live calls of every node (of this one without Redis), oldest first."""
    state = request.app[STATE]
    try:
        calls = await state.registry.live()
    except Exception as exc:
        log.warning("live_calls_unavailable", error=type(exc).__name__)
        raise ApiError(503, f"live-call registry unavailable: {type(exc).__name__}") from None
    for entry in calls:
        started = entry.get("started")
        if isinstance(started, int | float):
            entry["started_at"] = datetime.fromtimestamp(started, UTC).isoformat()
    return calls


CallStatus = Literal["created", "in_progress", "completed", "failed"]


class CallListQuery(DateRange):
    campaign_id: uuid.UUID | None = Field(default=None, description="only the calls this campaign dialled")
    outcome: list[Outcome] = Field(default_factory=list, description="only calls with these outcomes")
    status: list[CallStatus] = Field(default_factory=list, description="only calls in these states")
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=200, description="`next_cursor` of the page before")


class CallLine(BaseModel):
    id: str
    status: CallStatus
    carrier: str
    to_number: str | None
    playbook: str | None = Field(description="name@version")
    created_at: str
    started_at: str | None
    ended_at: str | None
    failure_reason: str | None
    campaign_id: str | None
    campaign_name: str | None
    outcome: str | None
    ptp_amount: float | None
    turns: int
    last_speaker: str | None
    last_text: str | None


class CallPage(BaseModel):
    items: list[CallLine]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null at the end")


@routes.get("/api/calls", query=CallListQuery, response=CallPage, summary="The call history, newest first",
            responses={422: "'from' is after 'to'"})
async def list_calls(request: web.Request, query: CallListQuery) -> CallPage:
    """Calls created in the date range (`from` / `to` as in the analytics routes), of one
    campaign, with these outcomes or states; each with its campaign, outcome and last turn."""
    since, until = query.bounds()
    try:
        before = call_list.read_cursor(query.cursor) if query.cursor else None
    except ValueError as exc:
        raise ApiError(400, f"cursor: {exc}", field="cursor") from None
    pool = request.app[STATE].pool
    assert pool is not None
    found = await call_list.list_calls(pool, call_list.CallFilter(
        campaign_id=query.campaign_id, outcomes=query.outcome, statuses=query.status,
        since=since, until=until, before=before, limit=query.limit + 1))
    page = found[: query.limit]
    more = len(found) > query.limit
    return CallPage(items=[CallLine.model_validate(c) for c in page],
                    next_cursor=call_list.cursor_of(page[-1]) if more else None)


async def _detail(state: AppState, call_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(call_id)
    except ValueError:
        raise ApiError(400, "call id is not a UUID", field="call_id") from None
    assert state.store is not None
    detail = await state.store.call_detail(call_id)
    if detail is None:
        raise ApiError(404, "no such call")
    return detail


@routes.get("/api/calls/{call_id}", response=CallDetail, summary="A call: its record, turns, outcome and events")
async def get_call(request: web.Request) -> dict[str, Any]:
    return await _detail(request.app[STATE], request.match_info["call_id"])


# ---- the transcript ------------------------------------------------------------------------


class TranscriptQuery(BaseModel):
    format: Literal["json", "text", "csv"] = Field(default="json", description="json, text or csv")


class TranscriptTurn(BaseModel):
    seq: int
    speaker: str
    text: str
    start_ms: int = Field(description="from the start of the call")
    end_ms: int
    interrupted: bool


class Transcript(BaseModel):
    call_id: str
    turns: list[TranscriptTurn]


TRANSCRIPT_COLUMNS = ("seq", "start_ms", "end_ms", "speaker", "text", "interrupted")
def _clock(ms: int) -> str:
    minutes, rest = divmod(max(ms, 0), 60_000)
    return f"{minutes:02d}:{rest / 1000:04.1f}"


def transcript_text(turns: list[TranscriptTurn]) -> str:
    """One line per turn: `[00:01.2–00:03.4] agent: text`, ` (interrupted)` when cut off."""
    lines = []
    for turn in turns:
        text = " ".join(turn.text.split())  # a turn stays on its line
        mark = " (interrupted)" if turn.interrupted else ""
        lines.append(f"[{_clock(turn.start_ms)}–{_clock(turn.end_ms)}] {turn.speaker}: {text}{mark}")
    return "".join(f"{line}\n" for line in lines)


def transcript_csv(turns: list[TranscriptTurn]) -> str:
    """A header and one row per turn; text cells a spreadsheet would run as a formula are
    neutralised (campaigns.leads.neutralise_cell)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TRANSCRIPT_COLUMNS)
    for turn in turns:
        writer.writerow([
            turn.seq, turn.start_ms, turn.end_ms,
            neutralise_cell(turn.speaker), neutralise_cell(turn.text), "true" if turn.interrupted else "false",
        ])
    return out.getvalue()


_ATTACHMENT = {
    200: {
        "description": "the transcript, as a download (Content-Disposition: attachment)",
        "content": {
            "application/json": {"schema": Transcript},
            "text/plain": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    },
}


@routes.get("/api/calls/{call_id}/transcript", query=TranscriptQuery, responses=_ATTACHMENT,
            summary="Download a call's transcript")
async def call_transcript(request: web.Request, query: TranscriptQuery) -> web.Response:
    """The call's turns in order, as JSON, plain text (one line per turn with its times and
    speaker) or CSV."""
    call_id = request.match_info["call_id"]
    detail = await _detail(request.app[STATE], call_id)
    turns = [TranscriptTurn.model_validate(t) for t in detail["turns"]]
    name = f"call-{call_id}-transcript"
    if query.format == "text":
        body, kind, ext = transcript_text(turns).encode(), "text/plain", "txt"
    elif query.format == "csv":
        body, kind, ext = transcript_csv(turns).encode(), "text/csv", "csv"
    else:
        body = Transcript(call_id=call_id, turns=turns).model_dump_json().encode()
        kind, ext = "application/json", "json"
    return web.Response(body=body, content_type=kind, charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.{ext}"'})
