"""Embedded speech models: Piper synthesis speed and Whisper accuracy/latency on 8 kHz µ-law.

Synthesises typical agent sentences with Piper (time to first chunk, real-time factor),
sends each through the telephone path (22050 Hz → 8 kHz → µ-law → PCM16) and recognises
it with Whisper tiny.en (latency per utterance, word error rate against the source text).

    .venv/bin/python bench/embedded_models.py [--json] [--threads 2]

Prints one JSON object (pretty unless --json).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from ai import models
from ai.stt_whisper import WhisperSTT
from ai.tts_piper import PiperTTS
from ai.types import AudioSpec
from media.codec import pcm16_to_ulaw, ulaw_to_pcm16

SENTENCES = [
    "Hello, this is Joe calling from Acme Recovery Services.",
    "Am I speaking with Maria Lopez?",
    "This is an attempt to collect a debt, and any information obtained will be used for that purpose.",
    "Your account shows a balance of four hundred and twenty dollars.",
    "Would you be able to make a payment today?",
    "I understand, we can set up a plan that works for you.",
    "Could you pay one hundred dollars on the fifteenth of next month?",
    "Thank you, I have noted your promise to pay.",
    "If you would like us to stop calling, just let me know.",
    "Have a good day, goodbye.",
]

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "5th": "fifth", "15th": "fifteenth"}


def number_words(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return _ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))


def normalise(text: str) -> list[str]:
    """Lower-case words; '$420' → 'four hundred and twenty dollars'; 'and' in numbers dropped."""
    text = text.lower()
    text = re.sub(r"\$(\d+)", lambda m: f"{m.group(1)} dollars", text.replace(",", ""))
    text = re.sub(r"\b\d+(?:st|nd|rd|th)\b", lambda m: _ORDINALS.get(m.group(0), m.group(0)), text)
    text = re.sub(r"\d+", lambda m: number_words(int(m.group(0))), text)
    text = re.sub(r"[^a-z' ]", " ", text).replace(" and ", " ")
    return text.split()


def word_errors(ref: list[str], hyp: list[str]) -> int:
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def run(threads: int) -> dict[str, object]:
    t = time.perf_counter()
    tts, stt = PiperTTS(), WhisperSTT(threads=threads)
    tts.warmup()
    piper_load_s = time.perf_counter() - t
    t = time.perf_counter()
    stt.warmup()
    whisper_load_s = time.perf_counter() - t

    spec = AudioSpec("mulaw", 8000)
    first_chunk, rtf, latency, rows = [], [], [], []
    errors = ref_words = 0
    for text in SENTENCES:
        start = time.perf_counter()
        chunks, first = [], None
        async for chunk in tts.synthesize(text, spec):
            first = first if first is not None else time.perf_counter() - start
            chunks.append(chunk)
        synth_s = time.perf_counter() - start
        pcm = np.frombuffer(b"".join(c.data for c in chunks), dtype="<i2")
        audio_s = len(pcm) / chunks[0].spec.rate
        first_chunk.append(first or 0.0)
        rtf.append(synth_s / audio_s)

        phone = ulaw_to_pcm16(pcm16_to_ulaw(soxr.resample(pcm, chunks[0].spec.rate, 8000)))
        start = time.perf_counter()
        heard = stt.transcribe_pcm16(phone, 8000)
        latency.append(time.perf_counter() - start)

        ref, hyp = normalise(text), normalise(heard)
        errs = word_errors(ref, hyp)
        errors += errs
        ref_words += len(ref)
        rows.append({"text": text, "heard": heard, "word_errors": errs, "audio_s": round(audio_s, 2)})

    return {
        "bench": "embedded_models",
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.processor() or platform.system()}",
        "python": platform.python_version(),
        "whisper_threads": threads,
        "models": {k: {"package": v["package"], "version": v["version"], "license": v["license"]}
                   for k, v in models.model_info().items()},
        "piper_load_and_warmup_s": round(piper_load_s, 3),
        "whisper_load_and_warmup_s": round(whisper_load_s, 3),
        "sentences": len(SENTENCES),
        "piper_first_chunk_s": {"p50": round(percentile(first_chunk, 50), 3),
                                "p95": round(percentile(first_chunk, 95), 3)},
        "piper_real_time_factor": {"mean": round(statistics.mean(rtf), 4),
                                   "max": round(max(rtf), 4)},
        "whisper_latency_s": {"p50": round(percentile(latency, 50), 3),
                              "p95": round(percentile(latency, 95), 3)},
        "whisper_wer_8k_ulaw": round(errors / ref_words, 4),
        "utterances": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    parser.add_argument("--threads", type=int, default=2, help="Whisper CPU threads")
    args = parser.parse_args()
    result = asyncio.run(run(args.threads))
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
