"""Media tokens and Twilio request signatures."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from media.auth import TokenError, issue_token, verify_token
from media.twilio_signature import twilio_signature, validate_twilio_signature

SECRET = b"s3cret-media-key"
NOW = 1_700_000_000.0


def test_valid_token() -> None:
    token = issue_token(SECRET, "call-42", ttl_s=600, now=NOW)
    verify_token(SECRET, token, "call-42", now=NOW)
    verify_token(SECRET, token, "call-42", now=NOW + 599)
    # safe to drop into a query string as-is
    assert all(c.isalnum() or c in "-_." for c in token)


def test_expired_token() -> None:
    token = issue_token(SECRET, "call-42", ttl_s=600, now=NOW)
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, token, "call-42", now=NOW + 600)
    assert err.value.reason == "expired"


def test_token_for_other_call() -> None:
    token = issue_token(SECRET, "call-42", ttl_s=600, now=NOW)
    for other in ("call-43", "call-4", "call-42x", ""):
        with pytest.raises(TokenError) as err:
            verify_token(SECRET, token, other, now=NOW)
        assert err.value.reason == "wrong_call"


def test_tampered_token() -> None:
    token = issue_token(SECRET, "call-42", ttl_s=600, now=NOW)
    body, sig = token.split(".")
    # extend the expiry, keep the signature
    forged_body = base64.urlsafe_b64encode(f"{int(NOW) + 99999}:call-42".encode()).rstrip(b"=")
    cases = [
        forged_body.decode() + "." + sig,
        body + "." + sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB"),
        token.replace(body, body[::-1]) if body != body[::-1] else body + "x." + sig,
    ]
    for forged in cases:
        with pytest.raises(TokenError) as err:
            verify_token(SECRET, forged, "call-42", now=NOW)
        assert err.value.reason in ("bad_signature", "malformed")
    with pytest.raises(TokenError) as err:
        verify_token(b"another-secret", token, "call-42", now=NOW)
    assert err.value.reason == "bad_signature"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "!!!.???", "é.é", "x" * 2000, "."])
def test_malformed_token(token: str) -> None:
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, token, "call-42", now=NOW)
    assert err.value.reason == "malformed"


def test_signed_but_malformed_payload() -> None:
    payload = b"no-colon-here"
    sig = hmac.new(SECRET, b"dialkit-media-token-v1\x00" + payload, hashlib.sha256).digest()
    token = (
        base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        + "."
        + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    )
    with pytest.raises(TokenError) as err:
        verify_token(SECRET, token, "call-42", now=NOW)
    assert err.value.reason == "malformed"


def test_token_arguments_checked() -> None:
    with pytest.raises(ValueError):
        issue_token(b"", "c", 10)
    with pytest.raises(ValueError):
        issue_token(SECRET, "c", 0)
    with pytest.raises(ValueError):
        issue_token(SECRET, "", 10)


# Twilio's documented example request: a Gather callback.
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TOKEN = "12345"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}


def by_hand() -> str:
    # URL, then each parameter name and value, names sorted alphabetically
    data = (
        "https://mycompany.com/myapp.php?foo=1&bar=2"
        "CallSidCA1234567890ABCDE"
        "Caller+12349013030"
        "Digits1234"
        "From+12349013030"
        "To+18005551212"
    )
    return base64.b64encode(hmac.new(b"12345", data.encode(), hashlib.sha1).digest()).decode()


def test_signature_matches_hand_computation() -> None:
    expected = by_hand()
    assert twilio_signature(URL, PARAMS, TOKEN) == expected
    # the order parameters arrive in does not matter
    assert twilio_signature(URL, list(reversed(list(PARAMS.items()))), TOKEN) == expected
    assert validate_twilio_signature(URL, PARAMS, expected, TOKEN)


def test_signature_rejections() -> None:
    good = by_hand()
    assert not validate_twilio_signature(URL, PARAMS, good, "54321")
    assert not validate_twilio_signature(URL, {**PARAMS, "Digits": "1235"}, good, TOKEN)
    assert not validate_twilio_signature(URL + "&baz=3", PARAMS, good, TOKEN)
    assert not validate_twilio_signature(URL, PARAMS, "", TOKEN)
    assert not validate_twilio_signature(URL, PARAMS, None, TOKEN)
    assert not validate_twilio_signature(URL, PARAMS, good[:-4] + "AAA=", TOKEN)


def test_signature_port_variants_and_repeated_params() -> None:
    with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2"
    sig = twilio_signature(with_port, PARAMS, TOKEN)
    assert validate_twilio_signature(URL, PARAMS, sig, TOKEN)
    assert validate_twilio_signature(with_port, PARAMS, by_hand(), TOKEN)
    assert not validate_twilio_signature(
        "https://mycompany.com:8443/myapp.php?foo=1&bar=2", PARAMS, by_hand(), TOKEN
    )
    repeated = {"StatusCallbackEvent": ["ringing", "answered"], "To": "+1"}
    data = "https://x.test/cbStatusCallbackEventansweredStatusCallbackEventringingTo+1"
    manual = base64.b64encode(hmac.new(b"t", data.encode(), hashlib.sha1).digest()).decode()
    assert twilio_signature("https://x.test/cb", repeated, "t") == manual
    assert (
        twilio_signature("https://x.test/cb", None, "t")
        == base64.b64encode(hmac.new(b"t", b"https://x.test/cb", hashlib.sha1).digest()).decode()
    )
