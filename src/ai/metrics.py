"""Prometheus metrics for speech and language providers.

Counters are incremented by the providers and the fallback wrappers in `ai.resilience`;
the per-turn latency histograms are observed by the media session, which sees the whole
turn (providers never observe them, so nothing is counted twice).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# 10 ms … 5 s, denser where conversational latency lives (100 ms – 1.5 s).
LATENCY_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25,
    1.5, 2.0, 2.5, 3.0, 4.0, 5.0,
)  # fmt: skip

PROVIDER_FALLBACKS = Counter(
    "dialkit_provider_fallbacks_total",
    "Switches from one provider to the next within a call.",
    ["role", "from_provider", "to_provider"],
)
PROVIDER_ERRORS = Counter(
    "dialkit_provider_errors_total",
    "Provider failures by kind (timeout, rate_limited, server_error, connection, malformed, …).",
    ["role", "provider", "kind"],
)
STT_FINAL_LATENCY = Histogram(
    "dialkit_stt_final_latency_seconds",
    "From the caller's end of speech to the final transcript of the turn.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
LLM_TTFT = Histogram(
    "dialkit_llm_ttft_seconds",
    "From the policy request to its first spoken text.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
TTS_TTFB = Histogram(
    "dialkit_tts_ttfb_seconds",
    "From the synthesis request to its first audio byte.",
    ["provider"],
    buckets=LATENCY_BUCKETS,
)
VOICE_TO_VOICE = Histogram(
    "dialkit_voice_to_voice_seconds",
    "From the caller's end of speech to the first agent audio sent to the carrier.",
    buckets=LATENCY_BUCKETS,
)


def count_error(role: str, provider: str, kind: str) -> None:
    PROVIDER_ERRORS.labels(role=role, provider=provider, kind=kind).inc()


def count_fallback(role: str, from_provider: str, to_provider: str) -> None:
    PROVIDER_FALLBACKS.labels(role=role, from_provider=from_provider, to_provider=to_provider).inc()


def error_kind(exc: BaseException) -> str:
    """A short, low-cardinality label for an exception from any provider SDK."""
    status = getattr(exc, "status_code", None)
    if status is None:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    if isinstance(status, int):
        if status == 429:
            return "rate_limited"
        if status in (401, 403):
            return "auth"
        if status >= 500:
            return "server_error"
        return "http_4xx"
    explicit = getattr(exc, "kind", None)
    if isinstance(explicit, str):
        return explicit
    name = type(exc).__name__.lower()
    if isinstance(exc, TimeoutError) or "timeout" in name:
        return "timeout"
    if isinstance(exc, ValueError) or "decode" in name or "json" in name or "parse" in name:
        return "malformed"
    network_words = ("connect", "closed", "protocol", "read", "write", "reset", "network")
    if isinstance(exc, ConnectionError | OSError) or any(w in name for w in network_words):
        return "connection"
    return "other"
