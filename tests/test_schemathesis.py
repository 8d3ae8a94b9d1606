"""Schemathesis against a real `dialkit serve` process, from the server's own
/openapi.json: for every documented route (each route group that is installed joins by
itself), generated requests, valid and invalid, never get a 5xx, and every answer conforms
to the document: a documented status code, content type, and a body of the documented
schema. Requests carry the bootstrap API key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode, checks
from schemathesis.specs.openapi import checks as openapi_checks

from tests.campaign_server import campaign_body
from tests.carrier_client import DEMO_CONTEXT
from tests.conftest import ServeFactory

KEY = "schemathesis-key-" + "s" * 32
AUTH = {"Authorization": f"Bearer {KEY}"}
CHECKS = [
    checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
]

pytestmark = pytest.mark.slow


@schemathesis.serializer("text/csv")
def _csv(ctx: Any, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogatepass")


@pytest.fixture(scope="module")
def served(dialkit_serve: ServeFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dialkit_serve(tmp_path_factory.mktemp("schemathesis"), DIALKIT_API_KEY=KEY,
                       DIALKIT_LOG_LEVEL="WARNING") as server:
        yield server.url
        served_log = server.log.read_text(errors="replace")  # what the requests caused
    assert "Traceback" not in served_log, served_log[-3000:]


@pytest.fixture(scope="module")
def existing(served: str) -> dict[str, str]:
    """Path parameters naming records that exist: a call, and a campaign when the campaign
    routes are installed."""
    created = httpx.post(f"{served}/api/calls", json={"context": DEMO_CONTEXT}, headers=AUTH, timeout=30)
    assert created.status_code == 201, created.text
    known = {"call_id": created.json()["call_id"]}
    document = httpx.get(f"{served}/openapi.json", timeout=30).json()
    if "post" in document["paths"].get("/api/campaigns", {}):
        campaign = httpx.post(f"{served}/api/campaigns", json=campaign_body(), headers=AUTH, timeout=30)
        assert campaign.status_code == 201, campaign.text
        known["id"] = known["campaign_id"] = campaign.json()["id"]
    if "post" in document["paths"].get("/api/personalities", {}):
        known.update(_library_records(served))
    return known


def _library_records(served: str) -> dict[str, str]:
    """A personality, a scenario, a set of it and a prompt version of the evaluation library."""
    from ai.playbook import DEFAULT_PLAYBOOK

    made = {"personality": "schemathesis-debtor", "scenario": "schemathesis-scenario",
            "scenario_set": "schemathesis-set", "prompt_version": "schemathesis-prompt@1"}
    backstory = {"debtor_name": "Sam Fictional", "birth_year": 1980, "creditor": "Sample Bank",
                 "balance": 100.0}
    for path, body in (
        ("/api/personalities", {"name": made["personality"]}),
        ("/api/scenarios", {"name": made["scenario"], "personality": made["personality"],
                            "backstory": backstory, "expected_outcomes": ["promise_to_pay"]}),
        ("/api/scenario-sets", {"name": made["scenario_set"], "members": [{"scenario": made["scenario"]}]}),
        ("/api/prompt-versions", {"name": "schemathesis-prompt", "playbook": DEFAULT_PLAYBOOK.read_text()}),
    ):
        created = httpx.post(f"{served}{path}", json=body, headers=AUTH, timeout=30)
        assert created.status_code == 201, created.text
    return made


@pytest.fixture(scope="module")
def api_schema(served: str) -> Any:
    schema = schemathesis.openapi.from_url(f"{served}/openapi.json")
    return schema


#: examples per pass and mode (a route's pass with random ids, and one with real ids), fewer
#: when there are many routes, so that the run stays under a minute
EXAMPLES, BUDGET = 30, 500


# schemathesis' own pytest plugin does not run under pytest 9: hypothesis drives each route
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_route_answers_as_documented(
    api_schema: Any, served: str, existing: dict[str, str], mode: GenerationMode
) -> None:
    failures: list[str] = []
    tried: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    # random ids mostly find nothing (404): a second pass reaches a real record
    passes = [(op, fixed) for op in operations
              for fixed in (None, {p: v for p, v in existing.items() if f"{{{p}}}" in op.path})
              if fixed is None or fixed]
    examples = max(10, min(EXAMPLES, BUDGET // len(passes)))
    for operation, fixed in passes:
        name = f"{operation.method.upper()} {operation.path}"
        tried.append(name)
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

        @given(case=strategy)
        @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.generate])
        def run(case: Any) -> None:
            case.call_and_validate(base_url=served, headers=AUTH, checks=CHECKS, timeout=30)

        try:
            run()
        except Exception as exc:  # every route's failure is reported, not the first only
            failures.append(f"{name} {fixed or ''}: {exc}")
    assert "POST /api/calls" in tried and "GET /api/calls/{call_id}/transcript" in tried
    assert not failures, "\n\n".join(failures)
