// A line diff (longest common subsequence, no library) and its view: the changed lines with
// a few lines of context around them, the unchanged stretches between folded.
import { el } from "./ui.js";

const MAX_CELLS = 4_000_000;  // beyond this many (lines × lines) the middle is shown as replaced

// [{op: "same" | "del" | "add", text, a (1-based line in a, or null), b (line in b, or null)}],
// its `rough` property true when the texts were too long to match line by line.
export function diffLines(aText, bText) {
  const a = aText === "" ? [] : aText.split("\n");
  const b = bText === "" ? [] : bText.split("\n");
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
  const out = [];
  out.rough = false;
  for (let i = 0; i < start; i++) out.push({ op: "same", text: a[i], a: i + 1, b: i + 1 });
  const n = endA - start;
  const m = endB - start;
  if (n * m > MAX_CELLS) {
    out.rough = true;
    for (let i = start; i < endA; i++) out.push({ op: "del", text: a[i], a: i + 1, b: null });
    for (let j = start; j < endB; j++) out.push({ op: "add", text: b[j], a: null, b: j + 1 });
  } else {
    // lcs[i][j]: the longest common subsequence of a[start+i..endA) and b[start+j..endB)
    const w = m + 1;
    const lcs = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        lcs[i * w + j] = a[start + i] === b[start + j] ? lcs[(i + 1) * w + j + 1] + 1
          : Math.max(lcs[(i + 1) * w + j], lcs[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && a[start + i] === b[start + j]) {
        out.push({ op: "same", text: a[start + i], a: start + i + 1, b: start + j + 1 }); i++; j++;
      } else if (i < n && (j === m || lcs[(i + 1) * w + j] >= lcs[i * w + j + 1])) {
        out.push({ op: "del", text: a[start + i], a: start + i + 1, b: null }); i++;  // removed lines first
      } else {
        out.push({ op: "add", text: b[start + j], a: null, b: start + j + 1 }); j++;
      }
    }
  }
  for (let k = 0; k < a.length - endA; k++) {
    out.push({ op: "same", text: a[endA + k], a: endA + k + 1, b: endB + k + 1 });
  }
  return out;
}

export function diffStats(lines) {
  return { added: lines.filter((l) => l.op === "add").length, removed: lines.filter((l) => l.op === "del").length };
}

const MARK = { same: " ", del: "−", add: "+" };
const SPOKEN = { del: "removed: ", add: "added: " };

// The diff of two texts as a table (old line, new line, text), unchanged runs beyond
// `context` lines of a change folded into one row.
export function diffView(title, aText, bText, { context = 3 } = {}) {
  const lines = diffLines(aText, bText);
  const { added, removed } = diffStats(lines);
  const summary = el("p", { class: "status-line diff-summary" },
    added || removed ? `${added} line(s) added, ${removed} removed` : "No difference.",
    lines.rough ? " (too long to match line by line: the changed middle is shown removed, then added)" : "");
  const near = new Array(lines.length).fill(false);
  lines.forEach((l, k) => {
    if (l.op === "same") return;
    for (let d = Math.max(0, k - context); d <= Math.min(lines.length - 1, k + context); d++) near[d] = true;
  });
  const rows = [];
  let k = 0;
  while (k < lines.length) {
    if (!near[k]) {
      let end = k;
      while (end < lines.length && !near[end]) end++;
      rows.push(el("tr", { class: "diff-fold" }, el("td", { colspan: 3 }, `… ${end - k} unchanged line(s) …`)));
      k = end;
      continue;
    }
    const l = lines[k];
    rows.push(el("tr", { class: `diff-${l.op}` },
      el("td", { class: "diff-no" }, l.a ?? ""), el("td", { class: "diff-no" }, l.b ?? ""),
      el("td", { class: "diff-text" }, SPOKEN[l.op] ? el("span", { class: "visually-hidden" }, SPOKEN[l.op]) : null,
        el("span", { class: "diff-mark", "aria-hidden": "true" }, MARK[l.op]), l.text)));
    k++;
  }
  return el("div", { class: "diff" }, el("h3", {}, title), summary,
    added || removed ? el("div", { class: "table-wrap" }, el("table", { class: "diff-table" },
      el("caption", { class: "visually-hidden" }, `${title}: line diff`),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Old"), el("th", { scope: "col" }, "New"),
        el("th", { scope: "col" }, "Line"))),
      el("tbody", {}, rows))) : null);
}
