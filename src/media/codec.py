"""µ-law / PCM16 conversion, a stateful resampler and exact 20 ms framing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

from ai.audioop_compat import audioop

Encoding = Literal["mulaw", "pcm16"]
FRAME_MS = 20


@dataclass(frozen=True, slots=True)
class AudioFormat:
    encoding: Encoding
    rate: int

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.encoding == "mulaw" else 2

    def frame_bytes(self, ms: int = FRAME_MS) -> int:
        return self.rate * ms // 1000 * self.bytes_per_sample

    def silence(self, ms: int = FRAME_MS) -> bytes:
        n = self.rate * ms // 1000
        return b"\xff" * n if self.encoding == "mulaw" else b"\x00\x00" * n


MULAW_8K = AudioFormat("mulaw", 8000)
PCM16_8K = AudioFormat("pcm16", 8000)


def ulaw_to_pcm16(data: bytes) -> np.ndarray:
    return np.frombuffer(audioop.ulaw2lin(data, 2), dtype=np.int16)


def pcm16_to_ulaw(pcm: np.ndarray) -> bytes:
    return audioop.lin2ulaw(np.ascontiguousarray(pcm, dtype=np.int16).tobytes(), 2)


def decode(data: bytes, fmt: AudioFormat) -> np.ndarray:
    """Carrier bytes → PCM16 samples at the format's rate."""
    if fmt.encoding == "mulaw":
        return ulaw_to_pcm16(data)
    if len(data) % 2:
        raise ValueError("PCM16 payload has an odd number of bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def encode(pcm: np.ndarray, fmt: AudioFormat) -> bytes:
    """PCM16 samples at the format's rate → carrier bytes."""
    if fmt.encoding == "mulaw":
        return pcm16_to_ulaw(pcm)
    return np.ascontiguousarray(pcm, dtype="<i2").tobytes()


class Resampler:
    """Stateful streaming resampler (soxr) for int16 mono audio; identity when rates match."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate else soxr.ResampleStream(in_rate, out_rate, 1, "int16", quality)
        )

    def process(self, pcm: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return pcm
        return np.asarray(self._stream.resample_chunk(pcm.astype(np.int16, copy=False), last=last))

    def flush(self) -> np.ndarray:
        if self._stream is None:
            return np.zeros(0, dtype=np.int16)
        return np.asarray(self._stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True))


class FrameBuffer:
    """Accumulates bytes and yields exact fixed-size frames; `flush` pads the tail."""

    def __init__(self, frame_bytes: int, pad: bytes) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame size must be positive")
        self.frame_bytes = frame_bytes
        self._pad = pad
        self._buf = bytearray()

    def push(self, data: bytes) -> list[bytes]:
        self._buf += data
        n = len(self._buf) // self.frame_bytes
        frames = [bytes(self._buf[i * self.frame_bytes : (i + 1) * self.frame_bytes]) for i in range(n)]
        del self._buf[: n * self.frame_bytes]
        return frames

    def flush(self) -> list[bytes]:
        if not self._buf:
            return []
        missing = self.frame_bytes - len(self._buf)
        unit = len(self._pad)
        self._buf += (self._pad * (missing // unit + 1))[:missing]
        frame = bytes(self._buf)
        self._buf.clear()
        return [frame]

    def __len__(self) -> int:
        return len(self._buf)


def to_float32(pcm: np.ndarray) -> np.ndarray:
    return pcm.astype(np.float32) / 32768.0


def from_float32(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
