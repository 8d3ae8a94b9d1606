// One tuning run (#/tuning/<id>), watched while it runs (polled): its progress, the score per
// iteration (training and held-out) as a chart, the iterations with each one's verdict and
// reason, the Pareto pool, the writer's and critique's texts, the final prompt version
// diffed from the initial one, its export, and a cancel button while it is unfinished.
import { api, storedKey } from "../api.js";
import { lineChart } from "../charts.js";
import { pollWhileUnfinished } from "../poll.js";
import { act, append, badge, clear, el, link, section, table, when } from "../ui.js";
import { score } from "./evaluations.js";
import { promptDiff } from "./library_prompts.js";
import { UNFINISHED, signed, statusBadge } from "./tuning.js";

const SERIES = [{ name: "training", cls: "s1" }, { name: "held-out", cls: "s3", dashed: true }];

function stats(pairs) {
  return el("dl", { class: "stats" }, pairs.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
}

function scenarios(set, chosen) {
  return set ? `the set ${set}` : `${(chosen || []).length} chosen scenario(s)`;
}

function promptLink(ref) { return ref ? link(`#/prompt/${encodeURIComponent(ref)}`, ref) : "—"; }

// The points of the chart: the initial version's scores (iteration 0), then each iteration's
// candidate's.
export function chartPoints(run) {
  const points = [];
  if (run.initial) points.push({ label: "0", values: [run.initial.train_score, run.initial.heldout_score] });
  for (const it of run.iterations) points.push({ label: String(it.n), values: [it.train_score, it.heldout_score] });
  return points;
}

function filename(resp, id) {
  const given = /filename="?([^";]+)"?/.exec(resp.headers.get("Content-Disposition") || "");
  if (given) return given[1];
  const type = resp.headers.get("Content-Type") || "";
  return `tuning-${id}.${type.includes("json") ? "json" : type.includes("yaml") ? "yaml" : "txt"}`;
}

// The export as a link (its address the API's), fetched with the key when followed.
function exportLink(id) {
  const href = `/api/tuning/${encodeURIComponent(id)}/export`;
  const a = el("a", { href, class: "button", id: "tuning-export" }, "Export the final prompt version");
  a.addEventListener("click", async (e) => {
    e.preventDefault();
    await act(null, async () => {
      const resp = await fetch(href, { headers: storedKey() ? { Authorization: `Bearer ${storedKey()}` } : {} });
      if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).error || `HTTP ${resp.status}`);
      const save = el("a", { href: URL.createObjectURL(await resp.blob()), download: filename(resp, id) });
      document.body.append(save); save.click(); save.remove();
    }, "Final prompt version exported.");
  });
  return a;
}

