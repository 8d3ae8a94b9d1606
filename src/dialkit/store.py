"""Calls, turns, events and outcomes in PostgreSQL (the `media.ports.CallRecorder`)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from ai.conversation.commands import RecordTurn
from ai.playbook import PlaybookRegistry
from ai.vocabulary import OUTCOME_COLUMNS, OUTCOMES, PLAN_KINDS
from media.ports import CallInfo

# the columns whose values must be names from ai.vocabulary
_VOCABULARY = {"outcome": OUTCOMES, "ptp_plan": PLAN_KINDS}


def _coerce(column: str, value: Any) -> Any:
    if value is None:
        return None
    if column in _VOCABULARY and value not in _VOCABULARY[column]:
        raise ValueError(f"{column} {value!r} is not in the vocabulary ({', '.join(_VOCABULARY[column])})")
    if column == "ptp_date" and isinstance(value, str):
        return dt.date.fromisoformat(value)
    if column == "callback_at" and isinstance(value, str):
        at = dt.datetime.fromisoformat(value)
        return at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    if column == "ptp_amount":
        return round(float(value), 2)
    return value


class CallStore:
    def __init__(self, pool: asyncpg.Pool, playbooks: PlaybookRegistry | None = None) -> None:
        self.pool = pool
        #: resolves each call's playbook for `get_call` (left unresolved when None)
        self.playbooks = playbooks
        #: called with (call id, status, reason) once a call's end is stored: its campaign
        #: dial attempt settles (dialkit.jobs.settle_on_call_end)
        self.on_ended: Callable[[str, str, str | None], Awaitable[None]] | None = None

    # ---- used by the API / dialer ----------------------------------------------------

    async def create_call(
        self,
        carrier: str,
        context: dict[str, Any],
        to_number: str | None = None,
        playbook: tuple[str, str] | None = None,
    ) -> str:
        """Store a new call; `playbook` is the (name, version) it runs."""
        call_id = str(uuid.uuid4())
        name, version = playbook if playbook is not None else (None, None)
        await self.pool.execute(
            "INSERT INTO calls (id, carrier, context, to_number, playbook_name, playbook_version)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            uuid.UUID(call_id), carrier, context, to_number, name, version,
        )
        return call_id

    async def call_detail(self, call_id: str) -> dict[str, Any] | None:
        cid = uuid.UUID(call_id)
        async with self.pool.acquire() as conn:
            call = await conn.fetchrow("SELECT * FROM calls WHERE id = $1", cid)
            if call is None:
                return None
            turns = await conn.fetch(
                "SELECT seq, speaker, text, start_ms, end_ms, interrupted, stt_ms, llm_ttft_ms,"
                " tts_ttfb_ms, voice_to_voice_ms FROM turns WHERE call_id = $1 ORDER BY seq", cid
            )
            outcome = await conn.fetchrow("SELECT * FROM call_outcomes WHERE call_id = $1", cid)
            events = await conn.fetch(
                "SELECT t_ms, kind, data FROM call_events WHERE call_id = $1 ORDER BY id", cid
            )
        return {
            "call": _jsonable(dict(call)),
            "turns": [_jsonable(dict(t)) for t in turns],
            "outcome": _jsonable(dict(outcome)) if outcome else None,
            "events": [_jsonable(dict(e)) for e in events],
        }

    # ---- media.ports.CallRecorder -----------------------------------------------------

    async def get_call(self, call_id: str) -> CallInfo | None:
        row = await self.pool.fetchrow(
            "SELECT id, carrier, context, playbook_name, playbook_version, status FROM calls"
            " WHERE id = $1", uuid.UUID(call_id)
        )
        if row is None:
            return None
        ref = f"{row['playbook_name']}@{row['playbook_version']}" if row["playbook_name"] else None
        info = CallInfo(str(row["id"]), row["carrier"], row["context"] or {}, ref, row["status"])
        if ref is not None and self.playbooks is not None:
            info.playbook = self.playbooks.find(ref)
        return info

    async def claim_call(
        self, call_id: str, carrier: str, carrier_call_id: str, stream_id: str, meta: dict[str, Any]
    ) -> bool:
        """Mark the call in progress on this media connection, if no connection has yet.
        One statement, so two connections presenting the same token (on any process or
        node) cannot both win; False for every one after the first."""
        row = await self.pool.fetchval(
            "UPDATE calls SET status = 'in_progress', started_at = now(), carrier = $2,"
            " carrier_call_id = $3, stream_id = $4, media = $5"
            " WHERE id = $1 AND status = 'created' RETURNING id",
            uuid.UUID(call_id), carrier, carrier_call_id, stream_id, meta,
        )
        return row is not None

    async def add_turn(self, call_id: str, turn: RecordTurn) -> None:
        await self.pool.execute(
            "INSERT INTO turns (call_id, seq, speaker, text, start_ms, end_ms, interrupted, stt_ms,"
            " llm_ttft_ms, tts_ttfb_ms, voice_to_voice_ms)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
            " ON CONFLICT (call_id, seq) DO NOTHING",
            uuid.UUID(call_id), turn.seq, turn.speaker, turn.text, turn.start_ms, turn.end_ms,
            turn.interrupted, turn.stt_ms, turn.llm_ttft_ms, turn.tts_ttfb_ms, turn.voice_to_voice_ms,
        )

    async def add_event(self, call_id: str, kind: str, t_ms: int, data: dict[str, Any]) -> None:
        await self.pool.execute(
            "INSERT INTO call_events (call_id, t_ms, kind, data) VALUES ($1, $2, $3, $4)",
            uuid.UUID(call_id), t_ms, kind, _jsonable(data),
        )

    async def set_outcome(self, call_id: str, fields: dict[str, Any]) -> None:
        cols = {k: _coerce(k, v) for k, v in fields.items() if k in OUTCOME_COLUMNS}
        if not cols:
            return
        names = list(cols)
        placeholders = ", ".join(f"${i + 2}" for i in range(len(names)))
        updates = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
        await self.pool.execute(
            f"INSERT INTO call_outcomes (call_id, {', '.join(names)}) VALUES ($1, {placeholders})"
            f" ON CONFLICT (call_id) DO UPDATE SET {updates}, updated_at = now()",
            uuid.UUID(call_id), *cols.values(),
        )

    async def call_ended(
        self, call_id: str, status: str, reason: str | None, close_code: int | None
    ) -> None:
        await self.pool.execute(
            "UPDATE calls SET status = $2, failure_reason = $3, close_code = $4, ended_at = now()"
            " WHERE id = $1",
            uuid.UUID(call_id), status, reason if status == "failed" else None, close_code,
        )
        if self.on_ended is not None:
            await self.on_ended(call_id, status, reason)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "as_tuple"):  # Decimal
        return float(value)
    return value
