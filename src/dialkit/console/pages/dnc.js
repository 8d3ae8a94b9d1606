// A do-not-call list (the global one, or a campaign's): its entries, add a number, remove one.
import { api } from "../api.js";
import { act, el, field, table, when } from "../ui.js";

export function dncPanel(base) {
  const box = el("div", {});
  const phone = el("input", { name: "phone", type: "tel", required: true, autocomplete: "off" });
  const reason = el("input", { name: "reason", type: "text", autocomplete: "off" });
  const add = el("button", { type: "submit", class: "primary" }, "Add to the list");
  const form = el("form", { class: "form", "aria-label": "Add a number to the do-not-call list" },
    field("Phone", phone, "E.164, e.g. +14155550100"), field("Reason", reason),
    el("div", { class: "actions wide" }, add));
  const load = async () => {
    const page = await act(null, () => api("GET", base, { query: { limit: 200 } }));
    if (!page) return;
    box.replaceChildren(table([
      { label: "Phone", key: "phone" }, { label: "Reason", key: "reason" }, { label: "Source", key: "source" },
      { label: "Added", render: (e) => when(e.created_at) },
      { label: "", render: (e) => {
        const b = el("button", { type: "button", class: "danger", "aria-label": `Remove ${e.phone}` }, "Remove");
        b.addEventListener("click", async () => {
          const r = await act(b, () => api("DELETE", base, { query: { phone: e.phone } }),
            (x) => `${x.phone} removed; ${x.leads_restored} lead(s) back to pending.`);
          if (r) load();
        });
        return b;
      } },
    ], page.items, { empty: "The list is empty." }));
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { phone: phone.value.trim() };
    if (reason.value.trim()) body.reason = reason.value.trim();
    const r = await act(add, () => api("POST", base, { json: body }),
      (x) => x.created ? `${x.phone} added; ${x.leads_stopped} waiting lead(s) stopped.` : `${x.phone} was on the list already.`);
    if (r) { phone.value = ""; reason.value = ""; load(); }
  });
  load();
  return el("div", {}, form, box);
}
