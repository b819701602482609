// The dashboard: a router over the views, one live event stream, links that keep history.

import { connect, onEvents, onReturn } from "./live.js";
import { clear, notice } from "./dom.js";
import { navigate, setRenderer } from "./nav.js";
import { dagsView } from "./views/dags.js";
import { dagView } from "./views/dag.js";
import { runView } from "./views/run.js";
import { poolsView } from "./views/pools.js";
import { assetsView } from "./views/assets.js";
import { healthView } from "./views/health.js";
import { settingsView } from "./views/settings.js";
import { loadAccount } from "./account.js";

const ROUTES = [
  [/^\/ui\/?$/, "dags", () => dagsView],
  [/^\/ui\/dags\/([^/]+)\/runs\/([^/]+)$/, "dags", () => runView],
  [/^\/ui\/dags\/([^/]+)$/, "dags", () => dagView],
  [/^\/ui\/pools$/, "pools", () => poolsView],
  [/^\/ui\/assets$/, "assets", () => assetsView],
  [/^\/ui\/health$/, "health", () => healthView],
  [/^\/ui\/settings$/, "settings", () => settingsView],
];

let current = null;
let unsubscribe = null;
let generation = 0;
let failed = false;  // the current page could not be loaded (shown as an error)

async function render() {
  const main = document.getElementById("main");
  const path = location.pathname;
  const found = ROUTES.map(([pattern, nav, view]) => [path.match(pattern), nav, view])
                      .find(([match]) => match);
  if (current && current.dispose) current.dispose();
  if (unsubscribe) unsubscribe();
  current = null;
  failed = false;
  const mine = ++generation;
  delete main.dataset.ready;
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.toggleAttribute("aria-current", false);
    if (found && a.dataset.nav === found[1]) a.setAttribute("aria-current", "page");
  }
  if (!found) {
    clear(main, notice(`No page at ${path}.`, "error"));
    return;
  }
  const [match, , view] = found;
  const params = match.slice(1).map(decodeURIComponent);
  try {
    const shown = await view()(main, params);
    if (mine !== generation) {  // another page was asked for meanwhile
      if (shown && shown.dispose) shown.dispose();
      return;
    }
    current = shown;
    if (shown && shown.onEvents) unsubscribe = onEvents(shown.onEvents);
    main.dataset.ready = "true";  // the view has its data (tests and benchmarks wait on it)
    if (!performance.getEntriesByName("pipeline-core:rendered").length) {
      performance.mark("pipeline-core:rendered");  // the first view is on the screen
    }
  } catch (error) {
    if (mine !== generation) return;
    failed = true;
    clear(main, notice(`Could not load this page: ${error.message}`, "error"));
  }
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", render);
setRenderer(render);
onReturn(() => { if (failed) render(); });  // a page that failed while the server was away
window.addEventListener("pipeline-core-token", () => { connect(); loadAccount().then(render); });
connect();
loadAccount().then(render);
