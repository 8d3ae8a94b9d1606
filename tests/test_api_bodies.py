"""`POST /api/calls` with hostile bodies, against a real `dialkit serve` process (its own
logging set-up, stderr read back): every answer is a 4xx with a reason or a 201, never a
5xx, and no log line — structlog's or a standard-library logger's such as aiohttp's and
asyncpg's, tracebacks included — carries a full phone number, a media token or a key."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from media.auth import issue_token
from tests.carrier_client import DEMO_CONTEXT
from tests.conftest import ServeFactory

PHONE = "+14155550123"
PHONE_DIGITS = "4155550123"
API_KEY = "dk-test-api-key-5f1c9a77e0b24d6c"
MEDIA_SECRET = "test-media-secret-bodies"
TOKEN = issue_token(MEDIA_SECRET.encode(), "5b0c2a6e-9d1f-4b8e-a3c7-2f6d8e4a1b90", 3600)
CONTEXT = {**DEMO_CONTEXT, "callback_number": PHONE}


class Served:
    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        self._read = 0
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=20)

    def post(self, body: bytes) -> httpx.Response:
        return self.http.post("/api/calls", content=body, headers={"Content-Type": "application/json"})

    def new_log(self) -> str:
        """What the server logged since the last call."""
        text = self.log.read_bytes().decode("utf-8", "replace")
        new, self._read = text[self._read:], len(text)
        return new


@pytest.fixture(scope="module")
def served(dialkit_serve: ServeFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with dialkit_serve(
        tmp_path_factory.mktemp("served"), DIALKIT_MEDIA_SECRET=MEDIA_SECRET,
        DIALKIT_API_KEY=API_KEY, DIALKIT_LOG_LEVEL="DEBUG", DIALKIT_EVENT_LOOP="asyncio",
        COLUMNS="200",
    ) as process:
        server = Served(process.url, process.log)
        yield server
        server.http.close()


def _leaks(text: str) -> list[str]:
    found = []
    for secret in (PHONE_DIGITS, TOKEN, TOKEN.split(".")[1], API_KEY, MEDIA_SECRET):
        if secret in text:
            found.append(secret)
    if re.search(r"\b415\D?555\D?0123\b", text):
        found.append("415 555 0123")
    return found


def _body(**fields: Any) -> bytes:
    body = {"to": PHONE, "context": {**CONTEXT, "note": f"token {TOKEN} key {API_KEY}"}}
    body.update(fields)
    return json.dumps(body).encode("utf-8", "surrogatepass")


def _with_context(**context: Any) -> bytes:
    return _body(context={**CONTEXT, "note": f"token {TOKEN}", **context})


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


# the inputs reported to give 500, each now a 400 with its reason
REPORTED: dict[str, tuple[bytes, str]] = {
    "NUL in a context key": (_with_context(**{"no\x00te": PHONE}), "NUL"),
    "NUL in a context value": (_with_context(extra=f"a\x00{PHONE}"), "NUL"),
    "NUL in a declared value": (_with_context(debtor_name="Ann\x00Lee"), "control characters"),
    "lone surrogate in a context key": (_with_context(**{"\ud800key": PHONE}), "surrogate"),
    "lone surrogate in a context value": (_with_context(extra="\udc80" + PHONE), "surrogate"),
    "lone surrogate in a declared value": (_with_context(debtor_name="Ann\ud800"), "surrogate"),
    "NUL in playbook": (_body(playbook="collections-default\x00"), "control characters"),
    "lone surrogate in playbook": (_body(playbook="collections\udfff"), "valid string"),
    "2^64 in the context": (_with_context(count=2**64), "64 bits"),
    "-2^63-1 in the context": (_with_context(count=-(2**63) - 1), "64 bits"),
    "10^30 as the balance": (_with_context(balance=10**30), "must be less than"),
    "nested 300 deep in the context": (
        _with_context(extra="@").replace(b'"@"', _nested(300).encode()), "nested deeper"),
    "nested 5000 deep": (b'{"context": ' + _nested(5000).encode() + b"}", "nested deeper"),
    "providers.stt a list": (_with_context(providers={"stt": ["null"]}), "context.providers.stt"),
    "providers.stt an object": (_with_context(providers={"stt": {"name": "null"}}), "context.providers.stt"),
    "NaN": (_with_context(extra="@").replace(b'"@"', b"NaN"), "finite number"),
    "Infinity as the balance": (_with_context(balance="@").replace(b'"@"', b"-Infinity"), "finite number"),
    "not UTF-8": (_with_context(extra="@").replace(b'"@"', b'"\xff\xfe"'), "UTF-8"),
}


@pytest.mark.parametrize("case", list(REPORTED))
def test_reported_bodies_get_400_with_a_reason_and_nothing_leaks(served: Served, case: str) -> None:
    body, reason = REPORTED[case]
    served.new_log()
    resp = served.post(body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] and reason in resp.text
    logged = served.new_log()
    assert "Traceback" not in logged
    assert not _leaks(logged), logged[-3000:]


def test_a_good_call_and_a_refused_one_log_no_number_token_or_key(served: Served) -> None:
    served.new_log()
    created = served.post(json.dumps({"to": PHONE, "context": CONTEXT}).encode())
    assert created.status_code == 201, created.text
    assert served.http.get(f"/api/calls/{created.json()['call_id']}").status_code == 200
    assert served.http.get("/api/calls/live", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401
    assert not _leaks(served.new_log())


def test_standard_library_loggers_and_tracebacks_are_masked(tmp_path: Path) -> None:
    """aiohttp's, asyncpg's and the root logger's lines, and a traceback whose message
    carries a number, a media token and a configured key, come out masked."""
    script = f"""
