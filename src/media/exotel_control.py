"""Exotel call control.

Outbound calls use the documented v1 Calls `connect` API
(`POST /v1/Accounts/{sid}/Calls/connect.json`, HTTP Basic with API key and token), either
straight to our bot (`StreamUrl` + `StreamType=bidirectional`, "Connect Voice AI") or into an
App Bazaar flow (`Url=http://my.exotel.com/{sid}/exoml/start_voice/{app_id}`). Exotel's v1
API has no endpoint to hang up or redirect a call in progress (the v2 Legs API has
`/legs/{leg_sid}/actions/hangup`, but only for legs created through that API, which needs a
gRPC event endpoint we do not run). The documented mechanism is the flow itself: when the
bot closes the Voicebot WebSocket, Exotel ends a Connect-Voice-AI call, or moves a flow call
to the next applet. So `ExotelCallControl`:
- `hangup` reads the call's status (`GET /v1/Accounts/{sid}/Calls/{CallSid}.json`); an ended
  or unknown call is "already_ended", otherwise it closes the call's media stream through the
  `close_stream` hook the media server provides. The flow must continue into a Hangup applet.
- `transfer` needs a flow: Voicebot -> Connect applet whose "Dial whom" is a dynamic URL ->
  Hangup. It records the target in its `transfers` store (the dynamic-URL endpoint answers
  from `take_transfer`, see `connect_applet_response`) and closes the stream. The store is
  in-process by default; the application injects a shared one (Redis) so the Connect
  applet's request can land on any node.
Retries as in `media.call_control` (hangup and transfer; never dial).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from media.call_control import (
    CallControlError,
    HttpCallControl,
    RetrySettings,
    json_body,
    mask_number,
)

log = logging.getLogger(__name__)

EXOTEL_TERMINAL = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})
EXOTEL_MAX_STREAM_URL = 600
EXOTEL_MAX_CUSTOM_FIELD = 128

#: closes the live media WebSocket of a call: (call_sid, reason) -> True if one was open
StreamCloser = Callable[[str, str], Awaitable[bool]]

@dataclass(frozen=True, slots=True)
class TransferTarget:
    to_number: str
    caller_id: str | None = None


class TransferStore(Protocol):
    """Pending transfers by call SID, each fetched once by the Connect applet's request."""

    async def put(self, call_sid: str, target: TransferTarget) -> None: ...

    async def take(self, call_sid: str) -> TransferTarget | None: ...


class MemoryTransferStore:
    """This process's pending transfers; an entry not fetched within `ttl_s` is dropped."""

    def __init__(self, ttl_s: float = 300.0) -> None:
        self.ttl_s = ttl_s
        self.pending: dict[str, tuple[TransferTarget, float]] = {}

    def _prune(self, now: float) -> None:
        for sid in [s for s, (_, expires) in self.pending.items() if expires <= now]:
            del self.pending[sid]

    async def put(self, call_sid: str, target: TransferTarget) -> None:
        now = time.monotonic()
        self._prune(now)
        self.pending[call_sid] = (target, now + self.ttl_s)

    async def take(self, call_sid: str) -> TransferTarget | None:
        self._prune(time.monotonic())
        entry = self.pending.pop(call_sid, None)
        return entry[0] if entry else None


def connect_applet_response(target: TransferTarget) -> dict[str, Any]:
    """JSON body for the Exotel Connect applet's dynamic URL ("Programmable Connect"):
    dial `target.to_number`, showing `target.caller_id` when given."""
    body: dict[str, Any] = {
        "fetch_after_attempt": False,
        "destination": {"numbers": [target.to_number]},
    }
    if target.caller_id:
        body["outgoing_phone_number"] = target.caller_id
    return body


