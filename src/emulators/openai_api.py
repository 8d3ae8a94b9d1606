"""OpenAI chat-completions emulator: `POST /v1/chat/completions`.

Speaks the OpenAI wire format: `Authorization: Bearer <key>` (401 `invalid_api_key`
otherwise), JSON request bodies, `chat.completion` objects, and with `stream: true`
server-sent events `data: {chat.completion.chunk}` ending in `data: [DONE]`, including
streamed `tool_calls` deltas (id/name first, then argument fragments). Errors use OpenAI's
`{"error": {"message", "type", "param", "code"}}` body.

Replies come from a script: `reply(messages) -> Reply(text, tool_calls)`, so a test decides
what the "model" says for each request (and sees the tool results it was sent).

With `stream_options: {"include_usage": true}` the stream ends with a chunk holding the
token `usage` (counted by `tokenize`), as OpenAI's does.

Faults (per request, queued): an HTTP status (429 with Retry-After, 500, …), a slow
first token, a socket dropped after N tokens, a malformed SSE frame.

The first token is due `first_token_delay_s` after the request arrived; how late the
emulator was against that (its own event loop lag) is kept in `lateness_s`.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from emulators import serve


@dataclass
class ToolCallSpec:
    name: str
    arguments: dict[str, Any] | str  # a str is sent verbatim (for malformed-argument tests)


@dataclass
class Reply:
    text: str = ""
    tool_calls: list[ToolCallSpec] = field(default_factory=list)


@dataclass
class OpenAIFault:
    kind: Literal["status", "slow", "drop", "malformed"]
    status: int = 500
    delay_s: float = 0.0  # for "slow": extra delay before the first token
    after_tokens: int = 0  # for "drop" and "malformed": how many deltas go out first


ReplySource = Callable[[list[dict[str, Any]]], Reply]

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}


def tokenize(text: str) -> list[str]:
    """Split text the way a BPE stream roughly arrives: words with their leading space."""
    return re.findall(r"\s*\S+", text)


class OpenAIEmulator:
    def __init__(
        self,
        api_key: str = "test-openai-key",
        reply: ReplySource | None = None,
        first_token_delay_s: float = 0.0,
        inter_token_delay_s: float = 0.0,
        model: str = "gpt-4o-mini",
    ) -> None:
        self.api_key = api_key
        self.reply: ReplySource = reply or (lambda messages: Reply("Okay."))
        self.first_token_delay_s = first_token_delay_s
        self.inter_token_delay_s = inter_token_delay_s
        self.model = model
        self.faults: deque[OpenAIFault] = deque()
        self.requests: list[dict[str, Any]] = []  # request bodies, in order
        self.lateness_s: list[float] = []  # per streamed reply: first token sent − due
        self.base_url = ""  # http://127.0.0.1:PORT/v1, set when running

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._completions)
        return app

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.")
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "'messages' is a required property", param="messages")
        if "model" not in body:
            return _error(400, "you must provide a model parameter", param="model")
        self.requests.append(body)
        fault = self.faults.popleft() if self.faults else None
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": "0"} if fault.status == 429 else None
            return _error(fault.status, f"Injected {fault.status}.", headers=headers)
        reply = self.reply(body["messages"])
        chunks = self._chunks(reply, str(body["model"]))
        options = body.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage"):
            # as OpenAI does: every chunk carries `usage: null`, one last chunk (no choices) the count
            usage = _usage(body["messages"], reply)
            for c in chunks:
                c["usage"] = None
            chunks.append({**chunks[-1], "choices": [], "usage": usage})
        if not body.get("stream"):
            return web.json_response(self._completion(reply, str(body["model"])))
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
            }
        )
        await response.prepare(request)
        delay = self.first_token_delay_s + (fault.delay_s if fault and fault.kind == "slow" else 0)
        if delay:
            await asyncio.sleep(max(0.0, arrived + delay - loop.time()))
        for i, chunk in enumerate(chunks):
            if i == 0:
                self.lateness_s.append(loop.time() - (arrived + delay))
            if (
                fault is not None
                and fault.kind in ("drop", "malformed")
                and i == fault.after_tokens
            ):
                if fault.kind == "malformed":
                    await response.write(b'data: {"id": "chatcmpl-x", "choices": [{"delta": \n\n')
                    continue
                assert request.transport is not None
                request.transport.abort()
                return response
            if i and self.inter_token_delay_s:
                await asyncio.sleep(self.inter_token_delay_s)
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _chunks(self, reply: Reply, model: str) -> list[dict[str, Any]]:
        cid = "chatcmpl-" + secrets.token_hex(12)
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_emulator",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": tok}) for tok in tokenize(reply.text)]
        for index, call in enumerate(reply.tool_calls):
            args = call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)
            head = {
                "index": index,
                "id": "call_" + secrets.token_hex(8),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            out.append(chunk({"tool_calls": [head]}))
            for j in range(0, len(args), 8):
                piece = {"index": index, "function": {"arguments": args[j : j + 8]}}
                out.append(chunk({"tool_calls": [piece]}))
        out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        return out

    def _completion(self, reply: Reply, model: str) -> dict[str, Any]:
        tool_calls = [
            {
                "id": "call_" + secrets.token_hex(8),
                "type": "function",
                "function": {
                    "name": c.name,
                    "arguments": c.arguments
                    if isinstance(c.arguments, str)
                    else json.dumps(c.arguments),
                },
            }
            for c in reply.tool_calls
        ]
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text or None,
            "refusal": None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {
            "id": "chatcmpl-" + secrets.token_hex(12),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if tool_calls else "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }


def _usage(messages: list[dict[str, Any]], reply: Reply) -> dict[str, int]:
    """Token counts as the emulator reckons them: `tokenize` pieces of the messages' text
    and of the reply."""
    prompt = sum(len(tokenize(m["content"])) for m in messages if isinstance(m.get("content"), str))
    completion = len(tokenize(reply.text))
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt + completion}


def _error(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    kind, code = _ERROR_TYPES.get(status, ("api_error", None))
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status, headers=headers)


@asynccontextmanager
async def running_openai(**kwargs: Any) -> AsyncIterator[OpenAIEmulator]:
    """Run an OpenAI emulator on 127.0.0.1; `.base_url` ends in /v1 like the real one."""
    emu = OpenAIEmulator(**kwargs)
    async with serve(emu.app()) as url:
        emu.base_url = f"{url}/v1"
        yield emu
