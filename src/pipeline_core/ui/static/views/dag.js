// A DAG: its graph, the grid of its last runs by tasks (Airflow's grid view) with the DAG
// version each run ran, run durations, statistics and the DAG's versions. Task and run events update the grid in place; a mapped task's
// cell carries its instances' count and their states (read again when an instance moves).

import { get } from "../api.js";
import { clear, coalesced, duration, enc, h, link, runPath, square } from "../dom.js";
import { durations, graph, levels } from "./charts.js";
import { pauseButton, triggerButton } from "./trigger.js";
import { shortVersion, versionsPanel } from "./versions.js";

const GRID_RUNS = 25;

export async function dagView(main, [dagId]) {
  const base = `/api/v1/dags/${enc(dagId)}`;
  const dag = await get(base);
  const tasks = dag.tasks || [];
  const level = levels(tasks);
  const ordered = tasks.slice().sort((a, b) => level.get(a.task_id) - level.get(b.task_id));
  const gridBox = h("div", { class: "scroll" });
  const chartBox = h("div");
  const statsBox = h("div", { class: "cards" });
  const graphBox = h("div", { class: "scroll" });
  const pauseBox = h("span");
  const versions = versionsPanel(dagId);
  const setPaused = (updated) => { dag.is_paused = updated.is_paused; clear(pauseBox, pauseButton(dag, setPaused)); };
  setPaused(dag);
  const cells = new Map();

  const loadGrid = coalesced(async () => {
    const details = (await get(`${base}/grid?limit=${GRID_RUNS}`)).reverse();  // one read
    cells.clear();
    const head = h("tr", {}, h("th", { scope: "col", class: "task" }, "task \\ run"),
      details.map((r) => h("th", { scope: "col" },
        square(r.state, `${r.run_id}: ${r.state}`, runPath(dagId, r.run_id)))));
    const versionRow = h("tr", {}, h("th", { scope: "row", class: "task" }, "version"),
      details.map((run, i) => {
        const changed = i > 0 && run.dag_version !== details[i - 1].dag_version;
        return h("td", { class: changed ? "version version-change" : "version", title: run.dag_version || "before versions" },
          h("code", {}, shortVersion(run.dag_version)));
      }));
    // Tasks of the latest version first, then those only older runs had.
    const known = new Set(ordered.map((t) => t.task_id));
    const older = [...new Set(details.flatMap((run) => (run.task_instances || []).map((x) => x.task_id)))]
      .filter((id) => !known.has(id)).map((task_id) => ({ task_id }));
    const rows = ordered.concat(older).map((t) => h("tr", {}, h("th", { scope: "row", class: "task" }, t.task_id),
      details.map((run) => {
        const ti = (run.task_instances || []).find((x) => x.task_id === t.task_id);
        if (!ti) return h("td", { class: "absent", title: `${t.task_id} is not in the version ${run.run_id} ran` }, "");
        const state = ti.state;
        const counts = ti && ti.mapped
          ? ` (×${ti.mapped.count}: ${Object.entries(ti.mapped.states).map(([k, n]) => `${n} ${k}`).join(", ")})` : "";
        const cell = h("td", { class: counts ? "mapped" : null },
          square(state, `${t.task_id} in ${run.run_id}: ${state}${counts}`, runPath(dagId, run.run_id)),
          ti && ti.mapped ? h("small", { class: "muted" }, String(ti.mapped.count)) : null);
        cells.set(`${run.run_id}/${t.task_id}`, cell);
        return cell;
      })));
    clear(gridBox, details.length
      ? h("table", { class: "grid", "aria-label": "task states by run" }, h("thead", {}, head, versionRow), h("tbody", {}, rows))
      : h("p", { class: "muted" }, "No runs yet."));
    clear(chartBox, durations(details) || h("p", { class: "muted" }, "No finished runs yet."));
    clear(graphBox, graph(tasks, Object.fromEntries(
      ((details[details.length - 1] || {}).task_instances || []).map((t) => [t.task_id, t.state]))));
  });

  const loadStats = coalesced(async () => {
    const stats = await get(`${base}/stats`);
    const d = stats.runs.duration_ms;
    clear(statsBox,
      card("Runs", stats.runs.total),
      card("Success rate", `${Math.round(stats.runs.success_rate * 100)} %`),
      card("Duration p50", duration(d.p50)), card("p90", duration(d.p90)), card("p99", duration(d.p99)));
  });

  clear(main,
    h("h1", {}, dagId, pauseBox, triggerButton(dagId)),
    dag.description ? h("p", {}, dag.description) : null,
    h("p", { class: "muted" }, `schedule ${dag.schedule || "none"} (${dag.timezone})`,
      dag.next_run_date ? ` · next ${new Date(dag.next_run_date).toLocaleString()}` : ""),
    dag.asset_schedule ? assetLine(dag) : null,
    h("h2", {}, "Grid"), gridBox,
    h("h2", {}, "Graph"), graphBox,
    h("h2", {}, "Run durations"), chartBox,
    h("h2", {}, "Statistics"), statsBox,
    h("h2", {}, "Versions"), versions.element,
    h("p", {}, link("/ui/", "← all DAGs")));
  await Promise.all([loadGrid(), loadStats(), versions.load()]);
  return {
    onEvents(batch) {
      const mine = batch.filter((e) => e.dag_id === dagId);
      let reload = false;
      for (const event of mine) {
        if (event.type === "task.expanded" || (event.map_index ?? -1) >= 0) {
          reload = true;  // an instance moved: its task's counts are read again
        } else if (event.type === "task.state_changed" && cells.has(`${event.run_id}/${event.task_id}`)) {
          const label = `${event.task_id} in ${event.run_id}: ${event.new_state}`;
          clear(cells.get(`${event.run_id}/${event.task_id}`), square(event.new_state, label, runPath(dagId, event.run_id)));
        } else if (["run.state_changed", "run.version_changed", "run.deleted"].includes(event.type)) {
          reload = true;
        } else if (event.type === "dag.updated") {
          setPaused(event);
          if (event.change === "updated") versions.load();  // perhaps a new version
        }
      }
      if (reload || batch.some((e) => e.type === "reset")) { loadGrid(); loadStats(); }
    },
  };
}

function card(name, value) {
  return h("div", { class: "card" }, h("div", { class: "muted" }, name), h("div", { class: "value" }, String(value)));
}

function assetLine(dag) {
  const waiting = Object.entries(dag.assets_waiting || {});
  const said = waiting.length
    ? `waiting for the rest of the condition; updates waiting: ${waiting.map(([uri, n]) => `${uri} ×${n}`).join(", ")}`
    : "no update waiting";
  return h("p", { class: "muted", "data-assets": dag.asset_schedule.assets },
    `runs on assets: ${dag.asset_schedule.assets}${dag.asset_schedule.collapse ? " (collapsed)" : ""} · ${said} · `,
    link("/ui/assets", "all assets"));
}
