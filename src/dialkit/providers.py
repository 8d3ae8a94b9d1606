"""Builds the providers a call uses from settings and the playbook.

Embedded defaults need no key and no network; cloud providers are chosen by settings
(DIALKIT_STT / DIALKIT_TTS / DIALKIT_POLICY), take their keys only from the environment,
and each runs in a fallback chain with the embedded provider behind it (Deepgram → whisper,
ElevenLabs → piper, OpenAI → the scripted playbook), so a failing vendor never leaves a
caller in silence.

Every provider is built once at start-up. A call may pick among them through its context,
``{"providers": {"stt": "whisper", "tts": "piper", "policy": "playbook"}}`` (any subset):
the session asks `Providers.speech_for` for the call's STT and TTS, and the policy factory
chooses from the same context. (The playbook schema has no place for provider names.)

The playbooks are a `PlaybookRegistry` (the packaged ones plus DIALKIT_PLAYBOOK, which is
the default); a call runs the playbook it was created with, for its policy and its session
settings alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from ai.context import ContextError
from ai.conversation import Conversation, conversation_for
from ai.playbook import Playbook, PlaybookRegistry
from ai.playbook_policy import ScriptedPolicyFactory
from ai.protocols import STT, TTS, VAD, Policy, PolicyFactory
from ai.resilience import FallbackPolicyFactory, FallbackSTT, FallbackTTS
from ai.vad import WebRtcVad
from dialkit.config import Settings
from media.call_control import CallControl
from media.codec import FRAME_MS
from media.events import CLOSE_POLICY, ProtocolError
from media.exotel_control import ExotelCallControl
from media.ports import CallInfo
from media.session_services import SessionConfig
from media.twilio_control import TwilioCallControl

if TYPE_CHECKING:
    from ai.tts_elevenlabs import ElevenLabsTTS

log = structlog.get_logger("dialkit.providers")

STT_CHOICES = ("deepgram", "whisper", "null")
TTS_CHOICES = ("elevenlabs", "piper", "tone")
POLICY_CHOICES = ("openai", "playbook", "echo")
CONTEXT_KEY = "providers"


class ProviderConfigError(ValueError):
    """Settings name a provider that cannot be built (e.g. a cloud one without its key)."""


@dataclass(frozen=True, slots=True)
class CallProviders:
    """The providers one call uses, by the names it was chosen with."""

    stt: str
    tts: str
    policy: str


@dataclass
class Catalog:
    """Every provider built at start-up, by choice name; a cloud entry is its whole chain."""

    stt: dict[str, STT]
    tts: dict[str, TTS]
    policy: dict[str, PolicyFactory]
    default: CallProviders
    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    # what holds pooled connections (cloud clients), closed at shutdown
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def choose(self, context: Mapping[str, Any] | None) -> CallProviders:
        """The call's providers: the defaults, overridden by the context's `providers` map.
        Raises ValueError naming what is wrong and what is available."""
        wanted = (context or {}).get(CONTEXT_KEY) or {}
        if not isinstance(wanted, Mapping):
            raise ValueError(f"context.{CONTEXT_KEY} must be an object like {{\"tts\": \"piper\"}}")
        unknown = set(wanted) - {"stt", "tts", "policy"}
        if unknown:
            raise ValueError(f"context.{CONTEXT_KEY} has unknown roles: {sorted(unknown)}")
        picked: dict[str, str] = {}
        for role, built in (("stt", self.stt), ("tts", self.tts), ("policy", self.policy)):
            name = wanted.get(role, getattr(self.default, role))
            if name not in built:
                raise ValueError(
                    f"context.{CONTEXT_KEY}.{role}={name!r} is not available on this server "
                    f"(available: {', '.join(sorted(built))})"
                )
            picked[role] = str(name)
        return CallProviders(**picked)

    def choose_or_default(
        self, context: Mapping[str, Any] | None, call_id: str | None = None
    ) -> CallProviders:
        """As `choose`, but a context naming providers this server lacks gets the defaults
        (call requests are checked when created; this covers calls stored before)."""
        try:
            return self.choose(context)
        except ValueError as exc:
            log.warning("call_providers_refused", call_id=call_id, error=str(exc))
            return self.default


class RoutedPolicyFactory:
    """Builds the call's policy from the factory its context chose (or the default)."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def __call__(self, context: Mapping[str, Any], playbook: Playbook | None = None) -> Policy:
        chosen = self._catalog.choose_or_default(context).policy
        try:
            return self._catalog.policy[chosen](context, playbook)
        except ContextError as exc:
            # calls are checked when created; this is one stored before, or under other rules
            raise ProtocolError(CLOSE_POLICY, f"call context refused: {exc}") from None


