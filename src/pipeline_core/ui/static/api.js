// The REST API from the page: the token (when the server wants one) is asked for once and
// kept in this tab's session storage.

const TOKEN_KEY = "pipeline-core-token";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

let asking = null;

function askForToken(reason) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const error = document.getElementById("token-error");
  error.textContent = reason || "";
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      sessionStorage.setItem(TOKEN_KEY, input.value);
      input.value = "";
      asking = null;
      window.dispatchEvent(new Event("pipeline-core-token"));
      resolve();
    }, { once: true });
  });
  dialog.showModal();
  input.focus();
  return asking;
}

export async function api(method, path, body, { retried = false } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && !retried) {
    await askForToken(bearer ? "That token was refused." : "");
    return api(method, path, body, { retried: true });
  }
  const payload = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok && response.status !== 408) {
    const error = (payload && payload.error) || {};
    throw new ApiError(response.status, error.code || "http_error",
                       error.message || `HTTP ${response.status}`, error.details);
  }
  return payload;
}

export const get = (path) => api("GET", path).then((p) => p.data);
export const send = (method, path, body) => api(method, path, body).then((p) => p && p.data);

// A running try's log as it is written: calls onText with each piece until the try ends.
export async function followLog(path, onText, signal) {
  const headers = {};
  const bearer = token();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  const response = await fetch(path, { headers, signal });
  if (!response.ok) throw new ApiError(response.status, "http_error", `HTTP ${response.status}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    onText(decoder.decode(value, { stream: true }));
  }
}
