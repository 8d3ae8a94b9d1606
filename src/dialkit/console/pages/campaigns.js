// Campaigns: the list, a new campaign, and the global do-not-call list.
import { api } from "../api.js";
import { act, badge, el, field, link, notify, section, table, when } from "../ui.js";
import { dncPanel } from "./dnc.js";

export async function render(main) {
  main.append(el("h1", {}, "Campaigns"));
  const listBox = el("div", {});
  main.append(section("All campaigns", listBox));
  let status = null;
  try { status = await api("GET", "/api/config/status"); } catch (err) { notify(err.message, "error"); }

  const name = el("input", { name: "name", required: true, maxlength: 200, autocomplete: "off" });
  const playbook = el("select", { name: "playbook" }, (status ? status.playbooks : ["collections-default@1.0"])
    .map((p) => el("option", { value: p, selected: status && p === status.default_playbook }, p)));
  const carrier = el("select", { name: "carrier" }, ["twilio", "exotel"].map((c) => el("option", { value: c }, c)));
  const callerId = el("input", { name: "caller_id", type: "tel", required: true, autocomplete: "off" });
  const concurrent = el("input", { name: "max_concurrent", type: "number", min: 1, max: 1000, value: 5 });
  const attempts = el("input", { name: "max_attempts", type: "number", min: 1, max: 50, value: 6 });
  const region = el("input", { name: "default_region", value: "US", maxlength: 2, pattern: "[A-Z]{2}" });
  const webhook = el("input", { name: "webhook_url", type: "url", autocomplete: "off" });
  const create = el("button", { type: "submit", class: "primary" }, "Create campaign");
  const form = el("form", { class: "form", "aria-label": "New campaign" },
    field("Name", name), field("Playbook", playbook), field("Carrier", carrier),
    field("Caller ID", callerId, "E.164; an Exophone for Exotel"), field("Concurrent calls", concurrent),
    field("Dials per lead", attempts), field("Default region", region, "for numbers without a country code"),
    field("Outcome webhook URL", webhook, "optional"), el("div", { class: "actions wide" }, create));
  const secretBox = el("div", { "aria-live": "polite" });
  main.append(section("New campaign", form, secretBox));
  main.append(section("Global do-not-call list", dncPanel("/api/dnc")));

  const load = async () => {
    const page = await act(null, () => api("GET", "/api/campaigns", { query: { limit: 200 } }));
    if (!page) return;
    listBox.replaceChildren(table([
      { label: "Name", render: (c) => link(`#/campaign/${c.id}`, c.name) },
      { label: "Status", render: (c) => badge(c.status) }, { label: "Playbook", key: "playbook" },
      { label: "Carrier", key: "carrier" }, { label: "Concurrent", key: "max_concurrent" },
      { label: "Created", render: (c) => when(c.created_at) },
    ], page.items, { empty: "No campaign yet: create one below." }));
  };
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: name.value.trim(), playbook: playbook.value, carrier: carrier.value,
      caller_id: callerId.value.trim(), max_concurrent: Number(concurrent.value), max_attempts: Number(attempts.value),
      settings: { default_region: region.value.trim().toUpperCase() || "US" } };
    if (webhook.value.trim()) body.webhook_url = webhook.value.trim();
    const made = await act(create, () => api("POST", "/api/campaigns", { json: body }), (c) => `Campaign “${c.name}” created (draft).`);
    if (!made) return;
    secretBox.replaceChildren(el("p", {}, "Webhook secret (shown only now; it signs this campaign's outcome webhooks): ",
      el("code", {}, made.webhook_secret)), el("p", {}, link(`#/campaign/${made.id}`, `Open “${made.name}”: upload leads and start it`)));
    form.reset();
    load();
  });
  await load();
}
