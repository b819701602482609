// One EventSource for the whole page. Events are handed to the current view in batches,
// once per animation frame, so a burst of hundreds of events costs one round of DOM
// updates. A dropped stream reconnects by itself with Last-Event-ID (EventSource does);
// the badge in the header says when it does. Nothing here polls: the one timer is the
// watchdog, which opens the stream again (from the last id) after a silence longer than
// any the server's keepalives allow, in case the connection died without a word.

import { token } from "./api.js";

// Every type a view may follow: EventSource hands a named event only to the listeners of
// its name, so a type missing here never reaches any view.
const TYPES = ["task.state_changed", "run.state_changed", "run.updated", "dag.updated",
               "pool.updated", "backfill.updated", "task.expanded", "asset.updated",
               "run.deleted", "run.version_changed", "deadline.missed", "flow.waiting",
               "notification.delivered", "notification.failed", "notification.redelivery"];
const listeners = new Set();
const returns = new Set();
let away = false;
let queue = [];
let scheduled = false;
let source = null;
let lastId = null;
let watchdog = null;
// The server's keepalive comments come every 15 s; EventSource does not show comments, so
// a quiet stream and a dead one look alike until this long has passed.
const SILENCE_MS = 60_000;

function rearm() {
  clearTimeout(watchdog);
  watchdog = setTimeout(connect, SILENCE_MS);
}

export function onEvents(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

// `listener` is called each time the stream opens again after it was lost: the server is
// back, so what failed to load while it was away can be asked for again.
export function onReturn(listener) {
  returns.add(listener);
  return () => returns.delete(listener);
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
  if (message.lastEventId) lastId = message.lastEventId;
  rearm();
  queue.push({ type: message.type, id: Number(message.lastEventId), ...JSON.parse(message.data) });
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

export function connect() {
  if (source) source.close();
  const query = new URLSearchParams();
  const bearer = token();
  if (bearer) query.set("access_token", bearer);
  if (lastId) query.set("last_event_id", lastId);  // a new EventSource sends no Last-Event-ID
  source = new EventSource("/api/v1/events" + (query.size ? `?${query}` : ""));
  rearm();
  source.addEventListener("open", () => {
    badge("live", "live");
    rearm();
    if (away) {
      away = false;
      returns.forEach((l) => l());
    }
    if (!performance.getEntriesByName("pipeline-core:live").length) performance.mark("pipeline-core:live");
  });
  source.addEventListener("error", () => {
    away = true;
    badge("reconnecting", source.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting…");
  });
  for (const type of TYPES) source.addEventListener(type, take);
  source.addEventListener("reset", () => listeners.forEach((l) => l([{ type: "reset" }])));
}
