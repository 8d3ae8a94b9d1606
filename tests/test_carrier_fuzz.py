"""Seeded fuzzing of both carriers' media WebSockets over real sockets, with a healthy call
running alongside.

More than 10,000 generated messages (Twilio and Exotel shapes with mutated types and values,
missing keys, unicode, huge numbers, bad base64, out-of-order events), on connections that
never authenticate and on connections that `start` a real call with its real token. Every
connection must be closed by the server with a code other than 1011 and a reason; nothing
may log a traceback or an error; and an echo call running throughout keeps receiving its
audio without a stall.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import json
import logging
import random
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import structlog
import websockets

from tests.carrier_client import DEMO_CONTEXT

SEED = 20261201
TARGET_MESSAGES = 10_500
WORKERS = 6
#: a stall detector for the healthy call, not a latency target: a caller hears a dropout
#: long before this, and a parse that blocked the loop (a huge number, say) shows as seconds
STALL_S = 1.0

#: aiohttp closes a frame over max_msg_size itself, with 1009 and no reason, before the
#: session sees it; giving it a reason needs the media endpoint's WebSocketResponse
REASONLESS = {1009}

SUP2 = "\u00b2"
EVIL: list[Any] = [
    None, True, False, 0, -1, 1.5, -0.0, 1e308, 2**63, 2**64 + 1, "", " ", SUP2, SUP2 + "k",
    "\u0663\u0664", "\U0001d7d8", "9" * 5000, "1" * 13, " 12 ", "0x10", "1e3", "-5", "\x00",
    "\x00abc", "\ud800", "\u202eMZ", "\n", "a" * 3000, "MZ" + "1" * 32, "+14155550123",
    "8000", 8000, "16000", 16000, "16k", "128kbps", "audio/x-mulaw", "audio/x-raw", "inbound",
    "#", "*", "D", "12", 7, [], [1, 2], ["inbound", 5], {}, {"a": 1}, {"name": {"x": [1]}},
]
BAD_B64 = ["!!!", "AAA", "A", "====", "AA==AA==", "\u00e9t\u00e9", "QUJD\n", 5, None, [], "A" * 4097]

#: nesting around orjson's limit of 1,024 levels, as raw text (too deep to build as objects)
DEEP = ['{"event":"media","media":' + "[" * n + "]" * n + "}" for n in (200, 1023, 1025, 5000)]


@dataclass
class Stats:
    messages: int = 0
    connections: int = 0
    started: int = 0
    closes: Counter[int | None] = field(default_factory=Counter)
    bad_closes: list[tuple[int | None, str, str]] = field(default_factory=list)


# ---- message shapes ------------------------------------------------------------------------


def twilio_messages(call_id: str, token: str, sid: str) -> dict[str, dict[str, Any]]:
    payload = base64.b64encode(b"\xff" * 160).decode()
    return {
        "connected": {"event": "connected", "protocol": "Call", "version": "1.0.0"},
        "start": {"event": "start", "sequenceNumber": "1", "streamSid": sid, "start": {
            "accountSid": "AC" + "1" * 32, "streamSid": sid, "callSid": "CA" + "2" * 32,
            "tracks": ["inbound"], "customParameters": {"call_id": call_id, "token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}},
        "media": {"event": "media", "sequenceNumber": "3", "streamSid": sid, "media": {
            "track": "inbound", "chunk": "2", "timestamp": "20", "payload": payload}},
        "mark": {"event": "mark", "sequenceNumber": "4", "streamSid": sid,
                 "mark": {"name": "not-ours"}},
        "dtmf": {"event": "dtmf", "sequenceNumber": "5", "streamSid": sid,
                 "dtmf": {"track": "inbound_track", "digit": "5"}},
        "stop": {"event": "stop", "sequenceNumber": "6", "streamSid": sid,
                 "stop": {"accountSid": "AC1", "callSid": "CA1"}},
    }


def exotel_messages(call_id: str, token: str, sid: str) -> dict[str, dict[str, Any]]:
    payload = base64.b64encode(b"\x00\x00" * 800).decode()
    return {
        "connected": {"event": "connected"},
        "start": {"event": "start", "sequence_number": 1, "stream_sid": sid, "start": {
            "stream_sid": sid, "call_sid": "c" * 32, "account_sid": "acct", "from": "+919876543210",
            "to": "08047091234", "custom_parameters": {"call_id": call_id, "token": token},
            "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}},
        "media": {"event": "media", "sequence_number": 3, "stream_sid": sid, "media": {
            "chunk": 2, "timestamp": "100", "payload": payload}},
        "mark": {"event": "mark", "sequence_number": 4, "stream_sid": sid,
                 "mark": {"name": "not-ours"}},
        "dtmf": {"event": "dtmf", "sequence_number": 5, "stream_sid": sid,
                 "dtmf": {"digit": "5", "duration": "200"}},
        "stop": {"event": "stop", "sequence_number": 6, "stream_sid": sid,
                 "stop": {"reason": "callended"}},
    }


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    return out


def _set(msg: dict[str, Any], path: tuple[Any, ...], value: Any, delete: bool = False) -> None:
    node: Any = msg
    for k in path[:-1]:
        node = node.get(k) if isinstance(node, dict) else None
    if not isinstance(node, dict):
        return  # an earlier mutation replaced this branch
    if delete:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def mutate(rng: random.Random, msg: dict[str, Any], other: dict[str, Any]) -> str | bytes:
    """One hostile variant of `msg` (sometimes not even JSON)."""
    kind = rng.random()
    m = copy.deepcopy(msg)
    if kind < 0.45:
        _set(m, rng.choice(_paths(m)), copy.deepcopy(rng.choice(EVIL)))
    elif kind < 0.55:
        _set(m, rng.choice(_paths(m)), None, delete=True)
    elif kind < 0.62 and "media" in m:
        m["media"]["payload"] = rng.choice(BAD_B64)
    elif kind < 0.68:
        m["event"] = rng.choice(["Media", "START", "teleport", "clear", "", SUP2, 5, None, ["media"]])
    elif kind < 0.74:
        m.update(copy.deepcopy(other))  # the other carrier's field names mixed in
    elif kind < 0.80:
        for path in rng.sample(_paths(m), min(3, len(_paths(m)))):
            _set(m, path, copy.deepcopy(rng.choice(EVIL)))
    elif kind < 0.85:
        text = json.dumps(m)
        return text[: rng.randrange(len(text))]
    elif kind < 0.89:
        return rng.choice(["", "null", "[]", '"media"', "{", "}{", "NaN", "{\"event\":NaN}",
                           "1e999", "[" * 2000, json.dumps([m]), *DEEP])
    elif kind < 0.92:
        return json.dumps(m).encode()  # a binary frame
    elif kind < 0.95:
        m["padding"] = "x" * rng.choice([1000, 60_000, 70_000])  # around the 64 KiB limit
    else:
        m[rng.choice(["extra", SUP2, "\x00", "streamSid", "stream_sid"])] = rng.choice(EVIL)
    text = json.dumps(m, ensure_ascii=rng.random() < 0.5)
    try:
        text.encode()
    except UnicodeEncodeError:  # a lone surrogate cannot go out raw, only escaped
        text = json.dumps(m)
    return text


def plan(rng: random.Random, carrier: str, shapes: dict[str, dict[str, Any]],
         other: dict[str, Any], authenticated: bool) -> list[str | bytes]:
    """Messages for one connection: benign traffic with hostile messages mixed in, in any
    order, ending with one the server must refuse."""
    out: list[str | bytes] = []
    if rng.random() < 0.7:
        out.append(json.dumps(shapes["connected"]))
    if authenticated:
        out.append(json.dumps(shapes["start"]))
    benign = ["media", "media", "media", "mark", "connected"] if authenticated else [
        "connected", "mark"]
    for _ in range(rng.randrange(5, 40)):
        if rng.random() < 0.2:
            name = rng.choice(list(shapes))
            if not authenticated and name == "start":
                out.append(mutate(rng, shapes["start"], other))  # a forged or broken start
            else:
                out.append(mutate(rng, shapes[name], other))
        else:
            out.append(json.dumps(shapes[rng.choice(benign)]))
        if rng.random() < 0.01:
            out.append(json.dumps(shapes[rng.choice(["start", "media", "dtmf"])]))  # out of order
    out.append(rng.choice(['{"event":"teleport"}', "{not json", b"\x00binary",
                           json.dumps({"event": "media"})]))
    return out


# ---- the run --------------------------------------------------------------------------------


async def connection(url: str, messages: list[str | bytes], stats: Stats) -> None:
    ws = await websockets.connect(url, max_size=2**22, open_timeout=10, close_timeout=10)
    stats.connections += 1

    async def drain() -> None:
        try:
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass

    reader = asyncio.ensure_future(drain())
    try:
        for m in messages:
            await ws.send(m)
            stats.messages += 1
    except websockets.ConnectionClosed:
        pass
    await asyncio.wait_for(reader, 30)
    rcvd = ws.protocol.close_rcvd
    code, reason = (rcvd.code, rcvd.reason) if rcvd else (None, "")
    stats.closes[code] += 1
    if code in (None, 1006, 1011) or (not reason and code not in REASONLESS):
        stats.bad_closes.append((code, reason, url))


async def healthy_echo_call(http: httpx.AsyncClient, ws_base: str, stop: asyncio.Event
                            ) -> tuple[int, int, float]:
    """An echo call paced in real time: frames sent, frames echoed back, worst echo gap."""
    created = (await http.post("/api/calls", json={
        "carrier": "twilio", "playbook": "echo@1.0", "context": DEMO_CONTEXT})).json()
    sid = "MZ" + "7" * 32
    shapes = twilio_messages(created["call_id"], created["token"], sid)
    ws = await websockets.connect(f"{ws_base}/media/twilio", max_size=2**22)
    loop = asyncio.get_running_loop()
    arrivals: list[float] = []

    async def receive() -> None:
        async for raw in ws:
            if json.loads(raw).get("event") == "media":
                arrivals.append(loop.time())

    reader = asyncio.ensure_future(receive())
    await ws.send(json.dumps(shapes["start"]))
    sent = 0
    t0 = loop.time()
    while not stop.is_set():
        await asyncio.sleep(max(0.0, t0 + sent * 0.02 - loop.time()))
        await ws.send(json.dumps(shapes["media"]))
        sent += 1
    await asyncio.sleep(1.0)  # the last frames' echo, one echo delay later
    await ws.close()
    reader.cancel()
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return sent, len(arrivals), max(gaps, default=float("inf"))


def _exception_text(_logger: Any, _name: str, event: Any) -> Any:
    if event.get("exc_info"):  # keep what went wrong, for the assertion message
        event["exception"] = traceback.format_exc(limit=-3)
    return event


async def test_fuzzed_carrier_messages_never_reach_a_traceback(
    light_server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(SEED)
    stats = Stats()
    stop = asyncio.Event()
    endpoints = {
        "twilio": ["/media/twilio", "/media", "/media?carrier=twilio"],
        "exotel": ["/media/exotel", "/media/exotel?sample-rate=16000", "/media?sample-rate=8000",
                   "/media?carrier=exotel", "/media/exotel?sample-rate=%C2%B2",
                   "/media?sample-rate=" + "9" * 50],
    }
    with structlog.testing.capture_logs([_exception_text]) as events:
        async with httpx.AsyncClient(base_url=light_server.http, timeout=30) as http:
            healthy = asyncio.ensure_future(healthy_echo_call(http, light_server.ws, stop))

            async def worker(wrng: random.Random) -> None:
                while stats.messages < TARGET_MESSAGES:
                    carrier = wrng.choice(["twilio", "exotel"])
                    authenticated = wrng.random() < 0.35
                    if authenticated:
                        resp = await http.post("/api/calls", json={
                            "carrier": carrier, "context": DEMO_CONTEXT})
                        assert resp.status_code == 201, resp.text
                        created = resp.json()
                        stats.started += 1
                    else:
                        created = {"call_id": "6f1c3a52-3a4c-4d4b-9a55-0a6b2d0e9f11",
                                   "token": wrng.choice(["", "x.y", "forged", SUP2])}
                    sid = wrng.choice(["MZ" + "3" * 32, "ex" + "4" * 30])
                    shapes = (twilio_messages if carrier == "twilio" else exotel_messages)(
                        created["call_id"], created["token"], sid)
                    other = (exotel_messages if carrier == "twilio" else twilio_messages)(
                        "x", "y", sid)["media"]
                    url = light_server.ws + wrng.choice(endpoints[carrier])
                    await connection(url, plan(wrng, carrier, shapes, other, authenticated),
                                     stats)

            await asyncio.gather(*(worker(random.Random(rng.random())) for _ in range(WORKERS)))
            stop.set()
            sent, echoed, worst_gap = await healthy
    print(f"fuzz: {stats.messages} messages on {stats.connections} connections "
          f"({stats.started} started calls); closes {dict(stats.closes)}; "
          f"healthy echo: {sent} sent, {echoed} echoed, worst gap {worst_gap * 1000:.0f} ms")
    assert stats.messages >= 10_000
    assert not stats.bad_closes, stats.bad_closes[:5]
    assert 1011 not in stats.closes
    for record in caplog.records:
        events.append({"event": record.getMessage(), "log_level": record.levelname.lower(),
                       "exc_info": record.exc_info, "logger": record.name})
    bad = [e for e in events if e.get("exc_info") or e.get("log_level") in ("error", "critical")]
    assert not bad, "\n".join(f"{e.get('event')}: {e.get('exception', e)}" for e in bad[:5])
    # the healthy call's audio kept coming back while all of that went on
    assert echoed >= sent - 60
    assert worst_gap < STALL_S
