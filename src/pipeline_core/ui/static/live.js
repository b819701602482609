// One EventSource for the whole page. Events are handed to the current view in batches,
// once per animation frame, so a burst of hundreds of events costs one round of DOM
// updates. A dropped stream reconnects by itself with Last-Event-ID (EventSource does);
// the badge in the header says when it does. Nothing here polls.

import { token } from "./api.js";

const TYPES = ["task.state_changed", "run.state_changed", "run.updated", "dag.updated",
               "pool.updated", "backfill.updated"];
const listeners = new Set();
let queue = [];
let scheduled = false;
let source = null;

export function onEvents(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

function badge(state, text) {
  const el = document.getElementById("live");
  el.dataset.state = state;
  el.textContent = text;
}

function flush() {
  scheduled = false;
  const batch = queue;
  queue = [];
  for (const listener of listeners) {
    try {
      listener(batch);
    } catch (error) {
      console.warn("a view failed to take events", error);
    }
  }
}

function take(message) {
  queue.push({ type: message.type, id: Number(message.lastEventId), ...JSON.parse(message.data) });
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

export function connect() {
  if (source) source.close();
  const bearer = token();
  const url = "/api/v1/events" + (bearer ? `?access_token=${encodeURIComponent(bearer)}` : "");
  source = new EventSource(url);
  source.addEventListener("open", () => {
    badge("live", "live");
    if (!performance.getEntriesByName("pipeline-core:live").length) performance.mark("pipeline-core:live");
  });
  source.addEventListener("error", () => {
    badge("reconnecting", source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
  });
  for (const type of TYPES) source.addEventListener(type, take);
  source.addEventListener("reset", () => listeners.forEach((l) => l([{ type: "reset" }])));
}
