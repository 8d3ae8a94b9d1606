"""Admission of media connections: caps on the connections that have not presented a
valid `start` yet, overall and per peer address, so connections that never authenticate
cannot pile up (beyond them: close code 1013, try again later)."""

from __future__ import annotations

import structlog

from media import metrics
from media.events import CLOSE_TRY_AGAIN
from media.sanitize import peer_text

log = structlog.get_logger("media.admission")


class StartGate:
    """Caps on media connections that have not presented a valid `start` yet, overall and
    per peer address, so connections that never authenticate cannot pile up."""

    def __init__(self, max_total: int, max_per_peer: int) -> None:
        self.max_total = max_total
        self.max_per_peer = max_per_peer
        self.total = 0
        self._by_peer: dict[str, int] = {}
        self._refused_unlogged = 0
        self._last_refusal_log = -1e9

    def admit(self, peer: str) -> str | None:
        """Count the connection in, or return why it is refused (it is then not counted)."""
        if self.total >= self.max_total:
            return "too many unauthenticated media connections"
        if self._by_peer.get(peer, 0) >= self.max_per_peer:
            return "too many unauthenticated media connections from this address"
        self.total += 1
        self._by_peer[peer] = self._by_peer.get(peer, 0) + 1
        metrics.UNAUTHENTICATED.set(self.total)
        return None

    def release(self, peer: str) -> None:
        left = self._by_peer.get(peer, 0) - 1
        if left > 0:
            self._by_peer[peer] = left
        else:
            self._by_peer.pop(peer, None)
        self.total = max(0, self.total - 1)
        metrics.UNAUTHENTICATED.set(self.total)

    def refused(self, peer: str, reason: str, now: float) -> None:
        """Count a refusal; log it, at most once a second with how many were not logged."""
        metrics.CONNECTIONS_REFUSED.labels("unauthenticated_cap").inc()
        self._refused_unlogged += 1
        if now - self._last_refusal_log >= 1.0:
            log.warning("media_connection_refused", peer=peer_text(peer), reason=reason,
                        close_code=CLOSE_TRY_AGAIN, refused=self._refused_unlogged,
                        unauthenticated=self.total)
            self._refused_unlogged = 0
            self._last_refusal_log = now