export async function render(main, [id]) {
  const title = el("h1", {}, `Tuning run #${id}`);
  const facts = el("p", { class: "status-line" });
  const progress = el("div", {});
  const actions = el("div", { class: "actions" });
  const chart = el("div", {});
  const iterations = el("div", {});
  const exchanges = el("div", {});
  const pool = el("div", {});
  const diffBox = el("div", { "aria-live": "polite" });
  const diffTitle = el("h2", { id: "h-final-prompt" }, "Final prompt");
  main.append(el("p", {}, link("#/tuning", "← Tuning")), title, facts, section("Progress", progress, actions),
    section("Score per iteration", chart), section("Iterations", iterations),
    section("Pareto pool", el("p", { class: "hint" },
      "The versions evaluated that no other beats on every training scenario."), pool),
    section("Writer and critique", exchanges),
    el("section", { class: "card", "aria-labelledby": "h-final-prompt" }, diffTitle, diffBox));

  let shown = "";
  let diffShown = "";
  const cancel = el("button", { type: "button", class: "danger" }, "Cancel run");
  cancel.addEventListener("click", async () => {
    if (!confirm(`Cancel tuning run #${id}? The iterations done so far are kept.`)) return;
    const r = await act(cancel, () => api("POST", `/api/tuning/${encodeURIComponent(id)}/cancel`),
      (x) => `Tuning run #${id} ${String((x && x.status) || "cancelled").toLowerCase()}.`);
    if (r) await poll.refresh();
  });

  const drawDiff = async (run) => {
    const from = run.initial ? run.initial.prompt_version : run.prompt_version;
    const to = run.final ? run.final.prompt_version : null;
    const key = `${from}→${to}→${run.status}`;
    if (key === diffShown) return;
    diffShown = key;
    const finished = !UNFINISHED.has(run.status);
    diffTitle.textContent = finished ? "Final prompt" : "Best prompt so far";
    if (!to) { diffBox.replaceChildren(el("p", { class: "hint" }, "No version yet.")); return; }
    const head = el("p", {}, finished ? "The run's final version, " : "The best version so far, ", promptLink(to),
      ", against the initial one, ", promptLink(from), ".");
    if (to === from) {
      diffBox.replaceChildren(head, el("p", { class: "hint" }, finished
        ? "No candidate was accepted: the final version is the initial one." : "No candidate accepted yet."));
      return;
    }
    try {
      const diff = await promptDiff(from, to);
      if (diffShown === key) diffBox.replaceChildren(head, diff);
    } catch (err) {
      diffShown = "";
      diffBox.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
    }
  };

  const draw = (run) => {
    const seen = JSON.stringify(run);
    if (seen === shown) return;  // unchanged: the page (and the keyboard focus) stays as it is
    shown = seen;
    const spec = run.spec;
    facts.replaceChildren(promptLink(run.prompt_version), ` trained on ${scenarios(spec.scenario_set, spec.scenarios)}`,
      `, held out ${scenarios(spec.heldout_set, spec.heldout_scenarios)}`,
      ` · target ${score(run.target)} · up to ${run.max_iterations} iteration(s) · ×${spec.repeat} · seed ${spec.seed}`,
      ` · ${run.writer} writer`);
    const initial = run.initial || {};
    const final = run.final || {};
    append(clear(progress), [
      stats([["Status", run.cancel_requested && UNFINISHED.has(run.status) ? el("span", {}, statusBadge(run.status), " cancelling…")
        : statusBadge(run.status)], ["Iteration", `${run.current_iteration} / ${run.max_iterations}`],
        ["Initial training", score(initial.train_score)], ["Initial held-out", score(initial.heldout_score)],
        [UNFINISHED.has(run.status) ? "Best training" : "Final training", score(final.train_score)],
        [UNFINISHED.has(run.status) ? "Best held-out" : "Final held-out", score(final.heldout_score)],
        ["Target", score(run.target)], ["Created", when(run.created_at)], ["Finished", when(run.finished_at)]]),
      run.outcome ? el("p", { class: "status-line" }, `Outcome: ${run.outcome.replaceAll("_", " ")}.`) : null,
      run.error ? el("p", { class: "error", role: "alert" }, run.error) : null]);
    cancel.disabled = run.cancel_requested;
    actions.replaceChildren(...(UNFINISHED.has(run.status) ? [cancel] : []),
      ...(run.final && !UNFINISHED.has(run.status) ? [exportLink(id)] : []));
    const points = chartPoints(run);
    chart.replaceChildren(points.length
      ? lineChart("Weighted score per iteration, training and held-out", SERIES, points, { xName: "iteration" })
      : el("p", { class: "hint" }, "No score yet: the initial version is being evaluated."));
    iterations.replaceChildren(table([
      { label: "n", key: "n" },
      { label: "Prompt version", render: (it) => promptLink(it.prompt_version) },
      { label: "Training", render: (it) => score(it.train_score) },
      { label: "Held-out", render: (it) => score(it.heldout_score) },
      { label: "Delta", render: (it) => signed(it.delta) },
      { label: "Accepted", render: (it) => (it.accepted ? badge("accepted", "ok") : badge("rejected", "failed")) },
      { label: "Reason", render: (it) => it.reason || "—" },
    ], run.iterations, { caption: `${run.iterations.length} iteration(s)`,
      empty: UNFINISHED.has(run.status) ? "No iteration finished yet." : "No iteration." }));
    pool.replaceChildren(table([
      { label: "Prompt version", render: (v) => promptLink(v.prompt_version) },
      { label: "Training", render: (v) => score(v.train_score) },
      { label: "Held-out", render: (v) => score(v.heldout_score) },
    ], run.pareto || [], { caption: `${(run.pareto || []).length} version(s)`, empty: "None yet." }));
    const open = new Set([...exchanges.querySelectorAll("details[open]")].map((d) => d.dataset.n));
    exchanges.replaceChildren(run.iterations.length ? el("div", {}, run.iterations.map((it) =>
      el("details", { class: "exchange", dataset: { n: String(it.n) }, open: open.has(String(it.n)) },
        el("summary", {}, `Iteration ${it.n}: ${it.prompt_version} from ${it.parent}`,
          it.tokens ? ` · ${it.tokens} tokens, $${Number(it.cost_usd).toFixed(4)}` : ""),
        el("h3", {}, "Failure analysis"), el("pre", { class: "code", tabindex: 0 }, it.analysis || "—"),
        el("h3", {}, "Proposals and reviews"), el("pre", { class: "code", tabindex: 0 }, it.exchange || "—"))))
      : el("p", { class: "hint" }, "Nothing yet."));
    drawDiff(run);
  };

  const poll = pollWhileUnfinished(`/api/tuning/${encodeURIComponent(id)}`, UNFINISHED, draw, progress);
  await poll.refresh();
  return poll.stop;
}
