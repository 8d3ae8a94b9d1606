// Library › Scenarios: the list (each scenario's weight changed in place), filters by
// personality and tag, and scenarios generated from a brief, looked over, then saved.
import { api } from "../api.js";
import { act, badge, el, field, link, notify, section, table } from "../ui.js";

export const WEIGHTS = [1, 2, 3, 4, 5];

// A 1-5 weight select labelled for its scenario; `onChange(weight, select)`.
export function weightSelect(label, value, onChange) {
  const select = el("select", { "aria-label": label, class: "weight" },
    WEIGHTS.map((w) => el("option", { value: w, selected: w === value }, String(w))));
  select.addEventListener("change", () => onChange(Number(select.value), select));
  return select;
}

export async function renderTab(box) {
  const personality = el("select", { name: "personality" }, el("option", { value: "" }, "Any"));
  const tag = el("input", { name: "tag", autocomplete: "off" });
  const show = el("button", { type: "submit", class: "primary" }, "Show scenarios");
  const filters = el("form", { class: "form", "aria-label": "Scenario filters" },
    field("Personality", personality), field("Tag", tag), el("div", { class: "actions wide" }, show));
  const listBox = el("div", {});
  box.append(section("Scenarios", filters, listBox));

  const load = async (button) => {
    const page = await act(button, () => api("GET", "/api/scenarios", { query: { personality: personality.value, tag: tag.value.trim() } }));
    if (!page) return;
    listBox.replaceChildren(table([
      { label: "Name", render: (s) => link(`#/scenario/${encodeURIComponent(s.name)}`, s.name) },
      { label: "Personality", render: (s) => link(`#/personality/${encodeURIComponent(s.personality)}`, s.personality) },
      { label: "Weight", render: (s) => weightSelect(`Weight of ${s.name}`, s.weight, async (w, select) => {
        select.disabled = true;
        const r = await act(null, () => api("PATCH", `/api/scenarios/${encodeURIComponent(s.name)}`, { json: { weight: w } }),
          (x) => `Weight of “${x.name}” is now ${x.weight}.`);
        select.disabled = false;
        if (!r) select.value = String(s.weight); else s.weight = r.weight;
        select.focus();
      }) },
      { label: "Expected", render: (s) => s.expected_outcomes.join(", ").replaceAll("_", " ") },
      { label: "Sets", render: (s) => s.sets.join(", ") || "—" },
      { label: "Tags", render: (s) => s.tags.join(", ") || "—" },
      { label: "Runs", render: (s) => s.problems.length ? badge(s.problems.join("; "), "error") : badge("ok") },
    ], page.items, { caption: `${page.items.length} scenario(s)`, empty: "No scenario matches." }));
  };
  filters.addEventListener("submit", (e) => { e.preventDefault(); load(show); });

  // generation from a brief: a preview first, saved once looked over
  const brief = el("textarea", { name: "brief", required: true, maxlength: 2000 });
  const count = el("input", { type: "number", name: "count", min: 1, max: 50, value: 5, required: true });
  const seed = el("input", { type: "number", name: "seed", min: 0, value: 0, required: true });
  const mode = el("select", { name: "mode" }, [["auto", "auto (the LLM when configured)"], ["templates", "templates"], ["llm", "LLM"]]
    .map(([v, t]) => el("option", { value: v }, t)));
  const generate = el("button", { type: "submit", class: "primary" }, "Generate");
  const genForm = el("form", { class: "form", "aria-label": "Generate scenarios" },
    el("div", { class: "wide" }, field("Brief", brief, "what to generate, e.g. “hardship cases after a job loss”")),
    field("How many", count), field("Seed", seed, "the same brief and seed give the same scenarios (templates)"),
    field("Generator", mode), el("div", { class: "actions wide" }, generate));
  const preview = el("div", { "aria-live": "polite" });
  box.append(section("Generate from a brief", genForm, preview));

  genForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!brief.value.trim()) { brief.focus(); return; }
    const body = { brief: brief.value.trim(), count: Number(count.value), seed: Number(seed.value), mode: mode.value };
    const made = await act(generate, () => api("POST", "/api/scenarios/generate", { json: body }),
      (r) => `${r.scenarios.length} scenario(s) generated (${r.mode}); look them over, then save.`);
    if (!made) return;
    const keep = made.scenarios.map((s) => ({ s, box: el("input", { type: "checkbox", checked: true, "aria-label": `Keep ${s.name}` }) }));
    const save = el("button", { type: "button", class: "primary" }, "Save the kept scenarios");
    preview.replaceChildren(el("h3", {}, "Generated"), table([
      { label: "Keep", render: (k) => k.box },
      { label: "Name", render: (k) => k.s.name },
      { label: "Personality", render: (k) => k.s.personality },
      { label: "Weight", render: (k) => weightSelect(`Weight of ${k.s.name}`, k.s.weight, (w) => { k.s.weight = w; }) },
      { label: "Debtor", render: (k) => `${k.s.backstory.debtor_name} · ${k.s.backstory.balance} ${k.s.backstory.currency} · ${k.s.backstory.creditor}` },
      { label: "Description", render: (k) => k.s.description },
    ], keep, { caption: `From “${body.brief}”` }), el("div", { class: "actions" }, save));
    save.addEventListener("click", async () => {
      const chosen = keep.filter((k) => k.box.checked).map((k) => k.s);
      if (!chosen.length) { notify("Nothing is kept: tick the scenarios to save.", "error"); return; }
      const saved = await act(save, async () => {
        for (const s of chosen) await api("POST", "/api/scenarios", { json: s });
        return chosen;
      }, (list) => `${list.length} scenario(s) saved to the library.`);
      if (saved) { preview.replaceChildren(); load(null); }
    });
  });

  api("GET", "/api/personalities").then((page) => {
    for (const p of page.items) personality.append(el("option", { value: p.name }, p.name));
  }).catch(() => {});
  await load(null);
}
