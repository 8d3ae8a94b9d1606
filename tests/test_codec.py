"""µ-law / PCM16 conversion, the stateful resampler and exact 20 ms framing."""

from __future__ import annotations

import numpy as np
import pytest

from media.codec import (
    MULAW_8K,
    PCM16_8K,
    AudioFormat,
    FrameBuffer,
    Resampler,
    decode,
    encode,
    pcm16_to_ulaw,
    ulaw_to_pcm16,
)


def tone(freq: float, seconds: float, rate: int, amp: float = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def test_ulaw_round_trip_error_is_within_companding_step() -> None:
    pcm = np.linspace(-32000, 32000, 4001).astype(np.int16)
    back = ulaw_to_pcm16(pcm16_to_ulaw(pcm))
    err = np.abs(back.astype(int) - pcm.astype(int))
    # G.711 µ-law: the quantisation step grows with amplitude, about 3 % of the value
    assert np.all(err <= np.maximum(8, np.abs(pcm.astype(int)) * 0.035))


def test_ulaw_known_values() -> None:
    assert pcm16_to_ulaw(np.array([0], dtype=np.int16)) == b"\xff"  # digital silence
    assert ulaw_to_pcm16(b"\xff\x7f").tolist() == [0, 0]
    assert ulaw_to_pcm16(b"\x00")[0] == -32124 and ulaw_to_pcm16(b"\x80")[0] == 32124


def test_pcm16_is_little_endian_and_odd_length_refused() -> None:
    pcm = np.array([1, -2, 300], dtype=np.int16)
    data = encode(pcm, PCM16_8K)
    assert data == b"\x01\x00\xfe\xff\x2c\x01"
    assert decode(data, PCM16_8K).tolist() == [1, -2, 300]
    with pytest.raises(ValueError):
        decode(b"\x00\x01\x02", PCM16_8K)


def test_formats_know_their_frame_sizes() -> None:
    assert MULAW_8K.frame_bytes() == 160
    assert PCM16_8K.frame_bytes() == 320
    assert AudioFormat("pcm16", 16000).frame_bytes() == 640
    assert AudioFormat("pcm16", 24000).frame_bytes(100) == 4800
    assert MULAW_8K.silence() == b"\xff" * 160
    assert PCM16_8K.silence() == b"\x00" * 320


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (22050, 8000), (8000, 22050), (24000, 8000)])
def test_streaming_resampler_matches_one_shot_and_keeps_the_tone(src: int, dst: int) -> None:
    signal = tone(440, 1.0, src)
    one = Resampler(src, dst)
    whole = np.concatenate([one.process(signal), one.flush()])
    streamed = Resampler(src, dst)
    parts = [streamed.process(signal[i : i + 160]) for i in range(0, len(signal), 160)]
    parts.append(streamed.flush())
    chunked = np.concatenate(parts)
    assert abs(len(chunked) - dst) <= 2 and abs(len(whole) - dst) <= 2
    # chunk boundaries leave no clicks: streamed output equals the one-shot output
    n = min(len(whole), len(chunked))
    assert np.max(np.abs(whole[:n].astype(int) - chunked[:n].astype(int))) <= 2
    # the tone survives: its frequency is where the spectrum peaks
    spectrum = np.abs(np.fft.rfft(chunked.astype(float)))
    peak_hz = np.argmax(spectrum) * dst / len(chunked)
    assert abs(peak_hz - 440) < 5


def test_resampler_is_identity_at_equal_rates() -> None:
    signal = tone(300, 0.1, 8000)
    r = Resampler(8000, 8000)
    assert r.process(signal) is signal and len(r.flush()) == 0


def test_frame_buffer_yields_exact_frames_from_any_chunking() -> None:
    data = bytes(range(256)) * 20  # 5,120 bytes
    rng = np.random.default_rng(7)
    buf = FrameBuffer(160, b"\xff")
    frames: list[bytes] = []
    i = 0
    while i < len(data):
        n = int(rng.integers(1, 700))
        frames += buf.push(data[i : i + n])
        i += n
    frames += buf.flush()
    assert all(len(f) == 160 for f in frames)
    joined = b"".join(frames)
    assert joined[: len(data)] == data
    assert joined[len(data) :] == b"\xff" * (len(joined) - len(data))
    assert len(buf) == 0 and buf.flush() == []


def test_frame_buffer_pads_pcm_with_whole_samples() -> None:
    buf = FrameBuffer(320, b"\x00\x00")
    assert buf.push(b"\x01\x02" * 100) == []
    (frame,) = buf.flush()
    assert frame == b"\x01\x02" * 100 + b"\x00\x00" * 60
