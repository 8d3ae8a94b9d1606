"""The web console in headless Chromium (Debian's `chromium`, driven by Playwright) against
a running server with a real database and the emulated carriers: every page loads without a
console error, the login box takes a key, a campaign is created, its leads uploaded (the
row report shown) and started, a call placed from the Outbound caller page and its
transcript watched as it arrives, and the main actions are reached by keyboard.
Screenshots go to $DIALKIT_ARTIFACTS (a temporary directory when unset)."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from dialkit.config import Settings
from emulators.carrier_line import QuietLine
from emulators.carriers import Carriers, running_carriers
from emulators.fates import Fate
from tests.conftest import RunningServer
from tests.sched_helpers import quiesce
from tests.test_dialing import campaign_server, noon_zone

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists()
KEY = "console-test-key-" + "k" * 32
CAMPAIGN_PHONE = "+14155557301"
SINGLE_PHONE = "4155557302"  # dialled from the Outbound caller page as +1 and this
FATES = {
    CAMPAIGN_PHONE: Fate.answered(lambda: QuietLine(hang_up_after_s=6.0)),
    "+1" + SINGLE_PHONE: Fate.answered(lambda: QuietLine(hang_up_after_s=6.0)),
}
HEADER = "name,phone,amount_due,currency,due_date,account_ref,timezone,birth_year,creditor,callback_number"
TIMEOUT_MS = 60_000


@dataclass
class Console:
    server: RunningServer
    carriers: Carriers
    browser: Any
    shots: Path
    errors: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.server.http}/console/"

    async def page(self, with_key: bool = True) -> Any:
        """A page of a fresh browser context (its own sessionStorage), its console errors
        collected in `errors` (emptied: one page per test)."""
        self.errors.clear()
        context = await self.browser.new_context(viewport={"width": 1280, "height": 860})
        if with_key:
            await context.add_init_script(f"sessionStorage.setItem('dialkit.apiKey', '{KEY}')")
        page = await context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("console", lambda m: self.errors.append(f"{page.url}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"{page.url}: {e}"))
        return page

    async def shot(self, page: Any, name: str) -> None:
        await page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("DIALKIT_ARTIFACTS")
    path = Path(where) / "console" if where else tmp_path_factory.mktemp("console-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def console(base_settings: Settings, tmp_path_factory: pytest.TempPathFactory
                  ) -> AsyncIterator[Console]:
    if not HAVE_CHROMIUM:
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium (.ci/run does)")
    async with running_carriers(fates=FATES) as carriers, \
            campaign_server(base_settings, carriers, api_key=SecretStr(KEY)) as server, \
            playwright_api.async_playwright() as pw:
        await quiesce(server.state.pool)
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield Console(server, carriers, browser, artifacts(tmp_path_factory))
        finally:
            await browser.close()


def lead_csv(tmp: Path) -> Path:
    zone = noon_zone()
    rows = [
        f"Dana Reyes,{CAMPAIGN_PHONE},310.00,USD,2026-12-20,CON-1,{zone},1979,Northwind Bank,+14155550100",
        f"No Phone,,99.00,USD,2026-12-20,CON-2,{zone},1980,Northwind Bank,+14155550100",
    ]
    path = tmp / "leads.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


async def test_the_console_loads_without_a_key_under_a_strict_policy(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.server.http) as http:
        page = await http.get("/console/")
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert "<script>" not in page.text  # modules only, from this origin
        script = await http.get("/console/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["Content-Type"]
        assert (await http.get("/console", follow_redirects=False)).headers["Location"] == "/console/"
        assert (await http.get("/console/../server.py")).status_code == 404
        assert (await http.get("/console/%2e%2e/server.py")).status_code == 404
        assert (await http.get("/console/pages/nothing.js")).status_code == 404
        assert (await http.get("/api/campaigns")).status_code == 401  # the data needs the key


async def test_the_login_box_takes_a_key(console: Console) -> None:
    page = await console.page(with_key=False)
    await page.goto(console.url + "#/campaigns")
    dialog = page.locator("#login")
    await dialog.wait_for(state="visible")
    await page.fill("#login-key", "not-the-key")
    await page.press("#login-key", "Enter")
    await page.locator("#login-reason").filter(has_text=re.compile("said")).wait_for()
    await console.shot(page, "login")
    await page.fill("#login-key", KEY)
    await page.click("#login button[type=submit]")
    await page.locator("h2", has_text="All campaigns").wait_for()
    await page.locator("#login").wait_for(state="hidden")
    assert await page.evaluate("sessionStorage.getItem('dialkit.apiKey')") == KEY
    await page.context.close()


async def test_a_campaign_is_created_its_leads_uploaded_and_started(
    console: Console, tmp_path: Path
) -> None:
    page = await console.page()
    await page.goto(console.url + "#/campaigns")
    form = page.get_by_role("form", name="New campaign")
    await form.get_by_label("Name").fill("Console December")
    await form.get_by_label("Caller ID").fill("+14155550100")
    await form.get_by_role("button", name="Create campaign").click()
    await page.locator(".notice-ok", has_text="created").wait_for()
    await page.get_by_role("link", name=re.compile("Open “Console December”")).click()
    await page.locator("h1", has_text="Console December").wait_for()

    await page.get_by_label("Lead file (CSV)").set_input_files(str(lead_csv(tmp_path)))
    await page.get_by_role("button", name="Upload leads").click()
    report = page.locator(".upload-report")
    await report.wait_for()
    text = await report.inner_text()
    assert re.search(r"Rows\s+2", text) and re.search(r"Accepted\s+1", text), text
    assert re.search(r"Rejected\s+1", text) and "phone" in text, text  # line 3's reason
    await console.shot(page, "campaign-upload")

    await page.get_by_role("button", name="Start").click()
    await page.locator(".notice-ok", has_text="Campaign running").wait_for()
    await page.get_by_role("button", name="Pause").wait_for()

    # the answered lead's call shows on the Calls page while it is live, without a reload
    await page.goto(console.url + "#/calls")
    live = page.locator("section", has=page.locator("h2", has_text="Live"))
    await live.get_by_role("link", name="Console December").wait_for()
    await console.shot(page, "calls-live")
    await live.locator("a[href^='#/call/']").first.click()
    await page.locator(".turn-agent").first.wait_for()
    await console.shot(page, "campaign-call")
    await page.locator(".badge-completed").first.wait_for()

    # the call history, filtered to this campaign, lists that one call
    await page.get_by_role("link", name="Calls").click()
    filters = page.get_by_role("form", name="Call history filters")
    await filters.get_by_label("Campaign").select_option(label="Console December")
    await filters.get_by_role("button", name="Show calls").click()
    history = page.locator("section", has=page.locator("h2", has_text="History"))
    await history.locator("caption", has_text="1 call(s)").wait_for()
    assert await history.locator("tbody td", has_text="Console December").count() == 1

    # back on the campaign (the theme follows the system's until toggled): its progress and
    # analytics count the call
    await page.emulate_media(color_scheme="dark")
    await page.get_by_role("link", name="Campaigns").click()
    await page.get_by_role("link", name="Console December").click()
    completed = page.locator(".stats div", has=page.locator("dt", has_text="Completed calls"))
    await completed.locator("dd", has_text="1").wait_for()
    assert await page.evaluate("document.documentElement.dataset.theme") == "dark"
    await page.locator("svg[aria-label^='Attempts by local hour']").wait_for()
    await console.shot(page, "campaign-dark")
    assert not console.errors, console.errors
    await page.context.close()


async def test_a_call_placed_from_the_outbound_caller_shows_its_transcript(console: Console) -> None:
    page = await console.page()
    await page.goto(console.url + "#/outbound")
    form = page.get_by_role("form", name="Place a call")
    await form.get_by_label("Number", exact=True).fill(SINGLE_PHONE)
    await form.get_by_label("Caller ID").fill("+14155550100")
    await form.get_by_label("Debtor name").fill("Sam Okafor")
    await form.get_by_label("Birth year").fill("1984")
    await form.get_by_label("Balance").fill("420.50")
    await form.get_by_label("Creditor").fill("Northwind Bank")
    await form.get_by_label("Callback number").fill("+14155550100")
    await form.get_by_label("Time zone").fill(noon_zone())
    await console.shot(page, "outbound")
    await form.get_by_role("button", name="Place call").click()
    await page.wait_for_url(re.compile(r"#/call/[0-9a-f-]{36}$"))
    # the agent's greeting arrives while the call runs, then the call ends
    first = page.locator(".turn-agent").first
    await first.wait_for()
    assert "Sam Okafor" in await first.inner_text() or await first.inner_text()
    await page.locator(".badge-completed").first.wait_for()
    await console.shot(page, "call")
    detail_id = page.url.rsplit("/", 1)[-1]
    async with httpx.AsyncClient(base_url=console.server.http,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        detail = (await http.get(f"/api/calls/{detail_id}")).json()
    assert detail["call"]["to_number"] == "+1" + SINGLE_PHONE
    shown = await page.locator(".transcript").inner_text()
    for turn in detail["turns"]:
        assert turn["text"].split()[0] in shown
    assert not console.errors, console.errors
    await page.context.close()


async def test_a_refused_call_names_the_field(console: Console) -> None:
    page = await console.page()
    await page.goto(console.url + "#/outbound")
    form = page.get_by_role("form", name="Place a call")
    await form.get_by_label("Number", exact=True).fill("12")
    await form.get_by_role("button", name="Place call").click()
    error = page.locator(".notice-error")
    await error.wait_for()
    assert "phone number" in (await error.inner_text()).lower()
    await page.context.close()


async def test_every_page_loads_without_console_errors(console: Console) -> None:
    async with httpx.AsyncClient(base_url=console.server.http,
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        campaigns = (await http.get("/api/campaigns")).json()["items"]
        calls = (await http.get("/api/calls")).json()["items"]
    page = await console.page()
    routes = {"calls": "Calls", "outbound": "Outbound caller", "campaigns": "Campaigns",
              "operations": "Operations"}
    if campaigns:
        routes[f"campaign/{campaigns[0]['id']}"] = campaigns[0]["name"]
    if calls:
        routes[f"call/{calls[0]['id']}"] = "Call"
    for size, (width, height) in {"laptop": (1280, 860), "tablet": (768, 1024)}.items():
        await page.set_viewport_size({"width": width, "height": height})
        for route, heading in routes.items():
            await page.goto(console.url + "#/" + route)
            await page.locator("h1", has_text=heading).wait_for()
            await page.locator("section.card").first.wait_for()
            # nothing wider than the screen: no sideways scrolling on a tablet
            assert await page.evaluate("document.documentElement.scrollWidth") <= width, (size, route)
            await console.shot(page, f"page-{route.split('/')[0]}-{size}")
    await page.goto(console.url + "#/operations")
    await page.locator("td", has_text="tone").wait_for()  # the providers table is filled
    # the dark theme
    await page.get_by_role("button", name="Dark theme").click()
    assert await page.evaluate("document.documentElement.dataset.theme") == "dark"
    await console.shot(page, "operations-dark")
    assert not console.errors, console.errors
    await page.context.close()


async def test_keyboard_reaches_the_main_actions(console: Console) -> None:
    page = await console.page()
    await page.goto(console.url + "#/campaigns")
    await page.locator("h2", has_text="All campaigns").wait_for()
    reached: list[str] = []
    for _ in range(60):
        await page.keyboard.press("Tab")
        reached.append(await page.evaluate(
            "(() => { const a = document.activeElement; return (a.textContent || a.id || a.name || '').trim(); })()"))
    for wanted in ("Skip to content", "Calls", "Outbound caller", "Campaigns", "Operations",
                   "Dark theme", "Create campaign", "Add to the list"):
        assert any(wanted in r for r in reached), (wanted, reached)
    # the focused element is visibly outlined
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"
    # Enter follows a focused navigation link
    nav = page.get_by_role("link", name="Outbound caller")
    await nav.focus()
    await page.keyboard.press("Enter")
    await page.locator("h1", has_text="Outbound caller").wait_for()
    await page.get_by_label("Country code").focus()
    await page.keyboard.press("Tab")
    assert await page.evaluate("document.activeElement.name") == "number"
    await page.context.close()
