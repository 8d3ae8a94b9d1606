"""POST /api/calls over a real socket and a real database: the context a playbook declares is
validated in full (every missing or invalid field named), the debtor's time zone is chosen
and stored, and each call runs, and stores, the playbook it named."""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from ai.context import CallContext, ContextError
from ai.playbook import (
    DEFAULT_PLAYBOOK,
    PlaybookError,
    PlaybookRegistry,
    UnknownPlaybook,
    YamlLoader,
    load_playbook,
    parse_playbook,
)
from dialkit.config import Settings
from dialkit.providers import build_providers
from dialkit.server import start_server
from media.auth import issue_token
from tests.carrier_client import DEMO_CONTEXT, TwilioClient, call_detail, create_call
from tests.conftest import RunningServer


async def _post(server: RunningServer, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http) as c:
        return await c.post("/api/calls", json=body)


async def test_empty_context_is_refused_naming_every_missing_field(light_server: RunningServer) -> None:
    resp = await _post(light_server, {"context": {}})
    assert resp.status_code == 400
    body = resp.json()
    assert set(body["fields"]) == {
        "debtor_name", "birth_year", "balance", "creditor", "callback_number", "timezone"
    }
    assert all(reason.startswith("missing") for reason in body["fields"].values())
    assert "collections-default@1.0" in body["error"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("balance", "abc", "must be a number"),
        ("balance", 1e308, "must be less than"),
        ("balance", 0, "must be greater than 0"),
        ("balance", "12.345", "at most 2 decimal places"),
        ("balance", True, "must be a number"),
        ("balance", "1e400", "must be less than"),
        ("balance", "NaN", "finite"),
        ("balance", "-Infinity", "finite"),
        ("balance", 1e-320, "at most 2 decimal places"),
        ("today", "not-a-date", "YYYY-MM-DD"),
        ("today", "9999-12-31", "from 2000 to 2999"),
        ("today", "0001-01-01", "from 2000 to 2999"),
        ("now", "9999-12-31T23:59:59-12:00", "from 2000 to 2999"),
        ("now", "0001-01-01T00:00:00+14:00", "from 2000 to 2999"),
        ("birth_year", 2.5, "whole number"),
        ("birth_year", "1" * 30, "whole number"),
        ("debtor_name", "A" * 201, "at most 200 characters"),
        ("creditor", {"name": "Acme"}, "must be a string"),
        ("instalments", 1e300, "at most 120"),
        ("today", 5, "must be a string"),
        ("now", "soon", "ISO 8601"),
        ("birth_year", "nineteen", "whole number"),
        ("birth_year", 1850, "from 1900"),
        ("birth_year", dt.date.today().year + 2, "from 1900"),
        ("debtor_name", "", "must not be empty"),
        ("debtor_name", "Ann\x00Lee", "control characters"),
        ("debtor_name", ["Ann"], "must be a string"),
        ("first_contact", "yes", "true or false"),
        ("currency", "DOGE", "must be one of"),
        ("callback_number", "12", "not a valid phone number"),
        ("timezone", "Mars/Olympus", "IANA time zone"),
        ("timezone", "../../etc/passwd", "IANA time zone"),
    ],
)
async def test_invalid_context_field_is_refused_with_its_reason(
    light_server: RunningServer, field: str, value: Any, reason: str
) -> None:
    resp = await _post(light_server, {"context": {**DEMO_CONTEXT, field: value}})
    assert resp.status_code == 400, resp.text
    fields = resp.json()["fields"]
    assert list(fields) == [field]
    assert reason in fields[field]


