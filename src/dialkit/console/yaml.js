// A JSON value written as block YAML (what a playbook file looks like), so two versions'
// playbooks compare line by line. Strings are quoted whenever plain YAML could read them
// as something else; multi-line strings are literal blocks.
const PLAIN = /^[A-Za-z_][A-Za-z0-9_ .,/@()'-]*$/;
const RESERVED = /^(true|false|yes|no|on|off|null|~|y|n)$/i;

function scalar(v) {
  if (v === null || v === undefined) return "null";
  if (typeof v === "boolean" || typeof v === "number") return String(v);
  const s = String(v);
  if (s !== "" && PLAIN.test(s) && !RESERVED.test(s) && !/\s$/.test(s) && !s.includes(": ") && !s.includes(" #")) return s;
  return JSON.stringify(s);
}

function key(k) { return PLAIN.test(k) && !RESERVED.test(k) && !k.includes(": ") ? k : JSON.stringify(k); }

function isBlock(v) {
  return (Array.isArray(v) && v.length > 0) || (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length > 0);
}

function multiline(v) { return typeof v === "string" && v.includes("\n") && !/[ \t]\n|\n[ \t]*$|^\s/.test(v.replace(/\n+$/, "")) && !v.includes("\r"); }

function block(text, pad) {
  const chomp = text.endsWith("\n") ? (text.endsWith("\n\n") ? "+" : "") : "-";
  const body = text.replace(/\n$/, "").split("\n").map((line) => (line ? pad + line : "")).join("\n");
  return `|${chomp}\n${body}`;
}

function write(v, indent, lines) {
  const pad = "  ".repeat(indent);
  if (Array.isArray(v)) {
    for (const item of v) {
      if (isBlock(item)) {
        const inner = [];
        write(item, indent + 1, inner);
        lines.push(`${pad}- ${inner[0].trimStart()}`, ...inner.slice(1));
      } else if (multiline(item)) {
        lines.push(`${pad}- ${block(item, pad + "  ")}`);
      } else {
        lines.push(`${pad}- ${emptyOr(item)}`);
      }
    }
    return;
  }
  for (const [k, item] of Object.entries(v)) {
    if (isBlock(item)) {
      lines.push(`${pad}${key(k)}:`);
      write(item, Array.isArray(item) ? indent : indent + 1, lines);
    } else if (multiline(item)) {
      lines.push(`${pad}${key(k)}: ${block(item, pad + "  ")}`);
    } else {
      lines.push(`${pad}${key(k)}: ${emptyOr(item)}`);
    }
  }
}

function emptyOr(v) {
  if (Array.isArray(v)) return "[]";
  if (v && typeof v === "object") return "{}";
  return scalar(v);
}

export function toYaml(value) {
  if (!isBlock(value)) return `${emptyOr(value)}\n`;
  const lines = [];
  write(value, 0, lines);
  return `${lines.join("\n")}\n`;
}
