// One personality: its traits changed (PATCH), or the personality deleted (kept, marked).
import { api } from "../api.js";
import { act, badge, el, link, section, when } from "../ui.js";
import { personalityForm } from "./library_personalities.js";

export async function render(main, [name]) {
  main.append(el("p", {}, link("#/library/personalities", "← Personalities")), el("h1", {}, name));
  const p = await api("GET", `/api/personalities/${encodeURIComponent(name)}`);
  main.append(el("p", { class: "status-line" }, p.deleted_at ? badge("deleted", "error") : null,
    ` created ${when(p.created_at)} by ${p.created_by || "—"} · changed ${when(p.updated_at)} · used by `,
    p.scenarios.length ? p.scenarios.map((s, i) => [i ? ", " : "", link(`#/scenario/${encodeURIComponent(s)}`, s)]) : "no scenario"));
  main.append(section("Traits", personalityForm(p, "Save traits", async (traits, button) => {
    await act(button, () => api("PATCH", `/api/personalities/${encodeURIComponent(name)}`, { json: traits }), "Traits saved.");
  })));
  const remove = el("button", { type: "button", class: "danger", disabled: Boolean(p.deleted_at) }, "Delete personality");
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete “${name}”? No new scenario may use it; the scenarios naming it cannot run.`)) return;
    const done = await act(remove, () => api("DELETE", `/api/personalities/${encodeURIComponent(name)}`), `Personality “${name}” deleted.`);
    if (done) location.hash = "#/library/personalities";
  });
  main.append(section("Delete", el("p", { class: "hint" }, "A deleted personality is kept for the runs that used it."),
    el("div", { class: "actions" }, remove)));
}
