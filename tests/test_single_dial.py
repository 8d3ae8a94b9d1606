"""`POST /api/calls` with `"dial": true`: the call is placed through the emulated carrier by
the campaigns' dialer, after the do-not-call and calling-window checks a lead gets."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest

from dialkit.config import Settings
from emulators.carriers import running_carriers
from emulators.fates import Fate
from tests.test_dialing import campaign_server, noon_zone, wait_for

pytestmark = pytest.mark.slow

CONTEXT = {"debtor_name": "Riley Jones", "birth_year": 1979, "balance": "310.00",
           "creditor": "Northwind Bank", "callback_number": "+14155550100"}


def midnight_zone() -> str:
    offset = -dt.datetime.now(dt.UTC).hour  # local hour 0
    offset = offset + 24 if offset < -12 else offset
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def _body(to: str, **extra: object) -> dict[str, object]:
    # a zone where the window is open whatever the hour of the test run
    return {"carrier": "twilio", "to": to, "dial": True, "caller_id": "+14155550100",
            "context": {**CONTEXT, "timezone": noon_zone()}, **extra}


async def test_dial_true_places_the_call_and_follows_its_status(base_settings: Settings) -> None:
    to, blocked = "+14155558101", "+14155558102"
    async with running_carriers(fates={to: Fate.busy()}) as carriers, \
            campaign_server(base_settings, carriers) as server:
        pool = server.state.pool
        await pool.execute("INSERT INTO dnc (phone) VALUES ($1) ON CONFLICT DO NOTHING", blocked)
        async with httpx.AsyncClient(base_url=server.http) as http:
            placed = await http.post("/api/calls", json=_body(to))
            assert placed.status_code == 201, placed.text
            body = placed.json()
            assert body["carrier_sid"] in carriers.twilio.calls
            refused = await http.post("/api/calls", json=_body(blocked))
            assert refused.status_code == 409 and "do-not-call" in refused.json()["error"]
            night = _body(to)
            night["context"] = {**CONTEXT, "timezone": midnight_zone()}
            late = await http.post("/api/calls", json=night)
            assert late.status_code == 409 and "outside_window" in late.json()["error"]
            no_from = await http.post("/api/calls", json=_body(to, caller_id=None))
            assert no_from.status_code == 400 and no_from.json()["field"] == "caller_id"
        await wait_for(pool, "SELECT state = 'busy' FROM attempts WHERE id = $1::uuid",
                       body["attempt_id"], timeout_s=20)
        row = await pool.fetchrow("SELECT campaign_id, lead_id, call_id::text FROM attempts"
                                  " WHERE id = $1::uuid", body["attempt_id"])
        assert row["campaign_id"] is None and row["lead_id"] is None
        assert row["call_id"] == body["call_id"]
        dialled = [r for r in carriers.twilio.requests
                   if r.method == "POST" and r.path.endswith("/Calls.json")]
        assert [dict(r.form)["To"] for r in dialled] == [to]
