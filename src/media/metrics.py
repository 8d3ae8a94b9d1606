"""Prometheus metrics owned by the media layer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ACTIVE_CALLS = Gauge("dialkit_active_calls", "Media sessions currently open", ["carrier"])
CALLS_TOTAL = Counter("dialkit_calls_total", "Media sessions ended", ["carrier", "status"])
PROTOCOL_ERRORS = Counter(
    "dialkit_protocol_errors_total", "Media sessions closed for bad input", ["carrier", "code"]
)
FRAMES_IN = Counter("dialkit_media_frames_in_total", "Inbound media messages", ["carrier"])
CHUNKS_OUT = Counter("dialkit_media_chunks_out_total", "Outbound media messages", ["carrier"])
LATE_CHUNKS = Counter(
    "dialkit_media_late_chunks_total", "Outbound chunks sent more than 20 ms after due", ["carrier"]
)
BARGE_INS = Counter("dialkit_barge_ins_total", "Caller interruptions of agent speech", ["carrier"])
BARGE_IN_REACTION = Histogram(
    "dialkit_barge_in_reaction_seconds",
    "Caller speech onset to clear sent",
    buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0),
)
GREETING_LATENCY = Histogram(
    "dialkit_greeting_latency_seconds",
    "Carrier start to first agent audio frame",
    buckets=(0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0),
)
SECURITY_EVENTS = Counter(
    "dialkit_media_security_events_total",
    "Media connections refused as a security event (e.g. a second connection for a live call)",
    ["carrier", "kind"],
)
CONNECTIONS_REFUSED = Counter(
    "dialkit_media_connections_refused_total",
    "Media connections closed before a valid start (deadline, caps on unauthenticated connections)",
    ["reason"],
)
UNAUTHENTICATED = Gauge(
    "dialkit_media_unauthenticated_connections", "Media connections open without a valid start yet"
)
SEND_BACKLOG_ENDS = Counter(
    "dialkit_media_send_backlog_total", "Calls ended because the carrier stopped reading audio", ["carrier"]
)
