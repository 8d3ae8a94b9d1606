"""A hand-driven carrier client for protocol tests: every message is explicit."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import websockets

from evaluation.personas import load_persona

#: a whole call context for the default playbook: the simulator's demo debtor
DEMO_CONTEXT: dict[str, Any] = load_persona("cooperative").context()


async def create_call(
    http: str, carrier: str = "twilio", playbook: str | None = None, **context: Any
) -> dict[str, Any]:
    """Create a call for the demo debtor (`context` overrides or adds fields)."""
    body: dict[str, Any] = {"carrier": carrier, "context": {**DEMO_CONTEXT, **context}}
    if playbook is not None:
        body["playbook"] = playbook
    async with httpx.AsyncClient(base_url=http) as client:
        resp = await client.post("/api/calls", json=body)
        assert resp.status_code == 201, resp.text
        return resp.json()


async def call_detail(http: str, call_id: str, until_ended: bool = True) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=http) as client:
        for _ in range(100):
            detail = (await client.get(f"/api/calls/{call_id}")).json()
            if not until_ended or detail["call"]["status"] in ("completed", "failed"):
                return detail
            await asyncio.sleep(0.05)
    return detail


class TwilioClient:
    def __init__(self, ws: Any, stream_sid: str = "MZ00000000000000000000000000000001") -> None:
        self.ws = ws
        self.stream_sid = stream_sid
        self.seq = 0
        self.received: list[tuple[float, dict[str, Any]]] = []

    @classmethod
    async def connect(cls, url: str) -> TwilioClient:
        return cls(await websockets.connect(url, max_size=2**22))

    async def send(self, msg: dict[str, Any]) -> None:
        self.seq += 1
        await self.ws.send(json.dumps({"sequenceNumber": str(self.seq), **msg}))

    async def connected(self) -> None:
        await self.ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))

    async def start(self, call_id: str, token: str, call_sid: str = "CA" + "2" * 32, **params: str) -> None:
        await self.send({
            "event": "start", "streamSid": self.stream_sid,
            "start": {
                "accountSid": "AC" + "1" * 32, "streamSid": self.stream_sid, "callSid": call_sid,
                "tracks": ["inbound"], "customParameters": {"call_id": call_id, "token": token, **params},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        })

    async def media(self, payload: bytes, chunk: int = 1, ts: int = 0) -> None:
        await self.send({
            "event": "media", "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(ts),
                      "payload": base64.b64encode(payload).decode()},
        })

    async def mark(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def dtmf(self, digit: str) -> None:
        await self.send({"event": "dtmf", "streamSid": self.stream_sid,
                         "dtmf": {"track": "inbound_track", "digit": digit}})

    async def stop(self) -> None:
        await self.send({"event": "stop", "streamSid": self.stream_sid,
                         "stop": {"accountSid": "AC", "callSid": "CA"}})

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        msg = json.loads(raw)
        self.received.append((asyncio.get_running_loop().time(), msg))
        return msg

    async def recv_until(self, event: str, timeout: float = 10.0) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            msg = await self.recv(max(0.01, deadline - loop.time()))
            if msg.get("event") == event:
                return msg

    async def closed(self, timeout: float = 5.0) -> tuple[int | None, str]:
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout)
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code if rcvd else None), (rcvd.reason if rcvd else "")
