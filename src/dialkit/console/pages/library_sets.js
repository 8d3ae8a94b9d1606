// Library › Scenario sets: each set's members in order with the weight each counts with
// (the scenario's own, or one set for this set only), members added and removed, new sets.
import { api } from "../api.js";
import { act, el, field, link, notify, section, table } from "../ui.js";
import { WEIGHTS } from "./library_scenarios.js";

function setEditor(set, scenarios, reload) {
  const members = set.members.map((m) => ({ scenario: m.scenario, weight: m.set_weight, own: m.weight, personality: m.personality,
    problems: m.problems }));
  const own = Object.fromEntries(scenarios.map((s) => [s.name, s]));
  const listBox = el("div", {});
  const draw = () => listBox.replaceChildren(table([
    { label: "Scenario", render: (m) => link(`#/scenario/${encodeURIComponent(m.scenario)}`, m.scenario) },
    { label: "Personality", key: "personality" },
    { label: "Weight in this set", render: (m) => {
      const ownWeight = own[m.scenario] ? own[m.scenario].weight : m.own;
      const select = el("select", { "aria-label": `Weight of ${m.scenario} in ${set.name}` },
        el("option", { value: "", selected: m.weight === null }, `its own (${ownWeight})`),
        WEIGHTS.map((w) => el("option", { value: w, selected: w === m.weight }, String(w))));
      select.addEventListener("change", () => { m.weight = select.value === "" ? null : Number(select.value); });
      return select;
    } },
    { label: "", render: (m) => {
      const b = el("button", { type: "button", class: "danger", "aria-label": `Remove ${m.scenario} from ${set.name}` }, "Remove");
      b.addEventListener("click", () => { members.splice(members.indexOf(m), 1); draw(); notify(`${m.scenario} taken out; save to keep the change.`); });
      return b;
    } },
  ], members, { caption: `${members.length} scenario(s), in order`, empty: "No scenario in this set yet." }));
  draw();
  const addable = el("select", { "aria-label": `Scenario to add to ${set.name}` },
    scenarios.map((s) => el("option", { value: s.name }, `${s.name} (${s.personality})`)));
  const add = el("button", { type: "button" }, "Add scenario");
  add.addEventListener("click", () => {
    const s = own[addable.value];
    if (!s) return;
    if (members.some((m) => m.scenario === s.name)) { notify(`${s.name} is in the set already.`, "error"); return; }
    members.push({ scenario: s.name, weight: null, own: s.weight, personality: s.personality, problems: s.problems });
    draw();
  });
  const save = el("button", { type: "button", class: "primary" }, "Save members");
  save.addEventListener("click", async () => {
    const body = { members: members.map((m) => ({ scenario: m.scenario, weight: m.weight })) };
    const r = await act(save, () => api("PUT", `/api/scenario-sets/${encodeURIComponent(set.name)}`, { json: body }),
      (x) => `Set “${x.name}” saved: ${x.members.length} scenario(s).`);
    if (r) reload();
  });
  const remove = el("button", { type: "button", class: "danger" }, "Delete set");
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete the set “${set.name}”? Its scenarios stay in the library.`)) return;
    const r = await act(remove, () => api("DELETE", `/api/scenario-sets/${encodeURIComponent(set.name)}`), `Set “${set.name}” deleted.`);
    if (r) reload();
  });
  return section(`Set ${set.name}`, set.description ? el("p", {}, set.description) : null,
    set.problems.length ? el("p", { class: "error" }, `Cannot run: ${set.problems.join("; ")}`) : null,
    listBox, el("div", { class: "actions" }, addable, add), el("div", { class: "actions" }, save, remove));
}

export async function renderTab(box) {
  const setsBox = el("div", {});
  const name = el("input", { name: "name", required: true, maxlength: 100, pattern: "[a-z0-9][a-z0-9_\\-]*", autocomplete: "off" });
  const description = el("input", { name: "description", maxlength: 2000, autocomplete: "off" });
  const create = el("button", { type: "submit", class: "primary" }, "Create set");
  const form = el("form", { class: "form", "aria-label": "New scenario set" },
    field("Name", name, "lower case letters, digits, - and _"), field("Description", description),
    el("div", { class: "actions wide" }, create));
  box.append(setsBox, section("New scenario set", form));
  const load = async () => {
    const [sets, scenarios] = await Promise.all([api("GET", "/api/scenario-sets"), api("GET", "/api/scenarios")]);
    setsBox.replaceChildren(...(sets.items.length ? sets.items.map((s) => setEditor(s, scenarios.items, load))
      : [el("p", { class: "hint" }, "No scenario set yet.")]));
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const made = await act(create, () => api("POST", "/api/scenario-sets", { json: { name: name.value.trim(), description: description.value.trim() } }),
      (s) => `Set “${s.name}” created; add scenarios to it.`);
    if (made) { form.reset(); load(); }
  });
  await load();
}
