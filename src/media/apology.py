"""The apology a claimed call that cannot go on plays before the carrier hangs up: its
audio is sent, then the session waits (reading the socket itself, since its read loop has
ended) until the carrier echoes the mark after it, or a deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import WSMsgType, web

from ai.protocols import TTS
from media.codec import AudioFormat
from media.events import Mark, ProtocolError, Stop
from media.player import OutboundPlayer
from media.protocol import CarrierProtocol
from media.tts_audio import synthesize_for_carrier

__all__ = ["APOLOGY_MARK_MARGIN_S", "APOLOGY_SYNTH_TIMEOUT_S", "play_apology"]

APOLOGY_SYNTH_TIMEOUT_S = 5.0
#: after the apology's audio should have played, how long its mark echo may still take
APOLOGY_MARK_MARGIN_S = 3.0


async def play_apology(
    ws: web.WebSocketResponse, protocol: CarrierProtocol, player: OutboundPlayer, tts: TTS,
    fmt: AudioFormat, line: str,
) -> tuple[bool, bool]:
    """Say `line`; returns (spoken, the carrier sent stop meanwhile)."""
    loop = asyncio.get_running_loop()
    total = 0
    async with asyncio.timeout(APOLOGY_SYNTH_TIMEOUT_S):
        async with contextlib.aclosing(synthesize_for_carrier(tts, line, fmt)) as audio:
            async for data in audio:
                total += len(data)
                player.enqueue_audio(data)
    if not total:
        return False, False
    mark = player.mark("apology")
    audio_s = total / (fmt.rate * fmt.bytes_per_sample)
    deadline = loop.time() + audio_s + APOLOGY_MARK_MARGIN_S
    # the read loop has ended: read here, for the mark's echo only
    while not mark.played.done() and not ws.closed:
        left = deadline - loop.time()
        if left <= 0:
            break
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            break
        if msg.type != WSMsgType.TEXT:
            break
        try:
            event = protocol.parse(msg.data)
        except ProtocolError:
            break
        if isinstance(event, Mark):
            player.on_mark(event.name)
        elif isinstance(event, Stop):
            return True, True
    return True, False
