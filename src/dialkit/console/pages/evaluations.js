// Evaluations: start one (a prompt version over a scenario set or chosen scenarios, each
// played `repeat` times, in text or audio mode, with a seed and a judge), and the runs so
// far, filtered by status, prompt version and label, refreshed while any is unfinished.
import { api } from "../api.js";
import { act, badge, el, field, fmt, link, notify, pct, section, table, when } from "../ui.js";
import { allVersions } from "./library_prompts.js";
import { WEIGHTS } from "./library_scenarios.js";

const STATUSES = ["PENDING", "RUNNING", "COMPLETED", "FAILED"];
const UNFINISHED = new Set(["PENDING", "RUNNING"]);

export function score(value) { return value === null || value === undefined ? "—" : Number(value).toFixed(1); }

export function statusBadge(status) {
  const kind = { PENDING: "created", RUNNING: "running", COMPLETED: "completed", FAILED: "failed" }[status];
  return badge(status.toLowerCase(), kind);
}

// The chosen scenarios, each with a weight for this run (or its own): {node, value()}.
function scenarioPicker(scenarios) {
  const rows = scenarios.map((s) => {
    const box = el("input", { type: "checkbox", name: "scenario", value: s.name, disabled: s.problems.length > 0 });
    const weight = el("select", { class: "weight", "aria-label": `Weight of ${s.name} in this run` },
      el("option", { value: "" }, `its own (${s.weight})`), WEIGHTS.map((w) => el("option", { value: w }, String(w))));
    return { s, box, weight };
  });
  const node = el("fieldset", { class: "choices picker wide" }, el("legend", {}, "Scenarios"),
    rows.length ? rows.map((r) => el("div", { class: "pick" }, el("label", {}, r.box, ` ${r.s.name}`),
      el("span", { class: "hint" }, r.s.personality), r.weight,
      r.s.problems.length ? el("span", { class: "error" }, ` cannot run: ${r.s.problems.join("; ")}`) : null))
      : el("p", { class: "hint" }, "No scenario in the library."));
  return { node, value: () => rows.filter((r) => r.box.checked)
    .map((r) => (r.weight.value ? { name: r.s.name, weight: Number(r.weight.value) } : { name: r.s.name })) };
}

