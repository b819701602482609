// DAGs: a page of DAGs with their schedule, tags, pause toggle, last runs and a trigger
// button, searched by id or description and filtered by tag on the server (a folder of
// 10,000 DAGs is never loaded whole); import errors on top. Runs change live: a run event
// refreshes its DAG's squares when the DAG is on the page.

import { api, get } from "../api.js";
import { clear, coalesced, enc, h, link, notice, runPath, square, when } from "../dom.js";
import { pauseButton, triggerButton } from "./trigger.js";

const LAST_RUNS = 10;
export const PAGE = 50;

export async function dagsView(main) {
  const errors = await get("/api/v1/import-errors?limit=1000");
  const rows = new Map();
  let offset = 0;
  let total = 0;
  const status = h("p", { class: "muted", role: "status", "aria-live": "polite" });
  const search = h("input", { id: "dag-search", type: "search", placeholder: "id or description",
    autocomplete: "off", maxlength: "200" });
  const tag = h("input", { id: "tag-filter", type: "search", placeholder: "tag", autocomplete: "off",
    maxlength: "200" });
  const caption = h("caption", { class: "muted" });
  const body = h("tbody");
  const previous = h("button", { type: "button", onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "← Previous");
  const next = h("button", { type: "button", onclick: () => { offset += PAGE; load(); } }, "Next →");
  const table = h("table", { class: "dags" }, caption,
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "DAG"), h("th", { scope: "col", class: "hide-narrow" }, "Schedule"),
      h("th", { scope: "col", class: "hide-narrow" }, "Tags"), h("th", { scope: "col" }, "Last runs"),
      h("th", { scope: "col" }, "Paused"), h("th", { scope: "col" }, ""))),
    body);
  const listBox = h("div");

  const refresh = coalesced(async (dagId) => {
    const entry = rows.get(dagId);
    if (!entry) return;
    const runs = await get(`/api/v1/dags/${enc(dagId)}/runs?limit=${LAST_RUNS}`);
    const signature = runs.map((r) => `${r.run_id}:${r.state}`).join(" ");
    if (signature === entry.signature) return;  // nothing to redraw
    entry.signature = signature;
    clear(entry.squares, runs.slice().reverse().map((r) =>
      square(r.state, `${r.run_id}: ${r.state}`, runPath(dagId, r.run_id))));
    if (!runs.length) entry.squares.append(h("span", { class: "muted" }, "no runs"));
  });

  const load = coalesced(async () => {
    const query = new URLSearchParams({ limit: String(PAGE), offset: String(offset) });
    if (search.value.trim()) query.set("q", search.value.trim());
    if (tag.value.trim()) query.set("tags", tag.value.trim());
    const answer = await api("GET", `/api/v1/dags?${query}`);
    const dags = answer.data;
    total = answer.meta.total;
    rows.clear();
    clear(body, dags.map((dag) => row(dag)));
    caption.textContent = total ? `${offset + 1}–${offset + dags.length} of ${total} DAGs` : "no DAGs";
    previous.disabled = offset === 0;
    next.disabled = offset + dags.length >= total;
    clear(listBox, total || search.value || tag.value ? h("div", { class: "scroll" }, table)
      : notice("No DAGs are loaded."));
    await Promise.all(dags.map((d) => refresh(d.dag_id)));
  });

  function row(dag) {
    const squares = h("div", { class: "squares", "data-dag": dag.dag_id });
    const paused = h("td");
    const setPaused = (updated) => {
      dag.is_paused = updated.is_paused;
      clear(paused, pauseButton(dag, setPaused));
    };
    setPaused(dag);
    const row = h("tr", { "data-dag": dag.dag_id, "data-tags": dag.tags.join(" ") },
      h("td", {}, link(`/ui/dags/${enc(dag.dag_id)}`, dag.dag_id),
        dag.description ? h("div", { class: "muted" }, dag.description) : null),
      h("td", { class: "hide-narrow" }, dag.schedule || h("span", { class: "muted" }, "none"),
        dag.next_run_date ? h("div", { class: "muted" }, `next ${when(dag.next_run_date)}`) : null),
      h("td", { class: "hide-narrow" }, dag.tags.map((t) => h("span", { class: "tag" }, t))),
      h("td", {}, squares), paused,
      h("td", {}, triggerButton(dag.dag_id, (run) => {
        status.textContent = "";
        status.append("Triggered ", link(runPath(dag.dag_id, run.run_id), run.run_id), ".");
        refresh(dag.dag_id);
      })));
    rows.set(dag.dag_id, { row, squares, dag, setPaused });
    return row;
  }

  clear(main,
    h("h1", {}, "DAGs"),
    errors.length ? h("section", { class: "banner", "aria-labelledby": "errors-title" },
      h("strong", { id: "errors-title" }, `${errors.length} DAG file(s) failed to load`),
      h("ul", {}, errors.flatMap((e) => e.errors.map((issue) =>
        h("li", { class: "import-error" }, h("code", {}, e.filename),
          issue.line ? `:${issue.line}` : "", " — ", issue.message))))) : null,
    h("div", { class: "toolbar" },
      h("label", { for: "dag-search", class: "inline" }, "Search "), search,
      h("label", { for: "tag-filter", class: "inline" }, " Tag "), tag,
      " ", previous, " ", next),
    status, listBox);
  let typing = null;
  for (const input of [search, tag]) {
    input.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(() => { offset = 0; load(); }, 250);
    });
  }
  await load();
  return {
    onEvents(batch) {
      const moved = (e) => e.type === "run.state_changed" || e.type === "run.deleted";
      const touched = new Set(batch.filter(moved).map((e) => e.dag_id));
      for (const dagId of touched) refresh(dagId);
      for (const event of batch) {
        if (event.type === "dag.updated" && rows.has(event.dag_id) && "is_paused" in event) {
          rows.get(event.dag_id).setPaused({ is_paused: event.is_paused });
        }
      }
      if (batch.some((e) => e.type === "reset")) for (const id of rows.keys()) refresh(id);
    },
  };
}
