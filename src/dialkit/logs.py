"""Logging set-up. One masking processor runs on every line, from structlog and from the
standard-library loggers alike (aiohttp, asyncpg, anything else that logs through the root
logger), and on tracebacks: phone numbers are cut to a prefix and the last two digits;
secrets (values under secret-sounding keys, `Bearer …`, `token=…`, media tokens, API keys
`dk_…`, and the configured keys themselves) become `***`."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

PHONE_RE = re.compile(r"(?<![\w-])\+?\d[\d\s().-]{7,}\d(?![\w-])")
UNSCRUBBED = frozenset({"timestamp", "call_id", "level", "logger"})
SECRET_KEYS = ("key", "token", "secret", "password", "authorization", "signature")

# a media token (b64url payload "." b64url HMAC-SHA256) or any token of that shape
_TOKEN_RE = re.compile(r"(?<![\w-])[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}(?:\.[A-Za-z0-9_-]{10,})?")
# an API key (dialkit.apikeys): its public prefix stays, to tell keys apart
_API_KEY_RE = re.compile(r"\bdk_([0-9a-f]{8})_[A-Za-z0-9_-]+")
_BEARER_RE = re.compile(r"(?i)\b(bearer|basic)\s+[^\s'\",;]+")
# key=value (query strings, reprs) and "key": "value" (JSON, dict reprs)
_KEYED_RE = re.compile(
    r"(?i)(\b[\w-]*(?:token|secret|password|api[_-]?key|signature|authorization)[\w-]*['\"]?"
    r"\s*[:=]\s*)(['\"]?)[^'\"&\s,}]+"
)

_secrets: set[str] = set()
_HANDLER_NAME = "dialkit"


def register_secret(value: str | None) -> None:
    """Mask this exact value wherever it appears in a log line (configured keys and secrets)."""
    if value and len(value) >= 6:
        _secrets.add(value)


def mask_phone(number: str) -> str:
    """'+14155551234' → '+1415•••34': enough to tell calls apart, not to dial."""
    digits = re.sub(r"\D", "", number)
    if len(digits) < 6:
        return "•" * len(digits)
    return f"{'+' if number.strip().startswith('+') else ''}{digits[:4]}•••{digits[-2:]}"


def scrub_text(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, "***")
    text = _API_KEY_RE.sub(lambda m: f"dk_{m.group(1)}_***", text)
    text = _BEARER_RE.sub(lambda m: f"{m.group(1)} ***", text)
    text = _KEYED_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _TOKEN_RE.sub("***", text)
    return PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if depth > 8:
        return value if isinstance(value, int | float | bool | type(None)) else "…"
    if isinstance(value, dict):
        return {
            k: "***" if isinstance(k, str) and _secret_key(k) else _scrub(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    if isinstance(value, int | float | bool | type(None)):
        return value
    # anything else is rendered with its repr or str: scrub that text
    return scrub_text(str(value))


def _secret_key(key: str) -> bool:
    low = key.lower()
    return any(s in low for s in SECRET_KEYS)


def scrub_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key.startswith("_"):  # the ProcessorFormatter's own record and flags
            continue
        if key != "event" and _secret_key(key):
            event[key] = "***"
        elif key not in UNSCRUBBED:
            event[key] = _scrub(event[key])
    return event


def _processors() -> list[Any]:
    """Shared by both paths; tracebacks are rendered to text before masking so they are
    masked too."""
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
        structlog.processors.format_exc_info,
        scrub_processor,
    ]


def _renderer(json: bool) -> Any:
    if json:
        return structlog.processors.JSONRenderer()
    # plain tracebacks: rich's would print local variables, unmasked
    return structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)


def setup_logging(level: str = "INFO", json: bool = False, stream: TextIO | None = None) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    out = stream if stream is not None else sys.stderr
    renderer = _renderer(json)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *_processors()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME or not _kept(h)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl)
    # one line per vendor HTTP request would flood the log (and cost loop time) under load
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_processors(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )


def _kept(handler: logging.Handler) -> bool:
    """Handlers someone else installed on purpose (pytest's capture) stay; a plain stderr
    handler from an earlier basicConfig would print unmasked lines and goes."""
    return not (type(handler) is logging.StreamHandler and getattr(handler, "stream", None) in (sys.stderr, sys.stdout))


def register_secrets(values: Iterable[str | None]) -> None:
    for value in values:
        register_secret(value)