class ExotelCallControl(HttpCallControl):
    carrier = "exotel"

    def __init__(
        self,
        account_sid: str,
        api_key: str,
        api_token: str,
        subdomain: str = "api.exotel.com",
        base_url: str | None = None,
        client: httpx.AsyncClient | None = None,
        *,
        close_stream: StreamCloser | None = None,
        flow_url: str | None = None,
        retry: RetrySettings = RetrySettings(),
        status_events: tuple[str, ...] = ("answered", "terminal"),
        transfers: TransferStore | None = None,
    ) -> None:
        super().__init__(base_url or f"https://{subdomain}", (api_key, api_token), client, retry)
        self.account_sid = account_sid
        self.close_stream = close_stream
        self.flow_url = flow_url
        self.status_events = status_events
        #: transfers decided but not yet fetched by the flow's Connect applet, by call sid
        self.transfers: TransferStore = transfers or MemoryTransferStore()

    def _calls_path(self, suffix: str) -> str:
        return f"/v1/Accounts/{self.account_sid}/Calls/{suffix}"

    async def call_status(self, call_sid: str) -> str | None:
        """The call's Exotel status, or None when Exotel does not know the call."""
        response = await self._request(
            "GET", self._calls_path(f"{call_sid}.json"), retry=True, op="status"
        )
        if response.status_code == 404:
            return None
        error = self._error(response)
        if error is not None:
            raise error
        call = json_body(response).get("Call")
        status = call.get("Status") if isinstance(call, dict) else None
        if not isinstance(status, str):
            raise CallControlError(response.status_code, None, "call details without a Status")
        return status

    async def hangup(self, call_sid: str) -> str:
        status = await self.call_status(call_sid)
        if status is None or status in EXOTEL_TERMINAL:
            log.info("exotel hangup %s: already ended (%s)", call_sid, status)
            return "already_ended"
        closed = await self._close(call_sid, "hangup")
        log.info("exotel hangup %s: stream %s", call_sid, "closed" if closed else "was gone")
        return "completed" if closed else "already_ended"

    async def transfer(self, call_sid: str, to_number: str, caller_id: str | None = None) -> None:
        if self.flow_url is None:
            raise CallControlError(
                501,
                "transfer_unsupported",
                "Exotel has no mid-call transfer API; dial through a flow (flow_url) whose "
                "Voicebot applet is followed by a Connect applet with a dynamic URL",
            )
        status = await self.call_status(call_sid)
        if status is None or status in EXOTEL_TERMINAL:
            raise CallControlError(404, "call_ended", f"call {call_sid} is {status or 'unknown'}")
        await self.transfers.put(call_sid, TransferTarget(to_number, caller_id))
        if not await self._close(call_sid, "transfer"):
            await self.transfers.take(call_sid)
            raise CallControlError(409, "no_stream", f"call {call_sid} has no live media stream")
        log.info("exotel transfer %s to %s via flow", call_sid, mask_number(to_number))

    async def take_transfer(self, call_sid: str) -> TransferTarget | None:
        """The pending transfer for a call (for the Connect applet's dynamic URL), removed."""
        return await self.transfers.take(call_sid)

    async def _close(self, call_sid: str, reason: str) -> bool:
        if self.close_stream is None:
            raise CallControlError(
                501,
                "no_stream_closer",
                "Exotel calls end when the bot closes the media stream; no close_stream hook set",
            )
        return await self.close_stream(call_sid, reason)

    async def dial(
        self,
        to: str,
        from_: str,
        stream_url: str,
        status_callback: str | None,
        custom_parameters: dict[str, str],
    ) -> str:
        form: list[tuple[str, str]] = [("From", to), ("CallerId", from_)]
        if self.flow_url:
            form.append(("Url", self.flow_url))
            if custom_parameters:
                custom = urlencode(custom_parameters)
                if len(custom) > EXOTEL_MAX_CUSTOM_FIELD:
                    raise ValueError(f"CustomField longer than {EXOTEL_MAX_CUSTOM_FIELD} chars")
                form.append(("CustomField", custom))
        else:
            url = _with_query(stream_url, custom_parameters)
            if len(url) > EXOTEL_MAX_STREAM_URL:
                raise ValueError(f"StreamUrl longer than {EXOTEL_MAX_STREAM_URL} chars")
            form += [("StreamUrl", url), ("StreamType", "bidirectional")]
        if status_callback:
            form.append(("StatusCallback", status_callback))
            form.extend(
                (f"StatusCallbackEvents[{i}]", event) for i, event in enumerate(self.status_events)
            )
        response = await self._request(
            "POST", self._calls_path("connect.json"), form, retry=False, op="dial"
        )
        error = self._error(response)
        if error is not None:
            log.warning("exotel dial to %s refused: %s", mask_number(to), error)
            raise error
        call = json_body(response).get("Call")
        sid = call.get("Sid") if isinstance(call, dict) else None
        if not isinstance(sid, str) or not sid:
            raise CallControlError(response.status_code, None, "dial response without a Call Sid")
        log.info("exotel dial %s to %s", sid, mask_number(to))
        return sid

    @staticmethod
    def _error(response: httpx.Response) -> CallControlError | None:
        if response.is_success:
            return None
        body = json_body(response).get("RestException")
        if not isinstance(body, dict):
            return CallControlError(response.status_code, None, response.reason_phrase or "error")
        code = body.get("Code")
        return CallControlError(
            response.status_code,
            code if isinstance(code, (int, str)) else None,
            str(body.get("Message") or response.reason_phrase or "error"),
        )


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    if not extra:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(extra.items())
    return urlunsplit(parts._replace(query=urlencode(query)))
