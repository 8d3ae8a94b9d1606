"""The evaluation library's store (evaluation.library) on a private PostgreSQL database:
personalities, scenarios and sets (unknown names, a deleted personality, weights out of
range), prompt versions (validation at creation, immutable once used, a change becomes a
version linked to its parent, run statistics), and seeding (idempotent, never overwrites)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio

from ai.playbook import DEFAULT_PLAYBOOK, YamlLoader
from ai.prompt import DEFAULT_TEMPLATE
from dialkit import db
from evaluation import library
from evaluation.library_errors import Conflict, Invalid, NotFound
from evaluation.library_seed import seed_library
from evaluation.models import Backstory, Personality, Scenario

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pool(admin_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own: seeding is tested from an empty library."""
    name = f"dialkit_library_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    parts = urlsplit(admin_database_url)
    pool = await db.create_pool(urlunsplit((parts.scheme, parts.netloc, f"/{name}", "", "")),
                                max_size=4)
    await db.migrate(pool)
    yield pool
    await pool.close()
    admin = await asyncpg.connect(admin_database_url)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _personality(name: str | None = None, **traits: Any) -> Personality:
    return Personality(name=name or _name("p"), willingness_to_pay=0.2, patience=3,
                       resistance=["hardship", "stalling"], **traits)


def _scenario(personality: str, name: str | None = None, **fields: Any) -> Scenario:
    backstory = Backstory(debtor_name="Dana Fictional", birth_year=1981, creditor="Sample Bank",
                          balance=640.0, life_events=["lost a job in March"])
    return Scenario(name=name or _name("s"), personality=personality, backstory=backstory,
                    expected_outcomes=["promise_to_pay", "callback"], **fields)


def _playbook() -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.load(DEFAULT_PLAYBOOK.read_text(), Loader=YamlLoader)
    return data


# ---- personalities and scenarios -------------------------------------------------------


async def test_a_personality_round_trips_and_changes_its_traits(pool: asyncpg.Pool) -> None:
    p = _personality(calm_triggers=["empathy"], interrupts=True)
    created = await library.create_personality(pool, p, actor="tester")
    assert created.personality == p and created.created_by == "tester" and created.deleted_at is None
    assert await library.get_personality(pool, p.name) == p
    changed = await library.update_personality(pool, p.name, {"patience": 9})
    assert changed.personality.patience == 9 and changed.personality.interrupts is True
    with pytest.raises(Invalid, match=r"^patience: .*less than or equal to 10"):
        await library.update_personality(pool, p.name, {"patience": 11})
    with pytest.raises(Invalid, match=r"^name: "):
        await library.update_personality(pool, p.name, {"name": "other"})
    with pytest.raises(Conflict, match=r"^name: a personality named"):
        await library.create_personality(pool, p)
    with pytest.raises(NotFound, match="no personality 'nobody-here'"):
        await library.get_personality(pool, "nobody-here")
    assert p.name in [r.personality.name for r in await library.list_personalities(pool)]


async def test_a_deleted_personality_cannot_be_used_and_its_scenarios_report_it(pool: asyncpg.Pool) -> None:
    p = _personality()
    await library.create_personality(pool, p)
    s = _scenario(p.name)
    await library.create_scenario(pool, s)
    deleted = await library.delete_personality(pool, p.name)
    assert deleted.deleted_at is not None and deleted.scenarios == [s.name]
    with pytest.raises(Conflict, match=f"personality {p.name!r} was deleted"):
        await library.get_personality(pool, p.name)
    with pytest.raises(Conflict, match=f"^personality: personality {p.name!r} was deleted"):
        await library.create_scenario(pool, _scenario(p.name))
    record = await library.get_scenario_record(pool, s.name)
    assert record.personality_deleted and record.problems == [f"personality {p.name!r} was deleted"]
    with pytest.raises(Conflict, match="was deleted"):
        await library.get_scenario(pool, s.name)
    assert p.name not in [r.personality.name for r in await library.list_personalities(pool)]
    listed = await library.list_personalities(pool, include_deleted=True)
    assert p.name in [r.personality.name for r in listed]
    # the name can be taken again: the scenarios naming it work again
    await library.create_personality(pool, p)
    assert await library.get_scenario(pool, s.name) == s


async def test_scenarios_refuse_unknown_personalities_and_bad_weights(pool: asyncpg.Pool) -> None:
    with pytest.raises(Invalid, match=r"^personality: no personality 'ghost'"):
        await library.create_scenario(pool, _scenario("ghost"))
    p = _personality()
    await library.create_personality(pool, p)
    s = await library.create_scenario(pool, _scenario(p.name, weight=4, tags=["t1"]))
    name = s.scenario.name
    with pytest.raises(Invalid, match=r"^weight: .*less than or equal to 5"):
        await library.update_scenario(pool, name, {"weight": 6})
    with pytest.raises(Invalid, match=r"^backstory.balance: "):
        await library.update_scenario(pool, name, {"backstory": {
            **s.scenario.backstory.model_dump(), "balance": -1}})
    with pytest.raises(Invalid, match=r"^personality: no personality"):
        await library.update_scenario(pool, name, {"personality": "ghost"})
    changed = await library.update_scenario(pool, name, {"weight": 2, "tags": ["t2"]})
    assert (changed.scenario.weight, changed.scenario.tags) == (2, ["t2"])
    assert [r.scenario.name for r in await library.list_scenarios(pool, tag="t2")] == [name]
    assert [r.scenario.name for r in await library.list_scenarios(pool, personality=p.name)] == [name]
    with pytest.raises(NotFound):
        await library.get_scenario(pool, "no-such-scenario")