import logging
from dialkit.logs import setup_logging, register_secret
setup_logging("DEBUG")
register_secret({API_KEY!r})
logging.getLogger("asyncpg").warning("invalid input for query argument $3: %r", {CONTEXT!r})
logging.getLogger().info("dialling {PHONE} with Bearer {API_KEY}")
try:
    raise ValueError("query argument $4: {PHONE!r} token={TOKEN}")
except ValueError:
    logging.getLogger("aiohttp.server").exception("Error handling request from {PHONE}")
logging.getLogger("aiohttp.access").info("GET /media?token={TOKEN} 101")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    out = run.stderr
    assert "Traceback" in out and "Error handling request" in out and "asyncpg" in out
    assert not _leaks(out), out
    assert "+1415•••23" in out  # masked, still telling calls apart


#: values reported to break the store or a codec, drawn as often as any other kind of leaf
HAZARDS = st.sampled_from([
    "\x00", f"a\x00{PHONE}", "\ud800", f"\udfff {PHONE}", 2**64, -(2**63) - 1, 10**30,
    float("nan"), float("-inf"), 1e308, "x" * 10_001, "",
])
JSON_LEAF = st.one_of(
    HAZARDS, st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=30),
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
DEEP = st.integers(min_value=30, max_value=400).map(lambda n: json.loads(_nested(n)))


CONTEXT_FIELDS: dict[str, Any] = {
    **CONTEXT,
    "today": "2026-11-21", "now": "2026-11-21T09:00:00", "settlement_pct": 40, "instalments": 3,
    "transfer_number": "+14155550199", "providers": {"stt": "null", "tts": "tone"},
    "agent_name": "Alex", "currency": "USD", "first_contact": True,
}
ANY_VALUE = st.one_of(JSON_VALUE, DEEP)


def _context(changed: dict[str, Any], dropped: set[str], extra: dict[str, Any]) -> dict[str, Any]:
    """A whole valid context with a few fields changed or dropped and a few keys added."""
    ctx = {k: v for k, v in CONTEXT_FIELDS.items() if k not in dropped}
    return {**extra, **ctx, **changed}


CONTEXTS = st.builds(
    _context,
    st.dictionaries(st.sampled_from(sorted(CONTEXT_FIELDS)), ANY_VALUE, max_size=3),
    st.sets(st.sampled_from(sorted(CONTEXT_FIELDS)), max_size=2),
    st.dictionaries(st.one_of(HAZARDS.filter(lambda v: isinstance(v, str)),
                              st.text(st.characters(codec=None, exclude_categories=()), max_size=10)),
                    ANY_VALUE, max_size=2),
)
BODIES = st.fixed_dictionaries(
    {"context": st.one_of(CONTEXTS, JSON_VALUE)},
    optional={
        "carrier": st.one_of(st.sampled_from(["twilio", "exotel"]), JSON_VALUE),
        "to": st.one_of(st.sampled_from([PHONE, "+919876543210", "4155550123", "+1"]), JSON_VALUE),
        "playbook": st.one_of(
            st.sampled_from(["collections-default", "collections-default@1.0", "echo", "nope@9"]),
            JSON_VALUE),
    },
)


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(body=st.one_of(BODIES, JSON_VALUE), raw_utf8=st.booleans())
def test_fuzzed_bodies_never_get_a_5xx_or_a_traceback(served: Served, body: Any, raw_utf8: bool) -> None:
    # json.dumps writes NaN / Infinity and, without ensure_ascii, lone surrogates as raw bytes
    data = json.dumps(body, ensure_ascii=not raw_utf8).encode("utf-8", "surrogatepass")
    resp = served.post(data)
    event(f"HTTP {resp.status_code}")
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if resp.status_code != 201:
        assert 400 <= resp.status_code < 500 and resp.json()["error"]
    logged = served.new_log()
    assert "Traceback" not in logged, logged[-3000:]
    assert not _leaks(logged), logged[-3000:]
