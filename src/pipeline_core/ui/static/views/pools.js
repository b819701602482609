// Pools: slots, running and queued tries; slots can be edited. Pool and task events
// refresh the table.

import { get, send } from "../api.js";
import { clear, coalesced, h, notice } from "../dom.js";

export async function poolsView(main) {
  const box = h("div", { class: "scroll" });
  const message = h("div", { role: "status", "aria-live": "polite" });
  const load = coalesced(async () => {
    const pools = await get("/api/v1/pools?limit=1000");
    clear(box, h("table", {},
      h("thead", {}, h("tr", {}, ["Pool", "Slots", "Running", "Queued", "Open", "Description"]
        .map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, pools.map((p) => {
        const input = h("input", { type: "number", min: 0, max: 1000000, value: p.slots,
                                   "aria-label": `slots of ${p.name}`, class: "slots" });
        const save = h("button", { type: "button", "data-needs": "admin", onclick: async () => {
          try {
            await send("PATCH", `/api/v1/pools/${encodeURIComponent(p.name)}`, { slots: Number(input.value) });
            clear(message, notice(`Pool ${p.name} has ${input.value} slots.`));
          } catch (error) {
            clear(message, notice(error.message, "error"));
          }
        } }, "Save");
        return h("tr", { "data-pool": p.name }, h("th", { scope: "row" }, p.name),
          h("td", {}, input, " ", save), h("td", {}, p.running_slots), h("td", {}, p.queued_slots),
          h("td", {}, p.open_slots), h("td", { class: "muted" }, p.description || ""));
      }))));
  });
  await load();
  clear(main, h("h1", {}, "Pools"), message, box);
  return {
    onEvents(batch) {
      if (batch.some((e) => e.type === "pool.updated" || e.type === "task.state_changed")) load();
    },
  };
}
