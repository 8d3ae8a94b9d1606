"""The console's Library pages in headless Chromium (Debian's `chromium`, driven by
Playwright) against a running server with a real database: every Library tab loads without a
console error, a personality is created and its traits changed, scenarios are generated from
a brief, looked over and saved, a scenario's weight is changed in place, and two prompt
versions (a child created over the API first) are compared line by line. Screenshots go to
$DIALKIT_ARTIFACTS (a temporary directory when unset)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from dialkit.config import Settings
from dialkit.providers import build_providers
from dialkit.server import start_server
from tests.conftest import RunningServer
from tests.test_console import CHROMIUM, HAVE_CHROMIUM, artifacts

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.slow

KEY = "console-library-key-" + "k" * 32
TIMEOUT_MS = 30_000


@dataclass
class Browser:
    """A running server, a headless Chromium, where screenshots go, and the console errors
    of the page last opened."""

    server: RunningServer
    browser: Any
    shots: Path
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.server.http}/console/"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.server.http, headers={"Authorization": f"Bearer {KEY}"}, timeout=30)

    async def page(self) -> Any:
        self.errors.clear()
        context = await self.browser.new_context(viewport={"width": 1280, "height": 860})
        await context.add_init_script(f"sessionStorage.setItem('dialkit.apiKey', '{KEY}')")
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page

    def unexpected(self, *statuses: int) -> list[str]:
        """The console errors but for Chromium's note of each refusal a test asked for (one
        per status in `statuses`, which must all be there)."""
        rest = list(self.errors)
        for status in statuses:
            note = next((e for e in rest if f"status of {status} " in e), None)
            assert note is not None, (status, self.errors)
            rest.remove(note)
        return rest

    async def shot(self, page: Any, name: str) -> None:
        await page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


@asynccontextmanager
async def browsing(base: Settings, tmp_path_factory: pytest.TempPathFactory, **settings: Any
                   ) -> AsyncIterator[Browser]:
    """A server (its API key KEY, `settings` over the test defaults) and a browser."""
    if not HAVE_CHROMIUM:
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    config = base.model_copy(update={"api_key": SecretStr(KEY), **settings})
    runner, port = await start_server(config, await build_providers(config, warmup=False), port=0)
    try:
        async with playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                yield Browser(RunningServer(runner, port, config), browser, artifacts(tmp_path_factory))
            finally:
                await browser.close()
    finally:
        await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    async with browsing(base_settings, tmp_path_factory) as b:
        yield b


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


async def test_every_library_tab_loads_without_console_errors(console: Browser) -> None:
    page = await console.page()
    for tab, heading in {"personalities": "Personalities", "scenarios": "Scenarios",
                         "sets": "Set default", "prompts": "Prompt versions"}.items():
        await page.goto(console.url + "#/library/" + tab)
        await page.locator("h2", has_text=heading).first.wait_for()
        await page.locator("nav.tabs a[aria-current=page]", has_text=heading.split()[0][:5]).wait_for()
        assert await page.locator("#nav a[aria-current=page]").inner_text() == "Library"
        # the chosen tab's label is drawn in the text colour, not the navigation's on-accent one
        colours = await page.locator("nav.tabs a[aria-current=page]").evaluate(
            "a => [getComputedStyle(a).color, getComputedStyle(document.body).color]")
        assert colours[0] == colours[1], colours
        await console.shot(page, f"library-{tab}")
    # the shipped records are listed
    await page.goto(console.url + "#/library/personalities")
    await page.get_by_role("link", name="hardship", exact=True).wait_for()
    await page.get_by_role("link", name="hardship", exact=True).click()
    await page.locator("h1", has_text="hardship").wait_for()
    await page.get_by_role("form", name="Traits of hardship").wait_for()
    await page.goto(console.url + "#/prompt/collections-default@1")
    await page.locator("pre[aria-label=Playbook]", has_text="states:").wait_for()
    assert not console.errors, console.errors
    await page.context.close()


async def test_a_personality_is_created_and_its_traits_changed(console: Browser) -> None:
    name = _name("console-p")
    page = await console.page()
    await page.goto(console.url + "#/library/personalities")
    form = page.get_by_role("form", name="New personality")
    await form.get_by_label("Name", exact=True).fill(name)
    await form.get_by_label("Willingness to pay").fill("0.2")
    await form.get_by_label("Patience").fill("3")
    await form.get_by_label("Resistance, in order").fill("stalling, hang up")
    await form.get_by_role("group", name="Anger triggers").get_by_label("pressure").check()
    await form.get_by_role("group", name="Calm triggers").get_by_label("empathy").check()
    await form.get_by_label("Description").fill("Stalls, then hangs up when pushed.")
    await form.get_by_role("button", name="Create personality").click()
    await page.locator(".notice-ok", has_text=f"Personality “{name}” created").wait_for()
    await page.get_by_role("link", name=name).wait_for()  # the list is reloaded
    async with console.http() as http:
        made = (await http.get(f"/api/personalities/{name}")).json()
    assert (made["willingness_to_pay"], made["patience"]) == (0.2, 3)
    assert made["resistance"] == ["stalling", "hang_up"]
    assert made["anger_triggers"] == ["pressure"] and made["calm_triggers"] == ["empathy"]

    # a refusal shows the API's reason: a name taken
    await form.get_by_label("Name", exact=True).fill(name)
    await form.get_by_role("button", name="Create personality").click()
    await page.locator(".notice-error", has_text="name").wait_for()

    await page.get_by_role("link", name=name).click()
    traits = page.get_by_role("form", name=f"Traits of {name}")
    await traits.get_by_label("Patience").fill("7")
    await traits.get_by_label("Interrupts the agent").check()
    await traits.get_by_role("button", name="Save traits").click()
    await page.locator(".notice-ok", has_text="Traits saved").wait_for()
    await console.shot(page, "library-personality")
    async with console.http() as http:
        changed = (await http.get(f"/api/personalities/{name}")).json()
    assert changed["patience"] == 7 and changed["interrupts"] is True and changed["resistance"] == ["stalling", "hang_up"]

    page.once("dialog", lambda d: d.accept())
    await page.get_by_role("button", name="Delete personality").click()
    await page.locator(".notice-ok", has_text=f"“{name}” deleted").wait_for()
    await page.locator("h2", has_text="New personality").wait_for()
    async with console.http() as http:
        assert (await http.get(f"/api/personalities/{name}")).json()["deleted_at"] is not None
    assert not console.unexpected(409), console.errors  # the name taken
    await page.context.close()


async def test_scenarios_are_generated_from_a_brief_saved_and_reweighted(console: Browser) -> None:
    page = await console.page()
    await page.goto(console.url + "#/library/scenarios")
    form = page.get_by_role("form", name="Generate scenarios")
    await form.get_by_label("Brief").fill("hardship cases after a job loss")
    await form.get_by_label("How many").fill("3")
    seed = 1000 + uuid.uuid4().int % 100_000  # names differ from other runs against this database
    await form.get_by_label("Seed").fill(str(seed))
    await form.get_by_label("Generator").select_option("templates")
    await form.get_by_role("button", name="Generate").click()
    await page.locator(".notice-ok", has_text="3 scenario(s) generated (templates)").wait_for()
    preview = page.locator("section", has=page.locator("h2", has_text="Generate from a brief"))
    rows = preview.locator("tbody tr")
    assert await rows.count() == 3
    names = [(await rows.nth(i).locator("td").nth(1).inner_text()).strip() for i in range(3)]
    # the third is left out, the first saved with weight 5
    await preview.get_by_label(f"Keep {names[2]}").uncheck()
    await preview.get_by_label(f"Weight of {names[0]}").select_option("5")
    await console.shot(page, "library-generated")
    await preview.get_by_role("button", name="Save the kept scenarios").click()
    await page.locator(".notice-ok", has_text="2 scenario(s) saved").wait_for()
    async with console.http() as http:
        first = (await http.get(f"/api/scenarios/{names[0]}")).json()
        assert first["weight"] == 5 and "hardship" in first["tags"]
        assert (await http.get(f"/api/scenarios/{names[1]}")).status_code == 200
        assert (await http.get(f"/api/scenarios/{names[2]}")).status_code == 404

    # the list shows them; a weight changed in the list is stored at once
    listed = page.locator("section", has=page.locator("h2", has_text="Scenarios"))
    weight = listed.get_by_label(f"Weight of {names[1]}")
    await weight.wait_for()
    await weight.select_option("2")
    await page.locator(".notice-ok", has_text=f"Weight of “{names[1]}” is now 2").wait_for()
    async with console.http() as http:
        assert (await http.get(f"/api/scenarios/{names[1]}")).json()["weight"] == 2

    # the scenario page edits the rest; a refusal names the field
    await listed.get_by_role("link", name=names[1]).click()
    edit = page.get_by_role("form", name=f"Scenario {names[1]}")
    await edit.get_by_label("Tags").fill("hardship, console")
    await edit.get_by_role("button", name="Save scenario").click()
    await page.locator(".notice-ok", has_text="Scenario saved").wait_for()
    await edit.get_by_label("Expected outcomes").fill("promise_to_pay, nonsense")
    await edit.get_by_role("button", name="Save scenario").click()
    await page.locator(".notice-error", has_text="expected_outcomes").wait_for()
    await console.shot(page, "library-scenario")
    async with console.http() as http:
        assert (await http.get(f"/api/scenarios/{names[1]}")).json()["tags"] == ["hardship", "console"]

    # a set takes one of them with a weight of its own
    set_name = _name("console-set")
    await page.goto(console.url + "#/library/sets")
    new = page.get_by_role("form", name="New scenario set")
    await new.get_by_label("Name").fill(set_name)
    await new.get_by_role("button", name="Create set").click()
    card = page.locator("section", has=page.locator("h2", has_text=f"Set {set_name}"))
    await card.get_by_label(f"Scenario to add to {set_name}").select_option(names[0])
    await card.get_by_role("button", name="Add scenario").click()
    await card.get_by_label(f"Weight of {names[0]} in {set_name}").select_option("3")
    await card.get_by_role("button", name="Save members").click()
    await page.locator(".notice-ok", has_text=f"Set “{set_name}” saved: 1 scenario(s)").wait_for()
    async with console.http() as http:
        members = (await http.get(f"/api/scenario-sets/{set_name}")).json()["members"]
    assert [(m["scenario"], m["weight"], m["set_weight"]) for m in members] == [(names[0], 3, 3)]
    assert not console.unexpected(400), console.errors  # the outcome refused
    await page.context.close()


async def test_two_prompt_versions_are_compared_line_by_line(console: Browser) -> None:
    async with console.http() as http:
        base = (await http.get("/api/prompt-versions/collections-default@1")).json()
        name = _name("console-prompt")
        playbook = {**base["playbook"], "agent_name": "Jordan Console"}
        template = base["system_prompt_template"].replace("Speak in short, plain sentences",
                                                          "Speak in short, warm sentences")
        first = await http.post("/api/prompt-versions", json={
            "name": name, "playbook": base["playbook"], "system_prompt_template": base["system_prompt_template"]})
        assert first.status_code == 201, first.text
        child = await http.post("/api/prompt-versions", json={
            "name": name, "parent": f"{name}@1", "playbook": playbook, "system_prompt_template": template})
        assert child.status_code == 201 and child.json()["ref"] == f"{name}@2", child.text
    page = await console.page()
    await page.goto(console.url + "#/library/prompts")
    form = page.get_by_role("form", name="Compare prompt versions")
    await form.get_by_label("From").select_option(f"{name}@1")
    await form.get_by_label("To").select_option(f"{name}@2")
    await form.get_by_role("button", name="Compare").click()
    await page.wait_for_url(re.compile(re.escape(f"#/library/prompts/{name}%401/{name}%402")))
    # the playbook: the agent's name, and the version the server writes into each one
    playbook_diff = page.locator(".diff", has=page.locator("h3", has_text="Playbook (YAML)"))
    await playbook_diff.locator(".diff-summary", has_text="2 line(s) added, 2 removed").wait_for()
    added = await playbook_diff.locator("tr.diff-add td.diff-text").all_inner_texts()
    removed = await playbook_diff.locator("tr.diff-del td.diff-text").all_inner_texts()
    assert [re.sub(r"^\W+", "", t.replace("added:", "")).strip() for t in added] == [
        'version: "2"', "agent_name: Jordan Console"], added
    assert [re.sub(r"^\W+", "", t.replace("removed:", "")).strip() for t in removed] == [
        'version: "1"', "agent_name: Alex"], removed
    # a removed line is shown before the line that replaces it
    ops = await playbook_diff.locator("tbody tr").evaluate_all("rows => rows.map(r => r.className)")
    changed = [op for op in ops if op in ("diff-add", "diff-del")]
    assert changed == ["diff-del", "diff-add", "diff-del", "diff-add"], ops
    assert await playbook_diff.locator("tr.diff-fold").count() >= 1  # the unchanged rest is folded
    template_diff = page.locator(".diff", has=page.locator("h3", has_text="System prompt template"))
    await template_diff.locator(".diff-summary", has_text="1 line(s) added, 1 removed").wait_for()
    assert "warm sentences" in await template_diff.locator("tr.diff-add").inner_text()
    assert "plain sentences" in await template_diff.locator("tr.diff-del").inner_text()
    await console.shot(page, "library-prompt-diff")

    # the same version on both sides: no difference
    await page.goto(console.url + f"#/library/prompts/{name}@2/{name}@2")
    await page.locator(".diff-summary", has_text="No difference").first.wait_for()

    # the next version derived in the page: its playbook goes back as the YAML shown, which
    # the server reads as the same playbook (but for the version it writes in)
    await page.goto(console.url + f"#/prompt/{name}@2")
    derive = page.get_by_role("form", name="Next version")
    template_box = derive.get_by_label("System prompt template")
    await template_box.fill((await template_box.input_value()).replace("warm sentences", "kind sentences"))
    await derive.get_by_label("Notes").fill("kinder")
    await derive.get_by_role("button", name="Create the next version").click()
    await page.locator(".notice-ok", has_text=f"{name}@3 created from {name}@2").wait_for()
    await page.wait_for_url(re.compile(re.escape(f"#/library/prompts/{name}%402/{name}%403")))
    playbook_diff = page.locator(".diff", has=page.locator("h3", has_text="Playbook (YAML)"))
    await playbook_diff.locator(".diff-summary", has_text="1 line(s) added, 1 removed").wait_for()
    assert 'version: "3"' in await playbook_diff.locator("tr.diff-add").inner_text()  # nothing else
    async with console.http() as http:
        third = (await http.get(f"/api/prompt-versions/{name}@3")).json()
    assert third["playbook"] == {**playbook, "name": name, "version": "3"}
    assert "kind sentences" in third["system_prompt_template"]
    assert third["parent_id"] == child.json()["id"] and third["notes"] == "kinder"
    assert not console.errors, console.errors
    await page.context.close()


async def test_the_library_pages_fit_a_tablet_and_answer_the_keyboard(console: Browser) -> None:
    page = await console.page()
    routes = {"library/personalities": "Personalities", "library/scenarios": "Scenarios",
              "library/sets": "Set default", "library/prompts": "Prompt versions",
              "library/prompts/collections-weak@1/collections-default@1": "Compare two versions",
              "personality/hardship": "Traits", "scenario/hardship": "Scenario",
              "prompt/collections-default@1": "Playbook (YAML)"}
    await page.set_viewport_size({"width": 768, "height": 1024})
    for route, heading in routes.items():
        await page.goto(console.url + "#/" + route)
        await page.locator("h2", has_text=heading).first.wait_for()
        if route.count("/") == 3:  # the comparison is drawn once both versions are read
            await page.locator(".diff-summary").first.wait_for()
        # nothing wider than the screen: no sideways scrolling on a tablet
        assert await page.evaluate("document.documentElement.scrollWidth") <= 768, route
    await console.shot(page, "library-prompt-diff-tablet")
    # the tabs and a scenario's weight are reached and changed by keyboard alone
    await page.goto(console.url + "#/library/personalities")
    await page.locator("h2", has_text="New personality").wait_for()
    tab = page.locator("nav.tabs a", has_text="Scenarios")
    await tab.focus()
    await page.keyboard.press("Enter")
    listed = page.locator("section", has=page.locator("h2", has_text="Scenarios"))
    weight = listed.get_by_label("Weight of hardship", exact=True)
    await weight.wait_for()
    before = int(await weight.input_value())
    await weight.focus()
    await page.keyboard.press("ArrowDown" if before < 5 else "ArrowUp")
    after = before + 1 if before < 5 else before - 1
    await page.locator(".notice-ok", has_text=f"Weight of “hardship” is now {after}").wait_for()
    assert await page.evaluate("document.activeElement.getAttribute('aria-label')") == "Weight of hardship"
    async with console.http() as http:
        assert (await http.get("/api/scenarios/hardship")).json()["weight"] == after
        await http.patch("/api/scenarios/hardship", json={"weight": before})  # as shipped again
    assert not console.errors, console.errors
    await page.context.close()


async def test_the_line_diff_keeps_every_line_once_in_order(console: Browser) -> None:
    """diff.js on its own, in the page: edits at either end, empty sides, a repeated line,
    and texts past the LCS size limit (shown as replaced in the middle)."""
    page = await console.page()
    await page.goto(console.url + "#/library/prompts")
    await page.locator("h2", has_text="Prompt versions").first.wait_for()
    cases = [("a\nb\nc", "a\nb\nc"), ("", "x\ny"), ("x\ny", ""), ("a\nb\nc", "z\na\nb\nc\nz"),
             ("a\nb\na\nb", "b\na\nb\na"), ("k\nl\nm\nn", "k\nL\nm\nN"),
             ("\n".join(f"{i}" for i in range(1500)), "\n".join(f"{i}" for i in range(1500) if i % 7) + "\nend"),
             ("\n".join(f"{i}" for i in range(2500)), "\n".join(f"{i}" for i in range(2500) if i % 7) + "\nend")]
    found = await page.evaluate("""async (cases) => {
        const { diffLines, diffStats } = await import("./diff.js");
        return cases.map(([a, b]) => { const d = diffLines(a, b); return { d, s: diffStats(d), rough: d.rough }; });
    }""", cases)
    for (a, b), got in zip(cases, found, strict=True):
        lines = got["d"]
        old = [x["text"] for x in lines if x["op"] != "add"]
        new = [x["text"] for x in lines if x["op"] != "del"]
        assert old == (a.split("\n") if a else []) and new == (b.split("\n") if b else []), (a, b, lines)
        # line numbers count each side from 1 without a gap
        assert [x["a"] for x in lines if x["op"] != "add"] == list(range(1, len(old) + 1))
        assert [x["b"] for x in lines if x["op"] != "del"] == list(range(1, len(new) + 1))
    same = [x["s"] for x in found]
    assert same[0] == {"added": 0, "removed": 0}
    assert same[3] == {"added": 2, "removed": 0}  # the common middle found, not replaced
    assert same[4] == {"added": 1, "removed": 1}  # the longest common run (b a b) kept
    assert same[5] == {"added": 2, "removed": 2}
    assert same[6] == {"added": 1, "removed": 215}  # 1500 × 1286 lines: within the LCS's limit
    assert same[7] == {"added": 2143, "removed": 2500}  # 2500 × 2143: beyond it, the middle replaced
    assert [x["rough"] for x in found] == [False] * 7 + [True]  # the flag behind the view's note
    await page.context.close()
