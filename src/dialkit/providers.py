"""Builds the providers a call uses from settings and the playbook.

Embedded defaults need no key and no network; cloud providers are chosen by settings
(DIALKIT_STT / DIALKIT_TTS / DIALKIT_POLICY) and wrapped in per-call fallback chains so a
failing vendor never leaves a caller in silence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from ai.playbook import Playbook, load_playbook
from ai.playbook_policy import ScriptedPolicyFactory
from ai.protocols import STT, TTS, VAD, PolicyFactory
from ai.vad import WebRtcVad
from dialkit.config import Settings
from media.call_control import CallControl, ExotelCallControl, TwilioCallControl
from media.ports import CallInfo
from media.session import SessionConfig

log = structlog.get_logger("dialkit.providers")


@dataclass
class Providers:
    stt: STT
    tts: TTS
    policy_factory: PolicyFactory
    playbook: Playbook
    vad_factory: Callable[[], VAD] = field(default=lambda: WebRtcVad(2))
    controls: dict[str, CallControl] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, str]:
        return {
            "stt": getattr(self.stt, "name", "?"),
            "tts": getattr(self.tts, "name", "?"),
            "policy": self.extra.get("policy", "playbook"),
            "playbook": f"{self.playbook.name}@{self.playbook.version}",
            "carriers": ",".join(sorted(self.controls)) or "none",
        }

    def session_config(self, info: CallInfo) -> SessionConfig:
        s = self.playbook.settings
        return SessionConfig(
            kind=self.playbook.kind,
            endpointing_ms=s.endpointing_ms,
            reprompt_after_ms=s.reprompt_after_ms,
            max_call_seconds=s.max_call_seconds,
            barge_in_min_speech_ms=s.barge_in_min_speech_ms,
            greeting_deadline_ms=s.greeting_deadline_ms,
            dtmf_timeout_ms=s.dtmf_timeout_ms,
            dtmf_max_digits=s.dtmf_max_digits,
            lead_frames=self.extra.get("lead_frames", 3),
            keep_pacing_errors=self.extra.get("keep_pacing_errors", False),
        )

    @property
    def hangup(self) -> Callable[[str, str], Awaitable[str]] | None:
        if not self.controls:
            return None

        async def hangup(carrier: str, call_sid: str) -> str:
            control = self.controls.get(carrier)
            if control is None or not call_sid:
                return "no carrier API configured"
            return await control.hangup(call_sid)

        return hangup

    @property
    def transfer(self) -> Callable[[str, str, str], Awaitable[None]] | None:
        if not self.controls:
            return None

        async def transfer(carrier: str, call_sid: str, number: str) -> None:
            control = self.controls.get(carrier)
            if control is None:
                raise RuntimeError(f"no {carrier} API configured for transfer")
            await control.transfer(call_sid, number)

        return transfer

    async def close(self) -> None:
        for control in self.controls.values():
            await control.aclose()


def carrier_controls(settings: Settings) -> dict[str, CallControl]:
    controls: dict[str, CallControl] = {}
    if settings.twilio_account_sid and settings.twilio_auth_token:
        controls["twilio"] = TwilioCallControl(
            settings.twilio_account_sid,
            settings.twilio_auth_token.get_secret_value(),
            base_url=settings.twilio_api_base,
        )
    if settings.exotel_account_sid and settings.exotel_api_key and settings.exotel_api_token:
        controls["exotel"] = ExotelCallControl(
            settings.exotel_account_sid,
            settings.exotel_api_key.get_secret_value(),
            settings.exotel_api_token.get_secret_value(),
            subdomain=settings.exotel_subdomain,
            base_url=settings.exotel_api_base,
        )
    return controls


def build_stt(settings: Settings) -> STT:
    if settings.stt == "null":
        from ai.stt_null import NullSTT

        return NullSTT()
    from ai.stt_whisper import WhisperSTT

    return WhisperSTT(threads=settings.whisper_threads)


def build_tts(settings: Settings) -> TTS:
    if settings.tts == "tone":
        from ai.tts_tone import ToneTTS

        return ToneTTS()
    from ai.tts_piper import PiperTTS

    return PiperTTS()


async def build_providers(settings: Settings, warmup: bool = True) -> Providers:
    playbook = load_playbook(settings.playbook)
    stt = build_stt(settings)
    tts = build_tts(settings)
    if warmup:
        for provider in (stt, tts):
            warm = getattr(provider, "warmup", None)
            if warm is not None:
                await asyncio.to_thread(warm)
    return Providers(
        stt=stt,
        tts=tts,
        policy_factory=ScriptedPolicyFactory(playbook),
        playbook=playbook,
        controls=carrier_controls(settings),
        extra={"policy": settings.policy},
    )
