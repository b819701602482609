// Assets: each asset's producers, consumers and last update, and the latest updates with
// what made them. Asset updates and new DAG definitions refresh the page.

import { get } from "../api.js";
import { clear, coalesced, enc, h, link, runPath, when } from "../dom.js";

const RECENT = 50;

export async function assetsView(main) {
  const table = h("div", { class: "scroll" });
  const recent = h("div", { class: "scroll" });
  const load = coalesced(async () => {
    const [assets, updates] = await Promise.all([
      get("/api/v1/assets"), get(`/api/v1/assets/events?limit=${RECENT}`)]);
    clear(table, assets.length ? h("table", { "aria-label": "assets" },
      h("thead", {}, h("tr", {}, ["Asset", "Updates", "Last update", "Produced by", "Starts"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, assets.map((a) => h("tr", { "data-asset": a.uri },
        h("th", { scope: "row" }, a.uri), h("td", {}, a.updates),
        h("td", {}, a.last_update ? when(a.last_update) : "never"),
        h("td", {}, dagLinks(a.producers.map((p) => p.split(".")[0]), a.producers)),
        h("td", {}, dagLinks(a.consumers, a.consumers))))))
      : h("p", { class: "muted" }, "No DAG names an asset yet."));
    clear(recent, updates.length ? h("table", { "aria-label": "latest updates" },
      h("thead", {}, h("tr", {}, ["#", "Asset", "When", "From", "Extra"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, updates.map((u) => h("tr", {},
        h("td", {}, u.id), h("td", {}, u.uri), h("td", {}, when(u.timestamp)),
        h("td", {}, u.source ? link(runPath(u.source.dag_id, u.source.run_id),
                                    `${u.source.dag_id}.${u.source.task_id}`) : "posted"),
        h("td", { class: "muted" }, JSON.stringify(u.extra))))))
      : h("p", { class: "muted" }, "No updates yet."));
  });
  await load();
  clear(main, h("h1", {}, "Assets"), table, h("h2", {}, "Latest updates"), recent);
  return {
    onEvents(batch) {
      if (batch.some((e) => e.type === "asset.updated" || e.type === "dag.updated" || e.type === "reset")) load();
    },
  };
}

function dagLinks(dagIds, labels) {
  if (!dagIds.length) return h("span", { class: "muted" }, "—");
  return dagIds.flatMap((dagId, i) => [i ? ", " : "", link(`/ui/dags/${enc(dagId)}`, labels[i])]);
}
