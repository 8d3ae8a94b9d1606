// Tuning (#/tuning): start a run (an initial prompt version improved over a training set,
// checked on a held-out set, until a target score or a number of iterations), and the runs
// so far, refreshed while any is unfinished. #/tuning/<id> is one run (tuning_run.js).
import { api } from "../api.js";
import { act, badge, el, field, fmt, link, section, table, when } from "../ui.js";
import { score } from "./evaluations.js";
import { allVersions } from "./library_prompts.js";

export const UNFINISHED = new Set(["PENDING", "RUNNING"]);

export function statusBadge(status) {
  const kind = { PENDING: "created", RUNNING: "running", COMPLETED: "completed", FAILED: "failed", CANCELLED: "canceled" }[status];
  return badge(String(status).toLowerCase(), kind);
}

export function signed(delta) {
  if (delta === null || delta === undefined) return "—";
  const v = Number(delta);
  return `${v > 0 ? "+" : v < 0 ? "−" : "±"}${Math.abs(v).toFixed(1)}`;
}

// "training / held-out" of a version's scores.
export function scores(v) { return v ? `${score(v.train_score)} / ${score(v.heldout_score)}` : "—"; }

async function list(main) {
  main.append(el("h1", {}, "Tuning"));
  const [versions, sets] = await Promise.all([allVersions(), api("GET", "/api/scenario-sets")]);
  const active = versions.filter((v) => v.active);
  const preferred = ["collections-weak@1", "collections-default@1"].find((r) => active.some((v) => v.ref === r));
  const prompt = el("select", { name: "prompt_version", required: true }, active.map((v) =>
    el("option", { value: v.ref, selected: v.ref === preferred }, v.ref)));
  const setOptions = (chosen) => sets.items.map((s) =>
    el("option", { value: s.name, selected: s.name === chosen }, `${s.name} (${s.members.length})`));
  const train = el("select", { name: "scenario_set", required: true }, setOptions("default"));
  const heldout = el("select", { name: "heldout_set", required: true }, setOptions("default-heldout"));
  const target = el("input", { type: "number", name: "target", min: 0, max: 100, step: "any", value: 90, required: true });
  const iterations = el("input", { type: "number", name: "max_iterations", min: 1, max: 10, value: 5, required: true });
  const repeat = el("input", { type: "number", name: "repeat", min: 1, max: 10, value: 1, required: true });
  const seed = el("input", { type: "number", name: "seed", min: 0, value: 0, required: true });
  const writer = el("select", { name: "writer" }, [["offline", "offline (playbook edits)"],
    ["llm", "LLM (prompt and wording)"]].map(([v, t]) => el("option", { value: v }, t)));
  const start = el("button", { type: "submit", class: "primary" }, "Start tuning");
  const form = el("form", { class: "form", "aria-label": "Start a tuning run" },
    field("Initial prompt version", prompt, "the version improved; each accepted candidate is a new version of it"),
    field("Training set", train, "the scenarios the writer learns from"),
    field("Held-out set", heldout, "scenarios the writer never sees: a candidate must not score worse on them"),
    field("Target score", target, "0 to 100: the run stops once the training score reaches it"),
    field("Max iterations", iterations, "1 to 10"),
    field("Repeat", repeat, "each scenario played 1 to 10 times per evaluation"),
    field("Seed", seed, "the same seed plays the same calls"), field("Writer", writer),
    el("div", { class: "actions wide" }, start));
  main.append(section("Start a tuning run", form));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (train.value === heldout.value && !confirm("The training and held-out sets are the same: nothing guards against overfitting. Start anyway?")) return;
    const body = { prompt_version: prompt.value, scenario_set: train.value, heldout_set: heldout.value,
      target: Number(target.value), max_iterations: Number(iterations.value), repeat: Number(repeat.value),
      seed: Number(seed.value), writer: writer.value };
    const made = await act(start, () => api("POST", "/api/tuning", { json: body }),
      (r) => `Tuning run ${r.id} started (${String(r.status).toLowerCase()}).`);
    if (made) location.hash = `#/tuning/${made.id}`;
  });

  const listBox = el("div", {});
  main.append(section("Tuning runs", listBox));
  let timer = null;
  let stopped = false;
  let shown = "";
  const caption = (n, more) => `${n} tuning run(s), newest first${more ? " (the newest 100)" : ""}; scores: training / held-out`;
  const load = async () => {
    let page;
    try {
      page = await api("GET", "/api/tuning", { query: { limit: 100 } });
    } catch (err) {
      listBox.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
      if (!stopped) timer = setTimeout(load, 5000);
      return;
    }
    if (stopped) return;
    const seen = JSON.stringify(page.items);
    if (seen !== shown) {
      shown = seen;
      listBox.replaceChildren(table([
        { label: "Run", render: (r) => link(`#/tuning/${r.id}`, `#${r.id}`) },
        { label: "From", render: (r) => link(`#/prompt/${encodeURIComponent(r.prompt_version)}`, r.prompt_version) },
        { label: "Status", render: (r) => statusBadge(r.status) },
        { label: "Iteration", render: (r) => `${fmt(r.current_iteration)} / ${r.max_iterations}` },
        { label: "Initial", render: (r) => scores(r.initial) },
        { label: "Best", render: (r) => scores(r.final) },
        { label: "Best version", render: (r) => (r.final
          ? link(`#/prompt/${encodeURIComponent(r.final.prompt_version)}`, r.final.prompt_version) : "—") },
        { label: "Target", render: (r) => score(r.target) },
        { label: "Writer", key: "writer" },
        { label: "Created", render: (r) => when(r.created_at) },
      ], page.items, { caption: caption(page.items.length, page.next_cursor !== null), empty: "No tuning run yet: start one above." }));
    }
    if (page.items.some((r) => UNFINISHED.has(r.status))) timer = setTimeout(load, 2000);
  };
  await load();
  return () => { stopped = true; clearTimeout(timer); };
}

export async function render(main, params) {
  if (params.length && params[0] !== "") return (await import("./tuning_run.js")).render(main, params);
  return list(main);
}