@dataclass
class Providers:
    stt: STT
    tts: TTS
    policy_factory: PolicyFactory
    playbook: Playbook
    vad_factory: Callable[[], VAD] = field(default=lambda: WebRtcVad(2))
    controls: dict[str, CallControl] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    catalog: Catalog | None = None
    #: every playbook a call may name; None = `playbook` alone
    playbooks: PlaybookRegistry | None = None

    def __post_init__(self) -> None:
        if self.playbooks is None:
            self.playbooks = PlaybookRegistry([self.playbook], self.playbook)

    def describe(self) -> dict[str, Any]:
        """What /health shows: the default providers (as chains), their fallbacks and what a
        call may choose through `context.providers`."""
        out: dict[str, Any] = {
            "stt": getattr(self.stt, "name", "?"),
            "tts": getattr(self.tts, "name", "?"),
            "policy": self.extra.get("policy", "playbook"),
            "playbook": self.playbook.ref,
            "playbooks": self.registry.refs(),
            "carriers": ",".join(sorted(self.controls)) or "none",
        }
        if self.catalog is not None:
            d = self.catalog.default
            out["policy"] = d.policy
            out["chains"] = {
                role: self.catalog.chains.get(role, {}).get(name, [name])
                for role, name in (("stt", d.stt), ("tts", d.tts), ("policy", d.policy))
            }
            out["selectable"] = {
                "stt": sorted(self.catalog.stt),
                "tts": sorted(self.catalog.tts),
                "policy": sorted(self.catalog.policy),
            }
        return out

    def check_context(self, context: Mapping[str, Any] | None) -> None:
        """Raise ValueError if a call context names providers this server does not have
        (for validating a call request before it is stored)."""
        if self.catalog is not None:
            self.catalog.choose(context)

    def speech_for(self, info: CallInfo) -> tuple[STT, TTS]:
        """The STT and TTS the call's context chose (the defaults when it chose none)."""
        if self.catalog is None:
            return self.stt, self.tts
        choice = self.catalog.choose_or_default(info.context, info.call_id)
        return self.catalog.stt[choice.stt], self.catalog.tts[choice.tts]

    @property
    def registry(self) -> PlaybookRegistry:
        assert self.playbooks is not None
        return self.playbooks

    def playbook_for(self, info: CallInfo) -> Playbook:
        """The playbook the call was created with. A call naming one this server has not
        loaded is refused (running another playbook would break what the call stored)."""
        if info.playbook is not None:
            return info.playbook
        if info.playbook_ref is None:
            return self.playbook
        found = self.registry.find(info.playbook_ref)
        if found is None:
            raise ProtocolError(
                CLOSE_POLICY, f"playbook {info.playbook_ref} is not loaded on this server"
            )
        info.playbook = found
        return found

    def session_config(self, info: CallInfo) -> SessionConfig:
        """The call's transport settings (its conversation rules come with its engine)."""
        playbook = self.playbook_for(info)
        return SessionConfig(
            kind=playbook.kind,
            endpointing_ms=playbook.settings.endpointing_ms,
            echo_delay_ms=playbook.settings.echo_delay_ms,
            inbound_idle_timeout_s=self.extra.get("carrier_idle_timeout_s", 10.0),
            lead_frames=self.extra.get("lead_frames", 3),
            keep_pacing_errors=self.extra.get("keep_pacing_errors", False),
        )

    def engine_for(
        self, info: CallInfo, clock: Callable[[], float], cfg: SessionConfig
    ) -> Conversation:
        """The conversation engine of one call: its policy, its playbook's rules and lines."""
        playbook = self.playbook_for(info)
        policy = self.policy_factory(info.context, playbook)
        try:
            return conversation_for(policy, playbook, info.context, clock,
                                    playback_lead_ms=cfg.lead_frames * FRAME_MS)
        except ContextError as exc:
            raise ProtocolError(CLOSE_POLICY, f"call context refused: {exc}") from None

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
        if self.catalog is not None:
            for close in self.catalog.closers:
                await close()


