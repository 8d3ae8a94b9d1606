"""Signatures of outcome webhooks: `X-Dialkit-Signature: t=<unix seconds>,v1=<hex>`, where
v1 is the HMAC-SHA256 of `"<t>.<raw body>"` keyed with the campaign's webhook secret.

A receiver verifies a delivery with `verify` (standard library only, so it can be copied
as is into a receiver's code):

1. take the raw request body as bytes, before any JSON parsing (re-serialised JSON differs);
2. `verify(secret, request.headers["X-Dialkit-Signature"], body)`: it recomputes the HMAC
   over `t.body`, compares in constant time, and refuses a timestamp more than `tolerance_s`
   (5 minutes) from its clock, so a captured request cannot be replayed later;
3. deduplicate on the `Idempotency-Key` header: a delivery may arrive more than once (at
   least once), always with the same key and body for the same event.

Several `v1=` entries may appear (one per secret while a secret is being rotated); any one
matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Dialkit-Signature"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The header value for `body` signed now (or at `timestamp`, unix seconds)."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify(
    secret: str,
    header: str | None,
    body: bytes,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when `header` (the X-Dialkit-Signature value) signs `body` with `secret` and its
    timestamp is within `tolerance_s` of now."""
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, c) for c in candidates)
