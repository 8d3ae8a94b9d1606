"""Outbound audio player: exact chunks paced in real time, marks and `clear`.

Audio is sent a small lead ahead of real time (the carrier buffers it), never a whole
utterance at once, so a `clear` on barge-in drops little and marks echo close to when the
caller actually heard the audio.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from media.codec import FRAME_MS, AudioFormat, FrameBuffer
from media.protocol import CarrierProtocol

FRAME_S = FRAME_MS / 1000


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
        self.name = name
        self.sent_at: float | None = None
        self.played: asyncio.Future[bool] = loop.create_future()

    def resolve(self, played: bool) -> None:
        if not self.played.done():
            self.played.set_result(played)


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
        self._closed = False
        self.stats = PacingStats(keep_errors=keep_pacing_errors)
        self.clears = 0

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
        """Drop queued audio, tell the carrier to drop its buffer; returns cleared marks."""
        self._queue.clear()
        self._chunker = FrameBuffer(self._chunker.frame_bytes, self.fmt.silence(FRAME_MS))
        self._run_start = None
        self._run_frames = 0
        cleared = [n for n, m in self._marks.items() if not m.played.done()]
        for name in cleared:
            self._marks.pop(name).resolve(False)
        self.clears += 1
        await self._send(self._protocol.clear(self._stream_id))
        return cleared

    # ---- carrier side --------------------------------------------------------------

    def on_mark(self, name: str) -> bool:
        """A mark echo arrived; returns False for marks we do not know (or already cleared)."""
        state = self._marks.pop(name, None)
        if state is None:
            return False
        state.resolve(True)
        return True

    @property
    def busy(self) -> bool:
        """True while audio is queued here or may still be playing at the carrier."""
        return bool(self._queue) or any(not m.played.done() for m in self._marks.values())

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
            if not self._queue:
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
            await self._send(self._protocol.media(self._stream_id, item.data))
            self._run_frames += item.frames
            stats.chunks_sent += 1
            stats.frames_sent += item.frames
            late_ms = late * 1000
            if late_ms > FRAME_MS:
                stats.late_chunks += 1
            if late_ms > stats.max_late_ms:
                stats.max_late_ms = late_ms
            if stats.keep_errors:
                stats.errors_ms.append(late_ms)
