"""Logs never print a full phone number or a secret; ids stay readable."""

from __future__ import annotations

from dialkit.logs import mask_phone, scrub_processor


def test_phone_numbers_masked_everywhere_but_ids_kept() -> None:
    event = {
        "event": "dialing",
        "to": "+14155550123",
        "text": "call me back at 415-555-0123 please",
        "call_id": "c75afb67-ef45-4960-98e0-e689c65f56ae",
        "stream": "MZ12345678901234",
        "api_key": "sk-live-secret",
        "Authorization": "Bearer abc",
    }
    out = scrub_processor(None, "info", dict(event))
    assert "4155550123" not in out["to"] and out["to"].endswith("23")
    assert "555-0123" not in out["text"]
    assert out["call_id"] == event["call_id"]
    assert out["stream"] == event["stream"]
    assert out["api_key"] == "***" and out["Authorization"] == "***"


def test_mask_phone_keeps_prefix_and_last_two() -> None:
    assert mask_phone("+14155550123") == "+1415•••23"
    assert "0123" not in mask_phone("(415) 555-0123")


def test_tokens_keys_and_nested_values_are_masked() -> None:
    from dialkit.logs import register_secret, scrub_text
    from media.auth import issue_token

    token = issue_token(b"secret", "5b0c2a6e-9d1f-4b8e-a3c7-2f6d8e4a1b90", 60)
    register_secret("configured-key-7f3a9c")
    text = scrub_text(f"GET /media?token={token} Authorization: Bearer abc.def key configured-key-7f3a9c")
    assert token not in text and token.split(".")[1] not in text
    assert "abc.def" not in text and "configured-key-7f3a9c" not in text
    event = scrub_processor(None, "error", {
        "event": "Error handling request from +14155550123",
        "exception": "ValueError: {'callback_number': '+14155550123', 'token': 'x'}",
        "detail": {"numbers": ["+14155550123"], "password": "hunter2"},
    })
    assert "4155550123" not in str(event)
    assert event["detail"]["password"] == "***" and "hunter2" not in str(event)