async def test_scenario_sets_keep_order_and_their_own_weights(pool: asyncpg.Pool) -> None:
    p = _personality()
    await library.create_personality(pool, p)
    a = await library.create_scenario(pool, _scenario(p.name, weight=3))
    b = await library.create_scenario(pool, _scenario(p.name, weight=3))
    set_name = _name("set")
    members = [(b.scenario.name, 5), (a.scenario.name, None)]
    await library.create_scenario_set(pool, set_name, members, description="two")
    got = await library.get_scenario_set(pool, set_name)
    assert [(s.name, s.weight) for s in got] == [(b.scenario.name, 5), (a.scenario.name, 3)]
    with pytest.raises(Invalid, match=r"^members\[0\].weight: must be from 1 to 5, got 0"):
        await library.replace_scenario_set(pool, set_name, [(a.scenario.name, 0)])
    with pytest.raises(Invalid, match=r"^members\[1\].scenario: .* is listed twice"):
        await library.replace_scenario_set(pool, set_name, [(a.scenario.name, 1), (a.scenario.name, 2)])
    with pytest.raises(Invalid, match=r"^members\[0\].scenario: no scenario 'ghost'"):
        await library.create_scenario_set(pool, _name("set"), [("ghost", None)])
    with pytest.raises(Conflict, match=r"^name: a scenario set named"):
        await library.create_scenario_set(pool, set_name, [])
    with pytest.raises(Conflict, match=f"is in the scenario sets {set_name}"):
        await library.delete_scenario(pool, a.scenario.name)
    await library.delete_personality(pool, p.name)
    with pytest.raises(Conflict, match=f"{b.scenario.name}: personality {p.name!r} was deleted"):
        await library.get_scenario_set(pool, set_name)
    await library.replace_scenario_set(pool, set_name, [])
    assert (await library.delete_scenario(pool, a.scenario.name)).deleted_at is not None
    await library.delete_scenario_set(pool, set_name)
    with pytest.raises(NotFound, match="no scenario set"):
        await library.get_scenario_set(pool, set_name)


# ---- prompt versions -------------------------------------------------------------------


async def test_a_prompt_version_is_validated_when_created(pool: asyncpg.Pool) -> None:
    name = _name("pv")
    broken = _playbook()
    broken["states"]["disclosure"]["say"] = ["Hello there."]  # the mini-Miranda is gone
    with pytest.raises(Invalid, match=r"^playbook: .*disclosure.say must contain the mini-Miranda"):
        await library.create_prompt_version(pool, name=name, playbook=broken)
    with pytest.raises(Invalid, match=r"^playbook: not valid YAML"):
        await library.create_prompt_version(pool, name=name, playbook="a: [unclosed")
    with pytest.raises(Invalid, match=r"^system_prompt_template: .*unknown placeholders \['nope'\]"):
        await library.create_prompt_version(pool, name=name, playbook=_playbook(),
                                            system_prompt_template="Hi $nope")
    with pytest.raises(Invalid, match=r"^llm.temperature: "):
        await library.create_prompt_version(pool, name=name, playbook=_playbook(),
                                            llm={"temperature": 3})
    with pytest.raises(Invalid, match=r"^name: "):
        await library.create_prompt_version(pool, name="Bad Name", playbook=_playbook())
    with pytest.raises(NotFound):
        await library.get_prompt_version(pool, f"{name}@1")


