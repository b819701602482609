// A run: its tasks with states, tries and durations, a timeline, each task's XCom and its
// log per try (followed live while the try runs), and what an operator may do: cancel,
// retry (all failed tasks or the chosen ones), mark success or failed; the notifications the
// run caused, how their delivery went, and a redelivery of any that is no longer pending.

import { followLog, get, send } from "../api.js";
import { clear, coalesced, duration, enc, h, link, notice, state, when } from "../dom.js";
import { gantt } from "./charts.js";

const FINISHED = ["success", "failed", "cancelled"];

export async function runView(main, [dagId, runId]) {
  const base = `/api/v1/dags/${enc(dagId)}/runs/${enc(runId)}`;
  let run = await get(base);
  let chosen = null;
  let following = null;
  const headState = h("span");
  const actions = h("div", { class: "toolbar", role: "group", "aria-label": "run actions" });
  const message = h("div", { role: "status", "aria-live": "polite" });
  const tableBox = h("div", { class: "scroll" });
  const timeline = h("div", { class: "scroll" });
  const detail = h("section", { "aria-label": "task detail" });
  const notices = h("div", { class: "scroll" });

  const act = (label, fn, cls = "") => h("button", { type: "button", class: cls, onclick: async (e) => {
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
        h("td", { class: "task-state" }, state(t.state)),
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
    if (chosen) await showTask(chosen, { keepLog: true });
  });

  async function showTask(taskId, { keepLog = false } = {}) {
    const sameTask = chosen === taskId;
    chosen = taskId;
    const path = `${base}/tasks/${enc(taskId)}`;
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
      h("h2", {}, `Task ${taskId}`), state(ti.state),
      h("h3", {}, "XCom"),
      xcom.length ? h("table", {}, h("tbody", {}, xcom.map((x) =>
        h("tr", {}, h("th", { scope: "row" }, x.key), h("td", {}, h("code", {}, JSON.stringify(x.value)))))))
        : h("p", { class: "muted" }, "none"),
      h("h3", {}, "Log"), h("label", { for: "try-picker", class: "inline" }, "Try "), picker, log);
    await loadLog();
    draw();
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
