"""Outbound audio player: exact chunks paced in real time, marks, `clear`, pause/resume.

Audio is sent a small lead ahead of real time (the carrier buffers it), never a whole
utterance at once, so a `clear` on barge-in drops little and marks echo close to when the
caller actually heard the audio.

`pause` stops the caller hearing the agent at once (a carrier `clear`) but keeps what was
not played: the queue, plus the chunks already sent that the carrier's clock says it had
not played yet (the clear dropped them), plus every mark sent but not echoed. `resume`
plays them from where the caller stopped hearing; `clear` while paused drops them.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from media.codec import FRAME_MS, AudioFormat, FrameBuffer
from media.protocol import CarrierProtocol

FRAME_S = FRAME_MS / 1000
#: a pause also holds audio that our clock says finished playing this recently: the carrier
#: plays a little behind our send clock, and replaying 20 ms beats a hole in a word
REPLAY_MARGIN_S = FRAME_S


@dataclass(slots=True)
class _Chunk:
    data: bytes
    frames: int


@dataclass(slots=True)
class _Mark:
    name: str


@dataclass(slots=True)
class _Hook:
    fn: Callable[[float], None]


@dataclass(slots=True)
class PacingStats:
    chunks_sent: int = 0
    frames_sent: int = 0
    late_chunks: int = 0
    max_late_ms: float = 0.0
    errors_ms: list[float] = field(default_factory=list)
    keep_errors: bool = False


class MarkState:
    """A mark we sent: `played` resolves True on the carrier's echo, False if cleared first."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.name = name  # the name on the wire; a pause gives held marks a fresh one
        self.sent_at: float | None = None
        self.played: asyncio.Future[bool] = loop.create_future()
        #: called at once when the mark resolves (before the next carrier message is read)
        self.on_resolve: Callable[[bool], None] | None = None

    def resolve(self, played: bool) -> None:
        if not self.played.done():
            self.played.set_result(played)
            if self.on_resolve is not None:
                self.on_resolve(played)


