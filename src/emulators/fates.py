"""What happens to an emulated outbound call, and how its status callbacks travel.

A `Fate` is scripted per destination number (`FateBook`: a dict, a callable To -> Fate, or a
seeded mix for demos): answered (with a line on the media stream and a ring time),
no_answer, busy, failed or voicemail. `Quirks` make the callbacks of that call misbehave the
way real webhooks do: a callback delivered twice, held back until after the next one,
delayed, or dropped.

`CallbackQueue` delivers one call's callbacks in order (quirks applied) over a real HTTP
connection and records every delivery in `CallbackRecord`s, so a test can assert the exact
sequence its receiver saw. `play_out` runs one call's course (each carrier's player writes
the course) over its callback queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

import aiohttp

from emulators.carrier_line import LineChoice, MachineLine, QuietLine

log = logging.getLogger(__name__)

FateKind = Literal["answered", "no_answer", "busy", "failed", "voicemail"]
FATE_KINDS: tuple[FateKind, ...] = ("answered", "no_answer", "busy", "failed", "voicemail")


@dataclass(frozen=True)
class Quirks:
    """Misbehaving callbacks, by event name (Twilio: initiated, ringing, answered, completed,
    amd; Exotel: ringing, answered, terminal)."""

    duplicate: frozenset[str] = frozenset()  # delivered twice, identical (a replay)
    hold: frozenset[str] = frozenset()  # delivered after the callback that follows it
    drop: frozenset[str] = frozenset()  # never delivered
    delay_s: float = 0.0  # added before every delivery of this call

    @classmethod
    def of(
        cls,
        duplicate: Sequence[str] = (),
        hold: Sequence[str] = (),
        drop: Sequence[str] = (),
        delay_s: float = 0.0,
    ) -> Quirks:
        return cls(frozenset(duplicate), frozenset(hold), frozenset(drop), delay_s)


@dataclass(frozen=True)
class Fate:
    """One call's destiny. `ring_s` is how long it rings before it is answered (or given up,
    for no_answer); `line` plays the callee once answered; `answered_by` is the
    answering-machine verdict reported when AMD was asked for (default: human for answered,
    machine_end_beep for voicemail with DetectMessageEnd, machine_start with Enable);
    `amd_after_s` is how long detection takes after the stream opened; `max_call_s` ends
    the call from the carrier side if nobody else does."""

    kind: FateKind
    ring_s: float = 0.2
    line: LineChoice | None = None
    answered_by: str | None = None
    amd_after_s: float = 0.3
    max_call_s: float = 300.0
    quirks: Quirks = field(default_factory=Quirks)

    @classmethod
    def answered(
        cls, line: LineChoice | None = None, ring_s: float = 0.2, **kw: Any
    ) -> Fate:
        return cls("answered", ring_s, line, **kw)

    @classmethod
    def no_answer(cls, ring_s: float = 0.5, **kw: Any) -> Fate:
        return cls("no_answer", ring_s, **kw)

    @classmethod
    def busy(cls, **kw: Any) -> Fate:
        return cls("busy", 0.05, **kw)

    @classmethod
    def failed(cls, **kw: Any) -> Fate:
        return cls("failed", 0.0, **kw)

    @classmethod
    def voicemail(
        cls, line: LineChoice | None = None, ring_s: float = 0.3, **kw: Any
    ) -> Fate:
        return cls("voicemail", ring_s, line, **kw)

    def limited(self, ring_timeout_s: float | None, time_limit_s: float | None) -> Fate:
        """This fate under the request's limits: a callee who would answer later than the
        ring timeout (Twilio `Timeout`, Exotel `TimeOut`) is a no-answer at the timeout; a
        call lasts at most the time limit (`TimeLimit`)."""
        fate = self
        if ring_timeout_s is not None and fate.ring_s > ring_timeout_s:
            kind: FateKind = "no_answer" if fate.kind in ("answered", "voicemail") else fate.kind
            fate = replace(fate, kind=kind, ring_s=ring_timeout_s)
        if time_limit_s is not None and time_limit_s < fate.max_call_s:
            fate = replace(fate, max_call_s=time_limit_s)
        return fate

    def line_factory(self) -> LineChoice:
        """The line to put on the stream (a quiet callee, or an answering machine)."""
        if self.line is not None:
            return self.line
        return MachineLine if self.kind == "voicemail" else QuietLine

    def verdict(self, machine_detection: str | None) -> str:
        """What AMD reports for this callee (`MachineDetection` = Enable or DetectMessageEnd)."""
        if self.answered_by:
            return self.answered_by
        if self.kind != "voicemail":
            return "human"
        return "machine_end_beep" if machine_detection == "DetectMessageEnd" else "machine_start"


FateSource = Mapping[str, Fate] | Callable[[str], Fate]
DEMO_WEIGHTS: dict[FateKind, float] = {
    "answered": 0.55, "no_answer": 0.2, "busy": 0.1, "failed": 0.05, "voicemail": 0.1}


class FateBook:
    """The fate of each dialled number: from a dict (numbers not in it get `default`) or a
    callable To -> Fate."""

    def __init__(self, source: FateSource | None = None, default: Fate | None = None) -> None:
        self.source = source
        self.default = default or Fate.answered()

    def __call__(self, to: str) -> Fate:
        if self.source is None:
            return self.default
        if callable(self.source):
            return self.source(to)
        return self.source.get(to, self.default)


class SeededFates:
    """A reproducible mix of fates for demos: each dial of a number draws its fate from
    `weights` with a generator seeded by (seed, number, how often it was dialled), so a run
    with the same seed and the same dial order plays out the same way, and a retry of a
    number may fare differently from its first attempt. Answered calls get a line from
    `lines` (a persona name or a factory, drawn the same way)."""

    def __init__(
        self,
        seed: int,
        weights: Mapping[FateKind, float] | None = None,
        lines: Sequence[LineChoice] = (),
        quirks: Quirks | None = None,
        ring_s: float = 0.2,
    ) -> None:
        self.seed = seed
        self.weights: dict[FateKind, float] = dict(weights or DEMO_WEIGHTS)
        unknown = set(self.weights) - set(FATE_KINDS)
        if unknown or not any(w > 0 for w in self.weights.values()):
            raise ValueError(f"weights need positive values for fates among {FATE_KINDS}")
        self.lines = list(lines)
        self.quirks = quirks or Quirks()
        self.ring_s = ring_s
        self.dials: dict[str, int] = {}

    def __call__(self, to: str) -> Fate:
        n = self.dials.get(to, 0)
        self.dials[to] = n + 1
        rng = random.Random(f"{self.seed}:{to}:{n}")
        kinds = list(self.weights)
        kind = rng.choices(kinds, [self.weights[k] for k in kinds])[0]
        line = rng.choice(self.lines) if self.lines and kind == "answered" else None
        return Fate(kind, self.ring_s if kind != "failed" else 0.0, line, quirks=self.quirks)


def seconds_field(value: str | None, name: str, most: float) -> float | None:
    """A request's whole-seconds field (None when absent); ValueError for anything but an
    integer from 1 to `most`."""
    if value is None or value == "":
        return None
    if not value.strip().isdigit() or not 1 <= int(value) <= most:
        raise ValueError(f"{name} must be a whole number of seconds from 1 to {int(most)}")
    return float(value)


@dataclass
class CallbackRecord:
    """One callback as delivered (or dropped): what a receiver got, in the order it got it."""

    call_sid: str
    event: str
    url: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    status: int | None = None  # HTTP status of the receiver's answer; 0: no answer
    dropped: bool = False
    attempt: int = 1

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


#: a callback body for its params: (body, extra headers); called for every delivery, since a
#: multipart body can be sent only once
Encoder = Callable[[list[tuple[str, str]]], tuple[bytes | aiohttp.FormData, dict[str, str]]]


def with_query(url: str, params: list[tuple[str, str]]) -> str:
    """`url` with `params` added to its query string."""
    if not params:
        return url
    return url + ("&" if "?" in url else "?") + urlencode(params)


def form_encoded(params: list[tuple[str, str]]) -> tuple[bytes, dict[str, str]]:
    return urlencode(params).encode(), {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class _Pending:
    event: str
    url: str
    params: list[tuple[str, str]]
    headers: dict[str, str]
    encode: Encoder
    method: str = "POST"


class CallbackQueue:
    """One call's callbacks, delivered one at a time in emission order, quirks applied.

    `retries` is how often a failed delivery (no answer, or not 2xx) is tried again (Exotel
    retries up to twice; Twilio does not retry status callbacks)."""

    def __init__(
        self,
        session: Callable[[], aiohttp.ClientSession],
        call_sid: str,
        quirks: Quirks,
        records: list[CallbackRecord],
        retries: int = 0,
        timeout_s: float = 15.0,
    ) -> None:
        self._session = session
        self.call_sid = call_sid
        self.quirks = quirks
        self.records = records
        self.retries = retries
        self.timeout_s = timeout_s
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task = asyncio.ensure_future(self._run())

    def emit(
        self,
        event: str,
        url: str,
        params: list[tuple[str, str]],
        headers: dict[str, str] | None = None,
        encode: Encoder | None = None,
        method: str = "POST",
    ) -> None:
        """Queue a callback; with `method` GET the params go in the URL's query instead."""
        self._queue.put_nowait(
            _Pending(event, url, params, dict(headers or {}), encode or form_encoded, method))

    async def close(self) -> None:
        """Deliver what is left (held callbacks last) and stop."""
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def cancel(self) -> None:
        self._task.cancel()

    async def _run(self) -> None:
        held: list[_Pending] = []
        while (item := await self._queue.get()) is not None:
            if item.event in self.quirks.hold:
                held.append(item)
                continue
            await self._deliver(item)
            for late in held:
                await self._deliver(late)
            held.clear()
        for late in held:
            await self._deliver(late)

    async def _deliver(self, item: _Pending) -> None:
        if item.event in self.quirks.drop:
            self.records.append(CallbackRecord(
                self.call_sid, item.event, item.url, item.params, item.headers, dropped=True))
            return
        for _ in range(2 if item.event in self.quirks.duplicate else 1):
            if self.quirks.delay_s:
                await asyncio.sleep(self.quirks.delay_s)
            for attempt in range(1, self.retries + 2):
                status = await self._post(item)
                self.records.append(CallbackRecord(
                    self.call_sid, item.event, item.url, item.params, item.headers, status,
                    attempt=attempt))
                if 200 <= status < 300:
                    break

    async def _post(self, item: _Pending) -> int:
        body: bytes | aiohttp.FormData | None = None
        url, headers = item.url, dict(item.headers)
        if item.method == "GET":
            url = with_query(url, item.params)
        else:
            body, extra = item.encode(item.params)
            headers.update(extra)
        try:
            async with self._session().request(
                item.method, url, data=body, headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            ) as response:
                await response.read()
                return response.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.info("callback %s for %s not delivered: %s", item.event, self.call_sid[-6:],
                     type(exc).__name__)
            return 0