@pytest.mark.parametrize(
    ("field", "raw", "reason"),
    [
        ("balance", b"NaN", "must be a finite number"),
        ("balance", b"Infinity", "must be a finite number"),
        ("balance", b"1e400", "must be a finite number"),
        ("balance", str(2**64).encode(), "must be less than"),
        ("debtor_name", b'"Ann\\ud800"', "unpaired surrogate"),
        ("creditor", b"[" * 40 + b"]" * 40, "must be a string"),
        ("note", b'"' + b"A" * 20_000 + b'"', "longer than"),
        ("note", b'{"a": ' * 40 + b"1" + b"}" * 40, "nested deeper"),
        ("note", str(2**64).encode(), "64 bits"),
        ("note", b"-Infinity", "must be a finite number"),
        ("note", b'"a\\u0000b"', "NUL"),
    ],
)
async def test_values_json_or_the_store_cannot_hold_are_refused_naming_the_field(
    light_server: RunningServer, field: str, raw: bytes, reason: str
) -> None:
    body = json.dumps({"context": {**DEMO_CONTEXT, field: "@"}}).encode().replace(b'"@"', raw)
    async with httpx.AsyncClient(base_url=light_server.http) as c:
        resp = await c.post("/api/calls", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    fields = resp.json()["fields"]
    assert list(fields) == [field]
    assert reason in fields[field]


async def test_several_bad_fields_are_all_reported(light_server: RunningServer) -> None:
    ctx = {**DEMO_CONTEXT, "balance": "abc", "birth_year": "nineteen", "today": 5}
    del ctx["creditor"]
    resp = await _post(light_server, {"context": ctx})
    assert resp.status_code == 400
    assert set(resp.json()["fields"]) == {"balance", "birth_year", "today", "creditor"}


async def test_time_zone_comes_from_the_called_number_and_is_stored(light_server: RunningServer) -> None:
    ctx = {k: v for k, v in DEMO_CONTEXT.items() if k != "timezone"}
    resp = await _post(light_server, {"to": "+14155550123", "context": ctx})
    assert resp.status_code == 201, resp.text
    stored = (await call_detail(light_server.http, resp.json()["call_id"], until_ended=False))["call"]
    assert stored["context"]["timezone"] == "America/Los_Angeles"
    assert stored["context"]["timezone_source"] == "number"
    # a number that maps to several zones: the first is used, and the candidates are kept
    resp = await _post(light_server, {"to": "+18005550199", "context": ctx})
    assert resp.status_code == 201, resp.text
    stored = (await call_detail(light_server.http, resp.json()["call_id"], until_ended=False))["call"]
    candidates = stored["context"]["timezone_candidates"]
    assert len(candidates) > 1 and stored["context"]["timezone"] == candidates[0]
    # given in the context, it wins over the number
    resp = await _post(light_server, {"to": "+14155550123", "context": {**ctx, "timezone": "America/Chicago"}})
    stored = (await call_detail(light_server.http, resp.json()["call_id"], until_ended=False))["call"]
    assert stored["context"]["timezone"] == "America/Chicago"
    assert "timezone_source" not in stored["context"]


def test_today_and_now_resolve_in_the_debtors_time_zone() -> None:
    playbook = load_playbook()
    at = dt.datetime(2026, 11, 21, 3, 30, tzinfo=dt.UTC)  # Saturday 03:30 UTC
    ctx = {k: v for k, v in DEMO_CONTEXT.items() if k != "timezone"}
    la = CallContext.from_dict({**ctx, "timezone": "America/Los_Angeles"}, playbook, now=at)
    assert la.today == dt.date(2026, 11, 20) and la.now.hour == 19  # still Friday there
    kolkata = CallContext.from_dict(ctx, playbook, now=at, phone="+919876543210")
    assert kolkata.timezone == "Asia/Calcutta" or kolkata.timezone == "Asia/Kolkata"
    assert kolkata.today == dt.date(2026, 11, 21) and kolkata.now.hour == 9
    # explicit overrides (simulations, tests) are read in the debtor's zone
    fixed = CallContext.from_dict({**ctx, "timezone": "America/New_York", "now": "2026-11-21T09:00:00"},
                                  playbook, now=at)
    assert fixed.now.utcoffset() == dt.timedelta(hours=-5) and fixed.today == dt.date(2026, 11, 21)
    with pytest.raises(ContextError) as err:
        CallContext.from_dict(ctx, playbook, now=at)  # no zone, no number
    assert list(err.value.problems) == ["timezone"]


def test_a_playbook_may_allow_a_utc_fallback(tmp_path: Path) -> None:
    data = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    data["context"]["timezone"]["default"] = "UTC"
    path = tmp_path / "utc.yaml"
    path.write_text(yaml.safe_dump(data))
    ctx = {k: v for k, v in DEMO_CONTEXT.items() if k != "timezone"}
    c = CallContext.from_dict(ctx, load_playbook(path), now=dt.datetime(2026, 1, 1, 23, tzinfo=dt.UTC))
    assert c.timezone == "UTC" and c.today == dt.date(2026, 1, 1)


def test_a_collections_playbook_must_declare_the_fields_its_policy_reads() -> None:
    data = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    del data["context"]["birth_year"]
    data["context"]["balance"] = {"type": "str"}
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data)
    msg = str(err.value)
    assert "context must declare 'birth_year'" in msg
    assert "context.balance must be of type money or decimal" in msg
    # a default for a fact about the person is refused where it cannot be a product fact
    data = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    data["context"]["debtor_name"] = {"type": "str", "required": True, "default": "Pat Doe"}
    data["context"]["balance"] = {"type": "money", "required": False, "default": "abc"}
    with pytest.raises(PlaybookError) as err:
        parse_playbook(data)
    msg = str(err.value)
    assert "context.debtor_name: a field with a default cannot also be required" in msg
    assert "context.balance: must be a number" in msg
    data["context"]["debtor_name"] = {"type": "str", "required": False, "default": "Pat Doe"}
    data["context"]["balance"] = {"type": "money", "required": False}
    with pytest.raises(PlaybookError, match="debtor_name is a fact about the debtor: it cannot have a default"):
        parse_playbook(data)