class OutboundPlayer:
    def __init__(
        self,
        send: Callable[[str], Awaitable[None]],
        protocol: CarrierProtocol,
        stream_id: str,
        fmt: AudioFormat,
        lead_frames: int = 3,
        keep_pacing_errors: bool = False,
    ) -> None:
        self._send = send
        self._protocol = protocol
        self._stream_id = stream_id
        self.fmt = fmt
        self.chunk_frames = max(1, protocol.chunk_frames)
        self.lead_frames = max(lead_frames, self.chunk_frames)
        self._chunker = FrameBuffer(fmt.frame_bytes() * self.chunk_frames, fmt.silence(FRAME_MS))
        self._queue: deque[_Chunk | _Mark | _Hook] = deque()
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._marks: dict[str, MarkState] = {}
        self._run_start: float | None = None
        self._run_frames = 0
        self._unmarked_end: float | None = None  # when sent audio no mark follows stops playing
        self._closed = False
        # what was sent, with when the carrier finishes playing it (marks: their position)
        self._sent: deque[tuple[_Chunk | _Mark, float]] = deque()
        self._paused = False
        self._stale: set[str] = set()  # old names of held marks: their echoes mean nothing
        self.stats = PacingStats(keep_errors=keep_pacing_errors)
        #: bytes on the wire per second of audio (of the last media message sent)
        self.wire_bytes_per_s = 0.0
        self.clears = 0
        self.pauses = 0
        self.stale_echoes = 0

    # ---- producer side -------------------------------------------------------------

    def enqueue_audio(self, data: bytes) -> None:
        """Queue carrier-format bytes; whole chunks become playable, the tail waits."""
        for chunk in self._chunker.push(data):
            self._queue.append(_Chunk(chunk, self.chunk_frames))
        self._wake.set()

    def flush_audio(self) -> None:
        """Pad and queue the partial chunk (end of an utterance)."""
        for chunk in self._chunker.flush():
            self._queue.append(_Chunk(chunk, self.chunk_frames))
        self._wake.set()

    def mark(self, name: str) -> MarkState:
        """Queue a mark after the audio queued so far (flushing the partial chunk)."""
        self.flush_audio()
        state = MarkState(name, self._loop)
        self._marks[name] = state
        self._queue.append(_Mark(name))
        self._wake.set()
        return state

    def at_playhead(self, fn: Callable[[float], None]) -> None:
        """Call fn(send_time) when the pacing reaches this point of the queue."""
        self._queue.append(_Hook(fn))
        self._wake.set()

    async def clear(self) -> list[str]:
        """Drop queued (and held) audio, tell the carrier to drop its buffer; returns the
        cleared marks, which resolve as not played. While paused the carrier was already
        cleared and has been sent nothing since, so no second `clear` goes out."""
        was_paused, self._paused = self._paused, False
        self._queue.clear()
        self._sent.clear()
        self._chunker = FrameBuffer(self._chunker.frame_bytes, self.fmt.silence(FRAME_MS))
        self._run_start = None
        self._run_frames = 0
        self._unmarked_end = None
        cleared = [n for n, m in self._marks.items() if not m.played.done()]
        for name in cleared:
            self._marks.pop(name).resolve(False)
        if not was_paused:
            self.clears += 1
            await self._send(self._protocol.clear(self._stream_id))
        return cleared

    @property
    def paused(self) -> bool:
        return self._paused

    async def pause(self) -> int:
        """Silence the caller's side now (`clear`) but keep the unplayed audio and marks
        at the front of the queue for `resume`. Returns the held audio in ms (-1 if
        already paused)."""
        if self._paused:
            return -1
        now = self._loop.time()
        unplayed = [item for item, end in self._sent if end > now - REPLAY_MARGIN_S]
        in_unplayed = {i.name for i in unplayed if isinstance(i, _Mark)}
        # sent marks whose audio played by our clock but whose echo has not come: the
        # carrier may not have played them yet either (it runs behind our send clock)
        earlier = sorted(
            (m for n, m in self._marks.items()
             if m.sent_at is not None and not m.played.done() and n not in in_unplayed),
            key=lambda m: m.sent_at or 0.0,
        )
        held: list[_Chunk | _Mark] = [_Mark(m.name) for m in earlier]
        held += unplayed
        self.pauses += 1
        front: list[_Chunk | _Mark | _Hook] = []
        for item in held:
            if isinstance(item, _Mark):
                state = self._marks.get(item.name)
                if state is None or state.played.done():
                    continue  # echoed already: its audio was played
                # a fresh name, so echoes of the old one (a carrier echoes pending marks
                # when cleared) are never taken for playback of the re-sent audio
                del self._marks[item.name]
                self._stale.add(item.name)
                state.name = f"{item.name.split('~')[0]}~{self.pauses}"
                state.sent_at = None
                self._marks[state.name] = state
                item = _Mark(state.name)
            front.append(item)
        self._queue.extendleft(reversed(front))
        self._sent.clear()
        self._run_start = None
        self._run_frames = 0
        self._unmarked_end = None
        self._paused = True
        self.clears += 1
        await self._send(self._protocol.clear(self._stream_id))
        return self.queued_ms()

    def resume(self) -> bool:
        """Play the held audio (then the rest of the queue) from where it stopped."""
        if not self._paused:
            return False
        self._paused = False
        self._wake.set()
        return True

    # ---- carrier side --------------------------------------------------------------

    def on_mark(self, name: str) -> bool:
        """A mark echo arrived; returns False for marks we do not know (or already cleared)."""
        state = self._marks.pop(name, None)
        if state is None:
            if name in self._stale:
                self.stale_echoes += 1
            return False
        state.resolve(True)
        return True

    @property
    def busy(self) -> bool:
        """True while audio is queued here or may still be playing at the carrier."""
        # `_marks` holds only marks not yet resolved: echoes, clear and close pop them.
        # Audio sent with no mark after it (echo) plays until the run's sent frames end: with
        # a lead of a whole 200 ms Exotel chunk the queue can be empty long before that.
        if self._queue or self._marks or len(self._chunker):
            return True
        return self._unmarked_end is not None and self._loop.time() < self._unmarked_end

    def queued_ms(self) -> int:
        return sum(c.frames for c in self._queue if isinstance(c, _Chunk)) * FRAME_MS

    def playback_position(self) -> float | None:
        """Seconds of the current run the carrier has played so far (estimate)."""
        if self._run_start is None:
            return None
        return max(0.0, self._loop.time() - self._run_start)

    def close(self) -> None:
        self._closed = True
        for m in self._marks.values():
            m.resolve(False)
        self._marks.clear()
        self._wake.set()

    # ---- pacing loop ---------------------------------------------------------------

    async def run(self) -> None:
        loop = self._loop
        stats = self.stats
        while not self._closed:
            if self._paused or not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            item = self._queue[0]
            now = loop.time()
            if isinstance(item, _Mark):
                self._queue.popleft()
                state = self._marks.get(item.name)
                if state is not None:
                    state.sent_at = now
                    at = now if self._run_start is None else self._run_start + self._run_frames * FRAME_S
                    self._sent.append((item, at))
                    self._unmarked_end = None
                    await self._send(self._protocol.mark(self._stream_id, item.name))
                continue
            if isinstance(item, _Hook):
                self._queue.popleft()
                item.fn(now)
                continue
            # Audio: start a new run if the carrier's buffer has drained.
            if self._run_start is None or now > self._run_start + self._run_frames * FRAME_S:
                self._run_start = now
                self._run_frames = 0
            due = self._run_start + (self._run_frames - self.lead_frames) * FRAME_S
            if due > now:
                await asyncio.sleep(due - now)
                continue
            self._queue.popleft()
            late = (now - due) if self._run_frames >= self.lead_frames else 0.0
            self._run_frames += item.frames
            while self._sent and self._sent[0][1] <= now - REPLAY_MARGIN_S:
                self._sent.popleft()
            self._unmarked_end = self._run_start + self._run_frames * FRAME_S
            self._sent.append((item, self._unmarked_end))
            message = self._protocol.media(self._stream_id, item.data)
            self.wire_bytes_per_s = len(message) / (item.frames * FRAME_S)
            await self._send(message)
            stats.chunks_sent += 1
            stats.frames_sent += item.frames
            late_ms = late * 1000
            if late_ms > FRAME_MS:
                stats.late_chunks += 1
            if late_ms > stats.max_late_ms:
                stats.max_late_ms = late_ms
            if stats.keep_errors:
                stats.errors_ms.append(late_ms)
