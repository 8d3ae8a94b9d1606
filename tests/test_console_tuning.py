"""The console's Tuning pages in headless Chromium (Debian's `chromium`, driven by Playwright)
against a running server whose in-process worker runs the tuning and its evaluations, on a
database of its own: the score-per-iteration line chart drawn from known values (its lines,
dots, axis and the values spelled out for screen readers); a tuning run of the weak
playbook started from the page, watched as its iterations arrive, its chart, iterations
table and the final prompt's diff from the initial one shown, its export answering; a run
cancelled from its page; a refused start shown. Screenshots go to $DIALKIT_ARTIFACTS (a temporary directory when
unset)."""

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

TUNING_TIMEOUT_MS = 120_000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(base_settings: Settings, admin_database_url: str,
                  tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    async with private_database(admin_database_url, "dialkit_console_tuning") as url, \
            browsing(base_settings, tmp_path_factory, database_url=url, run_jobs=True,
                     openai_api_key=None) as b:
        yield b


DRAW = """async ([points, series]) => {
  const { lineChart } = await import("/console/charts.js");
  const figure = lineChart("Score per iteration", series, points, { xName: "iteration" });
  figure.id = "drawn";
  document.getElementById("main").replaceChildren(figure);
  const svg = figure.querySelector("svg");
  return {
    label: svg.getAttribute("aria-label"),
    role: svg.getAttribute("role"),
    lines: [...svg.querySelectorAll("polyline")].map((l) => ({ cls: l.getAttribute("class"),
      points: l.getAttribute("points").split(" ").map((p) => p.split(",").map(Number)) })),
    dots: [...svg.querySelectorAll("circle")].map((c) => ({ cls: c.getAttribute("class"),
      x: Number(c.getAttribute("cx")), y: Number(c.getAttribute("cy")), title: c.textContent })),
    axis: [...svg.querySelectorAll("text.axis")].map((t) => t.textContent),
    rows: [...figure.querySelectorAll("table tbody tr")].map((r) => [...r.children].map((c) => c.textContent)),
    legend: [...figure.querySelectorAll(".legend li")].map((li) => li.textContent),
    viewBox: svg.getAttribute("viewBox").split(" ").map(Number),
  };
}"""

SERIES = [{"name": "training", "cls": "s1"}, {"name": "held-out", "cls": "s3", "dashed": True}]


async def test_the_line_chart_draws_each_series_on_a_0_to_100_axis(console: Browser) -> None:
    page = await console.page()
    await page.goto(console.url + "#/operations")
    await page.locator("h1", has_text="Operations").wait_for()
    points = [{"label": "0", "values": [40, 35.25]}, {"label": "1", "values": [55, 50]},
              {"label": "2", "values": [55, None]}, {"label": "3", "values": [80, 71]}]
    drawn = await page.evaluate(DRAW, [points, SERIES])
    assert drawn["role"] == "img"
    # every value is spoken, series by series; the missing one said to be missing
    assert drawn["label"] == ("Score per iteration. training: 0 40, 1 55, 2 55, 3 80; "
                              "held-out: 0 35.3, 1 50, 3 71")
    assert drawn["rows"] == [["0", "40", "35.3"], ["1", "55", "50"], ["2", "55", "—"], ["3", "80", "71"]]
    assert drawn["legend"] == ["training", "held-out"]
    assert drawn["axis"] == ["0", "25", "50", "75", "100", "0", "1", "2", "3"]  # the score, then the iterations
    # training is one line of four points; held-out breaks at the missing value (its last
    # point alone is a dot, not a line)
    assert [line["cls"] for line in drawn["lines"]] == ["line s1", "line s3 dashed"]
    train, held = (line["points"] for line in drawn["lines"])
    assert len(train) == 4 and len(held) == 2
    assert [d["cls"] for d in drawn["dots"]].count("dot s3") == 3
    # the axis is 0..100 whatever the values: 100 at the top, 0 at the bottom, so 80 is
    # higher (a smaller y) than 55, and 55 to 55 is level
    height = drawn["viewBox"][3]
    top, bottom = 12, height - 30
    ys = [y for _, y in train]
    assert ys[0] == pytest.approx(bottom - (bottom - top) * 0.40, abs=0.1)
    assert ys[3] == pytest.approx(bottom - (bottom - top) * 0.80, abs=0.1)
    assert ys[1] == ys[2] and ys[3] < ys[1] < ys[0]
    xs = [x for x, _ in train]
    assert xs == sorted(xs) and len(set(xs)) == 4
    assert "held-out, iteration 3: 71" in [d["title"] for d in drawn["dots"]]
    await page.locator("#drawn svg").screenshot(path=str(console.shots / "tuning-chart.png"))
    # one point only: a dot per series, centred, no line
    drawn = await page.evaluate(DRAW, [[{"label": "0", "values": [62.5, 58]}], SERIES])
    assert drawn["lines"] == [] and len(drawn["dots"]) == 2
    assert drawn["dots"][0]["x"] == drawn["dots"][1]["x"]
    assert not console.errors, console.errors
    await page.context.close()


async def section_of(page: Any, heading: str) -> Any:
    return page.locator("section", has=page.locator("h2", has_text=heading))


async def test_a_tuning_run_is_started_watched_and_its_final_prompt_diffed(console: Browser) -> None:
    page = await console.page()
    await page.goto(console.url + "#/tuning")
    form = page.get_by_role("form", name="Start a tuning run")
    await form.get_by_label("Initial prompt version").select_option("collections-weak@1")
    assert await form.get_by_label("Training set").input_value() == "default"
    assert await form.get_by_label("Held-out set").input_value() == "default-heldout"
    await form.get_by_label("Max iterations").fill("3")  # the offline writer's first accepted edit, seed 0
    await form.get_by_label("Seed").fill("0")
    await console.shot(page, "tuning")
    await form.get_by_role("button", name="Start tuning").click()
    await page.locator(".notice-ok", has_text=re.compile(r"Tuning run \d+ started")).wait_for()
    await page.wait_for_url(re.compile(r"#/tuning/\d+$"))
    run_id = int(page.url.rsplit("/", 1)[-1])

    # watched: the page follows the run, without a reload, from unfinished to done
    progress = await section_of(page, "Progress")
    await progress.locator(".badge").first.wait_for()
    await page.evaluate("window.sameDocument = true")
    await progress.locator(".badge", has_text=re.compile("completed|failed|cancelled")).wait_for(timeout=TUNING_TIMEOUT_MS)
    assert page.url.endswith(f"#/tuning/{run_id}") and await page.evaluate("window.sameDocument === true")
    async with console.http() as http:
        run = (await http.get(f"/api/tuning/{run_id}")).json()
    assert run["status"] == "COMPLETED", run
    assert run["prompt_version"] == "collections-weak@1" and run["max_iterations"] == 3 and run["spec"]["seed"] == 0
    assert 1 <= len(run["iterations"]) <= 3
    iterations = (await section_of(page, "Iterations")).locator("table")
    await iterations.locator("caption", has_text=f"{len(run['iterations'])} iteration(s)").wait_for()
    for it in run["iterations"]:
        row = iterations.locator("tbody tr", has=page.locator("td[data-label=n]", has_text=str(it["n"])))
        assert (await row.locator("td[data-label='Prompt version']").inner_text()).strip() == it["prompt_version"]
        assert (await row.locator("td[data-label=Training]").inner_text()).strip() == f"{it['train_score']:.1f}"
        assert (await row.locator("td[data-label='Held-out']").inner_text()).strip() == f"{it['heldout_score']:.1f}"
        assert (await row.locator("td[data-label=Accepted]").inner_text()).strip() == (
            "accepted" if it["accepted"] else "rejected")

    # the chart: the initial version and each iteration, training and held-out
    chart = (await section_of(page, "Score per iteration")).locator("svg.line-chart")
    await chart.wait_for()
    assert await chart.locator("circle.dot.s1").count() == len(run["iterations"]) + 1
    assert await chart.locator("circle.dot.s3").count() == len(run["iterations"]) + 1
    label = await chart.get_attribute("aria-label") or ""
    assert f"0 {round(run['initial']['train_score'], 1):g}" in label, label

    # the final prompt against the initial one: the weak playbook was improved
    final = run["final"]["prompt_version"]
    assert final != "collections-weak@1" and any(it["accepted"] for it in run["iterations"]), (run["initial"], [(i["train_score"], i["heldout_score"], i["reason"]) for i in run["iterations"]])
    diff = await section_of(page, "Final prompt")
    await diff.get_by_role("link", name=final).wait_for()
    await diff.locator(".diff-summary", has_text="added").first.wait_for()
    assert await diff.locator("tr.diff-add, tr.diff-del").count() > 0
    pool = (await section_of(page, "Pareto pool")).locator("table")
    assert await pool.locator("td[data-label='Prompt version']").all_inner_texts() == [
        v["prompt_version"] for v in run["pareto"]] and run["pareto"]
    await console.shot(page, "tuning-run")
    await page.evaluate("""() => {
      const progress = [...document.querySelectorAll("section h2")].find((h) => h.textContent === "Progress");
      window.scrollTo(0, progress.closest("section").offsetTop - document.querySelector("header.top").offsetHeight - 8);
    }""")
    await page.screenshot(path=str(console.shots / "tuning-run-view.png"))  # what the screen shows: run, chart

    # the export link answers with the final version
    export = page.get_by_role("link", name="Export the final prompt version")
    href = await export.get_attribute("href")
    assert href == f"/api/tuning/{run_id}/export"
    async with console.http() as http:
        answer = await http.get(href)
    assert answer.status_code == 200, answer.text
    assert answer.content
    async with page.expect_download() as download:
        await export.click()
    await (await download.value).path()
    await page.locator(".notice-ok", has_text="exported").wait_for()

    # on a tablet: nothing wider than the screen, the chart drawn again
    await page.set_viewport_size({"width": 768, "height": 1024})
    await page.reload()
    await (await section_of(page, "Score per iteration")).locator("svg.line-chart").wait_for()
    await (await section_of(page, "Final prompt")).locator(".diff-summary").first.wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 768
    await console.shot(page, "tuning-tablet")

    # listed on the Tuning page
    await page.get_by_role("link", name="← Tuning").click()
    listed = await section_of(page, "Tuning runs")
    await listed.get_by_role("link", name=f"#{run_id}").wait_for()
    assert await page.evaluate("document.documentElement.scrollWidth") <= 768
    assert not console.errors, console.errors
    await page.context.close()


async def test_a_running_tuning_run_is_cancelled_from_its_page(console: Browser) -> None:
    async with console.http() as http:
        made = await http.post("/api/tuning", json={
            "prompt_version": "collections-weak@1", "scenario_set": "default", "heldout_set": "default-heldout",
            "target": 100, "max_iterations": 10})
        assert made.status_code == 202, made.text
        run_id = made.json()["id"]
    page = await console.page()
    await page.goto(console.url + f"#/tuning/{run_id}")
    cancel = page.get_by_role("button", name="Cancel run")
    await cancel.wait_for()
    page.once("dialog", lambda d: d.dismiss())  # not confirmed: nothing happens
    await cancel.click()
    async with console.http() as http:
        assert (await http.get(f"/api/tuning/{run_id}")).json()["status"] in {"PENDING", "RUNNING"}
    page.once("dialog", lambda d: d.accept())
    await cancel.click()
    await page.locator(".notice-ok", has_text=f"Tuning run #{run_id}").wait_for()
    progress = await section_of(page, "Progress")
    await progress.locator(".badge", has_text="cancelled").wait_for(timeout=TUNING_TIMEOUT_MS)
    await cancel.wait_for(state="detached")
    async with console.http() as http:
        assert (await http.get(f"/api/tuning/{run_id}")).json()["status"] == "CANCELLED"
    assert not console.errors, console.errors
    await page.context.close()


async def test_a_refused_start_shows_the_reason(console: Browser) -> None:
    async with console.http() as http:
        before = len((await http.get("/api/tuning")).json()["items"])
    page = await console.page()
    await page.goto(console.url + "#/tuning")
    form = page.get_by_role("form", name="Start a tuning run")
    # the same set for training and held out is asked about; not confirmed, nothing starts
    await form.get_by_label("Held-out set").select_option("default")
    messages: list[str] = []

    async def dismiss(dialog: Any) -> None:
        messages.append(dialog.message)
        await dialog.dismiss()

    page.once("dialog", dismiss)
    await form.get_by_role("button", name="Start tuning").click()
    await page.wait_for_timeout(300)
    assert messages and "same" in messages[0], messages
    # the LLM writer with no LLM configured: the server's reason is shown, nothing started
    await form.get_by_label("Held-out set").select_option("default-heldout")
    await form.get_by_label("Writer").select_option("llm")
    await form.get_by_role("button", name="Start tuning").click()
    error = page.locator(".notice-error")
    await error.wait_for()
    assert "llm" in (await error.inner_text()).lower()
    assert page.url.endswith("#/tuning")
    await console.shot(page, "tuning-refused")
    async with console.http() as http:
        assert len((await http.get("/api/tuning")).json()["items"]) == before
    assert not console.unexpected(422), console.errors
    await page.context.close()
