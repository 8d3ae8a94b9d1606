"""The LLM policy: OpenAI chat completions, streamed, with function calling for actions.

Works against any OpenAI-compatible `base_url`. Text deltas are cut into sentences and
clauses by `ai.chunker`, so the first clause reaches TTS while the model is still
writing. The tools are ai.tools' (built from ai.vocabulary, the same list the system prompt
shows). Tool calls become `Action`s only after their arguments pass validation;
a bad call (a past date, a negative amount) is answered with the error as the tool result
and the model gets another round to fix it (bounded by `max_tool_rounds`).

Every request runs on the call's event loop, so per-request CPU is kept small: the tool
schemas are built once, the request body (already in wire format) goes through the SDK's
`post` without its type-directed transform, and streamed chunks are read as plain JSON
rather than constructed into models (see `_stream_round`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from openai import AsyncOpenAI, AsyncStream, DefaultAioHttpClient
from openai.types.chat import ChatCompletion

from ai.chunker import SentenceChunker
from ai.context import CallContext
from ai.events import CallStarted, DtmfEntry, MachineDetected, PolicyEvent, Silence, UserTurn
from ai.metrics import count_error, error_kind
from ai.playbook import Playbook
from ai.prompt import render_system_prompt
from ai.tools import ToolArgumentError, tool_schemas, validate_tool_call
from ai.types import Action, Message, PolicyOutput, Say

log = structlog.get_logger(__name__)

INTERRUPTED_SUFFIX = " [interrupted]"
TERMINAL_ACTIONS: frozenset[str] = frozenset({"end_call", "transfer", "opt_out"})

__all__ = [
    "ChatCompletionsPolicyFactory", "OpenAIPolicy", "ToolArgumentError", "event_to_message",
    "history_to_messages", "tool_schemas", "validate_tool_call",
]


# ---- conversation → messages ----------------------------------------------------------


def history_to_messages(history: list[Message]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in history:
        if m.role == "assistant":
            text = m.content + (INTERRUPTED_SUFFIX if m.interrupted else "")
            out.append({"role": "assistant", "content": text})
        elif m.role == "tool":
            # Tool results recorded by the engine have no tool_call_id; keep them as notes.
            out.append({"role": "system", "content": f"[action result] {m.content}"})
        else:
            out.append({"role": m.role, "content": m.content})
    return out


def event_to_message(event: PolicyEvent, history: list[Message]) -> dict[str, Any] | None:
    if isinstance(event, CallStarted):
        return {
            "role": "system",
            "content": "The call has just been answered. Say your opening greeting now.",
        }
    if isinstance(event, UserTurn):
        last = history[-1] if history else None
        if last is not None and last.role == "user" and last.content == event.text:
            return None  # the engine already put this turn in the history
        return {"role": "user", "content": event.text}
    if isinstance(event, Silence):
        return {
            "role": "system",
            "content": f"The caller has been silent (silence #{event.count}). "
            "Check whether they are still there, briefly.",
        }
    if isinstance(event, DtmfEntry):
        suffix = "#" if event.terminated_by == "#" else ""
        return {"role": "user", "content": f"[keypad: {event.digits}{suffix}]"}
    if isinstance(event, MachineDetected):
        return {
            "role": "system",
            "content": f"An answering machine was detected ({event.source}). Leave only the "
            "limited-content voicemail message (do not mention the debt), then end the call.",
        }
    raise TypeError(f"unknown policy event {type(event).__name__}")


# ---- the policy -----------------------------------------------------------------------


@dataclass(slots=True)
class _ToolCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass(slots=True)
class _Round:
    text: list[str] = field(default_factory=list)
    calls: dict[int, _ToolCall] = field(default_factory=dict)


class OpenAIPolicy:
    """A `Policy` backed by a streaming chat-completions model. One instance per call."""

    name = "openai"

    def __init__(
        self,
        *,
        system_prompt: str,
        client: AsyncOpenAI | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        temperature: float = 0.3,
        timeout_s: float = 10.0,
        max_retries: int = 1,
        today: dt.date | None = None,
        transfer_number: str | None = None,
        max_tool_rounds: int = 3,
        chunker_factory: Callable[[], SentenceChunker] = SentenceChunker,
    ) -> None:
        """`today` is the call's date in the debtor's time zone (tool dates are checked
        against it; UTC's date when None); `transfer_number` is the default transfer line."""
        self.client = client or AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )
        self.system_prompt = system_prompt
        self.model = model
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.today = today
        self.transfer_number = transfer_number
        self.max_tool_rounds = max_tool_rounds
        self.chunker_factory = chunker_factory

    async def respond(
        self, history: list[Message], event: PolicyEvent
    ) -> AsyncIterator[PolicyOutput]:
        messages: list[dict[str, Any]] = [{"role": "system", "content": self.system_prompt}]
        messages += history_to_messages(history)
        note = event_to_message(event, history)
        if note is not None:
            messages.append(note)
        for _ in range(max(1, self.max_tool_rounds)):
            rnd = _Round()
            async for say in self._stream_round(messages, rnd):
                yield say
            if not rnd.calls:
                return
            results: list[tuple[_ToolCall, str]] = []
            actions: list[Action] = []
            for call in (rnd.calls[i] for i in sorted(rnd.calls)):
                try:
                    action = validate_tool_call(
                        call.name, call.arguments,
                        today=self.today or dt.datetime.now(dt.UTC).date(),
                        transfer_number=self.transfer_number,
                    )
                except ToolArgumentError as exc:
                    count_error("llm", self.name, "invalid_tool_call")
                    log.info("tool_call_rejected", tool=call.name, error=str(exc))
                    results.append((call, f"error: {exc}. Fix the arguments and call again."))
                    continue
                actions.append(action)
                results.append((call, "ok"))
            for action in actions:
                yield action
            rejected = any(r.startswith("error") for _, r in results)
            terminal = any(a.kind in TERMINAL_ACTIONS for a in actions)
            if not rejected and (terminal or rnd.text):
                return
            messages.append(
                {
                    "role": "assistant",
                    "content": "".join(rnd.text) or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c, _ in results
                    ],
                }
            )
            for c, result in results:
                messages.append({"role": "tool", "tool_call_id": c.id, "content": result})
        log.warning("tool_rounds_exhausted", rounds=self.max_tool_rounds)

    async def _stream_round(
        self, messages: list[dict[str, Any]], rnd: _Round
    ) -> AsyncIterator[Say]:
        chunker = self.chunker_factory()
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "tools": tool_schemas(),
            "temperature": self.temperature,
            "stream": True,
        }
        try:
            # `chat.completions.create` would walk the whole body against its TypedDicts
            # (~2-4 ms per request, growing with the history) and construct a pydantic model
            # per streamed chunk; the body is already in wire format and only a few fields of
            # each chunk are read, so the SDK's generic `post` (same auth, retries, timeouts,
            # error mapping and SSE decoding) is used with chunks left as parsed JSON.
            stream = await self.client.post(
                "/chat/completions",
                cast_to=ChatCompletion,
                body=body,
                options={"timeout": self.timeout_s},
                stream=True,
                stream_cls=AsyncStream[object],
            )
            chunk: Any
            async for chunk in stream:
                choices = chunk.get("choices")
                if not choices:
                    continue
                delta = choices[0].get("delta") or {}
                content = delta.get("content")
                if content:
                    rnd.text.append(content)
                    for piece in chunker.push(content):
                        yield Say(piece)
                for tc in delta.get("tool_calls") or ():
                    call = rnd.calls.setdefault(int(tc.get("index", 0)), _ToolCall())
                    if tc.get("id"):
                        call.id = tc["id"]
                    function = tc.get("function")
                    if function:
                        if function.get("name"):
                            call.name += function["name"]
                        if function.get("arguments"):
                            call.arguments += function["arguments"]
        except Exception as exc:
            count_error("llm", self.name, error_kind(exc))
            log.warning("openai_stream_failed", error=error_kind(exc), model=self.model)
            raise
        for piece in chunker.flush():
            yield Say(piece)
        for i, call in rnd.calls.items():
            if not call.id:
                call.id = f"call_{i}"