# ---- a playbook per call -----------------------------------------------------------------


def _second_playbook(folder: Path, version: str, agent: str) -> None:
    data = copy.deepcopy(yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader))
    data.update(name="collections-robin", version=version, agent_name=agent)
    (folder / f"robin-{version}.yaml").write_text(yaml.safe_dump(data))


@pytest_asyncio.fixture(scope="module")
async def two_playbooks(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
                        ) -> AsyncIterator[RunningServer]:
    folder = tmp_path_factory.mktemp("playbooks")
    _second_playbook(folder, "1.9", "Sam")
    _second_playbook(folder, "1.10", "Robin")
    settings = base_settings.model_copy(update={"playbook": folder})
    providers = await build_providers(settings, warmup=False)
    runner, port = await start_server(settings, providers, port=0)
    yield RunningServer(runner, port, settings)
    await runner.cleanup()
    await asyncio.sleep(0)


def test_registry_resolves_names_and_versions(tmp_path: Path) -> None:
    _second_playbook(tmp_path, "1.9", "Sam")
    _second_playbook(tmp_path, "1.10", "Robin")
    reg = PlaybookRegistry.load(tmp_path)
    assert reg.default.ref == "collections-default@1.0"
    assert reg.get("collections-robin").version == "1.10"  # 1.10 is above 1.9
    assert reg.get("collections-robin@1.9").agent_name == "Sam"
    with pytest.raises(UnknownPlaybook) as err:
        reg.get("collections-robin@3")
    assert ("available: collections-default@1.0, collections-robin@1.10, collections-robin@1.9, "
            "collections-weak@1") in str(err.value)
    assert PlaybookRegistry.load(tmp_path / "robin-1.9.yaml").default.agent_name == "Sam"


