// One evaluation (#/evaluation/<id>[/<call>]): its progress while it runs (polled), the
// results table (sorted and filtered in the page), and a call's transcript with the judge's
// scores and evidence beside it, each quote linked to the turn it comes from.
import { legend, splitBar } from "../charts.js";
import { pollWhileUnfinished } from "../poll.js";
import { append, badge, clear, el, field, fmt, link, pct, section, when } from "../ui.js";
import { sortableTable } from "../sortable.js";
import { score, statusBadge } from "./evaluations.js";

const CALL_STATES = [
  { key: "PENDING", name: "pending", cls: "s6" }, { key: "RUNNING", name: "running", cls: "s1" },
  { key: "COMPLETED", name: "completed", cls: "s2" }, { key: "FAILED", name: "failed", cls: "s5" },
];

function stats(pairs, cls = "stats") {
  return el("dl", { class: cls }, pairs.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
}

function verdict(r) {
  if (r.passed === null || r.passed === undefined) return r.status === "FAILED" ? badge("error", "error") : "—";
  return r.passed ? badge("passed", "ok") : badge("not passed", "failed");
}

function violations(r) { return r.compliance ? r.compliance.violations : []; }

// The turn (0-based) a quote of the judge's comes from: the first whose text holds it.
export function turnOf(turns, quote) {
  const q = (quote || "").trim().toLowerCase();
  if (!q) return null;
  const i = turns.findIndex((t) => {
    const text = (t.text || "").trim().toLowerCase();
    return text && (text.includes(q) || q.includes(text));
  });
  return i < 0 ? null : i;
}

function turnButton(turn, onGo) {
  const b = el("button", { type: "button", class: "turn-link", "aria-label": `Show turn ${turn + 1} in the transcript` }, `turn ${turn + 1}`);
  b.addEventListener("click", () => onGo(turn));
  return b;
}

function transcriptView(turns, cited) {
  if (!turns.length) return el("p", { class: "hint" }, "No turn.");
  return el("ol", { class: "transcript", "aria-label": "Transcript" }, turns.map((t, i) =>
    el("li", { class: `turn turn-${t.speaker}${cited.has(i) ? " cited" : ""}`, id: `eval-turn-${i}`, tabindex: -1 },
      el("header", {}, el("strong", {}, `${i + 1} · ${t.speaker}`),
        t.start_ms !== null && t.start_ms !== undefined ? el("span", {}, `${(t.start_ms / 1000).toFixed(1)} s`) : null,
        t.interrupted ? el("span", { class: "interrupted" }, "interrupted") : null,
        cited.has(i) ? el("span", { class: "cited-mark" }, `cited: ${cited.get(i).join(", ")}`) : null),
      el("p", {}, t.text))));
}

function judgeView(r, onGo) {
  const s = r;
  const quote = (text) => {
    const at = turnOf(r.transcript, text);
    return el("li", {}, el("q", {}, text), at === null ? null : [" ", turnButton(at, onGo)]);
  };
  const broken = violations(r);
  return el("div", { class: "judge" },
    stats([["Score", `${score(s.score)} / 100`], ["Verdict", verdict(r)], ["Task", score(s.task_completion)],
      ["Efficiency", score(s.efficiency)],
      ["Compliance", r.compliance && r.compliance.passed ? badge("passed", "ok") : badge(`${broken.length} violation(s)`, "failed")],
      ["Hostility", `${fmt(s.hostility)} / 10`], ["Judge", s.samples.length > 1 ? `${s.judge} (${s.samples.length} samples, spread ${fmt(s.spread)})` : s.judge]]),
    el("h3", {}, "Criteria"),
    s.criteria.length ? el("ul", { class: "criteria" }, s.criteria.map((c) => el("li", {},
      el("div", { class: "criterion-head" }, el("strong", {}, c.name.replaceAll("_", " ")), ` ${score(c.score)}`),
      el("p", {}, c.analysis),
      c.evidence.length ? el("ul", { class: "evidence", "aria-label": `Evidence for ${c.name.replaceAll("_", " ")}` }, c.evidence.map(quote)) : null)))
      : el("div", {}, el("p", {}, el("strong", {}, "Task: "), s.task_analysis), el("p", {}, el("strong", {}, "Efficiency: "), s.efficiency_analysis)),
    el("h3", {}, "Compliance"),
    broken.length ? el("ul", { class: "evidence violations", "aria-label": "Violations" }, broken.map((v) =>
      el("li", {}, el("strong", {}, v.rule.replaceAll("_", " ")), ": ", el("q", {}, v.quote),
        v.turn === null || v.turn === undefined ? null : [" ", turnButton(v.turn, onGo)])))
      : el("p", {}, "No rule broken."));
}

function callView(r, onGo) {
  const cited = new Map();
  const cite = (turn, what) => {
    if (turn === null || turn === undefined) return;
    if (!cited.has(turn)) cited.set(turn, []);
    if (!cited.get(turn).includes(what)) cited.get(turn).push(what);
  };
  for (const c of r.criteria) for (const q of c.evidence) cite(turnOf(r.transcript, q), c.name.replaceAll("_", " "));
  for (const v of violations(r)) cite(v.turn, v.rule.replaceAll("_", " "));
  const facts = stats([["Scenario", link(`#/scenario/${encodeURIComponent(r.scenario)}`, r.scenario)],
    ["Personality", link(`#/personality/${encodeURIComponent(r.personality)}`, r.personality)], ["Weight", r.weight],
    ["Repeat", r.repeat], ["Status", statusBadge(r.status)], ["Seed", r.seed],
    ["Outcome", r.outcome ? badge(r.outcome.replaceAll("_", " "), r.outcome) : "—"],
    ["Length", r.seconds === null ? "—" : `${fmt(r.seconds)} s`]], "stats facts");
  return el("div", {}, facts,
    r.error ? el("p", { class: "error", role: "alert" }, `This call failed: ${r.error}`) : null,
    el("div", { class: "grid-2 eval-call" },
      el("div", {}, el("h3", {}, "Transcript"), r.transcript.length ? transcriptView(r.transcript, cited) : el("p", { class: "hint" },
        UNFINISHED_CALL.has(r.status) ? "Not played yet." : "No transcript.")),
      el("div", {}, el("h3", {}, "The judge"), r.score !== null ? judgeView(r, onGo) : el("p", { class: "hint" }, "Not scored."))));
}

const UNFINISHED_CALL = new Set(["PENDING", "RUNNING"]);

export async function render(main, [id, chosen]) {
  const title = el("h1", {}, `Evaluation #${id}`);
  const facts = el("p", { class: "status-line" });
  const progress = el("div", {});
  main.append(el("p", {}, link("#/evaluations", "← Evaluations")), title, facts, section("Progress", progress));

  // filters applied in the page as they change
  const text = el("input", { type: "search", name: "scenario", autocomplete: "off" });
  const callStatus = el("select", { name: "status" }, el("option", { value: "" }, "Any"),
    CALL_STATES.map((s) => el("option", { value: s.key }, s.name)));
  const verdictSel = el("select", { name: "verdict" }, [["", "Any"], ["passed", "passed"], ["failed", "not passed"]]
    .map(([v, t]) => el("option", { value: v }, t)));
  const compliance = el("select", { name: "compliance" }, [["", "Any"], ["clean", "no violation"], ["violations", "violations"]]
    .map(([v, t]) => el("option", { value: v }, t)));
  const filters = el("form", { class: "form", role: "search", "aria-label": "Result filters" },
    field("Scenario or personality", text), field("Call status", callStatus), field("Verdict", verdictSel),
    field("Compliance", compliance));
  filters.addEventListener("submit", (e) => e.preventDefault());

  const detail = el("div", { "aria-live": "polite" });
  const detailTitle = el("h2", { id: "h-call", tabindex: -1 }, "Call");
  const detailSection = el("section", { class: "card", "aria-labelledby": "h-call", hidden: true }, detailTitle, detail);
  let open = chosen === undefined ? null : Number(chosen);
  let results = [];
  let shownDetail = "";
  const drawDetail = (force) => {
    const r = results.find((x) => x.idx === open);
    if (!r) { detailSection.hidden = true; return; }
    const seen = JSON.stringify(r);
    if (seen === shownDetail && !force) return;
    shownDetail = seen;
    detailSection.hidden = false;
    detailTitle.textContent = `Call ${r.idx + 1}: ${r.scenario}, repeat ${r.repeat}`;
    detail.replaceChildren(callView(r, (turn) => {
      const node = document.getElementById(`eval-turn-${turn}`);
      if (!node) return;
      for (const n of document.querySelectorAll(".turn.flash")) n.classList.remove("flash");
      node.classList.add("flash");
      node.scrollIntoView({ block: "center" });
      node.focus({ preventScroll: true });
    }));
  };
  const openCall = (idx) => {
    open = idx;
    history.replaceState(null, "", `#/evaluation/${encodeURIComponent(id)}/${idx}`);
    table.update(results);  // the chosen row marked
    drawDetail(true);
    detailSection.scrollIntoView({ block: "start" });
    detailTitle.focus({ preventScroll: true });
  };

  const table = sortableTable([
    { label: "Call", value: (r) => r.idx, render: (r) => String(r.idx + 1) },
    { label: "Scenario", key: "scenario" },
    { label: "Personality", key: "personality" },
    { label: "Weight", key: "weight" },
    { label: "Repeat", key: "repeat" },
    { label: "Status", value: (r) => r.status, render: (r) => statusBadge(r.status) },
    { label: "Outcome", key: "outcome", render: (r) => (r.outcome ? r.outcome.replaceAll("_", " ") : "—") },
    { label: "Score", key: "score", render: (r) => score(r.score) },
    { label: "Verdict", value: (r) => (r.passed === null ? null : Number(r.passed)), render: verdict },
    { label: "Compliance", value: (r) => (r.compliance ? r.compliance.violations.length : null),
      render: (r) => (!r.compliance ? "—" : r.compliance.passed ? "ok" : `${r.compliance.violations.length} violation(s)`) },
    { label: "Seconds", key: "seconds" },
    { label: "Transcript", sort: false, render: (r) => {
      const b = el("button", { type: "button", "aria-label": `Open call ${r.idx + 1} (${r.scenario})`,
        "aria-pressed": String(r.idx === open) }, "Open");
      b.addEventListener("click", () => openCall(r.idx));
      return b;
    } },
  ], { caption: (n, total) => `${n} of ${total} call(s)`, empty: "No call.",
    rowAttrs: (r) => ({ class: r.idx === open ? "selected" : null }) });
  const applyFilters = () => {
    const q = text.value.trim().toLowerCase();
    table.filter((r) => (!q || r.scenario.toLowerCase().includes(q) || r.personality.toLowerCase().includes(q))
      && (!callStatus.value || r.status === callStatus.value)
      && (!verdictSel.value || (r.passed !== null && (verdictSel.value === "passed") === r.passed))
      && (!compliance.value || (r.compliance && (compliance.value === "clean") === r.compliance.passed)));
  };
  for (const input of [text, callStatus, verdictSel, compliance]) input.addEventListener("input", applyFilters);
  main.append(section("Results", filters, table.node), detailSection);

  let shown = "";
  const draw = (run) => {
    const seen = JSON.stringify(run);
    if (seen === shown) return;  // unchanged: the page (and the keyboard focus) stays as it is
    shown = seen;
    facts.replaceChildren(link(`#/prompt/${encodeURIComponent(run.prompt_version)}`, run.prompt_version), " over ",
      run.scenario_set ? `the set ${run.scenario_set}` : `${run.scenarios.length} chosen scenario(s)`,
      ` · ${run.mode} mode · ×${run.repeat} · seed ${run.seed} · ${run.judge} judge`, run.label ? ` · ${run.label}` : "");
    const counts = Object.fromEntries(CALL_STATES.map((s) => [s.key, run.results.filter((r) => r.status === s.key).length]));
    append(clear(progress), [
      stats([["Status", statusBadge(run.status)], ["Calls", `${run.calls_done} / ${run.calls_total}`],
        ["Failed calls", run.calls_failed], ["Weighted score", score(run.weighted_score)], ["pass^k", pct(run.pass_k)],
        ["Created", when(run.created_at)], ["Finished", when(run.finished_at)]]),
      run.error ? el("p", { class: "error", role: "alert" }, run.error) : null,
      el("div", { class: "progress" }, splitBar("Calls per state", CALL_STATES, CALL_STATES.map((s) => counts[s.key])),
        legend(CALL_STATES.map((s) => ({ ...s, name: `${s.name} ${counts[s.key]}` }))))]);
    results = run.results;
    table.update(results);
    drawDetail(false);
  };
  const poll = pollWhileUnfinished(`/api/evaluations/${encodeURIComponent(id)}`, UNFINISHED_CALL, draw, progress);
  await poll.refresh();
  if (open !== null) drawDetail(true);
  return poll.stop;
}
