// The trigger dialog: a JSON conf editor checked before anything is sent.

import { send } from "../api.js";
import { h, runPath } from "../dom.js";
import { navigate } from "../nav.js";

// ``onTriggered(run)`` after the run is created (default: open the run's page).
export function triggerButton(dagId, onTriggered) {
  return h("button", { class: "primary", type: "button", "data-needs": "operator",
                       onclick: () => openTrigger(dagId, onTriggered),
                       "aria-label": `Trigger ${dagId}` }, "▶ Trigger");
}

function jsonError(text) {
  try {
    const value = JSON.parse(text || "{}");
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      return "The conf must be a JSON object, such as {\"key\": \"value\"}.";
    }
    return null;
  } catch (error) {
    return `Not JSON: ${error.message}`;
  }
}

export function openTrigger(dagId, onTriggered = (run) => navigate(runPath(dagId, run.run_id))) {
  const conf = h("textarea", { id: "trigger-conf", spellcheck: "false",
                               "aria-describedby": "trigger-error" }, "{}");
  const runId = h("input", { id: "trigger-run-id", placeholder: "(default: manual__<time>)" });
  const error = h("p", { id: "trigger-error", class: "error", role: "alert" });
  const submit = h("button", { class: "primary", type: "submit" }, "Trigger");
  const check = () => {
    const problem = jsonError(conf.value);
    error.textContent = problem || "";
    submit.disabled = Boolean(problem);
    conf.setAttribute("aria-invalid", problem ? "true" : "false");
  };
  conf.addEventListener("input", check);
  const dialog = h("dialog", { "aria-labelledby": "trigger-title" },
    h("form", {
      method: "dialog",
      onsubmit: async (event) => {
        event.preventDefault();
        if (jsonError(conf.value)) return check();
        const body = { conf: JSON.parse(conf.value || "{}") };
        if (runId.value.trim()) body.run_id = runId.value.trim();
        submit.disabled = true;
        try {
          const run = await send("POST", `/api/v1/dags/${encodeURIComponent(dagId)}/runs`, body);
          dialog.close();
          onTriggered(run);
        } catch (failure) {
          error.textContent = failure.message;
          submit.disabled = false;
        }
      },
    },
      h("h2", { id: "trigger-title" }, `Trigger ${dagId}`),
      h("label", { for: "trigger-conf" }, "Conf (JSON object)"), conf,
      h("label", { for: "trigger-run-id" }, "Run id (optional)"), runId,
      error,
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => dialog.close() }, "Cancel"), submit)));
  dialog.addEventListener("close", () => dialog.remove());
  document.body.append(dialog);
  dialog.showModal();
  conf.focus();
}

export function pauseButton(dag, onChange) {
  const button = h("button", {
    type: "button", "aria-pressed": String(dag.is_paused), "data-needs": "operator",
    "aria-label": `${dag.is_paused ? "Unpause" : "Pause"} ${dag.dag_id}`,
    onclick: async () => {
      button.disabled = true;
      try {
        const updated = await send("PATCH", `/api/v1/dags/${encodeURIComponent(dag.dag_id)}`,
                                   { is_paused: !dag.is_paused });
        onChange(updated);
      } finally {
        button.disabled = false;
      }
    },
  }, dag.is_paused ? "⏸ Paused" : "● Active");
  return button;
}
