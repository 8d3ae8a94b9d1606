"""Waiting for a stored run to finish: one poll loop for evaluation and tuning runs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from evaluation.library_errors import NotFound

__all__ = ["wait_finished"]

T = TypeVar("T")


async def wait_finished(fetch_status: Callable[[], Awaitable[str | None]], get: Callable[[], Awaitable[T]],
                        finished: Collection[str], what: str, field: str, *, poll_s: float,
                        timeout_s: float | None) -> T:
    """`get()` once `fetch_status()` reads a status in `finished`, every `poll_s` seconds;
    NotFound (on `field`) when it reads none, TimeoutError after `timeout_s`. `what` names
    the run in both messages ("evaluation 7", "tuning run 3")."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        status = await fetch_status()
        if status is None:
            raise NotFound(f"no {what}", field=field)
        if status in finished:
            return await get()
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"{what} is still {status} after {timeout_s:g} s")
        await asyncio.sleep(poll_s)
