// Library › Personalities: the list, a new one, and the traits form (shared with the
// personality page, which edits and deletes one).
import { api } from "../api.js";
import { act, el, field, fmt, link, section, table } from "../ui.js";

export const RESISTANCE = ["dispute", "anger", "stalling", "hardship", "hang_up", "wrong_person", "already_paid",
  "ask_human", "opt_out", "callback"];
export const TRIGGERS = ["pressure", "repeated_question", "long_turn", "debt_named", "threat", "interrupted",
  "empathy", "payment_plan", "settlement_offer", "callback_offer", "clear_disclosure"];

function choices(legendText, name, options, chosen) {
  const boxes = options.map((o) => el("input", { type: "checkbox", name, value: o, checked: chosen.includes(o) }));
  const set = el("fieldset", { class: "choices wide" }, el("legend", {}, legendText),
    boxes.map((b) => el("label", {}, b, ` ${b.value.replaceAll("_", " ")}`)));
  return { set, value: () => boxes.filter((b) => b.checked).map((b) => b.value) };
}

function number(name, value, attrs) {
  return el("input", { type: "number", name, value: value ?? "", ...attrs });
}

// The traits form: `initial` a personality (its name fixed) or null (a new one). `onSubmit`
// gets the traits as the API takes them.
export function personalityForm(initial, submitLabel, onSubmit) {
  const p = initial || { willingness_to_pay: 0.5, patience: 5, speaking_wpm: 170, interrupts: false,
    interrupt_after_ms: 2500, silent: false, can_afford: { amount: null, share: null, instalments_ok: true, earliest_days: 0 },
    anger_triggers: [], calm_triggers: [], resistance: [], description: "" };
  const name = el("input", { name: "name", required: true, maxlength: 100, pattern: "[a-z0-9][a-z0-9_\\-]*", autocomplete: "off" });
  const description = el("textarea", { name: "description", maxlength: 2000 }, p.description || "");
  const willingness = number("willingness_to_pay", p.willingness_to_pay, { min: 0, max: 1, step: 0.05, required: true });
  const patience = number("patience", p.patience, { min: 0, max: 10, step: 1, required: true });
  const wpm = number("speaking_wpm", p.speaking_wpm, { min: 80, max: 260, step: 1, required: true });
  const interruptAfter = number("interrupt_after_ms", p.interrupt_after_ms, { min: 200, max: 20000, step: 100, required: true });
  const interrupts = el("input", { type: "checkbox", name: "interrupts", checked: p.interrupts });
  const silent = el("input", { type: "checkbox", name: "silent", checked: p.silent });
  const amount = number("can_afford_amount", p.can_afford.amount, { min: 0, step: 0.01 });
  const share = number("can_afford_share", p.can_afford.share, { min: 0, max: 1, step: 0.05 });
  const instalments = el("input", { type: "checkbox", name: "instalments_ok", checked: p.can_afford.instalments_ok });
  const earliest = number("earliest_days", p.can_afford.earliest_days, { min: 0, max: 365, step: 1, required: true });
  const resistance = el("input", { name: "resistance", value: p.resistance.join(", "), autocomplete: "off" });
  const anger = choices("Anger triggers", "anger_triggers", TRIGGERS, p.anger_triggers);
  const calm = choices("Calm triggers", "calm_triggers", TRIGGERS, p.calm_triggers);
  const submit = el("button", { type: "submit", class: "primary" }, submitLabel);
  const form = el("form", { class: "form", "aria-label": initial ? `Traits of ${initial.name}` : "New personality" },
    initial ? null : field("Name", name, "lower case letters, digits, - and _"),
    field("Willingness to pay", willingness, "0 to 1"), field("Patience", patience, "0 to 10: pushes before anger shows"),
    field("Speaking rate", wpm, "words per minute, 80 to 260"), field("Interrupts after (ms)", interruptAfter),
    field("Can afford (amount)", amount, "at most this much; empty: a share of the balance"),
    field("Can afford (share)", share, "0 to 1 of the balance"), field("Earliest payment (days)", earliest),
    el("div", { class: "field checks" }, el("label", {}, interrupts, " Interrupts the agent"),
      el("label", {}, silent, " Silent (never speaks)"), el("label", {}, instalments, " Instalments are fine")),
    el("div", { class: "wide" }, field("Resistance, in order", resistance, `comma-separated: ${RESISTANCE.join(", ")}`)),
    anger.set, calm.set,
    el("div", { class: "wide" }, field("Description", description)),
    el("div", { class: "actions wide" }, submit));
  const opt = (input) => (input.value.trim() === "" ? null : Number(input.value));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const traits = {
      description: description.value.trim(), willingness_to_pay: Number(willingness.value), patience: Number(patience.value),
      speaking_wpm: Number(wpm.value), interrupts: interrupts.checked, interrupt_after_ms: Number(interruptAfter.value),
      silent: silent.checked, can_afford: { amount: opt(amount), share: opt(share), instalments_ok: instalments.checked,
        earliest_days: Number(earliest.value) },
      resistance: resistance.value.split(",").map((s) => s.trim().replaceAll(" ", "_")).filter(Boolean),
      anger_triggers: anger.value(), calm_triggers: calm.value(),
    };
    if (!initial) traits.name = name.value.trim();
    onSubmit(traits, submit);
  });
  return form;
}

export async function renderTab(box) {
  const listBox = el("div", {});
  box.append(section("Personalities", listBox));
  const load = async () => {
    const page = await act(null, () => api("GET", "/api/personalities"));
    if (!page) return;
    listBox.replaceChildren(table([
      { label: "Name", render: (p) => link(`#/personality/${encodeURIComponent(p.name)}`, p.name) },
      { label: "Willingness", key: "willingness_to_pay" }, { label: "Patience", key: "patience" },
      { label: "Resistance", render: (p) => p.resistance.join(", ").replaceAll("_", " ") || "—" },
      { label: "Scenarios", render: (p) => fmt(p.scenarios.length) },
      { label: "Description", key: "description" },
    ], page.items, { caption: `${page.items.length} personalit${page.items.length === 1 ? "y" : "ies"}`, empty: "No personality yet." }));
  };
  const form = personalityForm(null, "Create personality", async (traits, button) => {
    const made = await act(button, () => api("POST", "/api/personalities", { json: traits }), (p) => `Personality “${p.name}” created.`);
    if (made) { form.reset(); load(); }
  });
  box.append(section("New personality", form));
  await load();
}