async def test_a_used_prompt_version_never_changes_a_change_is_its_child(pool: asyncpg.Pool) -> None:
    name = _name("pv")
    v1 = await library.create_prompt_version(
        pool, name=name, playbook=DEFAULT_PLAYBOOK.read_text(), llm={"model": "m1", "max_tokens": 200},
        notes="first", tags=["a"], actor="tester")
    assert (v1.ref, v1.parent_id, v1.used_at) == (f"{name}@1", None, None)
    assert v1.system_prompt_template == DEFAULT_TEMPLATE.read_text()  # the playbook's own template
    playbook = v1.playbook()
    assert playbook.ref == f"{name}@1" and "disclosure" in playbook.states
    assert v1.llm.model == "m1" and v1.llm.max_tokens == 200
    # unused: changed in place
    same, created = await library.update_prompt_version(pool, v1.ref, {"llm": {"model": "m2"}})
    assert not created and same.id == v1.id and same.llm.model == "m2"

    used = await library.mark_used(pool, v1.id)
    assert used.used_at is not None
    assert (await library.mark_used(pool, v1.id)).used_at == used.used_at
    reworded = _playbook()
    reworded["states"]["greeting"]["say"] = ["Good day, this is {agent_name} from {caller_brand}."]
    v2, created = await library.update_prompt_version(pool, v1.ref, {"playbook": reworded,
                                                                     "notes": "reworded"})
    assert created and (v2.version, v2.parent_id, v2.notes, v2.tags) == (2, v1.id, "reworded", ["a"])
    assert v2.playbook().states["greeting"].say == reworded["states"]["greeting"]["say"]
    old = await library.get_prompt_version(pool, v1.id)
    assert old.playbook_data == used.playbook_data and old.notes == "first"
    # bookkeeping changes in place, even once used
    tagged, created = await library.update_prompt_version(pool, v1.ref, {"tags": ["b"], "active": False})
    assert not created and tagged.id == v1.id and tagged.tags == ["b"] and not tagged.active
    assert (await library.get_prompt_version(pool, name)).id == v2.id  # the highest active one
    # the database holds the line on its own too
    with pytest.raises(asyncpg.RaiseError, match="its content cannot change"):
        await pool.execute("UPDATE prompt_versions SET system_prompt_template = 'x' WHERE id = $1", v1.id)
    with pytest.raises(Conflict, match="was used"):
        await library.delete_prompt_version(pool, v1.ref)
    with pytest.raises(asyncpg.RaiseError, match="cannot be deleted"):
        await pool.execute("DELETE FROM prompt_versions WHERE id = $1", v1.id)
    # an unused version goes, once nothing came from it
    await library.delete_prompt_version(pool, v2.ref)
    with pytest.raises(NotFound):
        await library.get_prompt_version(pool, v2.ref)


async def test_run_statistics_add_up(pool: asyncpg.Pool) -> None:
    pv = await library.create_prompt_version(pool, name=_name("pv"), playbook=_playbook())
    assert pv.success_rate is None and pv.avg_duration_s is None
    await library.record_run_stats(pool, pv.id, runs=4, successes=3, duration_s=200.0)
    after = await library.record_run_stats(pool, pv.id, runs=4, successes=1, duration_s=120.0)
    assert (after.runs, after.successes, after.success_rate, after.avg_duration_s) == (8, 4, 0.5, 40.0)
    assert after.used_at is not None
    with pytest.raises(Invalid, match=r"^successes: "):
        await library.record_run_stats(pool, pv.id, runs=1, successes=2, duration_s=1)
    with pytest.raises(NotFound):
        await library.record_run_stats(pool, 2**40, runs=1, successes=1, duration_s=1)
    listed = await library.list_prompt_versions(pool, name=pv.name)
    assert [v.id for v in listed] == [pv.id]


async def test_the_system_prompt_renders_from_the_stored_template(pool: asyncpg.Pool) -> None:
    from ai.context import CallContext

    pv = await library.create_prompt_version(
        pool, name=_name("pv"), playbook=_playbook(),
        system_prompt_template="You are $agent_name calling $debtor_name. Rules: $disclosure")
    playbook = pv.playbook()
    ctx = CallContext.from_dict({"debtor_name": "Dana Fictional", "birth_year": 1981, "balance": 640,
                                 "creditor": "Sample Bank", "callback_number": "+12025550111",
                                 "timezone": "America/New_York"}, playbook)
    text = pv.render_system_prompt(playbook, ctx)
    assert text.startswith("You are Alex calling Dana Fictional. Rules: Thank you, Dana.")
    assert "This is an attempt to collect a debt by a debt collector" in text


# ---- seeding ---------------------------------------------------------------------------


async def test_seeding_adds_what_is_shipped_once_and_never_overwrites(pool: asyncpg.Pool) -> None:
    p = _personality(name=_name("seeded"))
    scenarios = [_scenario(p.name, name=_name("seeded-s")) for _ in range(3)]
    sets = {_name("seed-set"): scenarios}
    report = await seed_library(pool, personalities={p.name: p}, scenario_sets=sets)
    assert report.personalities == [p.name] and report.scenario_sets == list(sets)
    assert "collections-default@1" in report.prompt_versions
    shipped = await library.get_prompt_version(pool, "collections-default@1")
    assert shipped.playbook().states.keys() == library_playbook_states()
    assert shipped.system_prompt_template == DEFAULT_TEMPLATE.read_text()
    assert "shipped" in shipped.tags
    got = await library.get_scenario_set(pool, next(iter(sets)))
    assert got == scenarios

    await library.update_personality(pool, p.name, {"patience": 10})
    again = await seed_library(pool, personalities={p.name: p}, scenario_sets=sets)
    assert not again
    assert (await library.get_personality(pool, p.name)).patience == 10


def library_playbook_states() -> Any:
    from ai.playbook import load_playbook

    return load_playbook(DEFAULT_PLAYBOOK).states.keys()
