// Watching a run's page: fetch it and draw it, again every second while its status is an
// unfinished one, and every 3 s after an error (shown in place of the progress; never again
// after a 404), until the page is left.
import { api } from "./api.js";
import { el } from "./ui.js";

// path: the run's API path; unfinished: a Set of statuses; draw(run); errorBox: where a
// failure is shown. Returns { refresh() (fetch now; the first fetch too), stop() }.
export function pollWhileUnfinished(path, unfinished, draw, errorBox) {
  let timer = null;
  let stopped = false;
  const load = async () => {
    try {
      const run = await api("GET", path);
      if (stopped) return;
      draw(run);
      if (unfinished.has(run.status)) timer = setTimeout(load, 1000);
    } catch (err) {
      errorBox.replaceChildren(el("p", { class: "error", role: "alert" }, err.message));
      if (!stopped && err.status !== 404) timer = setTimeout(load, 3000);
    }
  };
  return {
    refresh: async () => {
      if (stopped) return;
      clearTimeout(timer);
      await load();
    },
    stop: () => { stopped = true; clearTimeout(timer); },
  };
}
