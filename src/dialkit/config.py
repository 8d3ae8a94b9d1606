"""Settings read from the environment (pydantic-settings). Every field is documented in README."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class UnsafeBindError(RuntimeError):
    """The server was asked to listen beyond this machine with its API open."""


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and ::1 (brackets allowed); anything else, including
    "" and 0.0.0.0 (every interface) and other host names, can be reached from outside."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DIALKIT_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str | None = Field(
        default=None, description="Base URL carriers reach us at, e.g. https://dialkit.example.com"
    )
    data_dir: Path = Path(".dialkit")
    log_level: str = "INFO"
    log_json: bool = False

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "DIALKIT_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "DIALKIT_REDIS_URL")
    )
    redis_prefix: str = "dialkit:"

    stt: Literal["whisper", "deepgram", "null"] = "whisper"
    tts: Literal["piper", "elevenlabs", "tone"] = "piper"
    policy: Literal["playbook", "openai", "echo"] = "playbook"
    playbook: Path | None = None

    # Cloud providers (keys only from the environment).
    deepgram_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DEEPGRAM_API_KEY", "DIALKIT_DEEPGRAM_API_KEY")
    )
    deepgram_url: str | None = None
    deepgram_model: str = "nova-2-phonecall"
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "DIALKIT_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "DIALKIT_OPENAI_BASE_URL")
    )
    openai_model: str = "gpt-4o-mini"
    llm_timeout_s: float = 8.0
    llm_filler_after_ms: int = 1200
    elevenlabs_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ELEVENLABS_API_KEY", "DIALKIT_ELEVENLABS_API_KEY"),
    )
    elevenlabs_voice_id: str = "21m00Tcm4TlvDq8ikWAM"
    elevenlabs_model: str = "eleven_flash_v2_5"
    elevenlabs_base_url: str | None = None
    # No first audio byte from a cloud TTS within this → the embedded TTS says the sentence.
    tts_first_byte_timeout_ms: int = Field(default=1500, gt=0)

    # Carrier REST APIs (hang-up, transfer, dialing).
    twilio_account_sid: str | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_ACCOUNT_SID", "DIALKIT_TWILIO_ACCOUNT_SID")
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("TWILIO_AUTH_TOKEN", "DIALKIT_TWILIO_AUTH_TOKEN")
    )
    twilio_api_base: str = "https://api.twilio.com"
    exotel_account_sid: str | None = Field(
        default=None, validation_alias=AliasChoices("EXOTEL_ACCOUNT_SID", "DIALKIT_EXOTEL_ACCOUNT_SID")
    )
    exotel_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("EXOTEL_API_KEY", "DIALKIT_EXOTEL_API_KEY")
    )
    exotel_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("EXOTEL_API_TOKEN", "DIALKIT_EXOTEL_API_TOKEN")
    )
    exotel_api_base: str | None = None
    exotel_subdomain: str = "api.exotel.com"
    #: an App Bazaar flow (Voicebot → Connect with dynamic URL → Hangup); enables transfers
    exotel_flow_url: str | None = None

    media_secret: SecretStr | None = None
    media_token_ttl_s: int = 3600
    api_key: SecretStr | None = None
    max_message_bytes: int = 64 * 1024
    #: a connection must finish each request's headers this long after it opened (or after
    #: its previous response): the same bound closes idle keep-alive connections
    http_header_timeout_s: float = Field(default=15.0, gt=0)
    #: a request's body must arrive in full this long after its headers
    http_body_timeout_s: float = Field(default=15.0, gt=0)
    #: shared secret the Exotel Connect applet's URL carries (`?secret=` or HTTP Basic
    #: password); the endpoint is closed (404) while it is unset
    exotel_webhook_secret: SecretStr | None = None
    carrier_idle_timeout_s: float = 10.0
    # media connections before a valid `start`: closed (1008) this long after opening;
    # beyond these counts, overall and per peer address, refused with 1013
    media_start_deadline_s: float = Field(default=10.0, gt=0)
    media_max_unauthenticated: int = Field(default=1000, ge=1)
    media_max_unauthenticated_per_peer: int = Field(default=100, ge=1)
    # outbound audio the carrier has not taken past this many seconds ends the call (1008)
    media_send_backlog_s: float = Field(default=5.0, gt=0)
    whisper_threads: int = 2

    # --- audit log ---
    #: audit rows older than this are deleted by the daily purge (campaigns.audit.purge)
    audit_retention_days: int = Field(default=1095, gt=0)

    # Campaign dialing (dialkit.jobs, campaigns.scheduler)
    #: live calls across every campaign and single dial at once (all nodes)
    max_concurrent_calls: int | None = Field(default=100, ge=1)
    #: `dialkit serve` runs a job worker in-process (dials, scheduler ticks, webhooks out)
    run_jobs: bool = True
    job_concurrency: int = Field(default=8, ge=1, le=200)
    scheduler_tick_s: int = Field(default=2, ge=1, le=59)
    reconcile_s: int = Field(default=30, ge=1, le=59)
    #: a call in progress with no turn or event for this long, on no live node, is closed
    orphan_call_after_s: float = Field(default=120.0, gt=0)
    #: an attempt dialing this long without the carrier's call SID is given up
    attempt_lost_after_s: float = Field(default=300.0, gt=0)

    @field_validator("api_key", "exotel_webhook_secret", mode="before")
    @classmethod
    def _blank_key_is_unset(cls, value: object) -> object:
        # `DIALKIT_API_KEY=` (e.g. an unset compose variable) must not become the key ""
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(raw, str) and not raw.strip():
            return None
        return value

    def check_bind(self, host: str | None = None, *, stored_keys: bool = False) -> None:
        """Refuse to serve the API beyond loopback unless it requires a key: DIALKIT_API_KEY,
        or an unrevoked stored key (`stored_keys`, known once the database is open).
        `GET /api/calls/{id}` returns debtors' personal data and transcripts."""
        host = self.host if host is None else host
        if self.api_key is None and not stored_keys and not is_loopback_host(host):
            raise UnsafeBindError(
                f"refusing to listen on {host or 'every interface'} without an API key: "
                "set DIALKIT_API_KEY to a long random secret or create one with "
                "'dialkit apikey create' (clients send 'Authorization: Bearer <key>'), "
                "or bind to 127.0.0.1"
            )

    def needs_stored_key_to_bind(self, host: str | None = None) -> bool:
        """Whether binding `host` is safe only if the database holds an unrevoked key."""
        host = self.host if host is None else host
        return self.api_key is None and not is_loopback_host(host)

    def resolved_media_secret(self) -> bytes:
        """The secret that signs media tokens; generated once into data_dir when unset."""
        if self.media_secret is not None:
            return self.media_secret.get_secret_value().encode()
        path = self.data_dir / "media_secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
            path.chmod(0o600)
        return path.read_text().strip().encode()
