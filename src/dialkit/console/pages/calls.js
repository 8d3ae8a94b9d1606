// Calls: the live calls of every node (server-sent events, no reload) and the call history
// with filters.
import { api, subscribe } from "../api.js";
import { act, badge, el, field, fmt, link, section, seconds, table, when } from "../ui.js";

const OUTCOMES = ["promise_to_pay", "callback", "dispute", "already_paid", "wrong_party", "opt_out",
  "voicemail", "transferred", "no_contact", "refused", "abusive", "unverified", "no_response",
  "hung_up", "timed_out"];

function liveTable(calls) {
  const now = Date.now() / 1000;
  return table([
    { label: "Call", render: (c) => link(`#/call/${c.call_id}`, c.call_id.slice(0, 8)) },
    { label: "Campaign", render: (c) => c.campaign_id ? link(`#/campaign/${c.campaign_id}`, c.campaign_name || "campaign") : "single call" },
    { label: "State", render: (c) => badge(c.status || "live") },
    { label: "Carrier", key: "carrier" },
    { label: "Duration", render: (c) => el("span", { class: "duration", dataset: typeof c.started === "number" ? { started: c.started } : {} },
      seconds(typeof c.started === "number" ? now - c.started : c.duration_s)) },
    { label: "Turns", key: "turns" },
    { label: "Last turn", render: (c) => c.last_text ? `${c.last_speaker}: ${c.last_text}` : "—" },
  ], calls, { caption: "Calls in progress on every node", empty: "No call in progress." });
}

export async function render(main) {
  main.append(el("h1", {}, "Calls"));
  const liveBox = el("div", {}, liveTable([]));
  const liveState = el("p", { class: "status-line", "aria-live": "polite" }, "Connecting…");
  main.append(section("Live", liveState, liveBox));

  const stopFeed = subscribe("/api/calls/live/events", (name, data) => {
    if (name !== "calls") return;
    const focused = liveBox.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
    liveBox.replaceChildren(liveTable(data));
    if (focused) { const again = liveBox.querySelector(`a[href="${CSS.escape(focused)}"]`); if (again) again.focus(); }
  }, (state, detail) => {
    liveState.textContent = state === "open" ? "Live: updates as calls start and end."
      : state === "reconnecting" ? "Connection lost; reconnecting…" : `Live feed error: ${detail || ""}`;
  });
  // durations tick between events (in place: the keyboard focus stays where it is)
  const ticker = setInterval(() => {
    for (const cell of liveBox.querySelectorAll(".duration[data-started]")) {
      cell.textContent = seconds(Date.now() / 1000 - Number(cell.dataset.started));
    }
  }, 1000);

  const campaign = el("select", { name: "campaign_id" }, el("option", { value: "" }, "Any"));
  const outcome = el("select", { name: "outcome" }, el("option", { value: "" }, "Any"),
    OUTCOMES.map((o) => el("option", { value: o }, o.replaceAll("_", " "))));
  const status = el("select", { name: "status" }, el("option", { value: "" }, "Any"),
    ["created", "in_progress", "completed", "failed"].map((s) => el("option", { value: s }, s.replace("_", " "))));
  const from = el("input", { type: "date", name: "from" });
  const to = el("input", { type: "date", name: "to" });
  const apply = el("button", { type: "submit", class: "primary" }, "Show calls");
  const form = el("form", { class: "form", "aria-label": "Call history filters" },
    field("Campaign", campaign), field("Outcome", outcome), field("State", status),
    field("From", from), field("To", to), el("div", { class: "actions wide" }, apply));
  const results = el("div", {});
  const more = el("button", { type: "button", hidden: true }, "Older calls");
  main.append(section("History", form, results, el("div", { class: "actions" }, more)));

  let cursor = null;
  let rows = [];
  const load = async (next) => {
    const query = { campaign_id: campaign.value, outcome: outcome.value, status: status.value,
      from: from.value, to: to.value, limit: 25, cursor: next ? cursor : null };
    const page = await act(next ? more : apply, () => api("GET", "/api/calls", { query }));
    if (!page) return;
    rows = next ? rows.concat(page.items) : page.items;
    cursor = page.next_cursor;
    more.hidden = !cursor;
    results.replaceChildren(table([
      { label: "Call", render: (c) => link(`#/call/${c.id}`, c.id.slice(0, 8)) },
      { label: "Created", render: (c) => when(c.created_at) },
      { label: "Campaign", render: (c) => c.campaign_name || "—" },
      { label: "State", render: (c) => badge(c.status) },
      { label: "Outcome", render: (c) => c.outcome ? badge(c.outcome) : "—" },
      { label: "Promised", render: (c) => fmt(c.ptp_amount) },
      { label: "Turns", key: "turns" },
    ], rows, { caption: `${rows.length} call(s)`, empty: "No call matches." }));
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); load(false); });
  more.addEventListener("click", () => load(true));
  api("GET", "/api/campaigns", { query: { limit: 200 } }).then((page) => {
    for (const c of page.items) campaign.append(el("option", { value: c.id }, c.name));
  }).catch(() => {});
  await load(false);
  return () => { stopFeed(); clearInterval(ticker); };
}