class PlayedCall(Protocol):
    """What `play_out` needs of a carrier's emulated call."""

    sid: str
    status: str
    fate: Fate | None
    done: asyncio.Event


async def play_out(
    call: PlayedCall,
    progress: Callable[[CallbackQueue], Awaitable[None]],
    finish: Callable[[CallbackQueue, str], None],
    *,
    terminal: Collection[str],
    session: Callable[[], aiohttp.ClientSession],
    records: list[CallbackRecord],
    retries: int = 0,
    ended: asyncio.Event | None = None,
) -> None:
    """Play one call out: `progress` runs its course, emitting callbacks onto the call's
    queue; an unexpected error ends the call as `finish(queue, "failed")` unless it had
    already ended (a status in `terminal`); the queue delivers what is left, then `ended`
    (a carrier's own end-of-call signal, if it has one) and `call.done` are set. `retries`
    as in `CallbackQueue`."""
    assert call.fate is not None
    queue = CallbackQueue(session, call.sid, call.fate.quirks, records, retries=retries)
    try:
        await progress(queue)
    except asyncio.CancelledError:
        queue.cancel()
        raise
    except Exception:
        log.exception("emulated call %s failed", call.sid[-6:])
        if call.status not in terminal:
            finish(queue, "failed")
    await queue.close()
    if ended is not None:
        ended.set()
    call.done.set()
