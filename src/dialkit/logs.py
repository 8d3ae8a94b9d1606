"""structlog set-up. A processor masks phone numbers and secrets in every log line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

PHONE_RE = re.compile(r"(?<![\w-])\+?\d[\d\s().-]{7,}\d(?![\w-])")
UNSCRUBBED = frozenset({"timestamp", "call_id", "event", "level"})
SECRET_KEYS = ("key", "token", "secret", "password", "authorization")


def mask_phone(number: str) -> str:
    """'+14155551234' → '+1415•••34': enough to tell calls apart, not to dial."""
    digits = re.sub(r"\D", "", number)
    if len(digits) < 6:
        return "•" * len(digits)
    return f"{'+' if number.strip().startswith('+') else ''}{digits[:4]}•••{digits[-2:]}"


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return PHONE_RE.sub(lambda m: mask_phone(m.group(0)), value)
    return value


def scrub_processor(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if any(s in key.lower() for s in SECRET_KEYS):
            event[key] = "***"
        elif key not in UNSCRUBBED:
            event[key] = _scrub(event[key])
    return event


def setup_logging(level: str = "INFO", json: bool = False) -> None:
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s")
    # one line per vendor HTTP request would flood the log (and cost loop time) under load
    for noisy in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(noisy).setLevel(max(lvl, logging.WARNING))
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            scrub_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
