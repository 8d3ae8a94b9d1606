"""The campaign API over HTTP against a real server and PostgreSQL: create (the webhook
secret once), list in pages, get, update, delete; validation errors with their field;
start / pause / resume / cancel and the refused transitions; status counts; do-not-call
lists per campaign and global, and what they do to leads; the audit trail of each write."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.campaign_server import PLAYBOOK, api, campaign_body, campaign_server, lead_csv, lead_row
from tests.conftest import run_cli

__all__ = ["api", "campaign_server"]  # fixtures

CSV = {"Content-Type": "text/csv"}


async def _create(api: httpx.AsyncClient, **overrides: object) -> dict:
    r = await api.post("/api/campaigns", json=campaign_body(**overrides))
    assert r.status_code == 201, r.text
    return r.json()


async def _audit(campaign_server, subject_id: str) -> list[dict]:  # type: ignore[no-untyped-def]
    pool = campaign_server.state.pool
    rows = await pool.fetch(
        "SELECT actor, action, data FROM audit_log WHERE subject_id = $1 ORDER BY id", subject_id)
    return [dict(r) for r in rows]


async def test_create_shows_the_secret_once_and_get_list_update_delete(api, campaign_server) -> None:  # type: ignore[no-untyped-def]
    created = await _create(api, name="Alpha", settings={"default_region": "IN"})
    cid = created["id"]
    assert created["status"] == "draft" and created["playbook"] == PLAYBOOK
    assert created["webhook_secret"].startswith("whsec_") and len(created["webhook_secret"]) > 30
    assert created["settings"]["default_region"] == "IN"

    got = (await api.get(f"/api/campaigns/{cid}")).json()
    assert "webhook_secret" not in got and got["name"] == "Alpha"

    r = await api.patch(f"/api/campaigns/{cid}", json={"name": "Alpha 2", "max_concurrent": 9,
                                                       "webhook_url": "https://example.com/hook"})
    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["max_concurrent"]) == ("Alpha 2", 9)
    assert r.json()["webhook_url"] == "https://example.com/hook"
    r = await api.patch(f"/api/campaigns/{cid}", json={"webhook_url": None})
    assert r.json()["webhook_url"] is None and r.json()["name"] == "Alpha 2"

    r = await api.delete(f"/api/campaigns/{cid}")
    assert r.status_code == 200 and r.json()["status"] == "canceled"
    assert (await api.get(f"/api/campaigns/{cid}")).status_code == 404
    actions = [(a["action"], a["data"].get("op") or a["data"].get("action"))
               for a in await _audit(campaign_server, cid)]
    assert actions == [("api_write", "create"), ("api_write", "update"), ("api_write", "update"),
                       ("api_write", "delete")]
    assert {a["actor"] for a in await _audit(campaign_server, cid)} == {"local"}


async def test_the_list_pages_newest_first_and_filters_by_status(api) -> None:  # type: ignore[no-untyped-def]
    ids = [(await _create(api, name=f"page {i}"))["id"] for i in range(5)]
    await api.post(f"/api/campaigns/{ids[0]}/start")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/api/campaigns", params=params)).json()
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [i for i in seen if i in ids] == ids[::-1]
    assert len(seen) == len(set(seen))
    running = (await api.get("/api/campaigns", params={"status": "running", "limit": 500})).json()
    assert ids[0] in [c["id"] for c in running["items"]]
    assert all(c["status"] == "running" for c in running["items"])
    bad = await api.get("/api/campaigns", params={"cursor": "nonsense"})
    assert bad.status_code == 400 and bad.json()["field"] == "cursor"


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"playbook": "no-such-playbook"}, 422, "playbook"),
    ({"caller_id": "12"}, 400, "caller_id"),
    ({"carrier": "pigeon"}, 400, "carrier"),
    ({"max_concurrent": 0}, 400, "max_concurrent"),
    ({"starts_at": "2026-12-02T09:00:00Z", "ends_at": "2026-12-01T09:00:00Z"}, 400, None),
    ({"settings": {"country_rules": {"usa": {}}}}, 400, "settings.country_rules"),
    ({"settings": {"country_rules": {"US": {"window_start": "25:00"}}}}, 400,
     "settings.country_rules.US.window_start"),
    ({"colour": "red"}, 400, "colour"),
])
async def test_a_bad_campaign_is_refused_with_the_field(api, body, status, field) -> None:  # type: ignore[no-untyped-def]
    r = await api.post("/api/campaigns", json=campaign_body(**body))
    assert r.status_code == status, r.text
    assert r.json()["error"]
    if field is not None:
        assert r.json()["field"] == field
    if status == 422:
        assert "no-such-playbook" in r.json()["error"] and PLAYBOOK in r.json()["error"]


async def test_bad_updates_and_unknown_campaigns(api) -> None:  # type: ignore[no-untyped-def]
    cid = (await _create(api, starts_at="2026-12-01T09:00:00Z"))["id"]
    r = await api.patch(f"/api/campaigns/{cid}", json={"ends_at": "2026-11-30T09:00:00Z"})
    assert r.status_code == 400 and r.json()["field"] == "ends_at"
    r = await api.patch(f"/api/campaigns/{cid}", json={"playbook": "missing@9"})
    assert r.status_code == 422 and r.json()["field"] == "playbook"
    r = await api.patch(f"/api/campaigns/{cid}", json={"name": None})
    assert r.status_code == 400 and r.json()["field"] == "name"
    for path in (f"/api/campaigns/{uuid.uuid4()}", "/api/campaigns/not-a-uuid"):
        assert (await api.get(path)).status_code == 404
        assert (await api.patch(path, json={"name": "x"})).status_code == 404
        assert (await api.post(path + "/start")).status_code == 404
        assert (await api.get(path + "/status")).status_code == 404


async def test_transitions_move_forward_and_refuse_the_rest(api, campaign_server) -> None:  # type: ignore[no-untyped-def]
    cid = (await _create(api))["id"]
    r = await api.post(f"/api/campaigns/{cid}/pause")
    assert r.status_code == 409 and "cannot pause a draft campaign" in r.json()["error"]
    for action, status in (("start", "running"), ("pause", "paused"), ("resume", "running")):
        r = await api.post(f"/api/campaigns/{cid}/{action}", params={"reason": f"by test {action}"})
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["status_reason"]) == (status, f"by test {action}")
    assert (await api.post(f"/api/campaigns/{cid}/start")).status_code == 409
    assert (await api.post(f"/api/campaigns/{cid}/resume")).status_code == 409
    r = await api.post(f"/api/campaigns/{cid}/cancel")
    assert r.json()["status"] == "canceled"
    for action in ("start", "pause", "resume", "cancel"):
        assert (await api.post(f"/api/campaigns/{cid}/{action}")).status_code == 409
    r = await api.patch(f"/api/campaigns/{cid}", json={"name": "too late"})
    assert r.status_code == 409
    states = [(a["data"]["from"], a["data"]["to"]) for a in await _audit(campaign_server, cid)
              if a["action"] == "campaign_state"]
    assert states == [("draft", "running"), ("running", "paused"), ("paused", "running"),
                      ("running", "canceled")]


async def test_a_campaign_on_a_carrier_without_credentials_does_not_start(api) -> None:  # type: ignore[no-untyped-def]
    cid = (await _create(api, carrier="exotel", caller_id="+918040001234"))["id"]
    r = await api.post(f"/api/campaigns/{cid}/start")
    assert r.status_code == 409, r.text
    assert r.json()["field"] == "carrier" and "exotel is not configured" in r.json()["error"]
    assert (await api.get(f"/api/campaigns/{cid}")).json()["status"] == "draft"


async def test_status_counts_leads_and_cancel_cancels_the_waiting_ones(api) -> None:  # type: ignore[no-untyped-def]
    cid = (await _create(api))["id"]
    r = await api.post(f"/api/campaigns/{cid}/leads", headers=CSV,
                       content=lead_csv([lead_row(i) for i in range(5)]))
    assert r.status_code == 200, r.text
    status = (await api.get(f"/api/campaigns/{cid}/status")).json()
    assert status["leads"]["pending"] == 5 and status["total_leads"] == 5
    assert set(status["leads"]) >= {"pending", "dnc", "done", "exhausted"}
    assert status["attempts"]["queued"] == 0 and status["live_attempts"] == 0
    await api.post(f"/api/campaigns/{cid}/cancel")
    status = (await api.get(f"/api/campaigns/{cid}/status")).json()
    assert status["leads"]["canceled"] == 5 and status["leads"]["pending"] == 0
    r = await api.post(f"/api/campaigns/{cid}/leads", headers=CSV, content=lead_csv([lead_row(9)]))
    assert r.status_code == 409


async def test_do_not_call_per_campaign_and_global(api, campaign_server) -> None:  # type: ignore[no-untyped-def]
    first = (await _create(api))["id"]
    second = (await _create(api))["id"]
    rows = [lead_row(1, "+12025550161"), lead_row(2, "+12025550162")]
    for cid in (first, second):
        assert (await api.post(f"/api/campaigns/{cid}/leads", headers=CSV,
                               content=lead_csv(rows))).status_code == 200

    # the campaign's own list: national form in the campaign's region, normalised
    r = await api.post(f"/api/campaigns/{first}/dnc", json={"phone": "(202) 555-0161",
                                                            "reason": "asked by letter"})
    assert r.status_code == 201, r.text
    assert (r.json()["phone"], r.json()["created"], r.json()["leads_stopped"]) == ("+12025550161", True, 1)
    again = await api.post(f"/api/campaigns/{first}/dnc", json={"phone": "+12025550161"})
    assert again.json()["created"] is False and again.json()["reason"] == "asked by letter"
    assert (await api.get(f"/api/campaigns/{first}/status")).json()["leads"]["dnc"] == 1
    assert (await api.get(f"/api/campaigns/{second}/status")).json()["leads"]["dnc"] == 0

    # the global list stops the number everywhere
    r = await api.post("/api/dnc", json={"phone": "+12025550162", "reason": "attorney"})
    assert r.status_code == 201 and r.json()["leads_stopped"] == 2
    check = (await api.get(f"/api/campaigns/{second}/dnc", params={"phone": "+12025550162"})).json()
    assert [(e["campaign_id"], e["reason"]) for e in check["items"]] == [(None, "attorney")]
    listed = (await api.get("/api/dnc", params={"limit": 1000})).json()["items"]
    assert "+12025550162" in [e["phone"] for e in listed]
    assert all(e["campaign_id"] is None for e in listed)

    # a number on a list is stored as dnc by a later upload, never dialable
    third = (await _create(api))["id"]
    r = await api.post(f"/api/campaigns/{third}/leads", headers=CSV, content=lead_csv(rows))
    assert r.json()["dnc"] == 1 and r.json()["accepted"] == 2
    leads = (await api.get(f"/api/campaigns/{third}/leads", params={"state": "dnc"})).json()
    assert [lead["phone"] for lead in leads["items"]] == ["+12025550162"]

    # off the global list: the leads no other list holds go back to pending
    r = await api.delete("/api/dnc", params={"phone": "+12025550162"})
    assert r.status_code == 200 and r.json()["leads_restored"] == 3
    assert (await api.delete("/api/dnc", params={"phone": "+12025550162"})).status_code == 404
    r = await api.delete(f"/api/campaigns/{first}/dnc", params={"phone": "+12025550161"})
    assert r.json()["leads_restored"] == 1
    for cid in (first, second, third):
        assert (await api.get(f"/api/campaigns/{cid}/status")).json()["leads"]["dnc"] == 0

    bad = await api.post("/api/dnc", json={"phone": "555-0162"})
    assert bad.status_code == 400 and bad.json()["field"] == "phone"
    assert (await api.post(f"/api/campaigns/{uuid.uuid4()}/dnc",
                           json={"phone": "+12025550162"})).status_code == 404
    audit_rows = await campaign_server.state.pool.fetch(
        "SELECT action, data FROM audit_log WHERE subject_type = 'dnc' ORDER BY id")
    assert [r["action"] for r in audit_rows][-4:] == ["dnc_add", "dnc_add", "dnc_remove", "dnc_remove"]
    assert all("0162" in r["data"]["phone"] and "5550162" not in r["data"]["phone"]
               for r in audit_rows if r["data"]["phone"].endswith("0162"))


async def test_the_routes_are_in_the_openapi_document(api) -> None:  # type: ignore[no-untyped-def]
    doc = (await api.get("/openapi.json")).json()
    paths = doc["paths"]
    for path, method in [("/api/campaigns", "post"), ("/api/campaigns/{id}", "patch"),
                         ("/api/campaigns/{id}/leads", "post"), ("/api/campaigns/{id}/status", "get"),
                         ("/api/campaigns/{id}/start", "post"), ("/api/dnc", "delete"),
                         ("/api/campaigns/{id}/dnc", "get")]:
        assert method in paths[path], (path, method)
    assert "text/csv" in paths["/api/campaigns/{id}/leads"]["post"]["requestBody"]["content"]


async def test_the_cli_drives_a_campaign(campaign_server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    import re

    async def cli(*args: str) -> tuple[int, str]:
        return await run_cli(campaign_server.http, "campaign", *args)

    code, text = await cli("create", "--name", "CLI", "--playbook", "collections-default",
                           "--caller-id", "+12025550100")
    assert code == 0, text
    match = re.search(r"campaign ([0-9a-f-]{36}) created", text)
    assert match and "webhook secret (shown once): whsec_" in text
    cid = match.group(1)
    leads = tmp_path / "leads.csv"
    leads.write_bytes(lead_csv([lead_row(1), lead_row(2, "nope"), lead_row(3, amount="=1+1")]))
    code, text = await cli("upload", cid, str(leads))
    assert code == 0, text
    assert "3 rows: 1 accepted, 0 updated, 0 duplicate, 2 rejected" in text
    assert "line 3: phone: 'nope' is not a phone number" in text
    assert (await cli("start", cid, "--reason", "go"))[1].strip().endswith("running")
    code, text = await cli("status", cid, "--json")
    assert json.loads(text)["leads"]["pending"] == 1 and json.loads(text)["status"] == "running"
    assert (await cli("pause", cid))[1].strip().endswith("paused")
    code, text = await cli("pause", cid)
    assert code == 1 and "error 409: cannot pause a paused campaign" in text
    out = tmp_path / "export.csv"
    code, text = await cli("report", cid, "--csv", str(out))
    assert code == 0 and "pending" in text, text
    assert "ACC-1" in out.read_text()
    code, text = await cli("upload", cid, str(leads.with_name("missing.csv")))
    assert code != 0


async def test_query_strings_the_database_could_not_store_are_refused(api) -> None:  # type: ignore[no-untyped-def]
    cid = (await _create(api))["id"]
    r = await api.post(f"/api/campaigns/{cid}/start", params={"reason": "a\x00b"})
    assert r.status_code == 400 and r.json()["field"] == "reason"
    r = await api.get(f"/api/campaigns/{cid}/leads", params={"after": str(2**70)})
    assert r.status_code == 400 and r.json()["field"] == "after"
    r = await api.delete("/api/dnc", params={"phone": "+1202\x01"})
    assert r.status_code == 400
    assert (await api.get(f"/api/campaigns/{cid}")).json()["status"] == "draft"


def test_the_report_flattens_the_analytics_metrics() -> None:
    from dialkit.cli_campaign import _flat

    rows = dict(_flat({"attempts": 4, "connect_rate": None, "voice_to_voice": {"samples": 2, "p95_ms": 810.0},
                       "promised": [{"currency": "USD", "promises": 1, "amount": "120.00"}]}))
    assert rows == {"attempts": "4", "connect_rate": "-", "voice_to_voice.samples": "2",
                    "voice_to_voice.p95_ms": "810.0", "promised USD": "120.00 (1)"}
