"""GET /api/audit and GET /api/campaigns/{id}/webhooks over a real socket: filters,
cursor paging, delivery states with their last error, and clear 4xx for bad input."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest_asyncio
from aiohttp import web
from pydantic import SecretStr

from campaigns import audit, outbox
from dialkit.config import Settings
from dialkit.providers import Providers
from dialkit.server import start_server
from dialkit.state import STATE
from tests.outbox_receiver import insert_campaign


class Api:
    def __init__(self, runner: web.AppRunner, port: int) -> None:
        self.runner = runner
        self.url = f"http://127.0.0.1:{port}"

    @property
    def pool(self):  # type: ignore[no-untyped-def]
        return self.runner.app[STATE].pool


async def _serve(settings: Settings, providers: Providers) -> Api:
    return Api(*await start_server(settings, providers, port=0))


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def api(base_settings: Settings, light_providers: Providers) -> AsyncIterator[Api]:
    server = await _serve(base_settings, light_providers)
    yield server
    await server.runner.cleanup()


async def _get(api: Api, path: str, **params: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url) as c:
        return await c.get(path, params={k: str(v) for k, v in params.items()})


async def test_audit_entries_filtered_and_paged(api: Api) -> None:
    subject = f"api-{uuid.uuid4().hex[:8]}"
    for i in range(5):
        await audit.record(api.pool, "key:ops", audit.CAMPAIGN_STATE, "campaign", subject, {"i": i})
    await audit.record(api.pool, "key:ops", audit.API_WRITE, "campaign", subject, {"i": 5})

    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"subject_type": "campaign", "subject_id": subject,
                                     "action": "campaign_state", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        resp = await _get(api, "/api/audit", **params)
        assert resp.status_code == 200, resp.text
        page = resp.json()
        seen += [item["data"]["i"] for item in page["items"]]
        assert all(item["actor"] == "key:ops" for item in page["items"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == [4, 3, 2, 1, 0]

    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    resp = await _get(api, "/api/audit", subject_id=subject, since=future)
    assert resp.json() == {"items": [], "next": None}


async def test_bad_audit_filters_are_refused_with_their_field(api: Api) -> None:
    cases = [
        ({"action": "dialled"}, "action"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-12-01T00:00:00"}, "since"),  # no UTC offset: ambiguous
        ({"limit": "0"}, "limit"),
        ({"cursor": "not-ours"}, "cursor"),
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, None),
    ]
    for params, field in cases:
        resp = await _get(api, "/api/audit", **params)
        assert resp.status_code == 400, (params, resp.text)
        body = resp.json()
        assert body["error"]
        if field is not None:
            assert body["field"] == field, body


async def test_webhook_deliveries_with_their_state(api: Api) -> None:
    campaign = await insert_campaign(api.pool, webhook_url="http://127.0.0.1:9/hook", secret="s")
    for n in range(3):
        assert await outbox.enqueue(api.pool, campaign, "callback", f"{campaign}:{n}",
                                    {"event": "callback", "n": n}, "http://127.0.0.1:9/hook")
    # one delivered, one given up, one still pending
    await api.pool.execute(
        "UPDATE outbox SET delivered_at = now(), attempts = 1, last_status = 204"
        " WHERE idempotency_key = $1", f"{campaign}:0")
    await api.pool.execute(
        "UPDATE outbox SET given_up_at = now(), attempts = 12, last_status = 500,"
        " last_error = 'HTTP 500: boom' WHERE idempotency_key = $1", f"{campaign}:1")

    resp = await _get(api, f"/api/campaigns/{campaign}/webhooks")
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [(i["idempotency_key"].split(":")[-1], i["state"]) for i in items] == [
        ("2", "pending"), ("1", "given_up"), ("0", "delivered")]
    given_up = items[1]
    assert given_up["last_error"] == "HTTP 500: boom" and given_up["attempts"] == 12
    assert given_up["next_at"] is None and items[0]["next_at"] is not None
    assert items[0]["payload"] == {"event": "callback", "n": 2}

    resp = await _get(api, f"/api/campaigns/{campaign}/webhooks", state="given_up")
    assert [i["state"] for i in resp.json()["items"]] == ["given_up"]

    page = (await _get(api, f"/api/campaigns/{campaign}/webhooks", limit=2)).json()
    assert len(page["items"]) == 2 and page["next"] is not None
    rest = (await _get(api, f"/api/campaigns/{campaign}/webhooks", limit=2, before=page["next"])).json()
    assert [i["state"] for i in rest["items"]] == ["delivered"] and rest["next"] is None


async def test_webhooks_of_an_unknown_or_malformed_campaign(api: Api) -> None:
    resp = await _get(api, f"/api/campaigns/{uuid.uuid4()}/webhooks")
    assert resp.status_code == 404 and "no campaign" in resp.json()["error"]
    resp = await _get(api, "/api/campaigns/not-a-uuid/webhooks")
    assert resp.status_code == 404 and "UUID" in resp.json()["error"]
    resp = await _get(api, f"/api/campaigns/{uuid.uuid4()}/webhooks", state="lost")
    assert resp.status_code == 400 and resp.json()["field"] == "state"


async def test_the_audit_api_needs_a_key_when_one_is_set(
    base_settings: Settings, light_providers: Providers
) -> None:
    key = "k-" + uuid.uuid4().hex
    settings = base_settings.model_copy(update={"api_key": SecretStr(key)})
    server = await _serve(settings, light_providers)
    try:
        async with httpx.AsyncClient(base_url=server.url) as c:
            assert (await c.get("/api/audit")).status_code == 401
            ok = await c.get("/api/audit", params={"limit": 1},
                             headers={"Authorization": f"Bearer {key}"})
            assert ok.status_code == 200
    finally:
        await server.runner.cleanup()


async def test_the_audit_log_is_for_admin_keys_only(api: Api) -> None:
    from dialkit import apikeys

    read_key, read_info = await apikeys.create(api.pool, f"reader-{uuid.uuid4().hex[:6]}", "read")
    admin_key, admin_info = await apikeys.create(api.pool, f"admin-{uuid.uuid4().hex[:6]}", "admin")
    campaign = await insert_campaign(api.pool, webhook_url=None, secret="s")
    try:
        async with httpx.AsyncClient(base_url=api.url) as c:
            denied = await c.get("/api/audit", headers={"Authorization": f"Bearer {read_key}"})
            assert denied.status_code == 403 and "admin" in denied.json()["error"]
            ok = await c.get("/api/audit", params={"actor": "nobody"},
                             headers={"Authorization": f"Bearer {admin_key}"})
            assert ok.status_code == 200 and ok.json() == {"items": [], "next": None}
            # the deliveries of a campaign need read only
            hooks = await c.get(f"/api/campaigns/{campaign}/webhooks",
                                headers={"Authorization": f"Bearer {read_key}"})
            assert hooks.status_code == 200
            assert (await c.get("/api/audit")).status_code == 401
    finally:
        # stored keys close the API to callers without one: leave none behind
        await api.pool.execute("DELETE FROM api_keys WHERE id = ANY($1::bigint[])",
                               [read_info.id, admin_info.id])


async def test_both_routes_are_in_the_openapi_document(api: Api) -> None:
    doc = (await _get(api, "/openapi.json")).json()
    audit_op = doc["paths"]["/api/audit"]["get"]
    assert {p["name"] for p in audit_op["parameters"]} >= {
        "subject_type", "subject_id", "action", "actor", "since", "until", "limit", "cursor"}
    assert "/api/campaigns/{id}/webhooks" in doc["paths"]


async def test_values_postgres_cannot_hold_are_refused_not_a_500(api: Api) -> None:
    for path in ("/api/audit?subject_id=a%00b", "/api/audit?actor=%00",
                 f"/api/campaigns/{uuid.uuid4()}/webhooks?before={2**70}"):
        async with httpx.AsyncClient(base_url=api.url) as c:
            resp = await c.get(path)
        assert resp.status_code == 400, (path, resp.text)


async def test_times_out_of_range_are_refused_not_a_500(api: Api) -> None:
    for since in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        resp = await _get(api, "/api/audit", since=since)
        assert resp.status_code == 400, (since, resp.text)
        assert resp.json()["field"] == "since"
