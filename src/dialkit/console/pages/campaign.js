// One campaign: start / pause / resume / cancel, progress (from its status), the lead upload
// with its row report, its do-not-call list and its analytics charts.
import { api } from "../api.js";
import { legend, meter, splitBar, stackedBars } from "../charts.js";
import { act, append, badge, clear, el, field, fmt, pct, section, table } from "../ui.js";
import { dncPanel } from "./dnc.js";

const ACTIONS = { draft: ["start", "cancel"], running: ["pause", "cancel"], paused: ["resume", "cancel"], completed: [], canceled: [] };
const LEAD_STATES = [
  { key: "pending", name: "pending", cls: "s6" }, { key: "retry", name: "retry", cls: "s3" },
  { key: "callback", name: "call back", cls: "s4" }, { key: "dialing", name: "dialing", cls: "s1" },
  { key: "done", name: "done", cls: "s2" }, { key: "dnc", name: "do not call", cls: "s5" },
  { key: "exhausted", name: "exhausted", cls: "s3" }, { key: "canceled", name: "canceled", cls: "s6" },
];
const HOUR_SERIES = [
  { key: "connected", name: "connected", cls: "s2" }, { key: "voicemail", name: "voicemail", cls: "s4" },
  { key: "no_answer", name: "no answer", cls: "s6" }, { key: "busy", name: "busy", cls: "s3" },
  { key: "failed", name: "failed", cls: "s5" },
];

