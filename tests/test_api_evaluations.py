"""The evaluation-run API over a real socket, PostgreSQL and the server's own job worker:
POST /api/evaluations answers 202 at once and the run goes PENDING → RUNNING → COMPLETED
with every call's transcript, scores, compliance and evidence; listing with filters and a
cursor; unknown ids (404), weights out of range and bad specs (400), a deleted personality
(409), audio mode and an LLM judge the server cannot serve (422); the audit row."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from evaluation import library
from tests.conftest import RunningServer, job_server_fixtures
from tests.evaluation_helpers import planted_prompt_version

pytestmark = pytest.mark.asyncio(loop_scope="session")
DEFAULT = "collections-default@1"


server, api = job_server_fixtures("dialkit_eval_api")


async def _finished(api: httpx.AsyncClient, run_id: int, timeout_s: float = 120) -> dict[str, Any]:
    seen = set()
    async with asyncio.timeout(timeout_s):
        while True:
            r = await api.get(f"/api/evaluations/{run_id}")
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            seen.add(body["status"])
            if body["status"] in ("COMPLETED", "FAILED"):
                body["_seen"] = seen
                return body
            await asyncio.sleep(0.05)


async def test_a_run_over_the_default_set(api: httpx.AsyncClient, server: RunningServer) -> None:
    label = f"api-{uuid.uuid4().hex[:6]}"
    r = await api.post("/api/evaluations", json={
        "prompt_version": DEFAULT, "scenario_set": "default", "repeat": 2, "seed": 5, "label": label})
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "PENDING" and isinstance(created["id"], int)
    run = await _finished(api, created["id"])
    assert run["status"] == "COMPLETED", run["error"]
    assert run["prompt_version"] == DEFAULT and run["scenario_set"] == "default" and run["label"] == label
    assert run["calls_total"] == run["calls_done"] == len(run["results"]) >= 16
    assert 0 < run["weighted_score"] <= 100 and 0 <= run["pass_k"] <= 1
    first = run["results"][0]
    assert first["scenario"] == "cooperative" and first["repeat"] == 1
    assert run["results"][1]["scenario"] == "cooperative" and run["results"][1]["repeat"] == 2
    for res in run["results"]:
        assert res["status"] == "COMPLETED" and res["error"] is None and res["call_id"]
        assert res["compliance"] == {"passed": True, "violations": []}
        assert 0 <= res["task_completion"] <= 100 and 0 <= res["efficiency"] <= 100
        assert 0 <= res["hostility"] <= 10 and 1 <= res["weight"] <= 5
        assert res["transcript"] and res["transcript"][0]["speaker"] == "agent"
        assert {c["name"] for c in res["criteria"]} == {"task_completion", "efficiency"}
        assert all(c["evidence"] and c["analysis"] for c in res["criteria"])
    assert first["outcome"] == "promise_to_pay" and first["passed"]
    audit = await server.state.pool.fetch(
        "SELECT subject_type, data FROM audit_log WHERE subject_id = $1", str(created["id"]))
    assert [(a["subject_type"], a["data"]["op"]) for a in audit] == [("evaluation", "create")]

    listed = (await api.get("/api/evaluations", params={"label": label})).json()
    assert [e["id"] for e in listed["items"]] == [created["id"]] and listed["next_cursor"] is None
    assert "results" not in listed["items"][0]
    by_pv = (await api.get("/api/evaluations", params={"prompt_version": DEFAULT,
                                                       "status": "COMPLETED"})).json()
    assert created["id"] in [e["id"] for e in by_pv["items"]]
    assert all(e["status"] == "COMPLETED" for e in by_pv["items"])


async def test_planted_violation_and_paging(api: httpx.AsyncClient, server: RunningServer) -> None:
    ref = await planted_prompt_version(server.state.pool, f"planted-{uuid.uuid4().hex[:6]}")
    ids = []
    for _ in range(3):
        r = await api.post("/api/evaluations", json={
            "prompt_version": ref, "scenarios": [{"name": "cooperative", "weight": 4}]})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    run = await _finished(api, ids[-1])
    assert run["status"] == "COMPLETED"
    (res,) = run["results"]
    assert res["score"] == 0 and res["weight"] == 4 and res["compliance"]["passed"] is False
    rule = next(v for v in res["compliance"]["violations"] if v["rule"] == "right_party_verified_first")
    assert rule["turn"] == 0 and "balance" in rule["quote"]
    page1 = (await api.get("/api/evaluations", params={"prompt_version": ref, "limit": 2})).json()
    assert [e["id"] for e in page1["items"]] == [ids[2], ids[1]] and page1["next_cursor"]
    page2 = (await api.get("/api/evaluations", params={"prompt_version": ref, "limit": 2,
                                                       "cursor": page1["next_cursor"]})).json()
    assert [e["id"] for e in page2["items"]] == [ids[0]] and page2["next_cursor"] is None
    for run_id in ids[:2]:
        await _finished(api, run_id)


@pytest.mark.parametrize(("body", "status", "field"), [
    ({"prompt_version": "nope@1", "scenario_set": "default"}, 404, "prompt_version"),
    ({"prompt_version": DEFAULT, "scenario_set": "nope"}, 404, "scenario_set"),
    ({"prompt_version": DEFAULT, "scenarios": [{"name": "nope"}]}, 404, "scenario"),
    ({"prompt_version": DEFAULT, "scenarios": [{"name": "cooperative", "weight": 0}]}, 400,
     "scenarios[0].weight"),
    ({"prompt_version": DEFAULT, "scenarios": [{"name": "cooperative", "weight": 6}]}, 400,
     "scenarios[0].weight"),
    ({"prompt_version": DEFAULT, "scenario_set": "default", "repeat": 11}, 400, "repeat"),
    ({"prompt_version": DEFAULT}, 400, None),
    ({"prompt_version": DEFAULT, "scenario_set": "default", "mode": "audio"}, 422, "mode"),
    ({"prompt_version": DEFAULT, "scenario_set": "default", "judge": "llm"}, 422, "judge"),
])
async def test_bad_requests(api: httpx.AsyncClient, body: dict[str, Any], status: int,
                            field: str | None) -> None:
    r = await api.post("/api/evaluations", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]
    if field is not None:
        assert r.json().get("field") == field, r.json()


async def test_unknown_runs_and_a_deleted_personality(api: httpx.AsyncClient, server: RunningServer) -> None:
    for missing in ("999999999", "0", "abc", "99999999999999999999"):
        r = await api.get(f"/api/evaluations/{missing}")
        assert r.status_code == 404, (missing, r.text)
    assert (await api.get("/api/evaluations", params={"cursor": "x"})).status_code == 400
    assert (await api.get("/api/evaluations", params={"prompt_version": "nope@3"})).status_code == 404
    pool = server.state.pool
    name = f"gone-{uuid.uuid4().hex[:6]}"
    cooperative = await library.get_personality(pool, "cooperative")
    await library.create_personality(pool, cooperative.model_copy(update={"name": name}))
    base = await library.get_scenario(pool, "cooperative")
    await library.create_scenario(pool, base.model_copy(update={"name": name, "personality": name}))
    await library.delete_personality(pool, name)
    r = await api.post("/api/evaluations", json={"prompt_version": DEFAULT, "scenarios": [{"name": name}]})
    assert r.status_code == 409 and "deleted" in r.json()["error"], r.text
