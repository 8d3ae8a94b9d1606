"""Per-call media tokens: the stream URL (`?token=`) or custom parameters carry one, so only
the carrier leg we dialled can open that call's media WebSocket.

A token is `b64url(payload) "." b64url(HMAC-SHA256(secret, domain || payload))` where the
payload is `"<expiry unix seconds>:<call id>"`; base64 is URL-safe without padding, so the
token needs no escaping in a query string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

_DOMAIN = b"dialkit-media-token-v1\x00"
MAX_TOKEN_CHARS = 1024


class TokenError(Exception):
    """A media token was refused; `reason` is one of malformed, bad_signature, wrong_call,
    expired."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def issue_token(secret: bytes, call_id: str, ttl_s: int, now: float | None = None) -> str:
    if not secret:
        raise ValueError("media token secret is empty")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if not call_id:
        raise ValueError("call_id is empty")
    expires = int((time.time() if now is None else now) + ttl_s)
    payload = f"{expires}:{call_id}".encode()
    return f"{_b64(payload)}.{_b64(_sign(secret, payload))}"


def verify_token(secret: bytes, token: str, call_id: str, now: float | None = None) -> None:
    """Return if `token` admits `call_id` now; raise TokenError(reason) otherwise."""
    if not secret:
        raise ValueError("media token secret is empty")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or token.count(".") != 1:
        raise TokenError("malformed")
    body, sig = token.split(".")
    try:
        payload = _unb64(body)
        signature = _unb64(sig)
    except (binascii.Error, ValueError):
        raise TokenError("malformed") from None
    # the signature is checked before the payload is trusted for anything
    if not hmac.compare_digest(signature, _sign(secret, payload)):
        raise TokenError("bad_signature")
    expires_text, sep, token_call = payload.partition(b":")
    if not sep or not expires_text.isdigit():
        raise TokenError("malformed")
    if not hmac.compare_digest(token_call, call_id.encode()):
        raise TokenError("wrong_call")
    if int(expires_text) <= (time.time() if now is None else now):
        raise TokenError("expired")


def _sign(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, _DOMAIN + payload, hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or not text.isascii() or len(text) % 4 == 1:
        raise ValueError("not url-safe base64")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
