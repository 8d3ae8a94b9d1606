"""Recording a switch from one provider to the next: a metric and a log line with the
provider names only.
"""

from __future__ import annotations

from typing import Any

import structlog

from ai.metrics import count_fallback, error_kind

log = structlog.get_logger(__name__)


def provider_name(provider: Any) -> str:
    return str(getattr(provider, "name", type(provider).__name__))


def record_switch(role: str, old: Any, new: Any, exc: BaseException | None, reason: str) -> None:
    from_name, to_name = provider_name(old), provider_name(new)
    count_fallback(role, from_name, to_name)
    log.warning(
        "provider_fallback",
        role=role,
        from_provider=from_name,
        to_provider=to_name,
        reason=reason,
        error=None if exc is None else error_kind(exc),
    )
