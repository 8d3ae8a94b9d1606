"""GET /api/calls/{id}/transcript over a real socket and database: a real call's greeting,
then turns as the session records them, downloaded as JSON, text and CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid

import httpx

from ai.conversation.commands import RecordTurn
from tests.carrier_client import TwilioClient, call_detail, create_call
from tests.conftest import RunningServer

TURNS = [
    RecordTurn(seq=2, speaker="caller", text="=HYPERLINK(\"http://x\", \"pay\")", start_ms=61_250, end_ms=63_000),
    RecordTurn(seq=3, speaker="agent", text="Thanks, Ann.\nA plan of \"3\", okay?", start_ms=63_400,
               end_ms=66_050, interrupted=True),
    RecordTurn(seq=4, speaker="caller", text="+1 is my code, -5 my mood, @me", start_ms=66_100, end_ms=67_000),
]


async def _call_with_turns(server: RunningServer) -> str:
    created = await create_call(server.http)
    client = await TwilioClient.connect(f"{server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    mark = await client.recv_until("mark", 10)
    await client.mark(mark["mark"]["name"])
    await asyncio.sleep(0.2)
    await client.stop()
    await client.closed()
    await call_detail(server.http, created["call_id"])
    for turn in TURNS:
        await server.state.store.add_turn(created["call_id"], turn)
    return str(created["call_id"])


async def test_transcript_in_three_formats(light_server: RunningServer) -> None:
    call_id = await _call_with_turns(light_server)
    path = f"/api/calls/{call_id}/transcript"
    async with httpx.AsyncClient(base_url=light_server.http) as c:
        as_json = await c.get(path)
        as_default = await c.get(path)
        as_text = await c.get(path, params={"format": "text"})
        as_csv = await c.get(path, params={"format": "csv"})
    assert as_json.status_code == 200 and as_json.headers["content-type"].startswith("application/json")
    assert as_json.headers["content-disposition"] == f'attachment; filename="call-{call_id}-transcript.json"'
    assert as_default.json() == as_json.json()
    turns = as_json.json()["turns"]
    assert as_json.json()["call_id"] == call_id
    assert [t["seq"] for t in turns] == [1, 2, 3, 4] and turns[0]["speaker"] == "agent"
    assert turns[0]["text"].startswith("Hello, this is Alex calling")
    assert turns[2] == {"seq": 3, "speaker": "agent", "text": TURNS[1].text, "start_ms": 63_400,
                        "end_ms": 66_050, "interrupted": True}

    assert as_text.headers["content-type"] == "text/plain; charset=utf-8"
    assert as_text.headers["content-disposition"].endswith('transcript.txt"')
    lines = as_text.text.splitlines()
    assert len(lines) == 4 and lines[0].startswith("[00:00.") and "] agent: Hello, this is Alex" in lines[0]
    assert lines[1:] == [
        '[01:01.2–01:03.0] caller: =HYPERLINK("http://x", "pay")',
        '[01:03.4–01:06.0] agent: Thanks, Ann. A plan of "3", okay? (interrupted)',
        "[01:06.1–01:07.0] caller: +1 is my code, -5 my mood, @me",
    ]

    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["content-disposition"].endswith('transcript.csv"')
    rows = list(csv.reader(io.StringIO(as_csv.text)))
    assert rows[0] == ["seq", "start_ms", "end_ms", "speaker", "text", "interrupted"]
    assert rows[2:] == [
        ["2", "61250", "63000", "caller", "'=HYPERLINK(\"http://x\", \"pay\")", "false"],
        ["3", "63400", "66050", "agent", TURNS[1].text, "true"],
        ["4", "66100", "67000", "caller", "'+1 is my code, -5 my mood, @me", "false"],
    ]


async def test_transcript_of_an_unknown_call_or_format(light_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=light_server.http) as c:
        missing = await c.get(f"/api/calls/{uuid.uuid4()}/transcript")
        not_uuid = await c.get("/api/calls/nope/transcript", params={"format": "csv"})
        created = await create_call(light_server.http)
        empty = await c.get(f"/api/calls/{created['call_id']}/transcript", params={"format": "csv"})
        bad = await c.get(f"/api/calls/{created['call_id']}/transcript", params={"format": "pdf"})
    assert missing.status_code == 404 and missing.json() == {"error": "no such call"}
    assert not_uuid.status_code == 400 and not_uuid.json()["field"] == "call_id"
    assert empty.status_code == 200 and empty.text == "seq,start_ms,end_ms,speaker,text,interrupted\r\n"
    assert bad.status_code == 400 and bad.json()["field"] == "format"
    assert "format: Input should be 'json', 'text' or 'csv'" == bad.json()["error"]
