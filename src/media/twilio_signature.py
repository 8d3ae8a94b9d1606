"""Twilio request signatures (`X-Twilio-Signature`) for status callbacks and webhooks.

Twilio's algorithm: take the full URL Twilio requested (with query string), append each POST
parameter name immediately followed by its value, names in sorted order (repeated names: each
value, sorted), HMAC-SHA1 the result with the account auth token and base64 it. Proxies may
add or drop the default port, so validation also accepts the URL with it toggled, as Twilio's
own helper library does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]]


def twilio_signature(url: str, params: Params | None, auth_token: str) -> str:
    data = url + "".join(name + value for name, value in _sorted_pairs(params))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_twilio_signature(
    url: str, params: Params | None, signature: str | None, auth_token: str
) -> bool:
    if not signature or not auth_token:
        return False
    pairs = _sorted_pairs(params)
    for candidate in _url_variants(url):
        expected = twilio_signature(candidate, pairs, auth_token)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
    return False


def _sorted_pairs(params: Params | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    pairs: list[tuple[str, str]] = []
    if isinstance(params, Mapping):
        for name, value in params.items():
            if isinstance(value, str):
                pairs.append((name, value))
            else:
                pairs.extend((name, v) for v in value)
    else:
        pairs = [(str(name), str(value)) for name, value in params]
    return sorted(pairs)


def _url_variants(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    variants = [url]
    if default is None or parts.hostname is None:
        return variants
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    if parts.port is None:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}")))
    elif parts.port == default:
        variants.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    return variants
