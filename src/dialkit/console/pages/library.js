// Library: the evaluation library in four tabs (#/library/<tab>/...): personalities of the
// simulated debtors, scenarios (generated from a brief, weighted 1-5), scenario sets, and
// the agent's prompt versions with a diff between any two.
import { el } from "../ui.js";

const TABS = [
  { key: "personalities", title: "Personalities", load: () => import("./library_personalities.js") },
  { key: "scenarios", title: "Scenarios", load: () => import("./library_scenarios.js") },
  { key: "sets", title: "Scenario sets", load: () => import("./library_sets.js") },
  { key: "prompts", title: "Prompt versions", load: () => import("./library_prompts.js") },
];

export async function render(main, [tab, ...rest]) {
  const chosen = TABS.find((t) => t.key === tab) || TABS[0];
  main.append(el("h1", {}, "Library"),
    el("nav", { class: "tabs", "aria-label": "Library sections" }, el("ul", {}, TABS.map((t) =>
      el("li", {}, el("a", { href: `#/library/${t.key}`, "aria-current": t === chosen ? "page" : null }, t.title))))));
  const box = el("div", {});
  main.append(box);
  const module = await chosen.load();
  return module.renderTab(box, rest);
}
