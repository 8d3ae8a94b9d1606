// Library › Prompt versions: every version with its lineage and run figures, and a line
// diff between any two (#/library/prompts/<from>/<to>): the playbook as YAML and the
// system-prompt template, computed here.
import { api } from "../api.js";
import { diffView } from "../diff.js";
import { act, badge, el, field, fmt, link, pct, section, table, when } from "../ui.js";
import { toYaml } from "../yaml.js";

export async function allVersions() {
  const items = [];
  let after = 0;
  for (;;) {
    const page = await api("GET", "/api/prompt-versions", { query: { limit: 500, after } });
    items.push(...page.items);
    if (page.next_after === null) return items;
    after = page.next_after;
  }
}

// The diff of two prompt versions (refs or ids), as two sections.
export async function promptDiff(fromRef, toRef) {
  const [a, b] = await Promise.all([api("GET", `/api/prompt-versions/${encodeURIComponent(fromRef)}`),
    api("GET", `/api/prompt-versions/${encodeURIComponent(toRef)}`)]);
  return el("div", { class: "prompt-diff" },
    el("p", { class: "status-line" }, `From ${a.ref} to ${b.ref}`),
    diffView("Playbook (YAML)", toYaml(a.playbook), toYaml(b.playbook)),
    diffView("System prompt template", a.system_prompt_template, b.system_prompt_template),
    JSON.stringify(a.llm) === JSON.stringify(b.llm) ? null
      : el("p", {}, `LLM parameters: ${JSON.stringify(a.llm)} → ${JSON.stringify(b.llm)}`));
}

export async function renderTab(box, [fromRef, toRef]) {
  const versions = await allVersions();
  const byId = Object.fromEntries(versions.map((v) => [v.id, v]));
  box.append(section("Prompt versions", table([
    { label: "Version", render: (v) => link(`#/prompt/${encodeURIComponent(v.ref)}`, v.ref) },
    { label: "From", render: (v) => (byId[v.parent_id] ? byId[v.parent_id].ref : "—") },
    { label: "Active", render: (v) => badge(v.active ? "active" : "inactive", v.active ? "ok" : "warn") },
    { label: "First used", render: (v) => when(v.used_at) },
    { label: "Runs", key: "runs" }, { label: "Success", render: (v) => pct(v.success_rate) },
    { label: "Tags", render: (v) => v.tags.join(", ") || "—" }, { label: "Notes", render: (v) => fmt(v.notes) },
  ], versions, { caption: `${versions.length} version(s), oldest first`, empty: "No prompt version yet." })));

  const options = (chosen) => versions.map((v) => el("option", { value: v.ref, selected: v.ref === chosen }, v.ref));
  const last = versions[versions.length - 1];
  const child = fromRef ? null : versions.slice().reverse().find((v) => byId[v.parent_id]);
  const from = el("select", { name: "from" }, options(fromRef || (child ? byId[child.parent_id].ref : versions[0] && versions[0].ref)));
  const to = el("select", { name: "to" }, options(toRef || (child ? child.ref : last && last.ref)));
  const compare = el("button", { type: "submit", class: "primary" }, "Compare");
  const form = el("form", { class: "form", "aria-label": "Compare prompt versions" },
    field("From", from), field("To", to), el("div", { class: "actions wide" }, compare));
  const result = el("div", { "aria-live": "polite" });
  box.append(section("Compare two versions", form, result));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/library/prompts/${encodeURIComponent(from.value)}/${encodeURIComponent(to.value)}`;
  });
  if (fromRef && toRef) {
    const shown = await act(compare, () => promptDiff(fromRef, toRef));
    if (shown) result.replaceChildren(shown);
  }
}
