"""Twilio call control: every operation is a documented REST call on the Calls resource
(`/2010-04-01/Accounts/{Sid}/Calls[/{CallSid}].json`, form-encoded, HTTP Basic with the
account SID and auth token): hang up (`Status=completed`), transfer (new TwiML with a
`<Dial>`), call status, and dialling with a `<Connect><Stream>` TwiML (and asynchronous
answering-machine detection when asked for). Retries as in `media.call_control`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from xml.sax.saxutils import escape

import httpx

from media.call_control import (
    CallControlError,
    HttpCallControl,
    RetrySettings,
    json_body,
    mask_number,
    redact_url,
)

log = logging.getLogger(__name__)

TWILIO_NOT_FOUND = 20404
TWILIO_NOT_IN_PROGRESS = 21220


class TwilioCallControl(HttpCallControl):
    carrier = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str = "https://api.twilio.com",
        client: httpx.AsyncClient | None = None,
        *,
        retry: RetrySettings = RetrySettings(),
        status_events: tuple[str, ...] = ("initiated", "ringing", "answered", "completed"),
    ) -> None:
        super().__init__(base_url, (account_sid, auth_token), client, retry)
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
        status = json_body(response).get("status")
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
        sid = json_body(response).get("sid")
        if not isinstance(sid, str) or not sid:
            raise CallControlError(response.status_code, None, "dial response without a call sid")
        log.info("twilio dial %s to %s via %s", sid, mask_number(to), redact_url(stream_url))
        return sid

    @staticmethod
    def _error(response: httpx.Response) -> CallControlError | None:
        if response.is_success:
            return None
        body = json_body(response)
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
