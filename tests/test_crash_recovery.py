"""SIGKILL `dialkit serve` in the middle of a campaign and start it again: no lead is dialled
twice (the carrier emulator's request log), the attempts and calls in flight are reconciled
from the carrier's own status, and outcomes recorded before the crash still reach the
campaign's webhook."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from campaigns.models import CampaignSettings, RetryRule, RetryRules
from dialkit import db
from emulators.carrier_line import QuietLine
from emulators.carriers import Carriers, running_carriers
from emulators.fates import Fate
from tests.sched_helpers import add_lead, make_campaign, quiesce
from tests.test_dialing import CUSTOM, dials_by_number, free_port, noon_zone

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def serve(database_url: str, carriers: Carriers, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
        "DATABASE_URL": database_url,
        "DIALKIT_PORT": str(port),
        "DIALKIT_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "DIALKIT_DATA_DIR": str(data_dir),
        "DIALKIT_MEDIA_SECRET": "crash-test-media-secret",
        "DIALKIT_STT": "null",
        "DIALKIT_TTS": "tone",
        "DIALKIT_SCHEDULER_TICK_S": "1",
        "DIALKIT_RECONCILE_S": "2",
        "DIALKIT_ORPHAN_CALL_AFTER_S": "3",
        "DIALKIT_ATTEMPT_LOST_AFTER_S": "5",
        "DIALKIT_LOG_JSON": "true",
        "TWILIO_ACCOUNT_SID": carriers.twilio.account_sid,
        "TWILIO_AUTH_TOKEN": carriers.twilio.auth_token,
        "DIALKIT_TWILIO_API_BASE": carriers.twilio.base_url,
    }
    env.pop("REDIS_URL", None)
    log = (data_dir / "serve.log").open("ab")
    return subprocess.Popen([sys.executable, "-c", "from dialkit.cli import main; main()", "serve"],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


async def healthy(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "dialkit serve exited"
            try:
                if (await http.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("dialkit serve did not become healthy")


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append({"key": request.headers.get("Idempotency-Key"), **await request.json()})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/hook", got
    finally:
        await runner.cleanup()


async def until(pool: asyncpg.Pool, query: str, *args: Any, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not await pool.fetchval(query, *args):
        assert time.monotonic() < deadline, f"timed out waiting for: {query}"
        await asyncio.sleep(0.2)


async def test_sigkill_mid_campaign_then_restart(database_url: str, tmp_path: Path) -> None:
    phones = [f"+1415556{n:04d}" for n in range(2000, 2007)]
    # long calls, so several are in flight when the server dies
    fates = {p: Fate.answered(lambda: QuietLine(hang_up_after_s=30.0), ring_s=0.3) for p in phones}
    once = RetryRule(delay_minutes=60, max_retries=0)
    pool = await db.create_pool(database_url, max_size=4)
    await db.migrate(pool)
    await quiesce(pool)
    port = free_port()
    async with running_carriers(fates=fates) as carriers, webhook_receiver() as (hook_url, got):
        proc = serve(database_url, carriers, port, tmp_path)
        try:
            await healthy(port, proc)
            cid = await make_campaign(
                pool, max_concurrent=4, playbook="collections-default@1.0", webhook_url=hook_url,
                settings=CampaignSettings(retry=RetryRules(no_answer=once, busy=once, failed=once,
                                                           voicemail=once)))
            for phone in phones:
                await add_lead(pool, cid, phone=phone, custom=CUSTOM, zones=[noon_zone()])
            # four calls answered and streaming to the server
            await until(pool, "SELECT count(*) >= 4 FROM calls c JOIN attempts a ON a.call_id = c.id"
                        " WHERE a.campaign_id = $1 AND c.status = 'in_progress'", cid)
            live = await pool.fetch(
                "SELECT a.id, a.call_id, a.lead_id FROM attempts a JOIN calls c ON c.id = a.call_id"
                " WHERE a.campaign_id = $1 AND c.status = 'in_progress' ORDER BY a.created_at",
                cid)
            # what the conversation engine had recorded on one of them when the server died
            promised = live[0]
            await pool.execute(
                "INSERT INTO call_outcomes (call_id, outcome, right_party, ptp_amount, ptp_date)"
                " VALUES ($1, 'promise_to_pay', true, 120.00, '2026-12-24')", promised["call_id"])
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        in_flight = {r["id"] for r in await pool.fetch(
            "SELECT id FROM attempts WHERE campaign_id = $1"
            " AND state IN ('queued', 'dialing', 'ringing', 'in_progress')", cid)}
        assert in_flight, "nothing was in flight at the crash"
        await asyncio.sleep(1.0)  # the carrier notices the dropped streams; callbacks get lost

        proc = serve(database_url, carriers, port, tmp_path)
        try:
            await healthy(port, proc)
            await until(pool, "SELECT status = 'completed' FROM campaigns WHERE id = $1", cid,
                        timeout_s=150)
            await until(pool, "SELECT count(*) = 0 FROM outbox WHERE campaign_id = $1"
                        " AND delivered_at IS NULL", cid, timeout_s=30)
        finally:
            proc.terminate()
            proc.wait(20)
        # no lead dialled twice, every lead dialled once
        dials = dials_by_number(carriers)
        assert set(dials) == set(phones) and max(dials.values()) == 1, dials
        rows = await pool.fetch("SELECT id, state, error, settled_at FROM attempts"
                                " WHERE campaign_id = $1", cid)
        assert len(rows) == len(phones)
        assert all(r["settled_at"] is not None for r in rows)
        reconciled = [r for r in rows if r["id"] in in_flight]
        assert reconciled and all(r["state"] in ("completed", "failed") for r in reconciled)
        # the calls the dead server was running were closed by the reconciliation
        assert not await pool.fetchval(
            "SELECT count(*) FROM calls c JOIN attempts a ON a.call_id = c.id"
            " WHERE a.campaign_id = $1 AND c.status = 'in_progress'", cid)
        orphans = await pool.fetch("SELECT status, failure_reason FROM calls WHERE id = ANY($1)",
                                   [r["call_id"] for r in live])
        assert orphans and all(o["status"] == "failed" and
                               o["failure_reason"] == "the node running the call stopped"
                               for o in orphans)
        # the promise recorded before the crash: the lead is done and its webhook went out
        state = await pool.fetchval("SELECT state FROM leads WHERE id = $1", promised["lead_id"])
        assert state == "done"
        assert [g["event"] for g in got] == ["promise_to_pay"]
        assert got[0]["key"] == f"{promised['call_id']}:promise_to_pay"
        assert uuid.UUID(got[0]["attempt_id"]) == promised["id"]
    await pool.close()