def carrier_controls(settings: Settings) -> dict[str, CallControl]:
    """The carriers' REST call control, for those whose credentials are set.

    Exotel ends (or, through a flow, transfers) a call when the bot closes its media
    stream. The session that asks for the hang-up closes its own WebSocket as soon as
    `hangup`/`transfer` returns, so the stream closer only has to say "yes, it will close":
    a hook that returns True. (A closer that looked the session up by call SID would only
    matter for hanging up a call from outside its session, which nothing does.)
    """
    controls: dict[str, CallControl] = {}

    async def session_closes_stream(call_sid: str, reason: str) -> bool:
        return True

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
            close_stream=session_closes_stream,
            flow_url=settings.exotel_flow_url,
        )
    return controls


# ---- building ----------------------------------------------------------------------------


def _require_key(settings: Settings, role: str, choice: str, key_field: str, env: str) -> str:
    secret = getattr(settings, key_field)
    value = secret.get_secret_value() if secret is not None else ""
    if not value:
        raise ProviderConfigError(
            f"DIALKIT_{role.upper()}={choice} needs {env} in the environment "
            f"(or choose an embedded {role} provider)"
        )
    return str(value)


def _embedded_stt(name: str, settings: Settings) -> STT:
    if name == "null":
        from ai.stt_null import NullSTT

        return NullSTT()
    from ai.stt_whisper import WhisperSTT

    return WhisperSTT(threads=settings.whisper_threads)


def _embedded_tts(name: str) -> TTS:
    if name == "tone":
        from ai.tts_tone import ToneTTS

        return ToneTTS()
    from ai.tts_piper import PiperTTS

    return PiperTTS()


def build_stt(settings: Settings) -> STT:
    """The embedded STT named by settings (cloud STT is built by `build_catalog`)."""
    return _embedded_stt("null" if settings.stt == "null" else "whisper", settings)


def build_tts(settings: Settings) -> TTS:
    """The embedded TTS named by settings (cloud TTS is built by `build_catalog`)."""
    return _embedded_tts("tone" if settings.tts == "tone" else "piper")


def _deepgram(settings: Settings, key: str) -> STT:
    from ai.stt_deepgram import DeepgramSTT

    return DeepgramSTT(key, model=settings.deepgram_model, base_url=settings.deepgram_url)


def _elevenlabs(settings: Settings, key: str) -> ElevenLabsTTS:
    from ai.tts_elevenlabs import ElevenLabsTTS

    return ElevenLabsTTS(
        key,
        settings.elevenlabs_voice_id,
        model_id=settings.elevenlabs_model,
        base_url=settings.elevenlabs_base_url,
    )


def _openai(
    settings: Settings,
    key: str,
    playbooks: PlaybookRegistry,
    closers: list[Callable[[], Awaitable[None]]],
) -> PolicyFactory:
    from ai.llm_openai import ChatCompletionsPolicyFactory
    from ai.prompt import load_template

    for ref in playbooks.refs():  # a broken prompt template stops the start, not a call
        if playbooks.get(ref).kind == "collections":
            load_template(playbooks.get(ref))
    factory = ChatCompletionsPolicyFactory(
        playbooks.default,
        api_key=key,
        base_url=settings.openai_base_url,
        model=settings.openai_model,
        timeout_s=settings.llm_timeout_s,
    )
    closers.append(factory.aclose)
    return factory


