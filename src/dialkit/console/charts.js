// Inline SVG charts (bars, stacked bars, meters, lines): titled for screen readers, their
// values in the label (the line chart's in a table too), a fuller table left to the page.
const NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

// series: [{name, cls}], rows: [{label, values: [..]}]; values stacked per row.
export function stackedBars(title, series, rows, { unit = "", height = 180 } = {}) {
  const width = Math.max(320, rows.length * 28 + 60);
  const pad = { left: 44, right: 8, top: 12, bottom: 28 };
  const max = Math.max(1, ...rows.map((r) => r.values.reduce((a, b) => a + (b || 0), 0)));
  const inner = height - pad.top - pad.bottom;
  const step = (width - pad.left - pad.right) / Math.max(rows.length, 1);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img",
    "aria-label": title, preserveAspectRatio: "xMinYMin meet" }, svg("title", {}, title));
  for (const frac of [0, 0.5, 1]) {
    const y = pad.top + inner * (1 - frac);
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" }));
    const tick = max * frac;
    root.append(svg("text", { x: pad.left - 4, y: y + 4, class: "axis", "text-anchor": "end" },
      `${max >= 10 ? Math.round(tick) : Math.round(tick * 10) / 10}${unit}`));
  }
  const barWidth = Math.min(step * 0.7, 36);
  rows.forEach((row, i) => {
    let y = pad.top + inner;
    const x = pad.left + i * step + (step - barWidth) / 2;
    row.values.forEach((v, s) => {
      if (!v) return;
      const h = (v / max) * inner;
      y -= h;
      root.append(svg("rect", { x, y, width: barWidth, height: h, class: `bar ${series[s].cls}` },
        svg("title", {}, `${row.label}: ${series[s].name} ${Math.round(v)}${unit}`)));
    });
    if (rows.length <= 24 || i % 2 === 0) {
      root.append(svg("text", { x: x + barWidth / 2, y: height - 10, class: "axis", "text-anchor": "middle" }, row.label));
    }
  });
  return root;
}

export function legend(series) {
  const list = document.createElement("ul");
  list.className = "legend";
  for (const s of series) {
    const item = document.createElement("li");
    const swatch = document.createElement("span");
    swatch.className = `swatch ${s.cls}${s.stroke ? " stroke" : ""}${s.dashed ? " dashed" : ""}`;
    item.append(swatch, document.createTextNode(s.name));
    list.append(item);
  }
  return list;
}

// A horizontal meter for a rate 0..1.
export function meter(title, rate) {
  const width = 240;
  const value = rate === null || rate === undefined ? 0 : Math.max(0, Math.min(1, rate));
  return svg("svg", { viewBox: `0 0 ${width} 16`, class: "meter", role: "img",
    "aria-label": `${title}: ${rate === null || rate === undefined ? "no data" : (rate * 100).toFixed(1) + " %"}` },
  svg("rect", { x: 0, y: 0, width, height: 16, rx: 4, class: "meter-bg" }),
  svg("rect", { x: 0, y: 0, width: width * value, height: 16, rx: 4, class: "meter-fill" }));
}

// One horizontal bar split by series (e.g. leads per state), with the counts in its tooltip.
export function splitBar(title, series, values) {
  const width = 600;
  const total = values.reduce((a, b) => a + (b || 0), 0);
  const root = svg("svg", { viewBox: `0 0 ${width} 28`, class: "split", role: "img", preserveAspectRatio: "none", "aria-label":
    `${title}: ${series.map((s, i) => `${s.name} ${values[i]}`).join(", ")}` }, svg("title", {}, title));
  let x = 0;
  series.forEach((s, i) => {
    if (!values[i] || !total) return;
    const w = (values[i] / total) * width;
    root.append(svg("rect", { x, y: 0, width: w, height: 28, class: `bar ${s.cls}` }, svg("title", {}, `${s.name}: ${values[i]}`)));
    x += w;
  });
  if (!total) root.append(svg("rect", { x: 0, y: 0, width, height: 28, class: "meter-bg" }));
  return root;
}

function round1(v) { return Math.round(v * 10) / 10; }

