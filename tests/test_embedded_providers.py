"""Embedded speech providers: VAD and segmenter on synthetic audio, Piper → 8 kHz µ-law
→ Whisper round trips, and the tone and null stand-ins."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import soxr

from ai import models
from ai.stt_null import NullSTT
from ai.stt_whisper import WhisperStream, WhisperSTT
from ai.tts_piper import PiperTTS
from ai.tts_tone import ToneTTS
from ai.types import AudioChunk, AudioIn, AudioSpec, SpeechStarted, STTEvent, UtteranceEnd
from ai.vad import SegmentEnded, SegmenterConfig, SegmentStarted, SpeechSegmenter, WebRtcVad
from media.codec import pcm16_to_ulaw, ulaw_to_pcm16

RATE = 8000
MULAW_8K = AudioSpec("mulaw", 8000)


def voice_like(seconds: float, rate: int = RATE, f0: float = 180.0) -> np.ndarray:
    """A harmonic-rich tone burst (webrtcvad calls it speech; a pure sine fades out)."""
    t = np.arange(int(rate * seconds)) / rate
    wave = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 10))
    return (wave / np.abs(wave).max() * 6000).astype(np.int16)


def silence(seconds: float, rate: int = RATE) -> np.ndarray:
    return np.zeros(int(rate * seconds), dtype=np.int16)


def feed(seg: SpeechSegmenter, audio: np.ndarray, sizes: list[int], t0: float = 0.0) -> list:
    """Push `audio` in chunks cycling through `sizes`; chunk time = arrival of its end."""
    events: list = []
    pos, i = 0, 0
    while pos < len(audio):
        chunk = audio[pos : pos + sizes[i % len(sizes)]]
        pos += len(chunk)
        i += 1
        events.extend(seg.push(chunk, t0 + pos / seg.rate))
    return events


# ---- VAD ---------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 48000])
def test_vad_tells_voice_from_silence_at_each_rate(rate: int) -> None:
    vad = WebRtcVad()
    n = rate // 50
    assert vad.is_speech(voice_like(0.02, rate)[:n].tobytes(), rate)
    assert not WebRtcVad().is_speech(silence(0.02, rate)[:n].tobytes(), rate)


def test_vad_rejects_frames_that_are_not_10_20_30_ms() -> None:
    with pytest.raises(ValueError):
        WebRtcVad().is_speech(b"\x00\x00" * 100, 8000)
    with pytest.raises(ValueError):
        WebRtcVad().is_speech(b"\x00\x00" * 300, 22050)
    with pytest.raises(ValueError):
        WebRtcVad(mode=7)


def test_vad_gates_faint_noise() -> None:
    noise = np.random.default_rng(1).normal(0, 30, 160).astype(np.int16).tobytes()
    vad = WebRtcVad()
    assert not any(vad.is_speech(noise, 8000) for _ in range(10))


# ---- segmenter ---------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[160], [37, 333, 1, 999, 160], [4000], [7]])
def test_segmenter_cuts_two_bursts_whatever_the_chunk_sizes(sizes: list[int]) -> None:
    seg = SpeechSegmenter(RATE, SegmenterConfig(endpoint_ms=400, preroll_ms=200, tail_ms=100))
    audio = np.concatenate(
        [silence(1.0), voice_like(0.5), silence(1.0), voice_like(0.3), silence(1.0)]
    )
    events = feed(seg, audio, sizes, t0=100.0)
    kinds = [type(e) for e in events]
    assert kinds == [SegmentStarted, SegmentEnded, SegmentStarted, SegmentEnded]
    first_start, first_end, second_start, second_end = events
    # frames are stamped with the arrival of their last sample: burst 1 starts at 1.00 s
    assert first_start.t == pytest.approx(101.02, abs=1e-6)
    assert first_end.start_t == first_start.t
    assert second_start.t == pytest.approx(102.52, abs=1e-6)
    # webrtcvad holds "speech" for a few frames after the burst; never before it ends
    assert 101.5 <= first_end.speech_end_t <= 101.7
    assert 102.8 <= second_end.speech_end_t <= 103.0
    # audio = 200 ms preroll + voiced frames + 100 ms tail
    voiced_1 = round((first_end.speech_end_t - first_start.t) * 1000) + 20
    assert len(first_end.audio) == RATE * (200 + voiced_1 + 100) // 1000
    assert not np.any(first_end.audio[: RATE * 200 // 1000])  # the preroll is the silence
    assert np.abs(first_end.audio[RATE * 200 // 1000 :][:160]).max() > 1000
    assert not first_end.truncated and not seg.in_speech


def test_segmenter_endpoint_fires_after_endpoint_ms_of_silence() -> None:
    for endpoint_ms in (300, 800):
        seg = SpeechSegmenter(RATE, SegmenterConfig(endpoint_ms=endpoint_ms))
        ended_at = None
        audio = np.concatenate([silence(0.5), voice_like(0.6), silence(2.0)])
        pos = 0
        while pos < len(audio):
            pos += 160
            for e in seg.push(audio[pos - 160 : pos], pos / RATE):
                if isinstance(e, SegmentEnded):
                    ended_at = pos / RATE
                    speech_end = e.speech_end_t
        assert ended_at is not None
        assert ended_at - speech_end == pytest.approx(endpoint_ms / 1000, abs=1e-6)


def test_segmenter_short_click_is_not_speech() -> None:
    seg = SpeechSegmenter(RATE, SegmenterConfig(start_ms=60, start_window_ms=120))
    audio = np.concatenate([silence(0.5), voice_like(0.02), silence(0.5)])
    assert feed(seg, audio, [160]) == []


def test_segmenter_cuts_at_max_length_and_redetects() -> None:
    seg = SpeechSegmenter(RATE, SegmenterConfig(max_utterance_ms=1500, endpoint_ms=300))
    events = feed(seg, np.concatenate([silence(0.3), voice_like(2.2), silence(1.0)]), [160])
    ends = [e for e in events if isinstance(e, SegmentEnded)]
    starts = [e for e in events if isinstance(e, SegmentStarted)]
    assert len(starts) == len(ends) >= 2
    assert ends[0].truncated and len(ends[0].audio) == RATE * 3 // 2  # exactly max_utterance_ms
    assert not ends[-1].truncated
    kinds = [type(e) for e in events]
    assert kinds == [SegmentStarted, SegmentEnded] * len(ends)  # always in pairs


def test_segmenter_flush_ends_utterance_in_progress() -> None:
    seg = SpeechSegmenter(RATE)
    events = feed(seg, np.concatenate([silence(0.3), voice_like(0.5)]), [160])
    assert [type(e) for e in events] == [SegmentStarted]
    assert seg.in_speech
    (end,) = seg.flush()
    assert isinstance(end, SegmentEnded) and len(end.audio) > RATE * 0.4
    assert seg.flush() == []


def test_segmenter_accepts_bytes_and_22050_hz() -> None:
    rate = 22050
    seg = SpeechSegmenter(rate, SegmenterConfig(endpoint_ms=300))
    audio = np.concatenate([silence(0.5, rate), voice_like(0.5, rate), silence(0.6, rate)])
    events = [e for i in range(0, len(audio), 1000) for e in seg.push(audio[i : i + 1000].tobytes(), i)]
    assert [type(e) for e in events] == [SegmentStarted, SegmentEnded]
    with pytest.raises(ValueError):
        SpeechSegmenter(11025)


# ---- tone and null stand-ins -------------------------------------------------------------


async def test_tone_tts_length_follows_text() -> None:
    tts = ToneTTS(ms_per_char=50)
    for text, spec in (("Hello there.", MULAW_8K), ("A much longer sentence to say.", AudioSpec("pcm16", 16000))):
        chunks = [c async for c in tts.synthesize(text, spec)]
        rate = spec.rate
        assert all(c.spec == AudioSpec("pcm16", rate) for c in chunks)
        assert all(len(c.data) <= rate // 10 * 2 for c in chunks)
        samples = sum(len(c.data) for c in chunks) // 2
        assert samples == rate * len(text) * 50 // 1000
        pcm = np.frombuffer(b"".join(c.data for c in chunks), dtype="<i2")
        assert 0 < np.abs(pcm).max() < 4000
    assert [c async for c in tts.synthesize("", MULAW_8K)] == []


async def test_null_stt_accepts_audio_and_never_emits() -> None:
    stream = await NullSTT().open_stream(MULAW_8K, 500)
    received: list[STTEvent] = []

    async def consume() -> None:
        received.extend([e async for e in stream.events()])

    task = asyncio.create_task(consume())
    for frame in ulaw_frames(voice_like(1.0)):
        await stream.send(audio_in(frame, 0.0))
    await asyncio.sleep(0.05)
    assert not task.done()
    await stream.close()
    await asyncio.wait_for(task, 5)
    assert received == [] and stream.chunks == 50


# ---- real models: Piper → carrier µ-law → Whisper -----------------------------------------


def ulaw_frames(pcm8k: np.ndarray) -> list[bytes]:
    data = pcm16_to_ulaw(pcm8k)
    return [data[i : i + 160] for i in range(0, len(data) - 159, 160)]


def audio_in(frame: bytes, t: float) -> AudioIn:
    return AudioIn(raw=frame, spec=MULAW_8K, pcm=ulaw_to_pcm16(frame), t=t)


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split()


async def piper_8k(tts: PiperTTS, text: str) -> np.ndarray:
    chunks: list[AudioChunk] = [c async for c in tts.synthesize(text, MULAW_8K)]
    pcm = np.frombuffer(b"".join(c.data for c in chunks), dtype="<i2")
    return np.asarray(soxr.resample(pcm, chunks[0].spec.rate, 8000), dtype=np.int16)


@pytest.fixture(scope="module")
def stt() -> WhisperSTT:
    stt = WhisperSTT(threads=2)
    stt.warmup()
    return stt


@pytest.fixture(scope="module")
def tts() -> PiperTTS:
    tts = PiperTTS()
    tts.warmup()
    return tts


async def run_call(stream: WhisperStream, pcm8k: np.ndarray) -> list[STTEvent]:
    """Send 20 ms µ-law frames in order with carrier timestamps; collect all events."""
    events: list[STTEvent] = []

    async def consume() -> None:
        events.extend([e async for e in stream.events()])

    task = asyncio.create_task(consume())
    frames = ulaw_frames(pcm8k)
    t0 = asyncio.get_running_loop().time() - 0.02 * len(frames)  # faster than real time
    for i, frame in enumerate(frames):
        await stream.send(audio_in(frame, t0 + (i + 1) * 0.02))
        if i % 25 == 0:
            await asyncio.sleep(0)
    await stream.close()
    await asyncio.wait_for(task, 30)
    return events


@pytest.mark.slow
async def test_piper_streams_sentences_as_they_are_made(tts: PiperTTS) -> None:
    text = "Hello, this is Joe. I am calling about your account. Is now a good time?"
    chunks = [c async for c in tts.synthesize(text, MULAW_8K)]
    assert len(chunks) == 3  # Piper yields one chunk per sentence
    assert all(c.spec == AudioSpec("pcm16", 22050) for c in chunks)
    assert all(len(c.data) > 22050 * 2 * 0.3 for c in chunks)
    assert [c async for c in tts.synthesize("  ...  ", MULAW_8K)] == []


@pytest.mark.slow
async def test_piper_consumer_can_stop_early(
    tts: PiperTTS, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = models.piper_voice()
    made: list[int] = []

    class CountingVoice:
        def synthesize(self, text: str) -> Iterator[Any]:
            for chunk in real.synthesize(text):
                made.append(1)
                yield chunk

    monkeypatch.setattr(models, "piper_voice", CountingVoice)
    text = " ".join(f"This is sentence number {n}." for n in range(1, 13))
    gen = tts.synthesize(text, MULAW_8K)
    first = await gen.__anext__()
    assert first.data
    await gen.aclose()
    await asyncio.sleep(1.0)  # 11 more sentences would be made by now if nothing stopped
    assert len(made) <= 2  # the one in flight when we stopped, at most
    monkeypatch.undo()
    assert [c async for c in tts.synthesize("Still works.", MULAW_8K)]


@pytest.mark.slow
async def test_round_trip_piper_to_whisper_over_ulaw(stt: WhisperSTT, tts: PiperTTS) -> None:
    speech = await piper_8k(tts, "Yes, I can pay three hundred dollars next Friday.")
    stream = await stt.open_stream(MULAW_8K, endpointing_ms=600)
    events = await run_call(stream, np.concatenate([silence(0.5), speech, silence(1.2)]))
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnd]
    started, ended = events
    assert isinstance(started, SpeechStarted) and isinstance(ended, UtteranceEnd)
    heard = words(ended.text.replace("$300", "300 dollars"))
    for word in ("yes", "pay", "dollars", "friday"):
        assert word in heard, ended.text
    assert "300" in heard or ("three" in heard and "hundred" in heard), ended.text
    assert started.t < ended.speech_end_t < ended.t
    assert ended.confidence is not None and 0 < ended.confidence <= 1


@pytest.mark.slow
async def test_two_utterances_come_out_in_order(stt: WhisperSTT, tts: PiperTTS) -> None:
    first = await piper_8k(tts, "Who is calling?")
    second = await piper_8k(tts, "I already paid that bill last month.")
    stream = await stt.open_stream(MULAW_8K, endpointing_ms=500)
    audio = np.concatenate([silence(0.3), first, silence(1.0), second, silence(1.0)])
    events = await run_call(stream, audio)
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert len(starts) == len(ends) == 2
    assert "calling" in words(ends[0].text), ends[0].text
    assert {"paid", "bill", "month"} <= set(words(ends[1].text)), ends[1].text
    assert ends[0].speech_end_t < starts[1].t < ends[1].speech_end_t


@pytest.mark.slow
async def test_close_recognises_speech_cut_off_by_hangup(stt: WhisperSTT, tts: PiperTTS) -> None:
    speech = await piper_8k(tts, "Please stop calling me.")
    stream = await stt.open_stream(MULAW_8K, endpointing_ms=800)
    events = await run_call(stream, np.concatenate([silence(0.3), speech]))  # no trailing silence
    assert [type(e) for e in events] == [SpeechStarted, UtteranceEnd]
    assert {"stop", "calling"} <= set(words(events[1].text))  # type: ignore[union-attr]


@pytest.mark.slow
async def test_noise_gives_an_empty_utterance_not_a_hallucination(stt: WhisperSTT) -> None:
    rng = np.random.default_rng(3)
    noise = (rng.normal(0, 1, RATE) * 2500).astype(np.int16)  # a burst of hiss
    stream = await stt.open_stream(MULAW_8K, endpointing_ms=500)
    events = await run_call(stream, np.concatenate([silence(0.5), noise, silence(1.0)]))
    ends = [e for e in events if isinstance(e, UtteranceEnd)]
    assert all(e.text == "" for e in ends), [e.text for e in ends]
    assert stt.transcribe_pcm16(silence(1.0, 16000), 16000) == ""