export async function render(main) {
  main.append(el("h1", {}, "Evaluations"));
  const [versions, sets, scenarios] = await Promise.all([allVersions(), api("GET", "/api/scenario-sets"),
    api("GET", "/api/scenarios")]);

  const prompt = el("select", { name: "prompt_version", required: true }, versions.filter((v) => v.active).map((v) =>
    el("option", { value: v.ref, selected: v.ref === "collections-default@1" }, v.ref)));
  const fromSet = el("input", { type: "radio", name: "source", value: "set", checked: true });
  const fromList = el("input", { type: "radio", name: "source", value: "scenarios" });
  const set = el("select", { name: "scenario_set" }, sets.items.map((s) =>
    el("option", { value: s.name, selected: s.name === "default" }, `${s.name} (${s.members.length})`)));
  const picker = scenarioPicker(scenarios.items);
  const setField = field("Scenario set", set);
  const repeat = el("input", { type: "number", name: "repeat", min: 1, max: 10, value: 1, required: true });
  const mode = el("select", { name: "mode" }, [["text", "text (simulated, fast)"], ["audio", "audio (through the server)"]]
    .map(([v, t]) => el("option", { value: v }, t)));
  const seed = el("input", { type: "number", name: "seed", min: 0, value: 0, required: true });
  const judge = el("select", { name: "judge" }, [["rubric", "rubric (rules)"], ["llm", "LLM"]].map(([v, t]) => el("option", { value: v }, t)));
  const label = el("input", { name: "label", maxlength: 200, autocomplete: "off" });
  const start = el("button", { type: "submit", class: "primary" }, "Start evaluation");
  const form = el("form", { class: "form", "aria-label": "Start an evaluation" },
    field("Prompt version", prompt),
    el("fieldset", { class: "choices" }, el("legend", {}, "Scenarios from"),
      el("label", {}, fromSet, " a scenario set"), el("label", {}, fromList, " scenarios chosen here")),
    setField, picker.node,
    field("Repeat", repeat, "each scenario played 1 to 10 times (pass^k over the repeats)"), field("Mode", mode),
    field("Seed", seed, "the same seed plays the same calls"), field("Judge", judge),
    field("Label", label, "optional, e.g. “before the new greeting”"),
    el("div", { class: "actions wide" }, start));
  const sourceChanged = () => {
    setField.hidden = !fromSet.checked;
    picker.node.hidden = fromSet.checked;
  };
  fromSet.addEventListener("change", sourceChanged);
  fromList.addEventListener("change", sourceChanged);
  sourceChanged();
  main.append(section("Start an evaluation", form));

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { prompt_version: prompt.value, repeat: Number(repeat.value), mode: mode.value, seed: Number(seed.value),
      judge: judge.value };
    if (label.value.trim()) body.label = label.value.trim();
    if (fromSet.checked) body.scenario_set = set.value;
    else {
      body.scenarios = picker.value();
      if (!body.scenarios.length) { notify("Choose at least one scenario.", "error"); return; }
    }
    const made = await act(start, () => api("POST", "/api/evaluations", { json: body }),
      (r) => `Evaluation ${r.id} started (${String(r.status).toLowerCase()}).`);
    if (made) location.hash = `#/evaluation/${made.id}`;
  });

  // the runs so far
  const status = el("select", { name: "status" }, el("option", { value: "" }, "Any"),
    STATUSES.map((s) => el("option", { value: s }, s.toLowerCase())));
  const byPrompt = el("select", { name: "prompt_version" }, el("option", { value: "" }, "Any"),
    versions.map((v) => el("option", { value: v.ref }, v.ref)));
  const byLabel = el("input", { name: "label", autocomplete: "off" });
  const show = el("button", { type: "submit", class: "primary" }, "Show evaluations");
  const filters = el("form", { class: "form", "aria-label": "Evaluation filters" },
    field("Status", status), field("Prompt version", byPrompt), field("Label", byLabel),
    el("div", { class: "actions wide" }, show));
  const listBox = el("div", {});
  const older = el("button", { type: "button", hidden: true }, "Show older evaluations");
  main.append(section("Evaluations so far", filters, listBox, el("div", { class: "actions" }, older)));

  let timer = null;
  let stopped = false;
  let shown = "";
  let pages = 1;  // pages of PAGE runs shown, newest first; "Show older" adds one
  const PAGE = 50;
  const query = () => ({ status: status.value, prompt_version: byPrompt.value, label: byLabel.value.trim(), limit: PAGE });
  const fetchPages = async () => {
    const items = [];
    let cursor = null;
    for (let n = 0; n < pages; n++) {
      const page = await api("GET", "/api/evaluations", { query: { ...query(), cursor } });
      items.push(...page.items);
      cursor = page.next_cursor;
      if (cursor === null) break;
    }
    return { items, more: cursor !== null };
  };
  const load = async (button) => {
    clearTimeout(timer);
    const page = await act(button, fetchPages);
    if (!page || stopped) return;
    older.hidden = !page.more;
    const seen = JSON.stringify(page.items);
    if (seen !== shown || button) {
      shown = seen;
      listBox.replaceChildren(table([
        { label: "Evaluation", render: (r) => link(`#/evaluation/${r.id}`, `#${r.id}`) },
        { label: "Prompt version", key: "prompt_version" },
        { label: "Scenarios", render: (r) => (r.scenario_set ? `set ${r.scenario_set}` : `${r.scenarios.length} chosen`) },
        { label: "Status", render: (r) => statusBadge(r.status) },
        { label: "Calls", render: (r) => `${r.calls_done} / ${r.calls_total}${r.calls_failed ? ` (${r.calls_failed} failed)` : ""}` },
        { label: "Weighted score", render: (r) => score(r.weighted_score) },
        { label: "pass^k", render: (r) => pct(r.pass_k) },
        { label: "Mode", render: (r) => `${r.mode} ×${r.repeat}` },
        { label: "Label", render: (r) => fmt(r.label) },
        { label: "Created", render: (r) => when(r.created_at) },
      ], page.items, { caption: `${page.items.length} evaluation(s), newest first${page.more ? " (older ones below)" : ""}`,
        empty: "No evaluation yet: start one above." }));
    }
    if (page.items.some((r) => UNFINISHED.has(r.status))) timer = setTimeout(() => load(null), 2000);
  };
  filters.addEventListener("submit", (e) => { e.preventDefault(); pages = 1; load(show); });
  older.addEventListener("click", () => { pages += 1; load(older); });
  await load(null);
  return () => { stopped = true; clearTimeout(timer); };
}
