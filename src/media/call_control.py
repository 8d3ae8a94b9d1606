"""Carrier REST call control (hang up, transfer, dial) over httpx, behind `CallControl`.

Twilio: every operation is a documented REST call on the Calls resource
(`/2010-04-01/Accounts/{Sid}/Calls[/{CallSid}].json`, form-encoded, HTTP Basic with the
account SID and auth token).

Exotel: outbound calls use the documented v1 Calls `connect` API
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
Retries (exponential backoff on 429, 5xx and connection errors) apply to hangup and transfer
only; `dial` is never retried, since a lost response may still have placed a call.
Logs show call SIDs and masked numbers only; never credentials, tokens or stream URL queries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit
from xml.sax.saxutils import escape

import httpx

from ai.resilience import backoff_delay

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TWILIO_NOT_FOUND = 20404
TWILIO_NOT_IN_PROGRESS = 21220
EXOTEL_TERMINAL = frozenset({"completed", "failed", "busy", "no-answer", "canceled"})
EXOTEL_MAX_STREAM_URL = 600
EXOTEL_MAX_CUSTOM_FIELD = 128

#: closes the live media WebSocket of a call: (call_sid, reason) -> True if one was open
StreamCloser = Callable[[str, str], Awaitable[bool]]


class CallControlError(Exception):
    """A carrier refused or failed a call-control request.

    `status` is the HTTP status (0 when no response arrived), `code` the carrier's error code.
    """

    def __init__(self, status: int, code: int | str | None, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@runtime_checkable
class CallControl(Protocol):
    async def hangup(self, call_sid: str) -> str: ...

    async def transfer(
        self, call_sid: str, to_number: str, caller_id: str | None = None
    ) -> None: ...

    async def dial(
        self,
        to: str,
        from_: str,
        stream_url: str,
        status_callback: str | None,
        custom_parameters: dict[str, str],
    ) -> str: ...

    async def aclose(self) -> None: ...


def mask_number(number: str | None) -> str:
    """`+14155550123` -> `+1******0123`: country code and the last digits only."""
    if not number:
        return "?"
    digits = "".join(ch for ch in number if ch.isdigit())
    if len(digits) < 6:
        return "*" * len(digits)
    keep = 4 if len(digits) >= 10 else 2
    if number.strip().startswith("+"):
        cc = _country_code(digits)
        return f"+{cc}{'*' * (len(digits) - len(cc) - keep)}{digits[-keep:]}"
    return f"{'*' * (len(digits) - keep)}{digits[-keep:]}"


def _country_code(digits: str) -> str:
    try:
        import phonenumbers

        parsed = phonenumbers.parse("+" + digits)
        return str(parsed.country_code)
    except Exception:  # any unparsable number: show no country code rather than guess
        return ""


def _redact_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))


class _HttpCallControl:
    """Shared httpx plumbing: one client, timeouts, retries, error mapping."""

    carrier = "carrier"

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str],
        client: httpx.AsyncClient | None,
        timeout: float,
        max_attempts: int,
        backoff_s: float,
        max_backoff_s: float,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(*auth)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout))
        self._timeout = httpx.Timeout(timeout)
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(
        self,
        method: str,
        path: str,
        data: Mapping[str, str] | list[tuple[str, str]] | None = None,
        *,
        retry: bool,
        op: str,
    ) -> httpx.Response:
        attempts = self.max_attempts if retry else 1
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        body: bytes | None = None
        if data is not None:
            # encoded here so repeated fields keep their order
            pairs = list(data.items()) if isinstance(data, Mapping) else data
            body = urlencode(pairs).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in range(1, attempts + 1):
            try:
                response = await self._client.request(
                    method,
                    url,
                    content=body,
                    auth=self._auth,
                    timeout=self._timeout,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if attempt == attempts:
                    log.warning("%s %s failed: %s", self.carrier, op, type(exc).__name__)
                    raise CallControlError(0, type(exc).__name__, f"{op}: {exc}") from exc
                delay = self._backoff(attempt, None)
                log.info(
                    "%s %s: %s, retry %d/%d in %.2fs",
                    self.carrier,
                    op,
                    type(exc).__name__,
                    attempt,
                    attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                delay = self._backoff(attempt, response.headers.get("Retry-After"))
                log.info(
                    "%s %s: HTTP %d, retry %d/%d in %.2fs",
                    self.carrier,
                    op,
                    response.status_code,
                    attempt,
                    attempts - 1,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_backoff_s)
        return backoff_delay(attempt - 1, self.backoff_s, self.max_backoff_s)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class TwilioCallControl(_HttpCallControl):
    carrier = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str = "https://api.twilio.com",
        client: httpx.AsyncClient | None = None,
        *,
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
        status_events: tuple[str, ...] = ("initiated", "ringing", "answered", "completed"),
    ) -> None:
        super().__init__(
            base_url,
            (account_sid, auth_token),
            client,
            timeout,
            max_attempts,
            backoff_s,
            max_backoff_s,
        )
        self.account_sid = account_sid
        self.status_events = status_events

    def _call_path(self, call_sid: str) -> str:
        return f"/2010-04-01/Accounts/{self.account_sid}/Calls/{call_sid}.json"

    async def call_status(self, call_sid: str) -> str | None:
        """The call's Twilio status (`GET Calls/{CallSid}.json`), or None when Twilio does
        not know the call (404, code 20404)."""
        response = await self._request("GET", self._call_path(call_sid), retry=True, op="status")
        if response.status_code == 404:
            return None
        error = self._error(response)
        if error is not None:
            raise error
        status = _json(response).get("status")
        if not isinstance(status, str):
            raise CallControlError(response.status_code, None, "call resource without a status")
        return status

    async def hangup(self, call_sid: str) -> str:
        response = await self._request(
            "POST", self._call_path(call_sid), {"Status": "completed"}, retry=True, op="hangup"
        )
        error = self._error(response)
        if error is None:
            log.info("twilio hangup %s: completed", call_sid)
            return "completed"
        if error.code in (TWILIO_NOT_FOUND, TWILIO_NOT_IN_PROGRESS):
            log.info("twilio hangup %s: already ended", call_sid)
            return "already_ended"
        raise error

    async def transfer(self, call_sid: str, to_number: str, caller_id: str | None = None) -> None:
        response = await self._request(
            "POST",
            self._call_path(call_sid),
            {"Twiml": transfer_twiml(to_number, caller_id)},
            retry=True,
            op="transfer",
        )
        error = self._error(response)
        if error is not None:
            raise error
        log.info("twilio transfer %s to %s", call_sid, mask_number(to_number))

    async def dial(
        self,
        to: str,
        from_: str,
        stream_url: str,
        status_callback: str | None,
        custom_parameters: dict[str, str],
        *,
        amd_callback: str | None = None,
    ) -> str:
        """Place a call streaming to `stream_url`; with `amd_callback`, Twilio's asynchronous
        answering-machine detection posts its verdict (AnsweredBy) there."""
        form: list[tuple[str, str]] = [
            ("To", to),
            ("From", from_),
            ("Twiml", stream_twiml(stream_url, custom_parameters)),
        ]
        if status_callback:
            form.append(("StatusCallback", status_callback))
            form.append(("StatusCallbackMethod", "POST"))
            form.extend(("StatusCallbackEvent", event) for event in self.status_events)
        if amd_callback:
            # https://www.twilio.com/docs/voice/answering-machine-detection#asynchronous-amd
            form += [("MachineDetection", "Enable"), ("AsyncAmd", "true"),
                     ("AsyncAmdStatusCallback", amd_callback),
                     ("AsyncAmdStatusCallbackMethod", "POST")]
        response = await self._request(
            "POST",
            f"/2010-04-01/Accounts/{self.account_sid}/Calls.json",
            form,
            retry=False,
            op="dial",
        )
        error = self._error(response)
        if error is not None:
            log.warning("twilio dial to %s refused: %s", mask_number(to), error)
            raise error
        sid = _json(response).get("sid")
        if not isinstance(sid, str) or not sid:
            raise CallControlError(response.status_code, None, "dial response without a call sid")
        log.info("twilio dial %s to %s via %s", sid, mask_number(to), _redact_url(stream_url))
        return sid

    @staticmethod
    def _error(response: httpx.Response) -> CallControlError | None:
        if response.is_success:
            return None
        body = _json(response)
        code = body.get("code")
        message = str(body.get("message") or response.reason_phrase or "error")
        return CallControlError(
            response.status_code, code if isinstance(code, int) else None, message
        )


def transfer_twiml(to_number: str, caller_id: str | None = None) -> str:
    attr = f' callerId="{_xml_attr(caller_id)}"' if caller_id else ""
    return f"<Response><Dial{attr}>{escape(to_number)}</Dial></Response>"


def stream_twiml(stream_url: str, custom_parameters: Mapping[str, str]) -> str:
    params = "".join(
        f'<Parameter name="{_xml_attr(k)}" value="{_xml_attr(v)}"/>'
        for k, v in custom_parameters.items()
    )
    return (
        f'<Response><Connect><Stream url="{_xml_attr(stream_url)}">{params}</Stream>'
        "</Connect></Response>"
    )


def _xml_attr(value: str) -> str:
    return escape(str(value), {'"': "&quot;"})


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


class ExotelCallControl(_HttpCallControl):
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
        timeout: float = 10.0,
        max_attempts: int = 4,
        backoff_s: float = 0.25,
        max_backoff_s: float = 4.0,
        status_events: tuple[str, ...] = ("answered", "terminal"),
        transfers: TransferStore | None = None,
    ) -> None:
        super().__init__(
            base_url or f"https://{subdomain}",
            (api_key, api_token),
            client,
            timeout,
            max_attempts,
            backoff_s,
            max_backoff_s,
        )
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
        call = _json(response).get("Call")
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
        call = _json(response).get("Call")
        sid = call.get("Sid") if isinstance(call, dict) else None
        if not isinstance(sid, str) or not sid:
            raise CallControlError(response.status_code, None, "dial response without a Call Sid")
        log.info("exotel dial %s to %s", sid, mask_number(to))
        return sid

    @staticmethod
    def _error(response: httpx.Response) -> CallControlError | None:
        if response.is_success:
            return None
        body = _json(response).get("RestException")
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
