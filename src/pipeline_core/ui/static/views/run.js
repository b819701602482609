// A run: its tasks with states, tries and durations, a timeline, each task's XCom and its
// log per try (followed live while the try runs), and what an operator may do: cancel,
// retry (all failed tasks or the chosen ones), mark success or failed; the notifications the
// run caused, how their delivery went, and a redelivery of any that is no longer pending. A
// mapped task shows its instances' counts by state; its detail pages the instances (100 at
// a time, by state) and opens one instance's tries, XCom and log.

import { api, followLog, get, send } from "../api.js";
import { SYMBOLS, clear, coalesced, duration, enc, h, link, notice, state, when } from "../dom.js";
import { gantt } from "./charts.js";

const FINISHED = ["success", "failed", "cancelled"];
const PAGE = 100;

export async function runView(main, [dagId, runId]) {
  const base = `/api/v1/dags/${enc(dagId)}/runs/${enc(runId)}`;
  let run = await get(base);
  let chosen = null;
  let chosenIndex = -1;
  let instancesAt = { offset: 0, state: "" };
  let following = null;
  const headState = h("span");
  const actions = h("div", { class: "toolbar", role: "group", "aria-label": "run actions" });
  const message = h("div", { role: "status", "aria-live": "polite" });
  const tableBox = h("div", { class: "scroll" });
  const timeline = h("div", { class: "scroll" });
  const detail = h("section", { "aria-label": "task detail" });
  const notices = h("div", { class: "scroll" });

  const act = (label, fn, cls = "") => h("button", { type: "button", class: cls, "data-needs": "operator", onclick: async (e) => {
    e.currentTarget.disabled = true;
    try {
      await fn();
      clear(message, notice(`${label}: done.`));
    } catch (error) {
      clear(message, notice(`${label}: ${error.message}`, "error"));
    }
    await reload();
  } }, label);

  function selected() {
    return [...tableBox.querySelectorAll("input[type=checkbox]:checked")].map((c) => c.value);
  }

  function draw() {
    clear(headState, state(run.state));
    const finished = FINISHED.includes(run.state);
    clear(actions,
      finished ? null : act("■ Cancel", () => send("DELETE", base), "danger"),
      act("↻ Retry failed", () => send("POST", `${base}/retry`, {})),
      act("↻ Retry chosen", () => {
        const ids = selected();
        if (!ids.length) throw new Error("choose tasks in the table first");
        return send("POST", `${base}/retry`, { task_ids: ids });
      }),
      run.state === "success" ? null : act("✓ Mark success", () => send("PATCH", base, { state: "success" })),
      run.state === "failed" ? null : act("✗ Mark failed", () => send("PATCH", base, { state: "failed" }), "danger"));
    const tis = run.task_instances || [];
    clear(tableBox, h("table", { class: "tasks" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, h("span", { class: "muted" }, "choose")),
        h("th", { scope: "col" }, "Task"), h("th", { scope: "col" }, "State"),
        h("th", { scope: "col" }, "Tries"), h("th", { scope: "col" }, "Duration"),
        h("th", { scope: "col", class: "hide-narrow" }, "Started"), h("th", { scope: "col", class: "hide-narrow" }, "Error"))),
      h("tbody", {}, tis.map((t) => h("tr", { "data-task": t.task_id },
        h("td", {}, h("input", { type: "checkbox", value: t.task_id, "aria-label": `choose ${t.task_id}` })),
        h("td", {}, h("button", { type: "button", class: "linkish", "aria-pressed": String(chosen === t.task_id),
                                  onclick: () => showTask(t.task_id) }, t.task_id)),
        h("td", { class: "task-state" }, state(t.state), t.mapped ? mappedCounts(t.mapped) : null),
        h("td", {}, `${t.try_number} / ${t.max_tries}`), h("td", {}, duration(t.duration_ms)),
        h("td", { class: "hide-narrow" }, when(t.start_date)),
        h("td", { class: "hide-narrow error" }, t.error || ""))))));
    clear(timeline, gantt(tis) || h("p", { class: "muted" }, "Nothing has started yet."));
  }

  async function drawNotifications() {
    const found = await get(`/api/v1/notifications?dag_id=${enc(dagId)}&run_id=${enc(runId)}&limit=100`);
    clear(notices, found.length ? h("table", { class: "notifications" },
      h("thead", {}, h("tr", {}, ["Event", "Task", "Target", "State", "Attempts", "Last error", ""]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, found.map((n) => h("tr", { "data-notification": n.id },
        h("td", {}, n.event), h("td", {}, n.task_id || ""), h("td", {}, n.target.kind),
        h("td", {}, state(n.state)), h("td", {}, String(n.attempts)),
        h("td", { class: "error" }, n.last_error || ""),
        h("td", {}, n.state === "pending" ? null
          : act("Redeliver", () => send("POST", `/api/v1/notifications/${enc(n.id)}/redeliver`)))))))
      : h("p", { class: "muted" }, "No notifications."));
  }

  const reload = coalesced(async () => {
    run = await get(base);
    draw();
    await drawNotifications();
    if (chosen) await showTask(chosen, { keepLog: true, mapIndex: chosenIndex });
  });

  async function showTask(taskId, { keepLog = false, mapIndex = -1 } = {}) {
    const sameTask = chosen === taskId && chosenIndex === mapIndex;
    if (chosen !== taskId) instancesAt = { offset: 0, state: "" };
    chosen = taskId;
    chosenIndex = mapIndex;
    const own = `${base}/tasks/${enc(taskId)}`;
    const path = mapIndex >= 0 ? `${own}/mapped/${mapIndex}` : own;
    const row = (run.task_instances || []).find((t) => t.task_id === taskId);
    const instances = row && row.mapped ? await instancePanel(taskId, own) : null;
    const [ti, xcom] = await Promise.all([get(path), get(`${path}/xcom`)]);
    if (keepLog && sameTask && following) return;  // the log being followed goes on
    if (following) following.abort();
    following = null;
    const tries = Math.max(1, ti.try_number);
    const picker = h("select", { id: "try-picker" },
      Array.from({ length: tries }, (_, i) => h("option", { value: i + 1, selected: i + 1 === tries }, `try ${i + 1}`)));
    const log = h("pre", { class: "log", tabindex: "0", "aria-label": `log of ${taskId}` });
    const loadLog = async () => {
      if (following) following.abort();
      following = null;
      const number = Number(picker.value);
      log.textContent = "";
      if (ti.state === "running" && number === ti.try_number) {
        following = new AbortController();
        followLog(`${path}/logs?follow=true&try_number=${number}`, (text) => log.append(text), following.signal)
          .catch(() => {});
      } else {
        const chunk = await get(`${path}/logs?try_number=${number}`);
        log.textContent = chunk.text || "(empty)";
      }
    };
    picker.addEventListener("change", loadLog);
    clear(detail,
      h("h2", {}, mapIndex >= 0 ? `Task ${taskId} [${mapIndex}]` : `Task ${taskId}`), state(ti.state),
      instances,
      h("h3", {}, "XCom"),
      xcom.length ? h("table", {}, h("tbody", {}, xcom.map((x) =>
        h("tr", {}, h("th", { scope: "row" }, x.key), h("td", {}, h("code", {}, JSON.stringify(x.value)))))))
        : h("p", { class: "muted" }, "none"),
      h("h3", {}, "Log"), h("label", { for: "try-picker", class: "inline" }, "Try "), picker, log);
    await loadLog();
    draw();
  }

  async function instancePanel(taskId, own) {
    const query = `limit=${PAGE}&offset=${instancesAt.offset}${instancesAt.state ? `&state=${instancesAt.state}` : ""}`;
    const page = await api("GET", `${own}/mapped?${query}`);
    const filter = h("select", { id: "instance-state", "aria-label": "instances in state" },
      ["", "queued", "running", "success", "failed", "up_for_retry", "upstream_failed", "skipped", "cancelled"]
        .map((v) => h("option", { value: v, selected: v === instancesAt.state }, v || "any state")));
    filter.addEventListener("change", () => {
      instancesAt = { offset: 0, state: filter.value };
      showTask(taskId);
    });
    const move = (offset) => () => { instancesAt = { ...instancesAt, offset }; showTask(taskId); };
    const { total } = page.meta;
    const last = Math.min(total, instancesAt.offset + page.data.length);
    return h("section", { class: "instances", "aria-label": `instances of ${taskId}` },
      h("h3", {}, "Instances"), filter,
      h("span", { class: "muted" }, ` ${total ? instancesAt.offset + 1 : 0}–${last} of ${total} `),
      h("button", { type: "button", disabled: instancesAt.offset === 0,
                    onclick: move(Math.max(0, instancesAt.offset - PAGE)) }, "‹ Previous"),
      h("button", { type: "button", disabled: last >= total, onclick: move(instancesAt.offset + PAGE) }, "Next ›"),
      h("div", { class: "scroll" }, h("table", { class: "instances" },
        h("thead", {}, h("tr", {}, ["#", "State", "Tries", "Duration", "Error"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, page.data.map((i) => h("tr", { "data-map-index": i.map_index },
          h("td", {}, h("button", { type: "button", class: "linkish", "aria-label": `instance ${i.map_index}`,
                                    onclick: () => showTask(taskId, { mapIndex: i.map_index }) }, String(i.map_index))),
          h("td", {}, state(i.state)), h("td", {}, `${i.try_number} / ${i.max_tries}`),
          h("td", {}, duration(i.duration_ms)), h("td", { class: "error" }, i.error || "")))))));
  }

  draw();
  await drawNotifications();
  clear(main,
    h("h1", {}, link(`/ui/dags/${enc(dagId)}`, dagId), " / ", runId, headState),
    h("p", { class: "muted" }, `${run.run_type} run, logical date ${when(run.logical_date)}`,
      run.note ? ` · note: ${run.note}` : ""),
    actions, message,
    h("div", { class: "split" },
      h("div", {}, h("h2", {}, "Tasks"), tableBox, h("h2", {}, "Timeline"), timeline,
        h("h2", {}, "Notifications"), notices),
      detail));
  return {
    onEvents(batch) {
      if (batch.some((e) => e.run_id === runId && e.dag_id === dagId) || batch.some((e) => e.type === "reset")) reload();
    },
    dispose() {
      if (following) following.abort();
    },
  };
}

function mappedCounts(mapped) {
  const parts = Object.entries(mapped.states).map(([name, n]) => `${n} ${SYMBOLS[name] || name}`);
  return h("span", { class: "mapped muted", title: Object.entries(mapped.states).map(([k, n]) => `${n} ${k}`).join(", ") },
    ` ×${mapped.count}: ${parts.join(" · ")}`);
}
