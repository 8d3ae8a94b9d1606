// DOM helpers: elements are built with text nodes only (no innerHTML with data), notices for
// every action's result, and small formatters.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  append(node, children);
  return node;
}

export function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clear(node) { node.replaceChildren(); return node; }

let noticeId = 0;
// A confirmation or an error, announced to screen readers; errors stay until dismissed.
export function notify(text, kind = "ok") {
  const region = document.getElementById("notices");
  const id = `notice-${++noticeId}`;
  const close = el("button", { type: "button", class: "notice-close", "aria-label": "Dismiss" }, "×");
  const item = el("div", { class: `notice notice-${kind}`, id, role: kind === "error" ? "alert" : "status" },
    el("span", {}, text), close);
  close.addEventListener("click", () => item.remove());
  region.append(item);
  if (kind !== "error") setTimeout(() => item.remove(), 6000);
  return item;
}

// Runs an action: its confirmation, or the API's error, is shown; the button waits meanwhile.
export async function act(button, work, success) {
  if (button) button.disabled = true;
  try {
    const result = await work();
    if (success) notify(typeof success === "function" ? success(result) : success, "ok");
    return result;
  } catch (err) {
    notify(err.message || String(err), "error");
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

export function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  input.id = id;
  const hintNode = hint ? el("small", { id: `${id}-hint`, class: "hint" }, hint) : null;
  if (hintNode) input.setAttribute("aria-describedby", hintNode.id);
  return el("div", { class: "field" }, el("label", { for: id }, label), input, hintNode,
    el("small", { class: "field-error", id: `${id}-error`, "aria-live": "polite" }));
}

export function fieldError(input, text) {
  const node = document.getElementById(`${input.id}-error`);
  if (node) node.textContent = text || "";
  if (text) input.setAttribute("aria-invalid", "true"); else input.removeAttribute("aria-invalid");
}

export function table(columns, rows, { caption, empty = "Nothing yet." } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c.label)));
  const body = rows.length
    ? rows.map((row) => el("tr", {}, columns.map((c) => el("td", { "data-label": c.label },
      c.render ? c.render(row) : fmt(row[c.key])))))
    : [el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, empty))];
  return el("div", { class: "table-wrap" },
    el("table", {}, caption ? el("caption", {}, caption) : null, el("thead", {}, head), el("tbody", {}, body)));
}

export function fmt(value) {
  if (value === null || value === undefined || value === "") return "—";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(2);
  if (typeof value === "boolean") return value ? "yes" : "no";
  return String(value);
}

export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function pct(rate) { return rate === null || rate === undefined ? "—" : `${(rate * 100).toFixed(1)} %`; }

export function clock(ms) {
  const s = Math.max(0, Math.round(ms / 100) / 10);
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, "0")}:${(s - m * 60).toFixed(1).padStart(4, "0")}`;
}

export function seconds(s) {
  if (s === null || s === undefined) return "—";
  const total = Math.round(s);
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

export function badge(text, kind) { return el("span", { class: `badge badge-${kind || text}` }, text); }

export function link(href, text) { return el("a", { href }, text); }

export function section(title, ...children) {
  const id = `h-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return el("section", { class: "card", "aria-labelledby": id }, el("h2", { id }, title), children);
}
