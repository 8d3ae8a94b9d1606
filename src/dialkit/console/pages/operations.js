// Operations: what this server is configured with (GET /api/config/status; no secrets), and
// where its metrics and API document are.
import { api } from "../api.js";
import { badge, el, fmt, section, table } from "../ui.js";

export async function render(main) {
  main.append(el("h1", {}, "Operations"));
  const s = await api("GET", "/api/config/status");
  main.append(section("Providers", table([
    { label: "Role", key: "role" }, { label: "Provider", key: "name" }, { label: "Kind", render: (p) => badge(p.kind, p.kind === "cloud" ? "warn" : "ok") },
    { label: "Credentials", render: (p) => fmt(p.credentials) }, { label: "Fallbacks", render: (p) => p.fallbacks.join(" → ") || "—" },
  ], Object.entries(s.providers).map(([role, p]) => ({ role, ...p })))));
  main.append(section("Carriers", table([
    { label: "Carrier", key: "name" }, { label: "Credentials", render: (c) => fmt(c.credentials) },
    { label: "Dials", render: (c) => badge(c.enabled ? "enabled" : "off", c.enabled ? "ok" : "warn") },
    { label: "Signed callbacks", render: (c) => fmt(c.webhook_secret) },
  ], Object.entries(s.carriers).map(([name, c]) => ({ name, ...c })))));
  const pairs = [
    ["Database", `${s.database.kind}${s.database.version ? ` (PostgreSQL ${s.database.version})` : ""}`],
    ["Live state", s.live_state.kind], ["Job worker", s.jobs.enabled ? `on, ${s.jobs.concurrency} at once` : "off"],
    ["Scheduler tick", `${s.jobs.scheduler_tick_s} s`], ["API key set", fmt(s.api_key_set)], ["Media secret set", fmt(s.media_secret_set)],
    ["Public URL", s.public_url || "—"], ["Call cap", fmt(s.max_concurrent_calls)], ["Default playbook", s.default_playbook],
    ["dialkit", s.versions.dialkit], ["Python", s.versions.python], ["aiohttp", s.versions.aiohttp], ["procrastinate", fmt(s.versions.procrastinate)],
  ];
  main.append(section("Server", el("dl", { class: "stats facts" }, pairs.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))))));
  main.append(section("Playbooks", el("ul", {}, s.playbooks.map((p) => el("li", {}, p)))));
  main.append(section("Elsewhere", el("ul", {},
    el("li", {}, el("a", { href: "/metrics" }, "Prometheus metrics"), " (scraped by ops/prometheus.yml; the Grafana dashboard is ops/grafana/dialkit.json)"),
    el("li", {}, el("a", { href: "/docs" }, "API document (Swagger UI)")),
    el("li", {}, el("a", { href: "/health" }, "Health")))));
}
