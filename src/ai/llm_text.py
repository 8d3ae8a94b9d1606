"""Plain-text answers from an OpenAI-compatible chat model (any `base_url`), streamed.

For the evaluation tools that ask a model for a whole answer (the LLM judge, the scenario
generator, the LLM-played debtor): `LLMSettings` says where the model runs,
`stream_completion` asks once and returns the text, and every failure is one
`LLMRequestError` whose `kind` says what went wrong; each caller words it its own way.

(The call's own policy, ai.llm_openai, streams clause by clause with tool calls and reads
chunks as raw JSON for per-request CPU; this is the simple, typed path.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the SDK is imported when a request is made: the server starts without it
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["Completion", "LLMRequestError", "LLMSettings", "Usage", "open_client", "stream_completion"]


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """Where a model runs and how it is asked. `max_tokens` and `timeout_s` left None take
    the default of the use (the debtor answers in a line, a judge in a page)."""

    api_key: str
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    temperature: float = 0.7
    max_tokens: int | None = None
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None and self.timeout_s <= 0:
            raise ValueError("timeout_s: must be positive")


class LLMRequestError(RuntimeError):
    """The request failed. `kind`: "timeout" (no whole answer in time), "status" (the server
    answered an HTTP error, `status` holds it), "api" (connection failure, a malformed
    stream). `error_type` is the underlying exception's class name, `detail` its text."""

    def __init__(self, kind: Literal["timeout", "status", "api"], error_type: str, detail: str,
                 *, status: int | None = None) -> None:
        self.kind = kind
        self.error_type = error_type
        self.detail = detail
        self.status = status
        super().__init__(self.message)

    @property
    def message(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}: {self.detail}"
        return f"{self.error_type}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens the server counted for one request (its streamed `usage`)."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    #: how many streamed chunks carried a choice (0: the model answered nothing at all)
    chunks: int
    #: the server's token count, when asked for (`stream_options={"include_usage": True}`)
    #: and given; None otherwise
    usage: Usage | None = None


def open_client(settings: LLMSettings, *, timeout_s: float, max_retries: int) -> AsyncOpenAI:
    """An SDK client for `settings`' server (close it, or use it as a context manager)."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(api_key=settings.api_key, base_url=settings.base_url,
                       timeout=timeout_s, max_retries=max_retries)


async def stream_completion(client: AsyncOpenAI, *, model: str,
                            messages: Iterable[ChatCompletionMessageParam],
                            timeout_s: float | None, **params: Any) -> Completion:
    """The model's whole answer to `messages`, streamed. `timeout_s` bounds the whole answer
    (None: only the client's own timeouts, which bound each read); `params` go into the
    request as they are (temperature, max_tokens, seed, response_format, stream_options:
    `{"include_usage": True}` gets the server's token count into `Completion.usage`)."""
    import openai

    parts: list[str] = []
    chunks = 0
    usage: Usage | None = None
    try:
        async with asyncio.timeout(timeout_s):
            stream = await client.chat.completions.create(
                model=model, messages=messages, stream=True, **params)
            async for chunk in stream:
                if chunk.choices:
                    chunks += 1
                    if chunk.choices[0].delta.content:
                        parts.append(chunk.choices[0].delta.content)
                if chunk.usage is not None:  # the last chunk, when include_usage was asked
                    usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
    except (TimeoutError, openai.APITimeoutError) as exc:
        raise LLMRequestError("timeout", type(exc).__name__, str(exc)) from exc
    except openai.APIStatusError as exc:
        raise LLMRequestError("status", type(exc).__name__, exc.message,
                              status=exc.status_code) from exc
    except (openai.APIError, ValueError) as exc:
        raise LLMRequestError("api", type(exc).__name__, str(exc)) from exc
    return Completion("".join(parts), chunks, usage)
