// One call: its record, outcome, transcript (speaker, times, interruptions), the actions and
// events, and the latency of each agent turn as a chart. Refreshes while the call is live.
import { api, storedKey } from "../api.js";
import { legend, stackedBars } from "../charts.js";
import { act, badge, clock, el, fmt, section, table, when } from "../ui.js";

const STAGES = [
  { name: "speech to text", key: "stt_ms", cls: "s1" },
  { name: "first token", key: "llm_ttft_ms", cls: "s2" },
  { name: "first audio", key: "tts_ttfb_ms", cls: "s3" },
];

function summary(call, outcome) {
  const items = [
    ["State", badge(call.status)], ["Carrier", call.carrier], ["Playbook", call.playbook_name ? `${call.playbook_name}@${call.playbook_version}` : "—"],
    ["Number", call.to_number || "—"], ["Created", when(call.created_at)], ["Started", when(call.started_at)],
    ["Ended", when(call.ended_at)], ["Outcome", outcome && outcome.outcome ? badge(outcome.outcome) : "—"],
  ];
  if (call.failure_reason) items.push(["Failure", call.failure_reason]);
  if (outcome) {
    for (const [k, label] of [["right_party", "Right party"], ["ptp_amount", "Promised amount"], ["ptp_date", "Promised date"],
      ["ptp_plan", "Plan"], ["callback_at", "Call back at"], ["opt_out", "Opted out"], ["dispute", "Dispute"], ["hardship", "Hardship"]]) {
      if (outcome[k] !== null && outcome[k] !== undefined && outcome[k] !== false) items.push([label, fmt(outcome[k])]);
    }
  }
  return el("dl", { class: "stats" }, items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
}

function transcript(turns) {
  if (!turns.length) return el("p", { class: "hint" }, "No turn yet.");
  return el("ol", { class: "transcript", "aria-label": "Transcript" }, turns.map((t) =>
    el("li", { class: `turn turn-${t.speaker}` },
      el("header", {}, el("strong", {}, t.speaker), el("span", {}, `${clock(t.start_ms)}–${clock(t.end_ms)}`),
        t.interrupted ? el("span", { class: "interrupted" }, "interrupted") : null),
      el("p", {}, t.text))));
}

function latency(turns) {
  const rows = turns.filter((t) => t.speaker === "agent" && STAGES.some((s) => t[s.key] !== null))
    .map((t) => ({ label: `#${t.seq}`, values: STAGES.map((s) => t[s.key] || 0), v2v: t.voice_to_voice_ms }));
  if (!rows.length) return el("p", { class: "hint" }, "No latency measured yet (agent turns that answered the caller).");
  return el("div", {}, stackedBars("Latency per agent turn, ms", STAGES, rows, { unit: " ms" }), legend(STAGES),
    table([{ label: "Turn", key: "label" }, ...STAGES.map((s, i) => ({ label: `${s.name} (ms)`, render: (r) => fmt(r.values[i]) })),
      { label: "voice to voice (ms)", render: (r) => fmt(r.v2v) }], rows));
}

async function download(button, id, format) {
  await act(button, async () => {
    const resp = await fetch(`/api/calls/${id}/transcript?format=${format}`,
      { headers: storedKey() ? { Authorization: `Bearer ${storedKey()}` } : {} });
    if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).error || `HTTP ${resp.status}`);
    const a = el("a", { href: URL.createObjectURL(await resp.blob()), download: `call-${id}.${format === "text" ? "txt" : format}` });
    document.body.append(a); a.click(); a.remove();
  }, "Transcript downloaded.");
}

export async function render(main, [id]) {
  main.append(el("h1", {}, "Call ", el("code", {}, (id || "").slice(0, 8))));
  const body = el("div", {});
  main.append(body);
  let timer = null;
  let stopped = false;
  let shown = "";
  const draw = (d) => {
    const seen = JSON.stringify(d);
    if (seen === shown) return;  // unchanged: keep the page (and the keyboard focus) as it is
    shown = seen;
    const exports = ["json", "text", "csv"].map((f) => {
      const b = el("button", { type: "button" }, `Transcript (${f})`);
      b.addEventListener("click", () => download(b, id, f));
      return b;
    });
    const actions = d.events.filter((e) => !["stt_partial"].includes(e.kind));
    body.replaceChildren(
      section("Summary", summary(d.call, d.outcome), el("div", { class: "actions" }, exports)),
      el("div", { class: "grid-2" },
        section("Transcript", transcript(d.turns)),
        section("Latency", latency(d.turns))),
      section("Actions and events", table([
        { label: "At", render: (e) => clock(e.t_ms) }, { label: "Kind", key: "kind" },
        { label: "Details", render: (e) => el("code", {}, JSON.stringify(e.data)) }], actions, { empty: "No event recorded." })),
    );
  };
  const load = async () => {
    try {
      const d = await api("GET", `/api/calls/${encodeURIComponent(id)}`);
      draw(d);
      if (!stopped && ["created", "in_progress"].includes(d.call.status)) timer = setTimeout(load, 1000);
    } catch (err) {
      body.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
    }
  };
  await load();
  return () => { stopped = true; clearTimeout(timer); };
}
