// One scenario: its description, personality, weight (1-5), expected outcomes, tags and
// backstory changed (PATCH: the fields changed), or the scenario deleted.
import { api, ApiError } from "../api.js";
import { act, badge, el, field, fieldError, link, section, when } from "../ui.js";
import { WEIGHTS } from "./library_scenarios.js";

const OUTCOMES = ["promise_to_pay", "callback", "dispute", "already_paid", "wrong_party", "opt_out",
  "voicemail", "transferred", "no_contact", "refused", "abusive", "unverified", "no_response",
  "hung_up", "timed_out"];

export async function render(main, [name]) {
  main.append(el("p", {}, link("#/library/scenarios", "← Scenarios")), el("h1", {}, name));
  const [s, people] = await Promise.all([api("GET", `/api/scenarios/${encodeURIComponent(name)}`), api("GET", "/api/personalities")]);
  main.append(el("p", { class: "status-line" }, s.deleted_at ? badge("deleted", "error") : null,
    ` created ${when(s.created_at)} by ${s.created_by || "—"} · in ${s.sets.join(", ") || "no set"}`),
  s.problems.length ? el("p", { class: "error", role: "alert" }, `Cannot run: ${s.problems.join("; ")}`) : null);

  const description = el("textarea", { name: "description", maxlength: 2000 }, s.description);
  const personality = el("select", { name: "personality" }, people.items.map((p) =>
    el("option", { value: p.name, selected: p.name === s.personality }, p.name + (p.deleted_at ? " (deleted)" : ""))));
  const weight = el("select", { name: "weight" }, WEIGHTS.map((w) => el("option", { value: w, selected: w === s.weight }, String(w))));
  const expected = el("input", { name: "expected_outcomes", value: s.expected_outcomes.join(", "), autocomplete: "off" });
  const tags = el("input", { name: "tags", value: s.tags.join(", "), autocomplete: "off" });
  const backstory = el("textarea", { name: "backstory", spellcheck: "false", rows: 14 }, JSON.stringify(s.backstory, null, 2));
  const save = el("button", { type: "submit", class: "primary" }, "Save scenario");
  const inputs = { description, personality, weight, expected_outcomes: expected, tags, backstory };
  const form = el("form", { class: "form", "aria-label": `Scenario ${name}` },
    field("Personality", personality), field("Weight", weight, "1 to 5: how much it counts in a set's score"),
    field("Expected outcomes", expected, `comma-separated, the best first: ${OUTCOMES.join(", ")}`),
    field("Tags", tags, "comma-separated"),
    el("div", { class: "wide" }, field("Description", description)),
    el("div", { class: "wide" }, field("Backstory (JSON)", backstory, "the facts the agent's call has, and those only the debtor knows")),
    el("div", { class: "actions wide" }, save));
  main.append(section("Scenario", form));
  const list = (input) => input.value.split(",").map((x) => x.trim()).filter(Boolean);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const input of Object.values(inputs)) fieldError(input, "");
    let story;
    try { story = JSON.parse(backstory.value); } catch (err) { fieldError(backstory, `not JSON: ${err.message}`); backstory.focus(); return; }
    const body = { description: description.value.trim(), personality: personality.value, weight: Number(weight.value),
      expected_outcomes: list(expected).map((x) => x.replaceAll(" ", "_")), tags: list(tags), backstory: story };
    await act(save, async () => {
      try { return await api("PATCH", `/api/scenarios/${encodeURIComponent(name)}`, { json: body }); } catch (err) {
        const target = err instanceof ApiError && inputs[(err.body.field || "").split(".")[0]];
        if (target) { fieldError(target, err.body.error); target.focus(); }
        throw err;
      }
    }, "Scenario saved.");
  });
  const remove = el("button", { type: "button", class: "danger", disabled: Boolean(s.deleted_at) }, "Delete scenario");
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete “${name}”? (Refused while a set holds it.)`)) return;
    const done = await act(remove, () => api("DELETE", `/api/scenarios/${encodeURIComponent(name)}`), `Scenario “${name}” deleted.`);
    if (done) location.hash = "#/library/scenarios";
  });
  main.append(section("Delete", el("div", { class: "actions" }, remove)));
}
