"""The tuning-run API over a real socket, PostgreSQL and the server's own job worker: POST
/api/tuning answers 202 at once and the run goes to COMPLETED with its iterations, training
and held-out scores side by side; listing with filters and a cursor; cancel; the final
version exported as YAML; unknown ids (404), weights, targets and iterations out of range
(400), a finished run cancelled (409), an LLM writer the server cannot make (422)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import yaml

from ai.playbook import parse_playbook
from tests.conftest import RunningServer, job_server_fixtures
from tuning.critique import check_playbook

pytestmark = pytest.mark.asyncio(loop_scope="session")
WEAK = "collections-weak@1"
SPEC = {"prompt_version": WEAK, "scenario_set": "default", "heldout_set": "default-heldout",
        "target": 100, "max_iterations": 3, "seed": 0}


server, api = job_server_fixtures("dialkit_tuning_api")


async def _finished(api: httpx.AsyncClient, run_id: int, timeout_s: float = 240) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            r = await api.get(f"/api/tuning/{run_id}")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                return body
            await asyncio.sleep(0.1)


async def test_a_run_from_the_weak_playbook(api: httpx.AsyncClient, server: RunningServer) -> None:
    r = await api.post("/api/tuning", json=SPEC)
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "PENDING" and isinstance(created["id"], int)
    run = await _finished(api, created["id"])
    assert run["status"] == "COMPLETED", run["error"]
    assert run["prompt_version"] == WEAK and run["target"] == 100 and run["writer"] == "offline"
    assert run["spec"]["heldout_set"] == "default-heldout"
    assert run["current_iteration"] == len(run["iterations"]) == 3
    initial, final = run["initial"], run["final"]
    assert initial["prompt_version"] == WEAK
    assert final["heldout_score"] > initial["heldout_score"] and final["train_score"] > initial["train_score"]
    for it in run["iterations"]:
        assert {"train_score", "heldout_score", "delta", "accepted", "reason", "exchange", "analysis",
                "train_evaluation_id", "heldout_evaluation_id", "per_scenario", "tokens", "cost_usd"} <= it.keys()
        assert "writer_state" not in it
    accepted = [it for it in run["iterations"] if it["accepted"]]
    assert accepted and final["prompt_version"] == accepted[-1]["prompt_version"]
    # the best version on training is never dominated: it is in the Pareto pool
    pool = [p["prompt_version"] for p in run["pareto"]]
    assert final["prompt_version"] in pool and len(set(pool)) == len(pool)
    evaluated = {WEAK} | {it["prompt_version"] for it in run["iterations"] if it["train_evaluation_id"]}
    assert set(pool) <= evaluated
    ev = (await api.get(f"/api/evaluations/{accepted[-1]['heldout_evaluation_id']}")).json()
    assert ev["weighted_score"] == accepted[-1]["heldout_score"] and ev["prompt_version"] == final["prompt_version"]

    exported = await api.get(f"/api/tuning/{created['id']}/export")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/yaml")
    assert final["prompt_version"].replace("@", "-") in exported.headers["content-disposition"]
    playbook = parse_playbook(yaml.safe_load(exported.text), source="export")
    assert playbook.ref == final["prompt_version"] and check_playbook(playbook) == []

    listed = (await api.get("/api/tuning", params={"prompt_version": WEAK, "status": "COMPLETED"})).json()
    assert created["id"] in [i["id"] for i in listed["items"]]
    assert "iterations" not in listed["items"][0]
    assert (await api.post(f"/api/tuning/{created['id']}/cancel")).status_code == 409
    audit = await server.state.pool.fetch(
        "SELECT data FROM audit_log WHERE subject_type = 'tuning' AND subject_id = $1", str(created["id"]))
    assert [a["data"]["op"] for a in audit] == ["create"]


async def test_cancel_and_the_cursor(api: httpx.AsyncClient) -> None:
    ids = []
    for _ in range(3):
        r = await api.post("/api/tuning", json={**SPEC, "max_iterations": 10})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    for run_id in ids:
        r = await api.post(f"/api/tuning/{run_id}/cancel")
        assert r.status_code == 202 and r.json()["cancel_requested"] is True, r.text
    for run_id in ids:
        run = await _finished(api, run_id)
        assert run["status"] == "CANCELLED" and len(run["iterations"]) < 10
    first = (await api.get("/api/tuning", params={"limit": 2})).json()
    assert [i["id"] for i in first["items"]] == ids[:0:-1] and first["next_cursor"] == str(ids[1])
    second = (await api.get("/api/tuning", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert second["items"][0]["id"] == ids[0]
    assert (await api.get("/api/tuning", params={"cursor": "x"})).status_code == 400


@pytest.mark.parametrize(("change", "status", "field"), [
    ({"prompt_version": "nosuch@1"}, 404, "prompt_version"),
    ({"heldout_set": "no-such-set"}, 404, None),
    ({"scenario_set": None, "scenarios": [{"name": "nobody", "weight": 2}]}, 404, None),
    ({"scenario_set": None, "scenarios": [{"name": "cooperative", "weight": 6}]}, 400, None),
    ({"scenario_set": None, "scenarios": [{"name": "cooperative", "weight": 0}]}, 400, None),
    ({"target": 101}, 400, None), ({"target": -5}, 400, None),
    ({"max_iterations": 0}, 400, None), ({"max_iterations": 11}, 400, None),
    ({"heldout_set": None}, 400, None), ({"writer": "llm"}, 422, "writer"),
])
async def test_refusals(api: httpx.AsyncClient, change: dict[str, Any], status: int, field: str | None) -> None:
    r = await api.post("/api/tuning", json={**SPEC, **change})
    assert r.status_code == status, r.text
    if field is not None:
        assert r.json()["field"] == field


async def test_unknown_runs(api: httpx.AsyncClient) -> None:
    for path in ("/api/tuning/999999", "/api/tuning/abc", "/api/tuning/999999/export"):
        assert (await api.get(path)).status_code == 404
    assert (await api.post("/api/tuning/999999/cancel")).status_code == 404
