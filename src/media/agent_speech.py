"""The agent's voice on one call: sentences synthesised into the carrier's format and
queued on the paced player with a mark after each, and the short greeting-filler clip.
Playback progress goes back to the conversation engine as events (first audio at the
playhead, synthesis finished, mark echoed)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from ai.conversation import commands as cmd
from ai.conversation import inputs as ev
from ai.protocols import TTS
from media.codec import AudioFormat
from media.player import OutboundPlayer
from media.tts_audio import synthesize_for_carrier

log = structlog.get_logger("media.agent_speech")

#: pre-synthesised filler clips in carrier format, by (TTS name, encoding, rate, text); any
#: node can take any call, so a clip cannot be tied to a call
_FILLER_CLIPS: dict[tuple[str, str, int, str], bytes] = {}


class AgentSpeech:
    def __init__(
        self, player: OutboundPlayer, tts: TTS, fmt: AudioFormat, feed: Callable[[ev.Input], None]
    ) -> None:
        self.player = player
        self.tts = tts
        self.fmt = fmt
        self.feed = feed
        self.loop = asyncio.get_running_loop()
        self.bytes_per_s = fmt.rate * fmt.bytes_per_sample

    async def speak(self, c: cmd.Speak) -> None:
        """Synthesise one sentence onto the player, then its mark."""
        t_req = self.loop.time()
        ttfb: float | None = None
        total = 0
        async with contextlib.aclosing(synthesize_for_carrier(self.tts, c.text, self.fmt)) as audio:
            async for data in audio:
                if not data:
                    continue
                if ttfb is None:
                    ttfb = (self.loop.time() - t_req) * 1000
                    # "first audio" = when the pacing reaches this sentence, not when the
                    # text was handed to the TTS
                    self.player.at_playhead(self._started_hook(c, ttfb))
                total += len(data)
                self.player.enqueue_audio(data)
        self.feed(ev.SentenceAudio(self.loop.time(), c.reply_id, c.index,
                                   total * 1000 / self.bytes_per_s))
        mark = self.player.mark(f"r{c.reply_id}s{c.index + 1}")

        def played(ok: bool) -> None:
            if ok:
                self.feed(ev.SentencePlayed(self.loop.time(), c.reply_id, c.index))

        mark.on_resolve = played

    def _started_hook(self, c: cmd.Speak, ttfb_ms: float) -> Callable[[float], None]:
        return lambda t: self.feed(ev.SentenceStarted(t, c.reply_id, c.index, tts_ttfb_ms=ttfb_ms))

    # ---- greeting filler ---------------------------------------------------------------

    def _key(self, text: str) -> tuple[str, str, int, str]:
        name = str(getattr(self.tts, "name", type(self.tts).__name__))
        return (name, self.fmt.encoding, self.fmt.rate, text)

    async def prepare_filler(self, text: str) -> None:
        """Synthesise the filler once per TTS and format, kept in memory."""
        key = self._key(text)
        if not text or key in _FILLER_CLIPS:
            return
        parts: list[bytes] = []
        try:
            async for data in synthesize_for_carrier(self.tts, text, self.fmt):
                parts.append(data)
        except Exception as exc:
            log.warning("greeting_filler_failed", error=str(exc))
            return
        if parts:
            _FILLER_CLIPS[key] = b"".join(parts)

    def play_filler(self, text: str) -> bool:
        """Queue the filler clip if it is ready; False when it is not."""
        clip = _FILLER_CLIPS.get(self._key(text))
        if clip is None:
            return False
        self.player.at_playhead(lambda t: self.feed(ev.FillerStarted(t)))
        self.player.enqueue_audio(clip)
        self.player.flush_audio()
        return True
