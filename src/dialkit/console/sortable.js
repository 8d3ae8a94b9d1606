// A table whose columns sort (a button in each sortable header, its state in aria-sort) and
// whose rows a predicate filters; the sort survives redraws with new rows.
import { el, fmt } from "./ui.js";

// columns: [{label, key?, render?(row), value?(row) (what it sorts by; default row[key]),
// sort: false to leave a column unsorted}]. Returns {node, update(rows), filter(predicate)}.
export function sortableTable(columns, { caption, empty = "Nothing yet.", sortBy = null, descending = false,
  rowAttrs = null } = {}) {
  let rows = [];
  let keep = () => true;
  let by = sortBy;
  let down = descending;
  const wrap = el("div", { class: "table-wrap" });
  const captionNode = el("caption", {});
  const status = el("p", { class: "visually-hidden", "aria-live": "polite" });

  const valueOf = (c, row) => (c.value ? c.value(row) : row[c.key]);
  const compare = (c) => (x, y) => {
    const a = valueOf(c, x);
    const b = valueOf(c, y);
    const missing = (v) => v === null || v === undefined || v === "";
    if (missing(a) || missing(b)) return missing(a) - missing(b);  // empty cells last either way
    const order = typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b), undefined, { numeric: true });
    return down ? -order : order;
  };

  const draw = () => {
    const focused = wrap.contains(document.activeElement) ? document.activeElement.dataset.sortKey : null;
    const shown = rows.filter(keep);
    const column = columns.find((c) => c.label === by);
    if (column) shown.sort(compare(column));  // Array#sort is stable: ties keep their order
    const head = el("tr", {}, columns.map((c) => {
      if (c.sort === false) return el("th", { scope: "col" }, c.label);
      const state = c.label === by ? (down ? "descending" : "ascending") : null;
      const button = el("button", { type: "button", class: "sort", dataset: { sortKey: c.label } }, c.label,
        el("span", { class: "sort-mark", "aria-hidden": "true" }, state === "ascending" ? " ▲" : state === "descending" ? " ▼" : ""));
      button.addEventListener("click", () => {
        if (by === c.label) down = !down; else { by = c.label; down = false; }
        draw();
        status.textContent = `Sorted by ${c.label}, ${down ? "descending" : "ascending"}.`;
      });
      return el("th", { scope: "col", "aria-sort": state || "none" }, button);
    }));
    const body = shown.length
      ? shown.map((row) => el("tr", rowAttrs ? rowAttrs(row) : {}, columns.map((c) => el("td", { "data-label": c.label },
        c.render ? c.render(row) : fmt(row[c.key])))))
      : [el("tr", {}, el("td", { colspan: columns.length, class: "empty" }, rows.length ? "No row matches the filters." : empty))];
    captionNode.textContent = typeof caption === "function" ? caption(shown.length, rows.length) : (caption || "");
    wrap.replaceChildren(el("table", { class: "sortable" }, caption ? captionNode : null, el("thead", {}, head), el("tbody", {}, body)));
    if (focused) {
      const again = wrap.querySelector(`button[data-sort-key="${CSS.escape(focused)}"]`);
      if (again) again.focus();
    }
  };

  return {
    node: el("div", {}, wrap, status),
    update(next) { rows = next.slice(); draw(); },
    filter(predicate) { keep = predicate; draw(); },
  };
}
