// Health: the store, the scheduler and every engine and worker, the version, a few key
// metrics. Run and task events bring the counts up to date; heartbeats are not events, so
// the instances' ages are read again with the counts, or when asked. Notifications: how many
// wait, were delivered or failed, and the deliveries that failed, each one redeliverable.

import { api, get, send } from "../api.js";
import { clear, coalesced, enc, h, notice, when } from "../dom.js";

export async function healthView(main) {
  const box = h("div");
  const load = coalesced(async () => {
    const total = (state) => api("GET", `/api/v1/notifications?state=${state}&limit=1`).then((p) => p.meta.total);
    const [health, version, metrics, pending, delivered, failures] = await Promise.all([
      api("GET", "/api/v1/health").then((p) => p.data), get("/api/v1/version"), get("/api/v1/metrics"),
      total("pending"), total("delivered"),
      api("GET", "/api/v1/notifications?state=failed&limit=50"),
    ]);
    const count = (name) => (metrics.counters || []).filter((c) => c.name === name)
      .reduce((sum, c) => sum + c.value, 0);
    clear(box,
      h("div", { class: "cards" },
        card("Status", health.status), card("Store", health.store.status),
        card("Scheduler", health.scheduler.status), card("Version", version.version || version.package_version || version.api_version),
        card("Runs succeeded", count("dag_run.completed")), card("Runs failed", count("dag_run.failed")),
        card("Tasks completed", count("task.completed")), card("Tasks failed", count("task.failed")),
        card("Notifications pending", pending), card("Notifications delivered", delivered),
        card("Notifications failed", failures.meta.total)),
      health.reasons && health.reasons.length ? h("ul", {}, health.reasons.map((r) => h("li", {}, r))) : null,
      h("h2", {}, "Instances"),
      h("div", { class: "scroll" }, h("table", {},
        h("thead", {}, h("tr", {}, ["Id", "Kind", "Role", "Host", "PID", "Last heartbeat"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, (health.instances || []).map((i) => h("tr", {},
          h("td", {}, i.id), h("td", {}, i.kind), h("td", {}, i.role), h("td", {}, i.hostname),
          h("td", {}, i.pid), h("td", {}, when(i.last_heartbeat))))))),
      h("h2", {}, "Failed deliveries"), message,
      failures.data.length ? h("div", { class: "scroll" }, h("table", { class: "notifications" },
        h("thead", {}, h("tr", {}, ["Id", "Event", "DAG", "Run", "Target", "Attempts", "Last error", ""]
          .map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, failures.data.map((n) => h("tr", { "data-notification": n.id },
          h("td", {}, n.id), h("td", {}, n.event), h("td", {}, n.dag_id), h("td", {}, n.run_id || ""),
          h("td", {}, n.target.kind), h("td", {}, String(n.attempts)),
          h("td", { class: "error" }, n.last_error || ""),
          h("td", {}, h("button", { type: "button", "data-needs": "operator", onclick: () => redeliver(n.id) }, "Redeliver")))))))
        : h("p", { class: "muted" }, "None."));
  });
  const message = h("div", { role: "status", "aria-live": "polite" });
  async function redeliver(id) {
    try {
      await send("POST", `/api/v1/notifications/${enc(id)}/redeliver`);
      clear(message, notice(`${id}: pending again.`));
    } catch (error) {
      clear(message, notice(`${id}: ${error.message}`, "error"));
    }
    await load();
  }
  await load();
  clear(main, h("h1", {}, "Health", h("button", { type: "button", onclick: () => load() }, "Refresh")), box);
  return {
    onEvents(batch) {
      if (batch.some((e) => e.type === "run.state_changed" || e.type === "task.state_changed"
        || e.type.startsWith("notification."))) load();
    },
  };
}

function card(name, value) {
  return h("div", { class: "card" }, h("div", { class: "muted" }, name), h("div", { class: "value" }, String(value)));
}
