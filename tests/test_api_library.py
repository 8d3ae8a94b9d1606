"""The evaluation library's REST API over a real socket and PostgreSQL: personalities,
scenarios, scenario sets and prompt versions; unknown names (404), a deleted personality
(409, and the scenarios naming it say so), a prompt version that fails validation (400
naming the problem), weights out of range (400 with the field), immutability once used (a
change is a new version, 201, linked to its parent); generation from a brief with templates
and with an LLM (the openai SDK against the OpenAI emulator), malformed LLM JSON (502); the
audit trail of each write."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from pydantic import SecretStr

from ai.playbook import DEFAULT_PLAYBOOK
from dialkit.config import Settings
from dialkit.providers import Providers
from dialkit.server import start_server
from emulators.openai_api import Reply, running_openai
from evaluation import library
from tests.conftest import RunningServer, run_cli

BACKSTORY = {"debtor_name": "Robin Fictional", "birth_year": 1980, "creditor": "Sample Bank",
             "balance": 900.0}


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(loop_scope="session")
async def api(light_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=light_server.http, timeout=60) as client:
        yield client


async def _personality(api: httpx.AsyncClient, **traits: Any) -> str:
    name = _name("p")
    r = await api.post("/api/personalities", json={"name": name, **traits})
    assert r.status_code == 201, r.text
    return name


async def _scenario(api: httpx.AsyncClient, personality: str, **fields: Any) -> dict[str, Any]:
    body = {"name": _name("s"), "personality": personality, "backstory": BACKSTORY,
            "expected_outcomes": ["promise_to_pay"], **fields}
    r = await api.post("/api/scenarios", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _audit(server: RunningServer, subject: str) -> list[tuple[str, str]]:
    rows = await server.state.pool.fetch(
        "SELECT subject_type, data FROM audit_log WHERE subject_id = $1 ORDER BY id", subject)
    return [(r["subject_type"], r["data"]["op"]) for r in rows]


async def test_personalities_crud_and_a_deleted_one(api: httpx.AsyncClient, light_server: RunningServer) -> None:
    name = await _personality(api, willingness_to_pay=0.3, resistance=["hardship"])
    got = (await api.get(f"/api/personalities/{name}")).json()
    assert got["willingness_to_pay"] == 0.3 and got["deleted_at"] is None and got["created_by"] == "local"
    r = await api.patch(f"/api/personalities/{name}", json={"patience": 8})
    assert r.status_code == 200 and r.json()["patience"] == 8 and r.json()["resistance"] == ["hardship"]
    r = await api.patch(f"/api/personalities/{name}", json={"patience": 11})
    assert r.status_code == 400 and r.json()["field"] == "patience"
    assert r.json()["error"].startswith("patience: ")
    r = await api.patch(f"/api/personalities/{name}", json={"patience": None})
    assert r.status_code == 400
    r = await api.post("/api/personalities", json={"name": name})
    assert r.status_code == 409 and r.json()["field"] == "name"
    r = await api.get("/api/personalities/no-such-one")
    assert r.status_code == 404 and "no personality 'no-such-one'" in r.json()["error"]

    scenario = await _scenario(api, name)
    r = await api.delete(f"/api/personalities/{name}")
    assert r.status_code == 200 and r.json()["deleted_at"] and r.json()["scenarios"] == [scenario["name"]]
    assert name not in [p["name"] for p in (await api.get("/api/personalities")).json()["items"]]
    everyone = (await api.get("/api/personalities", params={"include_deleted": "true"})).json()
    assert name in [p["name"] for p in everyone["items"]]
    r = await api.post("/api/scenarios", json={"name": _name("s"), "personality": name,
                                               "backstory": BACKSTORY, "expected_outcomes": ["callback"]})
    assert r.status_code == 409 and r.json()["field"] == "personality"
    assert f"personality {name!r} was deleted" in r.json()["error"]
    reported = (await api.get(f"/api/scenarios/{scenario['name']}")).json()
    assert reported["personality_deleted"] and reported["problems"] == [f"personality {name!r} was deleted"]
    r = await api.patch(f"/api/personalities/{name}", json={"patience": 1})
    assert r.status_code == 409
    assert await _audit(light_server, name) == [("personality", "create"), ("personality", "update"),
                                                ("personality", "delete")]


async def test_scenarios_refuse_bad_weights_and_unknown_personalities(api: httpx.AsyncClient) -> None:
    p = await _personality(api)
    body = {"name": _name("s"), "personality": p, "backstory": BACKSTORY,
            "expected_outcomes": ["promise_to_pay"], "weight": 6}
    r = await api.post("/api/scenarios", json=body)
    assert r.status_code == 400 and r.json()["field"] == "weight" and r.json()["error"].startswith("weight: ")
    r = await api.post("/api/scenarios", json={**body, "weight": 0})
    assert r.status_code == 400 and r.json()["field"] == "weight"
    r = await api.post("/api/scenarios", json={**body, "weight": 2, "personality": "ghost-x"})
    assert r.status_code == 400 and r.json()["error"] == "personality: no personality 'ghost-x'"
    s = await _scenario(api, p, weight=2, tags=["api-test"])
    assert s["weight"] == 2 and s["problems"] == [] and s["sets"] == []
    r = await api.patch(f"/api/scenarios/{s['name']}", json={"weight": 9})
    assert r.status_code == 400 and r.json()["field"] == "weight"
    r = await api.patch(f"/api/scenarios/{s['name']}", json={"weight": 5, "description": "edited"})
    assert r.status_code == 200 and (r.json()["weight"], r.json()["description"]) == (5, "edited")
    listed = (await api.get("/api/scenarios", params={"personality": p})).json()["items"]
    assert [x["name"] for x in listed] == [s["name"]]
    assert (await api.get("/api/scenarios/nothing-here")).status_code == 404
    assert (await api.delete("/api/scenarios/nothing-here")).status_code == 404
    r = await api.delete(f"/api/scenarios/{s['name']}")
    assert r.status_code == 200 and r.json()["deleted_at"]


async def test_scenario_sets_in_order_with_their_weights(api: httpx.AsyncClient, light_server: RunningServer) -> None:
    p = await _personality(api)
    a, b = await _scenario(api, p, weight=1), await _scenario(api, p, weight=2)
    name = _name("set")
    r = await api.post("/api/scenario-sets", json={"name": name, "members": [
        {"scenario": b["name"], "weight": 4}, {"scenario": a["name"]}]})
    assert r.status_code == 201, r.text
    assert [(m["scenario"], m["weight"], m["set_weight"]) for m in r.json()["members"]] == [
        (b["name"], 4, 4), (a["name"], 1, None)]
    got = await library.get_scenario_set(light_server.state.pool, name)
    assert [(s.name, s.weight) for s in got] == [(b["name"], 4), (a["name"], 1)]
    r = await api.put(f"/api/scenario-sets/{name}", json={"members": [{"scenario": a["name"], "weight": 6}]})
    assert r.status_code == 400 and r.json()["field"] == "members[0].weight"
    r = await api.put(f"/api/scenario-sets/{name}", json={"members": [{"scenario": "nope-nope"}]})
    assert r.status_code == 400 and r.json()["error"] == "members[0].scenario: no scenario 'nope-nope'"
    r = await api.delete(f"/api/scenarios/{a['name']}")
    assert r.status_code == 409 and name in r.json()["error"]
    r = await api.post("/api/scenario-sets", json={"name": name})
    assert r.status_code == 409
    r = await api.put(f"/api/scenario-sets/{name}", json={"members": [{"scenario": b["name"]}],
                                                          "description": "one"})
    assert r.status_code == 200 and r.json()["description"] == "one"
    assert name in [s["name"] for s in (await api.get("/api/scenario-sets")).json()["items"]]
    assert (await api.delete(f"/api/scenario-sets/{name}")).status_code == 200
    assert (await api.get(f"/api/scenario-sets/{name}")).status_code == 404
    assert await _audit(light_server, name) == [("scenario_set", "create"), ("scenario_set", "replace"),
                                                ("scenario_set", "delete")]


async def test_prompt_versions_are_validated_and_immutable_once_used(
    api: httpx.AsyncClient, light_server: RunningServer,
) -> None:
    name = _name("prompt")
    text = DEFAULT_PLAYBOOK.read_text()
    broken = text.replace("This is an attempt to collect a debt", "This is a call")
    r = await api.post("/api/prompt-versions", json={"name": name, "playbook": broken})
    assert r.status_code == 400 and r.json()["field"] == "playbook"
    assert "disclosure.say must contain the mini-Miranda" in r.json()["error"]
    r = await api.post("/api/prompt-versions", json={"name": name, "playbook": text,
                                                     "system_prompt_template": "Hello $whoever"})
    assert r.status_code == 400 and r.json()["field"] == "system_prompt_template"
    r = await api.post("/api/prompt-versions", json={"name": name, "playbook": "x: &a [1]\ny: *a"})
    assert r.status_code == 400 and "aliases" in r.json()["error"]

    r = await api.post("/api/prompt-versions", json={
        "name": name, "playbook": text, "tags": ["api-test"], "notes": "first",
        "llm": {"model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 300, "voice": "v1"}})
    assert r.status_code == 201, r.text
    v1 = r.json()
    assert (v1["ref"], v1["version"], v1["parent_id"], v1["used_at"]) == (f"{name}@1", 1, None, None)
    assert v1["playbook"]["name"] == name and v1["llm"]["voice"] == "v1"
    for ref in (str(v1["id"]), f"{name}@1", name):
        assert (await api.get(f"/api/prompt-versions/{ref}")).json()["id"] == v1["id"]
    for ref in (f"{name}@2", f"{name}@x", "999999999999", "²"):
        assert (await api.get(f"/api/prompt-versions/{ref}")).status_code == 404

    r = await api.patch(f"/api/prompt-versions/{name}@1", json={"llm": {"temperature": 0.5}})
    assert r.status_code == 200 and r.json()["id"] == v1["id"] and r.json()["llm"]["temperature"] == 0.5
    await library.mark_used(light_server.state.pool, v1["id"])
    pb = (await api.get(f"/api/prompt-versions/{v1['id']}")).json()["playbook"]
    pb["states"]["greeting"]["say"] = ["Good morning, this is {agent_name} from {caller_brand}."]
    r = await api.patch(f"/api/prompt-versions/{name}@1", json={"playbook": pb, "notes": "warmer"})
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert (v2["version"], v2["parent_id"], v2["notes"], v2["tags"]) == (2, v1["id"], "warmer", ["api-test"])
    kept = (await api.get(f"/api/prompt-versions/{name}@1")).json()
    assert kept["notes"] == "first" and kept["playbook"]["states"]["greeting"] != pb["states"]["greeting"]
    r = await api.patch(f"/api/prompt-versions/{name}@1", json={"tags": ["api-test", "old"]})
    assert r.status_code == 200 and r.json()["id"] == v1["id"]

    r = await api.post(f"/api/prompt-versions/{name}@2/deactivate")
    assert r.status_code == 200 and r.json()["active"] is False
    assert (await api.get(f"/api/prompt-versions/{name}")).json()["version"] == 1  # highest active
    page = (await api.get("/api/prompt-versions", params={"name": name, "active": "false"})).json()
    assert [v["ref"] for v in page["items"]] == [f"{name}@2"]
    page = (await api.get("/api/prompt-versions", params={"tag": "old"})).json()
    assert f"{name}@1" in [v["ref"] for v in page["items"]]
    r = await api.post(f"/api/prompt-versions/{name}@2/activate")
    assert r.json()["active"] is True

    r = await api.delete(f"/api/prompt-versions/{name}@1")
    assert r.status_code == 409 and "was used" in r.json()["error"]
    assert (await api.delete(f"/api/prompt-versions/{name}@2")).status_code == 200
    assert (await api.delete(f"/api/prompt-versions/{name}@2")).status_code == 404
    ops = await _audit(light_server, f"{name}@1")
    assert ops == [("prompt_version", "create"), ("prompt_version", "update"), ("prompt_version", "update")]
    assert await _audit(light_server, f"{name}@2") == [
        ("prompt_version", "derive"), ("prompt_version", "deactivate"), ("prompt_version", "activate"),
        ("prompt_version", "delete")]


async def test_what_is_shipped_is_seeded_at_start(api: httpx.AsyncClient) -> None:
    from evaluation import library_data

    r = await api.get("/api/prompt-versions/collections-default@1")
    assert r.status_code == 200
    shipped = r.json()
    assert shipped["playbook"]["name"] == "collections-default" and "shipped" in shipped["tags"]
    assert "$disclosure" in shipped["system_prompt_template"]
    names = {p["name"] for p in (await api.get("/api/personalities")).json()["items"]}
    assert set(library_data.load_personalities()) <= names
    for set_name, at_least in (("default", 8), ("default-heldout", 6)):
        found = (await api.get(f"/api/scenario-sets/{set_name}")).json()
        expected = library_data.load_scenario_set(set_name)
        assert len(found["members"]) >= at_least and found["problems"] == []
        assert [(m["scenario"], m["weight"]) for m in found["members"]] == [
            (x.name, x.weight) for x in expected]


async def test_generated_from_templates_the_same_seed_gives_the_same_scenarios(api: httpx.AsyncClient) -> None:
    await _personality(api, resistance=["hardship", "stalling"])
    body = {"brief": "people in hardship after a job loss", "count": 3, "seed": 11, "mode": "templates"}
    first = (await api.post("/api/scenarios/generate", json=body)).json()
    again = (await api.post("/api/scenarios/generate", json=body)).json()
    assert first == again and first["mode"] == "templates" and len(first["scenarios"]) == 3
    other = (await api.post("/api/scenarios/generate", json={**body, "seed": 12})).json()
    assert other["scenarios"] != first["scenarios"]
    for s in first["scenarios"]:
        assert s["tags"] == ["generated", "hardship"] and s["backstory"]["phone"][-4:-2] == "01"
        got = (await api.get(f"/api/personalities/{s['personality']}")).json()
        assert "hardship" in got["resistance"]
    saved = (await api.post("/api/scenarios/generate", json={**body, "seed": 13, "save": True})).json()
    assert len(saved["saved"]) == 3
    assert (await api.get(f"/api/scenarios/{saved['saved'][0]}")).status_code == 200
    r = await api.post("/api/scenarios/generate", json={**body, "mode": "llm"})
    assert r.status_code == 409 and r.json()["field"] == "mode"
    r = await api.post("/api/scenarios/generate", json={**body, "count": 51})
    assert r.status_code == 400 and r.json()["field"] == "count"


async def test_generated_by_an_llm_and_its_malformed_json_refused(
    base_settings: Settings, light_providers: Providers, light_server: RunningServer,
) -> None:
    async with httpx.AsyncClient(base_url=light_server.http) as plain:
        personality = await _personality(plain, resistance=["dispute"])
    answer: dict[str, Any] = {"text": ""}
    async with running_openai(reply=lambda messages: Reply(answer["text"])) as emulator:
        settings = base_settings.model_copy(update={
            "openai_api_key": SecretStr(emulator.api_key), "openai_base_url": emulator.base_url})
        runner, port = await start_server(settings, light_providers, port=0)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as api:
                name = _name("llm")
                answer["text"] = json.dumps({"scenarios": [{
                    "name": name, "personality": personality, "backstory": BACKSTORY, "weight": 2,
                    "expected_outcomes": ["dispute"], "description": "says the debt is not theirs"}]})
                r = await api.post("/api/scenarios/generate", json={
                    "brief": "a debtor who disputes", "count": 1, "seed": 5, "save": True})
                assert r.status_code == 200, r.text
                assert r.json()["mode"] == "llm" and r.json()["saved"] == [name]
                assert r.json()["scenarios"][0]["tags"] == ["generated", "llm"]
                sent = emulator.requests[-1]
                assert sent["seed"] == 5 and sent["stream"] is True
                assert sent["response_format"] == {"type": "json_object"}
                assert personality in sent["messages"][0]["content"]
                assert "a debtor who disputes" in sent["messages"][1]["content"]

                answer["text"] = '{"scenarios": [{"name": "x",'
                r = await api.post("/api/scenarios/generate", json={"brief": "anything", "count": 1})
                assert r.status_code == 502 and r.json()["error"].startswith("the LLM's answer is not JSON")
                answer["text"] = json.dumps({"scenarios": [{"name": "y", "personality": personality,
                                                             "backstory": BACKSTORY, "weight": 7,
                                                             "expected_outcomes": ["dispute"]}]})
                r = await api.post("/api/scenarios/generate", json={"brief": "anything", "count": 1})
                assert r.status_code == 502 and "scenario 1 is invalid: weight" in r.json()["error"]
                r = await api.post("/api/scenarios/generate", json={"brief": "anything", "count": 1,
                                                                    "mode": "templates"})
                assert r.status_code == 200 and r.json()["mode"] == "templates"
        finally:
            await runner.cleanup()


async def test_the_cli_lists_shows_and_generates(api: httpx.AsyncClient, light_server: RunningServer) -> None:
    personality = await _personality(api, resistance=["callback"], willingness_to_pay=0.6)
    scenario = await _scenario(api, personality)

    async def cli(*args: str) -> tuple[int, str]:
        return await run_cli(light_server.http, "library", *args, columns=250)

    code, text = await cli("personalities", "list")
    assert code == 0 and personality in text, text
    code, text = await cli("personalities", "show", personality, "--json")
    assert code == 0 and json.loads(text)["resistance"] == ["callback"]
    code, text = await cli("scenarios", "show", scenario["name"])
    assert code == 0 and "Robin Fictional" in text
    code, text = await cli("prompts", "list", "--name", "collections-default")
    assert code == 0 and "collections-default@1" in text, text
    code, text = await cli("prompts", "show", "collections-default@1")
    assert code == 0 and "$disclosure" in text
    code, text = await cli("prompts", "show", "collections-default@99")
    assert code == 1 and "error 404: no prompt version 'collections-default@99'" in text
    args = ("generate", "--brief", "busy at work, call back later", "--count", "2", "--seed", "3",
            "--mode", "templates", "--json")
    code, text = await cli(*args)
    assert code == 0, text
    generated = json.loads(text)
    assert [s["tags"] for s in generated["scenarios"]] == [["generated", "callback"]] * 2
    assert json.loads((await cli(*args))[1]) == generated
