"""The console's Evaluations pages in headless Chromium (Debian's `chromium`, driven by
Playwright) against a running server whose in-process worker runs the evaluation calls, on a
database of its own: an evaluation of collections-default@1 over the `default` set started
from the page, watched until done, its results table sorted and filtered, a call's transcript
opened with the judge's evidence beside it; chosen scenarios with a weight of their own; a
refused start shown. Screenshots go to $DIALKIT_ARTIFACTS (a temporary directory when unset)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from dialkit.config import Settings
from tests.conftest import private_database
from tests.test_console_library import Browser, browsing

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.slow


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(base_settings: Settings, admin_database_url: str,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    async with private_database(admin_database_url, "dialkit_console_eval") as url, \
            browsing(base_settings, tmp_path_factory, database_url=url, run_jobs=True) as b:
        yield b


async def cells(table: Any, column: int) -> list[str]:
    return [t.strip() for t in await table.locator(f"tbody tr td:nth-child({column})").all_inner_texts()]


async def test_an_evaluation_is_started_watched_and_its_evidence_read(console: Browser) -> None:
    async with console.http() as http:
        members = (await http.get("/api/scenario-sets/default")).json()["members"]
    page = await console.page()
    await page.goto(console.url + "#/evaluations")
    form = page.get_by_role("form", name="Start an evaluation")
    assert await form.get_by_label("Prompt version", exact=True).input_value() == "collections-default@1"
    assert await form.get_by_label("Scenario set", exact=True).input_value() == "default"
    await form.get_by_label("Seed").fill("7")
    await form.get_by_label("Label").fill("console check")
    await console.shot(page, "evaluations")
    await form.get_by_role("button", name="Start evaluation").click()
    await page.locator(".notice-ok", has_text=re.compile(r"Evaluation \d+ started")).wait_for()
    await page.wait_for_url(re.compile(r"#/evaluation/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[-1])

    # the run is watched until it is done: the table fills, the score is shown
    progress = page.locator("section", has=page.locator("h2", has_text="Progress"))
    await progress.locator(".badge", has_text="completed").wait_for(timeout=120_000)
    results = page.locator("section", has=page.locator("h2", has_text="Results")).locator("table")
    await results.locator("caption", has_text=f"{len(members)} of {len(members)} call(s)").wait_for()
    async with console.http() as http:
        run = (await http.get(f"/api/evaluations/{run_id}")).json()
    assert run["status"] == "COMPLETED" and run["seed"] == 7 and run["label"] == "console check"
    assert run["scenario_set"] == "default" and run["prompt_version"] == "collections-default@1"
    weighted = progress.locator(".stats div", has=page.locator("dt", has_text="Weighted score"))
    assert (await weighted.locator("dd").inner_text()).strip() == f"{run['weighted_score']:.1f}"
    assert "null" not in await progress.inner_text()  # no error: nothing in its place
    assert sorted(await cells(results, 2)) == sorted(m["scenario"] for m in members)
    await console.shot(page, "evaluation-done")

    # sorted by score, both ways; the header says which
    scores = {r["scenario"]: r["score"] for r in run["results"]}
    await results.get_by_role("button", name="Score").click()
    assert await results.locator("th", has=page.locator("button", has_text="Score")).get_attribute("aria-sort") == "ascending"
    shown = [float(x) for x in await cells(results, 8)]
    assert shown == sorted(shown) and len(shown) == len(members)
    await results.get_by_role("button", name="Score").click()
    shown = [float(x) for x in await cells(results, 8)]
    assert shown == sorted(shown, reverse=True)
    top = (await cells(results, 2))[0]
    assert scores[top] == max(scores.values())

    # filtered: by scenario name, by verdict
    filters = page.get_by_role("search", name="Result filters")
    await filters.get_by_label("Scenario or personality").fill("hardship")
    await results.locator("caption", has_text=f"of {len(members)} call(s)").wait_for()
    hardship = sorted(r["scenario"] for r in run["results"]
                      if "hardship" in r["scenario"] or "hardship" in r["personality"])
    assert hardship and sorted(await cells(results, 2)) == hardship
    await filters.get_by_label("Scenario or personality").fill("")
    await filters.get_by_label("Verdict").select_option("failed")
    failed = sorted(r["scenario"] for r in run["results"] if not r["passed"])
    assert sorted(n for n in await cells(results, 2) if n != "No row matches the filters.") == failed
    await filters.get_by_label("Verdict").select_option("")

    # a call opened: its transcript, the judge's criteria and evidence, each quote's turn
    chosen = next(r for r in run["results"] if any(c["evidence"] for c in r["criteria"]))
    name = chosen["scenario"]
    await results.get_by_role("button", name=re.compile(rf"Open call {chosen['idx'] + 1} \({re.escape(name)}\)")).click()
    detail = page.locator("section", has=page.locator("h2", has_text=f"Call {chosen['idx'] + 1}: {name}"))
    await detail.wait_for()
    assert await page.evaluate("document.activeElement.id") == "h-call"
    assert await detail.locator(".transcript .turn").count() == len(chosen["transcript"])
    judge = detail.locator(".judge")
    for criterion in chosen["criteria"]:
        await judge.locator(".criterion-head", has_text=criterion["name"].replace("_", " ")).wait_for()
    assert await detail.locator(".turn.cited").count() >= 1
    link = judge.locator("button.turn-link").first
    label = await link.get_attribute("aria-label")
    turn = int(re.search(r"turn (\d+)", label or "").group(1))  # type: ignore[union-attr]
    await link.click()
    assert await page.evaluate("document.activeElement.id") == f"eval-turn-{turn - 1}"
    assert page.url.endswith(f"#/evaluation/{run_id}/{chosen['idx']}")
    await console.shot(page, "evaluation-call")

    # the address names the call: a reload opens it again, on a tablet too, with nothing
    # wider than the screen
    await page.set_viewport_size({"width": 768, "height": 1024})
    await page.reload()
    await page.locator("section", has=page.locator("h2", has_text=f"Call {chosen['idx'] + 1}: {name}")).wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 768
    await console.shot(page, "evaluation-tablet")
    await page.goto(console.url + "#/evaluations")
    await page.get_by_role("link", name=f"#{run_id}").wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 768
    assert not console.errors, console.errors
    await page.context.close()


async def test_chosen_scenarios_run_with_a_weight_of_their_own(console: Browser) -> None:
    page = await console.page()
    await page.goto(console.url + "#/evaluations")
    form = page.get_by_role("form", name="Start an evaluation")
    await form.get_by_label("scenarios chosen here").check()
    assert await form.get_by_label("Scenario set", exact=True).is_hidden()
    # the radio buttons are drawn at their own size, not stretched to the width of the form
    box = await form.get_by_label("scenarios chosen here").bounding_box()
    assert box is not None and box["width"] < 40 and box["height"] < 40, box
    await form.get_by_label("cooperative", exact=True).check()
    await form.get_by_label("hostile", exact=True).check()
    await form.get_by_label("Weight of cooperative in this run").select_option("1")
    await form.get_by_label("Repeat").fill("2")
    await form.get_by_role("button", name="Start evaluation").click()
    await page.wait_for_url(re.compile(r"#/evaluation/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[-1])
    progress = page.locator("section", has=page.locator("h2", has_text="Progress"))
    await progress.locator(".badge", has_text="completed").wait_for(timeout=120_000)
    async with console.http() as http:
        run = (await http.get(f"/api/evaluations/{run_id}")).json()
    assert run["scenarios"] == ["cooperative", "hostile"]
    assert run["repeat"] == 2 and run["calls_total"] == 4
    # hostile counts with its own weight (3, as shipped), cooperative with the one chosen here
    assert sorted((r["scenario"], r["weight"], r["repeat"]) for r in run["results"]) == [
        ("cooperative", 1, 1), ("cooperative", 1, 2), ("hostile", 3, 1), ("hostile", 3, 2)]
    results = page.locator("section", has=page.locator("h2", has_text="Results")).locator("table")
    assert await cells(results, 4) == ["1", "1", "3", "3"]  # the weight column, in call order
    assert not console.errors, console.errors
    await page.context.close()


async def test_a_refused_start_shows_the_reason(console: Browser) -> None:
    page = await console.page()
    await page.goto(console.url + "#/evaluations")
    form = page.get_by_role("form", name="Start an evaluation")
    await form.get_by_label("scenarios chosen here").check()
    await form.get_by_role("button", name="Start evaluation").click()
    await page.locator(".notice-error", has_text="Choose at least one scenario").wait_for()
    await form.get_by_label("a scenario set").check()
    await form.get_by_label("Mode").select_option("audio")
    await form.get_by_role("button", name="Start evaluation").click()
    error = page.locator(".notice-error", has_text="audio")
    await error.wait_for()
    assert page.url.endswith("#/evaluations")  # still here, nothing started
    await console.shot(page, "evaluation-refused")
    await page.context.close()


async def test_older_evaluations_are_a_button_away(console: Browser) -> None:
    async with console.http() as http:
        for n in range(51):  # one page of 50, and one more
            made = await http.post("/api/evaluations", json={
                "prompt_version": "collections-default@1", "scenarios": [{"name": "voicemail"}],
                "label": f"paging {n}"})
            assert made.status_code == 202, made.text
        total = len((await http.get("/api/evaluations", params={"limit": 500})).json()["items"])
    page = await console.page()
    await page.goto(console.url + "#/evaluations")
    listed = page.locator("section", has=page.locator("h2", has_text="Evaluations so far"))
    await listed.locator("caption", has_text="50 evaluation(s), newest first (older ones below)").wait_for()
    assert await listed.locator("tbody tr").count() == 50
    await listed.get_by_role("button", name="Show older evaluations").click()
    await listed.locator("caption", has_text=f"{min(total, 100)} evaluation(s)").wait_for()
    ids = [int(t.strip("#")) for t in await listed.locator("tbody tr td:first-child").all_inner_texts()]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)  # newest first, none twice
    # a filter starts from the first page again
    filters = page.get_by_role("form", name="Evaluation filters")
    await filters.get_by_label("Label").fill("paging 7")
    await filters.get_by_role("button", name="Show evaluations").click()
    await listed.locator("caption", has_text="1 evaluation(s), newest first").wait_for()
    assert await listed.get_by_role("button", name="Show older evaluations").is_hidden()
    assert not console.errors, console.errors
    await page.context.close()
