"""The echo agent (playbook kind `echo`): the caller's audio comes back after a fixed
delay through the normal paced outbound player, to check a carrier set-up end to end.
No STT, no conversation engine and no TTS run on an echo call."""

from __future__ import annotations

import asyncio

from media.player import OutboundPlayer


class EchoAgent:
    def __init__(self, player: OutboundPlayer, delay_ms: int) -> None:
        self.player = player
        self.delay_s = delay_ms / 1000
        self.loop = asyncio.get_running_loop()
        self._held: list[bytes] | None = None  # audio waiting out the echo delay

    def on_audio(self, payload: bytes) -> None:
        """The first audio after silence is held for the delay, then released in one piece
        and played continuously. One list and one timer keep frames in order, and the
        player starts with the delay's worth queued, so it keeps its lead ahead of real
        time while inbound frames jitter."""
        if self._held is not None:
            self._held.append(payload)
        elif self.player.busy:
            self.player.enqueue_audio(payload)
        else:
            self._held = [payload]
            self.loop.call_later(self.delay_s, self._release)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held:
            self.player.enqueue_audio(b"".join(held))