def build_catalog(settings: Settings, playbooks: PlaybookRegistry | Playbook) -> Catalog:
    """Build every provider this server offers. The configured choice is the default; a
    cloud provider whose key is in the environment is also offered to calls that ask for
    it. A cloud choice without its key raises `ProviderConfigError`."""
    if not isinstance(playbooks, PlaybookRegistry):
        playbooks = PlaybookRegistry([playbooks], playbooks)
    playbook = playbooks.default
    keys = {
        "deepgram": ("deepgram_api_key", "DEEPGRAM_API_KEY"),
        "elevenlabs": ("elevenlabs_api_key", "ELEVENLABS_API_KEY"),
        "openai": ("openai_api_key", "OPENAI_API_KEY"),
    }
    for role, choice in (("stt", settings.stt), ("tts", settings.tts), ("policy", settings.policy)):
        if choice in keys:
            _require_key(settings, role, choice, *keys[choice])

    def key(vendor: str) -> str | None:
        secret = getattr(settings, keys[vendor][0])
        return secret.get_secret_value() if secret is not None and secret.get_secret_value() else None

    chains: dict[str, dict[str, list[str]]] = {"stt": {}, "tts": {}, "policy": {}}
    closers: list[Callable[[], Awaitable[None]]] = []
    whisper = _embedded_stt("whisper", settings)
    stt: dict[str, STT] = {"whisper": whisper, "null": _embedded_stt("null", settings)}
    if (dg_key := key("deepgram")) is not None:
        stt["deepgram"] = FallbackSTT([_deepgram(settings, dg_key), whisper])
        chains["stt"]["deepgram"] = ["deepgram", "whisper"]

    piper = _embedded_tts("piper")
    tts: dict[str, TTS] = {"piper": piper, "tone": _embedded_tts("tone")}
    if (el_key := key("elevenlabs")) is not None:
        elevenlabs = _elevenlabs(settings, el_key)
        closers.append(elevenlabs.aclose)
        tts["elevenlabs"] = FallbackTTS(
            [elevenlabs, piper],
            first_byte_timeout_s=settings.tts_first_byte_timeout_ms / 1000,
        )
        chains["tts"]["elevenlabs"] = ["elevenlabs", "piper"]

    scripted = ScriptedPolicyFactory(playbook)
    policy: dict[str, PolicyFactory] = {"playbook": scripted, "echo": scripted}
    if (oa_key := key("openai")) is not None:
        policy["openai"] = FallbackPolicyFactory(
            [_openai(settings, oa_key, playbooks, closers), scripted],
            filler_after_ms=settings.llm_filler_after_ms,
            filler_lines=playbook.settings.filler_lines,
            timeout_s=settings.llm_timeout_s,
        )
        chains["policy"]["openai"] = ["openai", "playbook"]

    default = CallProviders(settings.stt, settings.tts, settings.policy)
    return Catalog(stt=stt, tts=tts, policy=policy, default=default, chains=chains, closers=closers)


async def build_providers(settings: Settings, warmup: bool = True) -> Providers:
    """The server's providers. With `warmup`, the default embedded models (and the embedded
    fallbacks behind cloud defaults) are loaded now, so neither a first call nor a first
    fallback waits for a model load."""
    playbooks = PlaybookRegistry.load(settings.playbook)
    playbook = playbooks.default
    catalog = build_catalog(settings, playbooks)
    d = catalog.default
    if warmup:
        to_warm: list[Any] = [
            catalog.stt["whisper"] if d.stt == "deepgram" else catalog.stt[d.stt],
            catalog.tts["piper"] if d.tts == "elevenlabs" else catalog.tts[d.tts],
        ]
        for provider in to_warm:
            warm = getattr(provider, "warmup", None)
            if warm is not None:
                await asyncio.to_thread(warm)
    providers = Providers(
        stt=catalog.stt[d.stt],
        tts=catalog.tts[d.tts],
        policy_factory=RoutedPolicyFactory(catalog),
        playbook=playbook,
        playbooks=playbooks,
        controls=carrier_controls(settings),
        extra={"policy": settings.policy, "carrier_idle_timeout_s": settings.carrier_idle_timeout_s},
        catalog=catalog,
    )
    log.info("providers_built", **{k: v for k, v in providers.describe().items() if k != "carriers"})
    return providers