class ChatCompletionsPolicyFactory:
    """`(context, playbook) -> OpenAIPolicy` for each call (ai.protocols.PolicyFactory): the
    system prompt is the call's playbook rendered for its validated context. One HTTP client
    is shared by all calls."""

    def __init__(
        self,
        playbook: Playbook,
        *,
        system_prompt_renderer: Callable[[Playbook, CallContext], str] = render_system_prompt,
        api_key: str | None = None,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        temperature: float = 0.3,
        timeout_s: float = 10.0,
        max_retries: int = 1,
        max_tool_rounds: int = 3,
        client: AsyncOpenAI | None = None,
    ) -> None:
        self.playbook = playbook
        self.system_prompt_renderer = system_prompt_renderer
        self.api_key = api_key
        self.base_url = base_url
        self.model = model
        self.temperature = temperature
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_tool_rounds = max_tool_rounds
        self._client = client

    def __call__(
        self, context: Mapping[str, Any], playbook: Playbook | None = None
    ) -> OpenAIPolicy:
        playbook = playbook or self.playbook
        ctx = CallContext.from_dict(context, playbook)
        if self._client is None:
            # aiohttp as the SDK's HTTP transport: with its default (httpx over anyio) a
            # streamed reply cost 3.3 ms of event-loop CPU, with aiohttp 1.7 ms
            # (bench/http_client_cost.py).
            self._client = AsyncOpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
                http_client=DefaultAioHttpClient(timeout=self.timeout_s),
            )
        return OpenAIPolicy(
            client=self._client,
            system_prompt=self.system_prompt_renderer(playbook, ctx),
            model=self.model,
            temperature=self.temperature,
            timeout_s=self.timeout_s,
            today=ctx.today,
            transfer_number=ctx.transfer_number,
            max_tool_rounds=self.max_tool_rounds,
        )

    async def aclose(self) -> None:
        """Close the shared client's connections (at server shutdown)."""
        if self._client is not None:
            await self._client.close()
