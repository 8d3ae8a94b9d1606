"""Retries with jittered exponential backoff (the one backoff of the product) and a circuit
breaker; `ProviderUnavailable` when a whole fallback chain failed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import structlog

from ai.metrics import error_kind

log = structlog.get_logger(__name__)
T = TypeVar("T")


class ProviderUnavailable(RuntimeError):
    """Every provider in a fallback chain failed (or its circuit is open)."""






def is_transient(exc: BaseException) -> bool:
    """Worth retrying: rate limits, server errors, timeouts, dropped connections."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status in (408, 409, 429) or status >= 500
    return error_kind(exc) in ("timeout", "connection", "rate_limited", "server_error")


def backoff_delay(attempt: int, base_delay: float, max_delay: float = 5.0) -> float:
    """Exponential backoff with jitter in [50 %, 100 %] of the step (attempt counts from 0)."""
    step = min(max_delay, base_delay * (2**attempt))
    return step * (0.5 + random.random() / 2)


async def retry_async(
    fn: Callable[[], Awaitable[T]],
    attempts: int = 3,
    base_delay: float = 0.2,
    retry_on: Callable[[BaseException], bool] | tuple[type[BaseException], ...] = is_transient,
    max_delay: float = 5.0,
) -> T:
    """Call `fn` up to `attempts` times, sleeping a jittered exponential backoff between
    tries; `retry_on` is an exception-type tuple or a predicate. The last error is raised."""
    for attempt in range(attempts):
        try:
            return await fn()
        except Exception as exc:
            retryable = isinstance(exc, retry_on) if isinstance(retry_on, tuple) else retry_on(exc)
            if not retryable or attempt == attempts - 1:
                raise
            delay = backoff_delay(attempt, base_delay, max_delay)
            log.info(
                "retrying", attempt=attempt + 1, delay_s=round(delay, 3), error=error_kind(exc)
            )
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")


class CircuitBreaker:
    """Closed → open after `failure_threshold` consecutive failures; after
    `reset_timeout_s` one trial is let through (half-open); success closes it again."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.reset_timeout_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_out = False

    def record_failure(self) -> None:
        self._failures += 1
        self._trial_out = False
        if self._opened_at is not None or self._failures >= self.failure_threshold:
            self._opened_at = self._clock()
