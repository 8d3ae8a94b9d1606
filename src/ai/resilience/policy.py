"""`FallbackPolicy`: an LLM timeout or error hands the call to the next policy (usually the
scripted playbook) for the rest of the call; a filler line covers a slow first reply.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from ai.events import PolicyEvent
from ai.metrics import count_error, error_kind
from ai.protocols import Policy, PolicyFactory
from ai.resilience.switch import provider_name, record_switch
from ai.types import (
    Message,
    PolicyOutput,
    Say,
)

if TYPE_CHECKING:
    from ai.playbook import Playbook

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class _Done:
    pass


class FallbackPolicy:
    """Runs the first policy; on an error or a reply that does not start within
    `timeout_s`, hands this and every later turn of the call to the next policy.
    If no Say has arrived after `filler_after_ms`, one filler line is said."""

    def __init__(
        self,
        policies: Sequence[Policy],
        filler_after_ms: int = 900,
        filler_lines: Sequence[str] = ("One moment.", "Just a second.", "Let me check."),
        timeout_s: float = 6.0,
    ) -> None:
        if not policies:
            raise ValueError("FallbackPolicy needs at least one policy")
        self.policies = list(policies)
        self.filler_after_ms = filler_after_ms
        self.filler_lines = list(filler_lines)
        self.timeout_s = timeout_s
        self.index = 0
        self._fillers_used = 0
        self.name = "+".join(provider_name(p) for p in self.policies)

    @property
    def current(self) -> Policy:
        return self.policies[self.index]

    @property
    def stage(self) -> str | None:
        stage = getattr(self.current, "stage", None)
        return stage if isinstance(stage, str) else None

    async def respond(
        self, history: list[Message], event: PolicyEvent
    ) -> AsyncIterator[PolicyOutput]:
        filler_said = False
        while True:
            policy = self.current
            is_last = self.index == len(self.policies) - 1
            queue: asyncio.Queue[PolicyOutput | BaseException | _Done] = asyncio.Queue()
            task = asyncio.create_task(_pump_policy(policy, history, event, queue))
            loop = asyncio.get_running_loop()
            started = loop.time()
            said_anything = False
            failure: BaseException | None = None
            try:
                while True:
                    wait: float | None
                    if said_anything:
                        wait = None if is_last else self.timeout_s
                    elif not filler_said and self.filler_lines:
                        wait = self.filler_after_ms / 1000 - (loop.time() - started)
                    else:
                        wait = None if is_last else self.timeout_s - (loop.time() - started)
                    try:
                        item = await asyncio.wait_for(queue.get(), timeout=wait)
                    except TimeoutError:
                        if not said_anything and not filler_said and self.filler_lines:
                            filler_said = True
                            yield Say(self._next_filler())
                            continue
                        failure = TimeoutError("policy reply timed out")
                        break
                    if isinstance(item, _Done):
                        return
                    if isinstance(item, BaseException):
                        failure = item
                        break
                    said_anything = said_anything or isinstance(item, Say)
                    yield item
            finally:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            assert failure is not None
            count_error("llm", provider_name(policy), error_kind(failure))
            if is_last:
                raise failure
            self.index += 1
            record_switch("llm", policy, self.current, failure, "policy_failed")
            take_over = getattr(self.current, "take_over", None)
            if take_over is not None:
                take_over(history)  # carry on from the stage the call reached

    def _next_filler(self) -> str:
        line = self.filler_lines[self._fillers_used % len(self.filler_lines)]
        self._fillers_used += 1
        return line


async def _pump_policy(
    policy: Policy,
    history: list[Message],
    event: PolicyEvent,
    queue: asyncio.Queue[PolicyOutput | BaseException | _Done],
) -> None:
    try:
        async for out in policy.respond(history, event):
            queue.put_nowait(out)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        queue.put_nowait(exc)
        return
    queue.put_nowait(_Done())


class FallbackPolicyFactory:
    """Builds a `FallbackPolicy` per call from one factory per tier (e.g. OpenAI, then the
    scripted playbook)."""

    def __init__(
        self,
        factories: Sequence[PolicyFactory],
        filler_after_ms: int = 900,
        filler_lines: Sequence[str] = ("One moment.", "Just a second.", "Let me check."),
        timeout_s: float = 6.0,
    ) -> None:
        self.factories = list(factories)
        self.filler_after_ms = filler_after_ms
        self.filler_lines = list(filler_lines)
        self.timeout_s = timeout_s

    def __call__(
        self, context: Mapping[str, Any], playbook: Playbook | None = None
    ) -> FallbackPolicy:
        return FallbackPolicy(
            [f(context, playbook) for f in self.factories],
            filler_after_ms=self.filler_after_ms,
            filler_lines=playbook.settings.filler_lines if playbook is not None else self.filler_lines,
            timeout_s=self.timeout_s,
        )
