"""What the console reads besides the campaign routes: the call history with its filters
(GET /api/calls), the live calls as server-sent events over a real media call, the
configuration status (never a secret in it), the campaign / job-queue gauges of /metrics, and
the shipped Grafana dashboard and Prometheus configuration."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
import yaml
from prometheus_client import REGISTRY
from pydantic import SecretStr

import ai.metrics
import dialkit.ops_metrics
import media.metrics
from dialkit.config import Settings
from dialkit.providers import build_providers
from dialkit.server import start_server
from tests.carrier_client import TwilioClient, create_call
from tests.conftest import RunningServer
from tests.sched_helpers import add_lead, make_campaign

SECRETS = {
    "api_key": "status-api-key-" + "a" * 24, "media_secret": "status-media-secret-" + "m" * 20,
    "twilio_auth_token": "status-twilio-token-" + "t" * 20,
    "exotel_api_key": "status-exotel-key-" + "e" * 20, "exotel_api_token": "status-exotel-token-" + "x" * 20,
    "exotel_webhook_secret": "status-exotel-hook-" + "h" * 20,
    "deepgram_api_key": "status-deepgram-" + "d" * 20, "openai_api_key": "status-openai-" + "o" * 20,
    "elevenlabs_api_key": "status-eleven-" + "l" * 20,
}


@pytest_asyncio.fixture(loop_scope="session")
async def configured(base_settings: Settings) -> AsyncIterator[RunningServer]:
    settings = base_settings.model_copy(update={
        **{k: SecretStr(v) for k, v in SECRETS.items()},
        "twilio_account_sid": "AC" + "5" * 32, "exotel_account_sid": "status-exotel-account",
        "public_url": "https://calls.example.com",
    })
    providers = await build_providers(settings, warmup=False)
    runner, port = await start_server(settings, providers, port=0)
    try:
        yield RunningServer(runner, port, settings)
    finally:
        await runner.cleanup()


async def test_config_status_names_what_is_configured_and_no_secret(configured: RunningServer) -> None:
    auth = {"Authorization": f"Bearer {SECRETS['api_key']}"}
    async with httpx.AsyncClient(base_url=configured.http) as http:
        assert (await http.get("/api/config/status")).status_code == 401
        resp = await http.get("/api/config/status", headers=auth)
        document = (await http.get("/openapi.json")).json()
    assert resp.status_code == 200, resp.text
    assert "/api/config/status" in document["paths"]
    for name, value in SECRETS.items():
        assert value not in resp.text, name
    assert configured.settings.database_url and configured.settings.database_url not in resp.text
    status = resp.json()
    assert status["providers"]["stt"] == {"name": "null", "kind": "embedded", "fallbacks": [], "credentials": True}
    assert status["providers"]["tts"]["name"] == "tone" and status["providers"]["tts"]["kind"] == "embedded"
    assert status["carriers"]["twilio"] == {"credentials": True, "enabled": True, "webhook_secret": None}
    assert status["carriers"]["exotel"]["credentials"] and status["carriers"]["exotel"]["webhook_secret"]
    assert status["database"]["kind"] == "external" and status["database"]["version"]
    assert status["live_state"]["kind"] == "redis"
    assert status["jobs"]["enabled"] is False  # run_jobs off in the test settings
    assert status["api_key_set"] and status["media_secret_set"]
    assert status["public_url"] == "https://calls.example.com"
    assert status["default_playbook"] in status["playbooks"]
    assert status["versions"]["dialkit"] and status["versions"]["python"].startswith("3.")


async def _events(resp: httpx.Response, into: asyncio.Queue[list[dict[str, Any]]]) -> None:
    name, data = None, []
    async for line in resp.aiter_lines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "" and data:
            if name == "calls":
                await into.put(json.loads("\n".join(data)))
            name, data = None, []


async def _until(queue: asyncio.Queue[list[dict[str, Any]]], check: Any, timeout_s: float = 20) -> list[dict[str, Any]]:
    async with asyncio.timeout(timeout_s):
        while True:
            calls = await queue.get()
            if check(calls):
                return calls


async def test_live_calls_arrive_as_server_sent_events(light_server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=light_server.http, timeout=30) as http:
        refused = await http.get("/api/calls/live/events")
        assert refused.status_code == 406 and "text/event-stream" in refused.json()["error"]
        document = (await http.get("/openapi.json")).json()
        assert "text/event-stream" in json.dumps(document["paths"]["/api/calls/live/events"])
        queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        async with http.stream("GET", "/api/calls/live/events",
                               headers={"Accept": "text/event-stream"}) as resp:
            assert resp.status_code == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            reader = asyncio.create_task(_events(resp, queue))
            try:
                created = await create_call(light_server.http, debtor_name="Ana Lima")
                cid = created["call_id"]
                client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
                await client.connected()
                await client.start(cid, created["token"])
                mark = await client.recv_until("mark", 10)
                await client.mark(mark["mark"]["name"])
                calls = await _until(queue, lambda cs: any(
                    c["call_id"] == cid and c.get("turns", 0) >= 1 for c in cs))
                entry = next(c for c in calls if c["call_id"] == cid)
                assert entry["status"] == "in_progress" and entry["carrier"] == "twilio"
                assert entry["last_speaker"] == "agent" and "Ana Lima" in entry["last_text"]
                assert entry["campaign_id"] is None and entry["started_at"]
                await client.stop()
                await _until(queue, lambda cs: all(c["call_id"] != cid for c in cs))
            finally:
                reader.cancel()


async def test_the_call_history_filters_and_pages(light_server: RunningServer) -> None:
    pool = light_server.state.pool
    made = [(await create_call(light_server.http))["call_id"] for _ in range(3)]
    await pool.execute("UPDATE calls SET status = 'completed' WHERE id = $1::uuid", made[0])
    await pool.execute("INSERT INTO call_outcomes (call_id, outcome, ptp_amount) VALUES ($1::uuid, 'promise_to_pay', 80)",
                       made[0])
    cid = await make_campaign(pool, status="draft", playbook="collections-default@1.0")
    lead = await add_lead(pool, cid)
    await pool.execute("INSERT INTO attempts (campaign_id, lead_id, call_id, carrier, state)"
                       " VALUES ($1, $2, $3::uuid, 'twilio', 'completed')", cid, lead, made[1])
    try:
        async with httpx.AsyncClient(base_url=light_server.http) as http:
            first = (await http.get("/api/calls", params={"limit": 2})).json()
            assert len(first["items"]) == 2 and first["next_cursor"]
            assert [c["id"] for c in first["items"]] == [made[2], made[1]]  # newest first
            second = (await http.get("/api/calls", params={"limit": 2, "cursor": first["next_cursor"]})).json()
            assert second["items"][0]["id"] == made[0]
            promised = (await http.get("/api/calls", params={"outcome": "promise_to_pay"})).json()["items"]
            assert made[0] in [c["id"] for c in promised]
            assert all(c["outcome"] == "promise_to_pay" for c in promised)
            assert next(c for c in promised if c["id"] == made[0])["ptp_amount"] == 80.0
            dialled = (await http.get("/api/calls", params={"campaign_id": str(cid)})).json()["items"]
            assert [c["id"] for c in dialled] == [made[1]] and dialled[0]["campaign_name"].startswith("test ")
            created = (await http.get("/api/calls", params={"status": "created", "limit": 500})).json()["items"]
            assert made[2] in [c["id"] for c in created] and made[0] not in [c["id"] for c in created]
            none = (await http.get("/api/calls", params={"from": "1999-01-01", "to": "1999-01-02"})).json()
            assert none == {"items": [], "next_cursor": None}
            bad = await http.get("/api/calls", params={"cursor": "nonsense"})
            assert bad.status_code == 400 and bad.json()["field"] == "cursor"
            reversed_range = await http.get("/api/calls", params={"from": "2026-02-02", "to": "2026-02-01"})
            assert reversed_range.status_code == 422
            assert (await http.get("/api/calls", params={"outcome": "maybe"})).status_code == 400
    finally:
        await pool.execute("DELETE FROM campaigns WHERE id = $1", cid)
        await pool.execute("DELETE FROM calls WHERE id = ANY($1::uuid[])", made)


async def test_metrics_carry_campaign_progress_and_job_queue_depth(light_server: RunningServer) -> None:
    pool = light_server.state.pool
    cid = await make_campaign(pool, status="paused", playbook="collections-default@1.0")
    for i in range(3):
        await add_lead(pool, cid, phone=f"+1415555{7400 + i}")
    await pool.execute("UPDATE leads SET state = 'done' WHERE id = (SELECT min(id) FROM leads WHERE campaign_id = $1)", cid)
    try:
        async with httpx.AsyncClient(base_url=light_server.http) as http:
            text = (await http.get("/metrics")).text
        name = await pool.fetchval("SELECT name FROM campaigns WHERE id = $1", cid)
        labels = f'campaign="{name}",campaign_id="{cid}"'  # the text format sorts them
        assert f'dialkit_campaign_leads{{{labels},state="pending",status="paused"}} 2.0' in text
        assert f'dialkit_campaign_leads{{{labels},state="done",status="paused"}} 1.0' in text
        assert f'dialkit_campaign_live_attempts{{{labels},status="paused"}} 0.0' in text
        assert "# TYPE dialkit_job_queue_jobs gauge" in text
        assert "dialkit_metrics_database_errors 0.0" in text
    finally:
        await pool.execute("DELETE FROM campaigns WHERE id = $1", cid)
    async with httpx.AsyncClient(base_url=light_server.http) as http:
        assert str(cid) not in (await http.get("/metrics")).text  # a campaign gone drops its series


def test_the_dashboard_reads_metrics_the_server_exports() -> None:
    root = Path(__file__).resolve().parents[1]
    dashboard = json.loads((root / "ops/grafana/dialkit.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {re.sub(r"_(bucket|total)$", "", m) for e in exprs for m in re.findall(r"dialkit_\w+", e)}
    assert ai.metrics and media.metrics and dialkit.ops_metrics  # every metric module registered
    exported = {m.name for m in REGISTRY.collect()}
    assert used and used <= exported, used - exported
    for needed in ("dialkit_campaign_leads", "dialkit_job_queue_jobs", "dialkit_provider_fallbacks",
                   "dialkit_voice_to_voice_seconds", "dialkit_media_late_chunks", "dialkit_active_calls"):
        assert needed in used, needed
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    assert "./ops/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in compose["prometheus"]["volumes"]
    assert any("dialkit.json" in v for v in compose["grafana"]["volumes"])
    scrape = yaml.safe_load((root / "ops/prometheus.yml").read_text())["scrape_configs"][0]
    assert scrape["static_configs"][0]["targets"] == ["dialkit:8080"] and scrape["metrics_path"] == "/metrics"
    provisioned = yaml.safe_load((root / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert provisioned["datasources"][0]["uid"] == "prometheus"
    assert {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])} == {"prometheus"}
