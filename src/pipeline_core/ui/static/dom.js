// Building the page without innerHTML: every text goes in as text.

const SVG = "http://www.w3.org/2000/svg";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  return fill(el, attrs, children);
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  return fill(el, attrs, children);
}

function fill(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

// States are told by text and shape as well as colour.
export const SYMBOLS = {
  success: "✓", failed: "✗", running: "▶", queued: "○", up_for_retry: "↻",
  upstream_failed: "⊘", skipped: "»", cancelled: "■", removed: "–",
  pending: "…", delivered: "✓",
};

export function state(value) {
  return h("span", { class: `state s-${value}` }, `${SYMBOLS[value] || "?"} ${value}`);
}

export function square(value, label, href) {
  const attrs = { class: `sq s-${value}`, title: label, "aria-label": label };
  return href ? h("a", { ...attrs, href, "data-link": true }, SYMBOLS[value] || "?")
              : h("span", { ...attrs, role: "img" }, SYMBOLS[value] || "?");
}

export function when(iso) {
  if (!iso) return "–";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

export function link(href, text) {
  return h("a", { href, "data-link": true }, text);
}

export const enc = encodeURIComponent;

export function runPath(dagId, runId) {
  return `/ui/dags/${enc(dagId)}/runs/${enc(runId)}`;
}

export function notice(text, kind = "") {
  return h("p", { class: `notice ${kind}`.trim(), role: kind === "error" ? "alert" : null }, text);
}

// ``fn(key)`` at most once at a time per key: a call while one runs asks for one more run
// after it, so a burst of events costs two reads, not one per event.
export function coalesced(fn) {
  const running = new Map();
  const call = (key) => {
    const state = running.get(key);
    if (state) {
      state.again = true;
      return state.done;
    }
    const mine = { again: false };
    mine.done = Promise.resolve().then(() => fn(key)).finally(() => {
      running.delete(key);
      if (mine.again) call(key);
    });
    running.set(key, mine);
    return mine.done;
  };
  return call;
}
