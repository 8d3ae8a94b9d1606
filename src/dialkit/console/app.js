// The console's shell: hash routing (#/page/param...), the navigation, the theme toggle.
import { setKey } from "./api.js";
import { PAGES } from "./pages.js";
import { el, notify } from "./ui.js";

const THEME = "dialkit.theme";
let stop = null;

function applyTheme(theme) {
  const dark = theme ? theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  document.documentElement.dataset.theme = dark ? "dark" : "light";
  const button = document.getElementById("theme-toggle");
  button.setAttribute("aria-pressed", String(dark));
  button.textContent = dark ? "Light theme" : "Dark theme";
}

function parse() {
  const [route, ...params] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  return { route: route || "calls", params };
}

async function show() {
  const { route, params } = parse();
  const page = PAGES.find((p) => p.route === route);
  const main = document.getElementById("main");
  if (stop) { try { stop(); } catch (err) { console.warn(err); } stop = null; }
  for (const a of document.querySelectorAll("#nav a")) {
    const current = a.dataset.route === route || (page && page.under === a.dataset.route);
    if (current) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  main.replaceChildren();
  if (!page) {
    main.append(el("h1", {}, "Not found"), el("p", {}, `No page “${route}”. `), el("a", { href: "#/calls" }, "Calls"));
    return;
  }
  document.title = `${page.title} · dialkit console`;
  try {
    const module = await page.load();
    const result = await module.render(main, params);
    if (typeof result === "function") stop = result;
  } catch (err) {
    console.error(err);  // a page that cannot load or draw is a console error, not only a notice
    main.append(el("h1", {}, page.title), el("p", { class: "error" }, err.message || String(err)));
    notify(err.message || String(err), "error");
  }
  main.focus({ preventScroll: true });
}

function init() {
  const nav = document.getElementById("nav");
  for (const page of PAGES.filter((p) => p.nav)) {
    nav.append(el("li", {}, el("a", { href: `#/${page.route}`, dataset: { route: page.route } }, page.title)));
  }
  applyTheme(localStorage.getItem(THEME));
  matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => applyTheme(localStorage.getItem(THEME)));
  document.getElementById("theme-toggle").addEventListener("click", () => {
    const next = document.documentElement.dataset.theme === "dark" ? "light" : "dark";
    localStorage.setItem(THEME, next);
    applyTheme(next);
  });
  document.getElementById("sign-out").addEventListener("click", () => {
    setKey(null);
    notify("The API key is forgotten; the next call asks for one.");
  });
  window.addEventListener("hashchange", show);
  show();
}

init();
