// The page registry: one entry per page, each page one module under pages/ that exports
// `render(main, params)` (and may return a function that stops its timers and streams);
// `under` names the navigation entry a page without one of its own belongs to.
// A page whose API is not on this server yet is added here with its module, and nowhere else.
export const PAGES = [
  { route: "calls", title: "Calls", nav: true, load: () => import("./pages/calls.js") },
  { route: "call", title: "Call", under: "calls", load: () => import("./pages/call.js") },
  { route: "outbound", title: "Outbound caller", nav: true, load: () => import("./pages/outbound.js") },
  { route: "campaigns", title: "Campaigns", nav: true, load: () => import("./pages/campaigns.js") },
  { route: "campaign", title: "Campaign", under: "campaigns", load: () => import("./pages/campaign.js") },
  { route: "library", title: "Library", nav: true, load: () => import("./pages/library.js") },
  { route: "personality", title: "Personality", under: "library", load: () => import("./pages/personality.js") },
  { route: "scenario", title: "Scenario", under: "library", load: () => import("./pages/scenario.js") },
  { route: "prompt", title: "Prompt version", under: "library", load: () => import("./pages/prompt.js") },
  { route: "evaluations", title: "Evaluations", nav: true, load: () => import("./pages/evaluations.js") },
  { route: "evaluation", title: "Evaluation", under: "evaluations", load: () => import("./pages/evaluation.js") },
  { route: "tuning", title: "Tuning", nav: true, load: () => import("./pages/tuning.js") },
  { route: "operations", title: "Operations", nav: true, load: () => import("./pages/operations.js") },
];
