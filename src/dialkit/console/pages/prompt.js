// One prompt version: its facts, playbook (as YAML) and system-prompt template; activate or
// deactivate it, compare it with another, derive the next version from it, or delete it
// while it was never used.
import { api } from "../api.js";
import { act, badge, el, field, fmt, link, pct, section, when } from "../ui.js";
import { toYaml } from "../yaml.js";
import { allVersions } from "./library_prompts.js";

export async function render(main, [ref]) {
  main.append(el("p", {}, link("#/library/prompts", "← Prompt versions")), el("h1", {}, ref));
  const [v, versions] = await Promise.all([api("GET", `/api/prompt-versions/${encodeURIComponent(ref)}`), allVersions()]);
  const parent = versions.find((x) => x.id === v.parent_id);
  const facts = [["State", badge(v.active ? "active" : "inactive", v.active ? "ok" : "warn")],
    ["From", parent ? link(`#/prompt/${encodeURIComponent(parent.ref)}`, parent.ref) : "—"],
    ["First used", when(v.used_at)], ["Runs", fmt(v.runs)], ["Success", pct(v.success_rate)],
    ["Average call", v.avg_duration_s === null ? "—" : `${fmt(v.avg_duration_s)} s`],
    ["LLM", `${v.llm.model || "server default"}, temperature ${fmt(v.llm.temperature)}`],
    ["Tags", v.tags.join(", ") || "—"], ["Created", `${when(v.created_at)} by ${v.created_by || "—"}`]];
  const flag = el("button", { type: "button" }, v.active ? "Deactivate" : "Activate");
  flag.addEventListener("click", async () => {
    const r = await act(flag, () => api("POST", `/api/prompt-versions/${encodeURIComponent(v.ref)}/${v.active ? "deactivate" : "activate"}`),
      (x) => `${x.ref} is ${x.active ? "active" : "inactive"}.`);
    if (r) { v.active = r.active; flag.textContent = r.active ? "Deactivate" : "Activate"; }
  });
  const remove = el("button", { type: "button", class: "danger", disabled: Boolean(v.used_at) }, "Delete version");
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete ${v.ref}? It was never used.`)) return;
    if (await act(remove, () => api("DELETE", `/api/prompt-versions/${encodeURIComponent(v.ref)}`), `${v.ref} deleted.`)) location.hash = "#/library/prompts";
  });
  const other = el("select", { name: "other" }, versions.filter((x) => x.ref !== v.ref).map((x) =>
    el("option", { value: x.ref, selected: parent && x.ref === parent.ref }, x.ref)));
  const compare = el("button", { type: "submit" }, "Compare");
  const compareForm = el("form", { class: "actions", "aria-label": `Compare ${v.ref}` }, field("Compare with", other), compare);
  compareForm.addEventListener("submit", (e) => {
    e.preventDefault();
    location.hash = `#/library/prompts/${encodeURIComponent(other.value)}/${encodeURIComponent(v.ref)}`;
  });
  main.append(section("Version", el("p", {}, v.notes || el("span", { class: "hint" }, "No notes.")),
    el("dl", { class: "stats facts" }, facts.map(([k, x]) => el("div", {}, el("dt", {}, k), el("dd", {}, x)))),
    el("div", { class: "actions" }, flag, remove), versions.length > 1 ? compareForm : null));

  const yaml = toYaml(v.playbook);
  main.append(el("div", { class: "grid-2" },
    section("Playbook (YAML)", el("pre", { class: "code", tabindex: 0, "aria-label": "Playbook" }, yaml)),
    section("System prompt template", el("pre", { class: "code", tabindex: 0, "aria-label": "System prompt template" }, v.system_prompt_template))));

  const playbook = el("textarea", { name: "playbook", spellcheck: "false", rows: 16 }, yaml);
  const template = el("textarea", { name: "system_prompt_template", spellcheck: "false", rows: 12 }, v.system_prompt_template);
  const notes = el("input", { name: "notes", maxlength: 10000, autocomplete: "off" });
  const derive = el("button", { type: "submit", class: "primary" }, "Create the next version");
  const form = el("form", { class: "form", "aria-label": "Next version" },
    el("div", { class: "wide" }, field("Playbook (YAML)", playbook)),
    el("div", { class: "wide" }, field("System prompt template", template, "$placeholders as in the playbook's context")),
    el("div", { class: "wide" }, field("Notes", notes, "what changed and why")),
    el("div", { class: "actions wide" }, derive));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: v.name, parent: v.ref, playbook: playbook.value, system_prompt_template: template.value,
      notes: notes.value.trim(), tags: v.tags, llm: v.llm };
    const made = await act(derive, () => api("POST", "/api/prompt-versions", { json: body }), (x) => `${x.ref} created from ${v.ref}.`);
    if (made) location.hash = `#/library/prompts/${encodeURIComponent(v.ref)}/${encodeURIComponent(made.ref)}`;
  });
  main.append(section("Derive the next version", el("p", { class: "hint" },
    "A new version of the same name, its parent this one; the playbook is validated by the server."), form));
}
