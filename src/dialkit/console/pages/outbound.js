// Outbound caller: place one call through a carrier (POST /api/calls with "dial": true) for a
// debtor, then watch it live on its call page.
import { api, ApiError } from "../api.js";
import { act, el, field, fieldError, notify, section } from "../ui.js";

// the default collections playbook's context; other fields go in "More context"
const CONTEXT = [
  { name: "debtor_name", label: "Debtor name", type: "text", required: true },
  { name: "birth_year", label: "Birth year", type: "number", required: true, min: 1900, max: 2030 },
  { name: "balance", label: "Balance", type: "number", required: true, step: "0.01", min: 0.01 },
  { name: "currency", label: "Currency", choices: ["USD", "INR", "EUR", "GBP"] },
  { name: "creditor", label: "Creditor", type: "text", required: true },
  { name: "callback_number", label: "Callback number", type: "tel", required: true, hint: "e.g. +14155550100" },
  { name: "timezone", label: "Time zone", type: "text", hint: "IANA name; from the number when empty" },
];

export async function render(main) {
  main.append(el("h1", {}, "Outbound caller"));
  let status = null;
  try { status = await api("GET", "/api/config/status"); } catch (err) { notify(err.message, "error"); }
  const carriers = status ? Object.entries(status.carriers).filter(([, c]) => c.enabled).map(([n]) => n) : ["twilio", "exotel"];
  const carrier = el("select", { name: "carrier" }, (carriers.length ? carriers : ["twilio", "exotel"]).map((c) => el("option", { value: c }, c)));
  const playbook = el("select", { name: "playbook" }, el("option", { value: "" }, status ? `server default (${status.default_playbook})` : "server default"),
    (status ? status.playbooks : []).map((p) => el("option", { value: p }, p)));
  const country = el("input", { name: "country", type: "text", inputmode: "numeric", value: "+1", required: true, autocomplete: "off", pattern: "\\+?[0-9]{1,4}" });
  const number = el("input", { name: "number", type: "tel", required: true, autocomplete: "off" });
  const callerId = el("input", { name: "caller_id", type: "tel", autocomplete: "off" });
  const inputs = {};
  const contextFields = CONTEXT.map((f) => {
    const input = f.choices ? el("select", { name: f.name }, f.choices.map((c) => el("option", { value: c }, c)))
      : el("input", { name: f.name, type: f.type, required: f.required, min: f.min, max: f.max, step: f.step, autocomplete: "off" });
    inputs[f.name] = input;
    return field(f.label, input, f.hint);
  });
  const firstContact = el("input", { type: "checkbox", name: "first_contact", checked: true });
  const more = el("textarea", { name: "more", spellcheck: "false" }, "{}");
  const submit = el("button", { type: "submit", class: "primary" }, "Place call");
  const form = el("form", { class: "form", "aria-label": "Place a call", novalidate: true },
    field("Carrier", carrier), field("Playbook", playbook),
    field("Country code", country, "e.g. +1 or +91"), field("Number", number, "without the country code"),
    field("Caller ID", callerId, "E.164; the carrier number the call comes from"),
    contextFields,
    el("div", { class: "field" }, el("label", {}, firstContact, " First contact (full disclosure)")),
    el("div", { class: "wide" }, field("More context (JSON object)", more, "other fields your playbook declares")),
    el("div", { class: "actions wide" }, submit));
  main.append(section("Place a call", form));
  if (status && !carriers.length) {
    main.append(el("p", { class: "error", role: "alert" }, "No carrier is configured on this server: calls cannot be dialled (see README, Configuration)."));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const input of form.querySelectorAll("input, select, textarea")) fieldError(input, "");
    let extra;
    try { extra = JSON.parse(more.value || "{}"); } catch (err) { fieldError(more, `not JSON: ${err.message}`); more.focus(); return; }
    const context = { ...extra, first_contact: firstContact.checked };
    for (const f of CONTEXT) {
      const v = inputs[f.name].value.trim();
      if (v !== "") context[f.name] = f.type === "number" ? Number(v) : v;
    }
    const digits = number.value.replace(/[^0-9]/g, "");
    const body = { carrier: carrier.value, to: `+${country.value.replace(/[^0-9]/g, "")}${digits}`, dial: true, context };
    if (playbook.value) body.playbook = playbook.value;
    if (callerId.value.trim()) body.caller_id = callerId.value.trim();
    const created = await act(submit, async () => {
      try {
        return await api("POST", "/api/calls", { json: body });
      } catch (err) {
        if (err instanceof ApiError) showFieldErrors(err.body, { inputs, number, callerId, carrier, playbook });
        throw err;
      }
    }, (r) => `Call placed (${r.call_id.slice(0, 8)}); opening it.`);
    if (created) location.hash = `#/call/${created.call_id}`;
  });
}

function showFieldErrors(body, { inputs, number, callerId, carrier, playbook }) {
  const byField = { to: number, caller_id: callerId, carrier, playbook };
  for (const [name, reason] of Object.entries(body.fields || {})) if (inputs[name]) fieldError(inputs[name], reason);
  const top = (body.field || "").split(".");
  const target = top[0] === "context" ? inputs[top[1]] : byField[top[0]];
  if (target) { fieldError(target, body.error); target.focus(); }
}
