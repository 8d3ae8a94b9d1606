"""A call's records on their way to the store: turns, events and outcome fields, written
in order by one task so persistence never blocks audio. Also where a call's records feed
the Prometheus metrics and the log (transcripts only at debug level: personal data)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from ai import metrics as ai_metrics
from ai.conversation import commands as cmd
from ai.vocabulary import outcome_fields
from media import metrics
from media.ports import CallRecorder


class CallRecording:
    def __init__(self, recorder: CallRecorder, carrier: str, log: Any) -> None:
        self.recorder = recorder
        self.carrier = carrier
        self.log: structlog.typing.FilteringBoundLogger = log
        self.call_id: str | None = None
        self.t0 = 0.0
        self.has_outcome = False
        self.providers: dict[str, str] = {}
        self._writes: asyncio.Queue[Callable[[], Awaitable[Any]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._writer())

    def bind(self, call_id: str, t0: float) -> None:
        self.call_id, self.t0 = call_id, t0

    def ms(self, t: float) -> int:
        return max(0, round((t - self.t0) * 1000))

    def write(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Queue a persistence call; they run in order."""
        self._writes.put_nowait(fn)

    def event(self, kind: str, t: float, **data: Any) -> None:
        call_id = self.call_id
        if call_id is None:
            return
        t_ms = self.ms(t)
        self.write(lambda: self.recorder.add_event(call_id, kind, t_ms, data))

    def outcome(self, fields: dict[str, Any]) -> None:
        call_id = self.call_id
        if call_id is None or not fields:
            return
        self.has_outcome = self.has_outcome or "outcome" in fields
        snapshot = dict(fields)
        self.write(lambda: self.recorder.set_outcome(call_id, snapshot))

    def record(self, c: cmd.RecordTurn | cmd.RecordAction | cmd.RecordEvent) -> None:
        if isinstance(c, cmd.RecordEvent):
            self.event(c.kind, c.t, **c.data)
            self._observe_event(c)
        elif isinstance(c, cmd.RecordAction):
            self.event(f"action.{c.action.kind}", asyncio.get_running_loop().time(), **c.action.data)
            self.log.info("agent_action", kind=c.action.kind)
            self.outcome(outcome_fields(c.action))
        else:
            self._turn(c)

    def _turn(self, c: cmd.RecordTurn) -> None:
        call_id = self.call_id
        if call_id is None:
            return
        self.write(lambda: self.recorder.add_turn(call_id, c))
        self.log.debug(f"{c.speaker}_text", text=c.text)
        if c.speaker == "caller":
            self.log.info("caller_turn", chars=len(c.text),
                          stt_ms=None if c.stt_ms is None else round(c.stt_ms))
            return
        v2v = c.voice_to_voice_ms
        self.log.info("agent_turn", chars=len(c.text), interrupted=c.interrupted,
                      v2v_ms=None if v2v is None else round(v2v))
        p = self.providers
        if c.stt_ms is not None:
            ai_metrics.STT_FINAL_LATENCY.labels(provider=p.get("stt", "stt")).observe(c.stt_ms / 1000)
        if c.llm_ttft_ms is not None:
            ai_metrics.LLM_TTFT.labels(provider=p.get("policy", "policy")).observe(c.llm_ttft_ms / 1000)
        if c.tts_ttfb_ms is not None:
            ai_metrics.TTS_TTFB.labels(provider=p.get("tts", "tts")).observe(c.tts_ttfb_ms / 1000)
        if v2v is not None:
            ai_metrics.VOICE_TO_VOICE.observe(v2v / 1000)

    def _observe_event(self, c: cmd.RecordEvent) -> None:
        if c.kind == "barge_in":
            metrics.BARGE_INS.labels(self.carrier).inc()
            metrics.BARGE_IN_REACTION.observe(c.data["reaction_ms"] / 1000)
            self.log.info("barge_in", **c.data)
        elif c.kind == "barge_in_resumed":
            self.log.info("barge_in_resumed", **c.data)
        elif c.kind == "greeting_audio":
            metrics.GREETING_LATENCY.observe(c.data["latency_ms"] / 1000)
        elif c.kind in ("machine_detected", "mark_timeout", "reply_failed", "max_duration"):
            self.log.info(c.kind, **{k: v for k, v in c.data.items() if k != "text"})

    async def _writer(self) -> None:
        while True:
            fn = await self._writes.get()
            if fn is None:
                return
            try:
                await fn()
            except Exception:
                self.log.exception("persist_failed")

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        self._writes.put_nowait(None)
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._task, timeout_s)
        except (TimeoutError, Exception):
            self.log.error("persist_drain_failed", call_id=self.call_id)
