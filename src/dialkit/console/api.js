// The API client: the key lives in sessionStorage (entered once per browser session); a 401
// opens the login box and the call is retried with the key given. Errors carry the API's
// {"error": ...} text.
import { askForKey } from "./login.js";

const KEY = "dialkit.apiKey";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export function storedKey() { return sessionStorage.getItem(KEY); }
export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
}

function url(path, query) {
  const u = new URL(path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === "") continue;
    for (const one of Array.isArray(v) ? v : [v]) u.searchParams.append(k, one);
  }
  return u.pathname + u.search;
}

function headers(extra) {
  const h = { ...extra };
  const key = storedKey();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

async function readBody(resp) {
  const type = resp.headers.get("Content-Type") || "";
  if (type.includes("json")) return resp.json().catch(() => null);
  const text = await resp.text();
  return text ? { error: text.slice(0, 300) } : null;
}

// api("GET", "/api/campaigns", {query}) / api("POST", path, {json}) / api("POST", path, {raw, type})
export async function api(method, path, opts = {}) {
  for (let attempt = 0; ; attempt++) {
    const init = { method, headers: headers() };
    if (opts.json !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(opts.json);
    } else if (opts.raw !== undefined) {
      init.headers["Content-Type"] = opts.type || "application/octet-stream";
      init.body = opts.raw;
    }
    let resp;
    try {
      resp = await fetch(url(path, opts.query), init);
    } catch (err) {
      throw new ApiError(0, { error: `the server could not be reached (${err.message})` });
    }
    if (resp.status === 401 && attempt < 3) {
      const body = await readBody(resp);
      if (!(await askForKey(body && body.error))) throw new ApiError(401, body);
      continue;
    }
    const body = resp.status === 204 ? null : await readBody(resp);
    if (!resp.ok) throw new ApiError(resp.status, body);
    return body;
  }
}

// Server-sent events over fetch (EventSource cannot send the API key): calls onEvent(name, data)
// for each event, reconnects after a drop; returns a function that stops it.
export function subscribe(path, onEvent, onState) {
  const controller = new AbortController();
  let stopped = false;
  let retryMs = 2000;
  const run = async () => {
    while (!stopped) {
      try {
        const resp = await fetch(url(path), {
          headers: headers({ Accept: "text/event-stream" }), signal: controller.signal,
        });
        if (resp.status === 401) {
          const body = await readBody(resp);
          if (!(await askForKey(body && body.error))) { onState && onState("error", body.error); return; }
          continue;
        }
        if (!resp.ok) throw new ApiError(resp.status, await readBody(resp));
        onState && onState("open");
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let name = "message";
            const data = [];
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) name = line.slice(6).trim();
              else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
              else if (line.startsWith("retry:")) retryMs = Number(line.slice(6)) || retryMs;
            }
            if (data.length) onEvent(name, JSON.parse(data.join("\n")));
          }
        }
      } catch (err) {
        if (stopped) return;
        onState && onState("error", err.message);
      }
      if (!stopped) {
        onState && onState("reconnecting");
        await new Promise((r) => setTimeout(r, retryMs));
      }
    }
  };
  run();
  return () => { stopped = true; controller.abort(); };
}
