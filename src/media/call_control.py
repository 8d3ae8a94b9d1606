"""Carrier REST call control (hang up, transfer, dial, call status): the interface and what
the carriers' clients share.

`CallControl` is what the media server and the dialer use; each carrier's client lives in
its own module (`media.twilio_control`, `media.exotel_control`) on the httpx plumbing here
(`HttpCallControl`: one client, timeouts, retries with exponential backoff on 429, 5xx and
connection errors, for the operations that may be repeated; `dial` is never retried, since a
lost response may still have placed a call). Errors are `CallControlError`. Logs show call
SIDs and masked numbers (`mask_number`) only; never credentials, tokens or stream URL queries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Self, runtime_checkable
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from ai.resilience import backoff_delay

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

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


def redact_url(url: str) -> str:
    """The URL without its query (a media token) or user info."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.hostname or "", parts.path, "", ""))


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """How a carrier's REST requests are timed and repeated: each attempt within `timeout`
    seconds; a repeatable operation up to `max_attempts` times, waiting `backoff_s` doubled
    per attempt (or the carrier's Retry-After), at most `max_backoff_s`."""

    timeout: float = 10.0
    max_attempts: int = 4
    backoff_s: float = 0.25
    max_backoff_s: float = 4.0


class HttpCallControl:
    """Shared httpx plumbing: one client, timeouts, retries, error mapping."""

    carrier = "carrier"

    def __init__(
        self,
        base_url: str,
        auth: tuple[str, str],
        client: httpx.AsyncClient | None,
        retry: RetrySettings,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._auth = httpx.BasicAuth(*auth)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(retry.timeout))
        self._timeout = httpx.Timeout(retry.timeout)
        self.max_attempts = max(1, retry.max_attempts)
        self.backoff_s = retry.backoff_s
        self.max_backoff_s = retry.max_backoff_s

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
                await self._pause(op, type(exc).__name__, attempt, attempts, None)
                continue
            if response.status_code in RETRY_STATUSES and attempt < attempts:
                await self._pause(op, f"HTTP {response.status_code}", attempt, attempts,
                                  response.headers.get("Retry-After"))
                continue
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pause(self, op: str, why: str, attempt: int, attempts: int,
                     retry_after: str | None) -> None:
        """Wait before attempt `attempt + 1` of `attempts`, saying why in the log."""
        delay = self._backoff(attempt, retry_after)
        log.info("%s %s: %s, retry %d/%d in %.2fs", self.carrier, op, why, attempt, attempts - 1, delay)
        await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_backoff_s)
        return backoff_delay(attempt - 1, self.backoff_s, self.max_backoff_s)


def json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