async def _greeting(server: RunningServer, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    created = await create_call(server.http, **kwargs)
    client = await TwilioClient.connect(f"{server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    mark = await client.recv_until("mark", 10)
    await client.mark(mark["mark"]["name"])
    await asyncio.sleep(0.2)
    await client.stop()
    await client.closed()
    detail = await call_detail(server.http, created["call_id"])
    return detail["turns"][0]["text"], detail


async def test_a_call_runs_and_stores_the_playbook_it_names(two_playbooks: RunningServer) -> None:
    text, detail = await _greeting(two_playbooks, playbook="collections-robin")
    assert text.startswith("Hello, this is Robin calling from Acme Services.")
    call = detail["call"]
    assert (call["playbook_name"], call["playbook_version"]) == ("collections-robin", "1.10")
    text, detail = await _greeting(two_playbooks, playbook="collections-robin@1.9")
    assert text.startswith("Hello, this is Sam calling")
    assert detail["call"]["playbook_version"] == "1.9"
    text, detail = await _greeting(two_playbooks)
    assert text.startswith("Hello, this is Alex calling")
    assert detail["call"]["playbook_name"] == "collections-default"


@pytest.mark.parametrize(
    ("playbook", "reason"),
    [
        ("no-such-playbook", "unknown playbook 'no-such-playbook'"),
        ("collections-robin@9.9", "unknown playbook"),
        (["collections-default"], "invalid call request"),
        (5, "invalid call request"),
        ("collections\x00default", "invalid call request"),
        ("", "invalid call request"),
    ],
)
async def test_bad_playbook_is_refused(two_playbooks: RunningServer, playbook: Any, reason: str) -> None:
    resp = await _post(two_playbooks, {"playbook": playbook, "context": DEMO_CONTEXT})
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert reason in body["error"]
    if "unknown" in reason:
        assert body["available"] == ["collections-default@1.0", "collections-robin@1.10",
                                     "collections-robin@1.9", "collections-weak@1", "echo@1.0"]
    else:
        assert body["details"][0]["loc"] == ["playbook"]


async def test_echo_playbook_needs_no_debtor_context(two_playbooks: RunningServer) -> None:
    resp = await _post(two_playbooks, {"playbook": "echo", "context": {}})
    assert resp.status_code == 201, resp.text
    assert resp.json()["playbook"] == "echo@1.0"


async def test_a_call_whose_playbook_is_not_loaded_is_refused_at_start(
    two_playbooks: RunningServer, light_server: RunningServer
) -> None:
    # created on a node that has the playbook, answered by one that does not
    created = await create_call(two_playbooks.http, playbook="collections-robin")
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.connected()
    await client.start(created["call_id"], created["token"])
    code, reason = await client.closed()
    assert code == 1008 and "collections-robin@1.10 is not loaded" in reason


async def test_a_stored_call_without_its_context_is_refused_not_invented(
    light_server: RunningServer,
) -> None:
    # a call stored before contexts were checked: the agent must not make the debtor up
    store = light_server.state.store
    call_id = await store.create_call("twilio", {"to_be": "filled"}, None, None)
    token = issue_token(light_server.settings.resolved_media_secret(), call_id, 60)
    client = await TwilioClient.connect(f"{light_server.ws}/media/twilio")
    await client.connected()
    await client.start(call_id, token)
    code, reason = await client.closed()
    assert code == 1008 and reason.startswith("call context refused")
    detail = await call_detail(light_server.http, call_id)
    assert detail["call"]["status"] == "failed"
    assert "debtor_name: missing" in detail["call"]["failure_reason"]
    assert detail["turns"] == []


def test_an_edited_copy_replaces_the_packaged_playbook_of_its_name(tmp_path: Path) -> None:
    path = tmp_path / "tuned.yaml"
    path.write_text(DEFAULT_PLAYBOOK.read_text().replace("agent_name: Alex", "agent_name: Kim"))
    reg = PlaybookRegistry.load(path)
    assert reg.get("collections-default@1.0").agent_name == "Kim" and reg.default.agent_name == "Kim"
    (tmp_path / "twin.yaml").write_text(DEFAULT_PLAYBOOK.read_text().replace("agent_name: Alex", "agent_name: Lee"))
    with pytest.raises(PlaybookError, match=r"two different playbooks are named collections-default@1\.0"):
        PlaybookRegistry.load(tmp_path)