// Lines over a fixed axis (e.g. a score 0..100 per iteration). series: [{name, cls, dashed?}],
// points: [{label, values: [one per series; null or undefined where there is none]}]. A line
// breaks where a value is missing; each point is a dot with its value as a tooltip. Returns a
// figure: the chart (its label spells out every value), its legend, and the same values as a
// table for screen readers.
export function lineChart(title, series, points, { min = 0, max = 100, unit = "", height = 220, xName = "" } = {}) {
  const width = Math.max(800, points.length * 56 + 70);
  const pad = { left: 40, right: 16, top: 12, bottom: 30 };
  const inner = height - pad.top - pad.bottom;
  const span = Math.max(max - min, 1e-9);
  const step = points.length > 1 ? (width - pad.left - pad.right) / (points.length - 1) : 0;
  const xAt = (i) => (points.length > 1 ? pad.left + i * step : (pad.left + width - pad.right) / 2);
  const yAt = (v) => pad.top + inner * (1 - (Math.max(min, Math.min(max, v)) - min) / span);
  const has = (v) => v !== null && v !== undefined && Number.isFinite(Number(v));
  const spoken = series.map((s, k) => {
    const said = points.filter((p) => has(p.values[k])).map((p) => `${p.label} ${round1(Number(p.values[k]))}${unit}`);
    return `${s.name}: ${said.length ? said.join(", ") : "no value"}`;
  }).join("; ");
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart line-chart", role: "img",
    "aria-label": `${title}. ${spoken}`, preserveAspectRatio: "xMinYMin meet" }, svg("title", {}, title));
  for (const frac of [0, 0.25, 0.5, 0.75, 1]) {
    const y = pad.top + inner * (1 - frac);
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y, class: "grid" }),
      svg("text", { x: pad.left - 4, y: y + 4, class: "axis", "text-anchor": "end" }, `${round1(min + span * frac)}${unit}`));
  }
  points.forEach((p, i) => {
    root.append(svg("text", { x: xAt(i), y: height - 10, class: "axis", "text-anchor": "middle" }, p.label));
  });
  series.forEach((s, k) => {
    const runs = [];
    let run = [];
    points.forEach((p, i) => {
      if (has(p.values[k])) run.push([xAt(i), yAt(Number(p.values[k]))]);
      else if (run.length) { runs.push(run); run = []; }
    });
    if (run.length) runs.push(run);
    for (const r of runs) {
      if (r.length < 2) continue;
      root.append(svg("polyline", { points: r.map(([x, y]) => `${round1(x)},${round1(y)}`).join(" "),
        class: `line ${s.cls}${s.dashed ? " dashed" : ""}` }));
    }
    points.forEach((p, i) => {
      if (!has(p.values[k])) return;
      root.append(svg("circle", { cx: xAt(i), cy: yAt(Number(p.values[k])), r: 3.5, class: `dot ${s.cls}` },
        svg("title", {}, `${s.name}, ${xName ? `${xName} ` : ""}${p.label}: ${round1(Number(p.values[k]))}${unit}`)));
    });
  });
  const cell = (tag, attrs, text) => Object.assign(document.createElement(tag), { textContent: text }, attrs);
  const values = document.createElement("table");
  values.className = "visually-hidden";
  values.append(cell("caption", {}, title));
  const head = document.createElement("tr");
  head.append(cell("th", { scope: "col" }, xName || "Point"), ...series.map((s) => cell("th", { scope: "col" }, s.name)));
  const body = document.createElement("tbody");
  for (const p of points) {
    const row = document.createElement("tr");
    row.append(cell("th", { scope: "row" }, p.label),
      ...series.map((s, k) => cell("td", {}, has(p.values[k]) ? `${round1(Number(p.values[k]))}${unit}` : "—")));
    body.append(row);
  }
  const thead = document.createElement("thead");
  thead.append(head);
  values.append(thead, body);
  const figure = document.createElement("figure");
  figure.className = "chart-figure";
  figure.append(root, legend(series.map((s) => ({ ...s, stroke: true }))), values);
  return figure;
}
