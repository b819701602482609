// SVG drawings with no library: the task graph by dependency level, a Gantt timeline and
// a bar chart of run durations. Colours come from the state classes; every shape has a
// text equivalent (a title, and the tables beside it).

import { SYMBOLS, duration, s } from "../dom.js";

export function levels(tasks) {
  const byId = new Map(tasks.map((t) => [t.task_id, t]));
  const level = new Map();
  const depth = (id, seen = new Set()) => {
    if (level.has(id)) return level.get(id);
    if (seen.has(id)) return 0;
    seen.add(id);
    const ups = (byId.get(id)?.depends_on || []).filter((u) => byId.has(u));
    const value = ups.length ? 1 + Math.max(...ups.map((u) => depth(u, seen))) : 0;
    level.set(id, value);
    return value;
  };
  tasks.forEach((t) => depth(t.task_id));
  return level;
}

export function graph(tasks, states = {}) {
  const level = levels(tasks);
  const columns = [];
  for (const t of tasks) (columns[level.get(t.task_id)] ||= []).push(t.task_id);
  const W = 150, H = 34, GX = 60, GY = 16;
  const where = new Map();
  columns.forEach((ids, x) => ids.forEach((id, y) => where.set(id, [x * (W + GX), y * (H + GY)])));
  const width = Math.max(1, columns.length) * (W + GX) - GX;
  const height = Math.max(1, ...columns.map((c) => c.length)) * (H + GY) - GY;
  const svg = s("svg", { viewBox: `-4 -4 ${width + 8} ${height + 8}`, width: width + 8, height: height + 8,
                         role: "img", "aria-label": `task graph of ${tasks.length} tasks`, class: "graph" });
  for (const t of tasks) {
    const [x2, y2] = where.get(t.task_id);
    for (const up of t.depends_on || []) {
      if (!where.has(up)) continue;
      const [x1, y1] = where.get(up);
      svg.append(s("path", { class: "edge", d: `M${x1 + W},${y1 + H / 2} C${x1 + W + GX / 2},${y1 + H / 2} ${x2 - GX / 2},${y2 + H / 2} ${x2},${y2 + H / 2}` }));
    }
  }
  for (const t of tasks) {
    const [x, y] = where.get(t.task_id);
    const state = states[t.task_id];
    const label = state ? `${SYMBOLS[state] || ""} ${t.task_id}` : t.task_id;
    svg.append(s("g", { class: `node ${state ? `s-${state}` : ""}`, transform: `translate(${x},${y})`,
                        "data-task": t.task_id },
      s("title", {}, state ? `${t.task_id}: ${state}` : t.task_id),
      s("rect", { width: W, height: H, rx: 6 }),
      s("text", { x: 10, y: H / 2 + 4 }, label.length > 20 ? `${label.slice(0, 19)}…` : label)));
  }
  return svg;
}

export function gantt(instances) {
  const started = instances.filter((t) => t.start_date);
  if (!started.length) return null;
  const t0 = Math.min(...started.map((t) => Date.parse(t.start_date)));
  const t1 = Math.max(...started.map((t) => Date.parse(t.end_date || new Date().toISOString())));
  const span = Math.max(1, t1 - t0);
  const LABEL = 160, W = 560, ROW = 22;
  const svg = s("svg", { viewBox: `0 0 ${LABEL + W + 80} ${instances.length * ROW + 4}`,
                         width: LABEL + W + 80, height: instances.length * ROW + 4,
                         role: "img", "aria-label": "timeline of the run's tasks", class: "gantt" });
  instances.forEach((t, i) => {
    const y = i * ROW + 2;
    svg.append(s("text", { x: 0, y: y + 14 }, t.task_id.length > 22 ? `${t.task_id.slice(0, 21)}…` : t.task_id));
    if (!t.start_date) return;
    const start = Date.parse(t.start_date), end = Date.parse(t.end_date || new Date(t1).toISOString());
    const x = LABEL + ((start - t0) / span) * W, w = Math.max(2, ((end - start) / span) * W);
    svg.append(s("g", { class: `s-${t.state}` },
      s("title", {}, `${t.task_id}: ${t.state}, ${duration(t.duration_ms)}`),
      s("rect", { class: "bar", x, y: y + 3, width: w, height: ROW - 8, rx: 3 }),
      s("text", { x: x + w + 4, y: y + 14 }, `${SYMBOLS[t.state] || ""} ${duration(t.duration_ms)}`)));
  });
  return svg;
}

export function durations(runs) {
  const done = runs.filter((r) => r.duration_ms !== null && r.duration_ms !== undefined);
  if (!done.length) return null;
  const most = Math.max(...done.map((r) => r.duration_ms), 1);
  const BAR = 16, GAP = 4, H = 120;
  const svg = s("svg", { viewBox: `0 0 ${done.length * (BAR + GAP) + 60} ${H + 20}`, role: "img",
                         width: done.length * (BAR + GAP) + 60, height: H + 20,
                         "aria-label": `durations of the last ${done.length} runs, longest ${duration(most)}`,
                         class: "durations" });
  svg.append(s("line", { class: "axis", x1: 0, y1: H, x2: done.length * (BAR + GAP), y2: H }));
  svg.append(s("text", { x: done.length * (BAR + GAP) + 4, y: 12 }, duration(most)));
  done.forEach((r, i) => {
    const height = Math.max(2, (r.duration_ms / most) * (H - 4));
    svg.append(s("g", { class: `s-${r.state}` },
      s("title", {}, `${r.run_id}: ${duration(r.duration_ms)}, ${r.state}`),
      s("rect", { class: "bar", x: i * (BAR + GAP), y: H - height, width: BAR, height })));
  });
  return svg;
}
