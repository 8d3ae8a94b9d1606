"""Turning an asyncio queue that a producer fills into an async iterator for consumers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TypeVar

T = TypeVar("T")


async def iterate_queue(queue: asyncio.Queue[T | BaseException | None]) -> AsyncIterator[T]:
    """Yield items until the producer puts None; an exception put in the queue is raised
    in the consumer (how a stream reports that it failed)."""
    while True:
        item = await queue.get()
        if item is None:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
