// The page registry: one entry per page, each page one module under pages/ that exports
// `render(main, params)` (and may return a function that stops its timers and streams).
// A page whose API is not on this server yet is added here with its module, and nowhere else.
export const PAGES = [
  { route: "calls", title: "Calls", nav: true, load: () => import("./pages/calls.js") },
  { route: "call", title: "Call", load: () => import("./pages/call.js") },
  { route: "outbound", title: "Outbound caller", nav: true, load: () => import("./pages/outbound.js") },
  { route: "campaigns", title: "Campaigns", nav: true, load: () => import("./pages/campaigns.js") },
  { route: "campaign", title: "Campaign", load: () => import("./pages/campaign.js") },
  { route: "operations", title: "Operations", nav: true, load: () => import("./pages/operations.js") },
];