function stats(pairs) {
  return el("dl", { class: "stats" }, pairs.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
}

function reportView(r) {
  const listed = [
    ...r.rejections.map((x) => ({ line: x.line, kind: "rejected", detail: x.reason })),
    ...r.updates.map((x) => ({ line: x.line, kind: "updated", detail: x.account_ref })),
    ...r.duplicates.map((x) => ({ line: x.line, kind: "duplicate", detail: x.account_ref })),
  ].sort((a, b) => a.line - b.line);
  return el("div", { class: "upload-report" },
    stats([["Rows", r.rows], ["Accepted", r.accepted], ["Updated", r.updated], ["Duplicate", r.duplicate],
      ["Rejected", r.rejected], ["Do not call", r.dnc]]),
    listed.length ? table([{ label: "Line", key: "line" }, { label: "Kind", key: "kind" }, { label: "Detail", key: "detail" }],
      listed, { caption: `Rows listed (at most ${r.max_listed} per kind)` }) : null);
}

function analyticsView(a) {
  const m = a.metrics;
  const promised = m.promised.map((p) => `${Number(p.amount).toFixed(2)} ${p.currency}`).join(", ") || "—";
  const hours = a.by_local_hour.filter((h) => h.local_hour !== null).sort((x, y) => x.local_hour - y.local_hour);
  const rows = hours.map((h) => ({ label: String(h.local_hour).padStart(2, "0"), values: HOUR_SERIES.map((s) => h[s.key]) }));
  return el("div", {},
    el("div", { class: "grid-2" },
      el("div", {}, el("h3", {}, "Connect rate"), meter("Connect rate", m.connect_rate), el("p", {}, `${pct(m.connect_rate)} of ${m.ended} ended attempts`)),
      el("div", {}, el("h3", {}, "Promise-to-pay rate"), meter("Promise-to-pay rate", m.promise_rate),
        el("p", {}, `${pct(m.promise_rate)} · ${m.promises} promise(s) · ${promised}`))),
    stats([["Attempts", m.attempts], ["In flight", m.in_flight], ["Right-party contacts", m.right_party_contacts],
      ["Opt-outs", m.opt_outs], ["Average handle", m.average_handle_s === null ? "—" : `${fmt(m.average_handle_s)} s`],
      ["Voice to voice p50 / p95", `${fmt(m.voice_to_voice.p50_ms)} / ${fmt(m.voice_to_voice.p95_ms)} ms`],
      ["Greeting p50 / p95", `${fmt(m.greeting.p50_ms)} / ${fmt(m.greeting.p95_ms)} ms`],
      ["Abandonment", pct(m.abandonment_rate)]]),
    el("h3", {}, "Outcomes by the lead's local hour"),
    rows.length ? el("div", {}, stackedBars("Attempts by local hour and outcome", HOUR_SERIES, rows), legend(HOUR_SERIES))
      : el("p", { class: "hint" }, "No attempt yet."));
}

export async function render(main, [id]) {
  const title = el("h1", {}, "Campaign");
  const statusBadge = el("span", {});
  const controls = el("div", { class: "actions", role: "group", "aria-label": "Campaign actions" });
  const progress = el("div", {});
  main.append(title, section("Status", el("p", {}, statusBadge), controls, progress));

  const file = el("input", { type: "file", name: "leads", accept: ".csv,text/csv", required: true });
  const upload = el("button", { type: "submit", class: "primary" }, "Upload leads");
  const reportBox = el("div", { "aria-live": "polite" });
  const form = el("form", { class: "form", "aria-label": "Upload leads" },
    el("div", { class: "wide" }, field("Lead file (CSV)", file,
      "name, phone, amount_due, currency, due_date, account_ref, optional timezone, and the playbook's fields")),
    el("div", { class: "actions wide" }, upload));
  main.append(section("Leads", form, reportBox));
  const analyticsBox = el("div", {});
  main.append(section("Analytics", analyticsBox));
  main.append(section("Campaign do-not-call list", dncPanel(`/api/campaigns/${encodeURIComponent(id)}/dnc`)));

  let campaign;
  const drawControls = () => {
    controls.replaceChildren(...(ACTIONS[campaign.status] || []).map((action) => {
      const b = el("button", { type: "button", class: action === "cancel" ? "danger" : "primary" },
        action[0].toUpperCase() + action.slice(1));
      b.addEventListener("click", async () => {
        if (action === "cancel" && !confirm("Cancel this campaign? Its waiting leads are cancelled.")) return;
        const r = await act(b, () => api("POST", `/api/campaigns/${id}/${action}`), (c) => `Campaign ${c.status}.`);
        if (r) { campaign = r; refresh(); }
      });
      return b;
    }));
  };
  const refresh = async () => {
    try {
      const s = await api("GET", `/api/campaigns/${id}/status`);
      campaign.status = s.status;
      statusBadge.replaceChildren(badge(s.status), s.status_reason ? ` ${s.status_reason}` : "");
      if (!controls.contains(document.activeElement)) drawControls();
      const done = s.leads.done + s.leads.dnc + s.leads.exhausted + s.leads.canceled;
      append(clear(progress), [
        stats([["Leads", s.total_leads], ["Finished", `${done} (${pct(s.total_leads ? done / s.total_leads : null)})`],
          ["Live attempts", s.live_attempts], ["Completed calls", s.attempts.completed]]),
        s.total_leads ? el("div", { class: "progress" }, splitBar("Leads per state", LEAD_STATES, LEAD_STATES.map((x) => s.leads[x.key])),
          legend(LEAD_STATES.map((x) => ({ ...x, name: `${x.name} ${s.leads[x.key]}` })))) : null]);  // (null skipped)
    } catch (err) {
      progress.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
    }
  };
  const loadAnalytics = async () => {
    try { analyticsBox.replaceChildren(analyticsView(await api("GET", `/api/campaigns/${id}/analytics`))); }
    catch (err) { analyticsBox.replaceChildren(el("p", { class: "error" }, err.message)); }
  };

  try {
    campaign = await api("GET", `/api/campaigns/${encodeURIComponent(id)}`);
  } catch (err) {
    title.after(el("p", { class: "error", role: "alert" }, err.message));
    return undefined;
  }
  title.textContent = campaign.name;
  main.insertBefore(el("p", { class: "status-line" }, `${campaign.playbook} · ${campaign.carrier} · from ${campaign.caller_id} · up to ${campaign.max_concurrent} at once`), title.nextSibling);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const chosen = file.files[0];
    if (!chosen) { file.focus(); return; }
    const report = await act(upload, () => api("POST", `/api/campaigns/${id}/leads`, { raw: chosen, type: "text/csv" }),
      (r) => `Upload done: ${r.accepted} accepted, ${r.updated} updated, ${r.duplicate} duplicate, ${r.rejected} rejected.`);
    if (report) { reportBox.replaceChildren(reportView(report)); refresh(); }
  });
  await Promise.all([refresh(), loadAnalytics()]);
  const timer = setInterval(refresh, 3000);
  const slow = setInterval(loadAnalytics, 15000);
  return () => { clearInterval(timer); clearInterval(slow); };
}
