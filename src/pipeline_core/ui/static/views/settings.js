// Settings: variables and connections shared by DAGs. Secret values and passwords are
// write-only: the API answers them as ***, and the forms that set them are password fields
// that are emptied once sent. Setting and deleting needs the admin role.

import { get, send } from "../api.js";
import { clear, coalesced, h, notice } from "../dom.js";

const enc = encodeURIComponent;

function field(label, attrs) {
  const input = h("input", { ...attrs, "aria-label": label });
  return [input, h("label", {}, label, input)];
}

export async function settingsView(main) {
  const message = h("div", { role: "status", "aria-live": "polite" });
  const variables = h("div", { class: "scroll" });
  const connections = h("div", { class: "scroll" });
  const done = (text) => clear(message, notice(text));
  const failed = (error) => clear(message, notice(error.message, "error"));

  const remove = (what, path) => h("button", { type: "button", class: "danger", "data-needs": "admin",
    onclick: async () => {
      try { await send("DELETE", path); done(`${what} deleted.`); load(); } catch (e) { failed(e); }
    } }, "Delete");

  const load = coalesced(async () => {
    const [vars, conns] = await Promise.all([get("/api/v1/variables?limit=1000"),
                                             get("/api/v1/connections?limit=1000")]);
    clear(variables, vars.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Key", "Value", "Secret", "Description", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, vars.map((v) => h("tr", { "data-variable": v.key },
        h("th", { scope: "row" }, v.key), h("td", {}, h("code", {}, v.is_secret ? "***" : JSON.stringify(v.value))),
        h("td", {}, v.is_secret ? "yes" : ""), h("td", { class: "muted" }, v.description || ""),
        h("td", {}, remove(`Variable ${v.key}`, `/api/v1/variables/${enc(v.key)}`))))))
      : notice("No variables yet."));
    clear(connections, conns.length ? h("table", {},
      h("thead", {}, h("tr", {}, ["Id", "Type", "Host", "Port", "Login", "Password", "Schema", ""].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, conns.map((c) => h("tr", { "data-connection": c.conn_id },
        h("th", { scope: "row" }, c.conn_id), h("td", {}, c.conn_type), h("td", {}, c.host || ""),
        h("td", {}, c.port ?? ""), h("td", {}, c.login || ""), h("td", {}, c.password ? "***" : ""),
        h("td", {}, c.schema || ""), h("td", {}, remove(`Connection ${c.conn_id}`, `/api/v1/connections/${enc(c.conn_id)}`))))))
      : notice("No connections yet."));
  });

  const [key, keyLabel] = field("Key", { required: true, pattern: "[A-Za-z0-9_.\\-]{1,250}", id: "variable-key" });
  const [value, valueLabel] = field("Value (JSON or text)", { required: true, type: "password", id: "variable-value", autocomplete: "off" });
  const secret = h("input", { type: "checkbox", id: "variable-secret", checked: true });
  const variableForm = h("form", { "data-needs": "admin", onsubmit: async (event) => {
    event.preventDefault();
    let parsed;
    try { parsed = JSON.parse(value.value); } catch { parsed = value.value; }
    try {
      await send("PUT", `/api/v1/variables/${enc(key.value)}`, { value: parsed, secret: secret.checked });
      done(`Variable ${key.value} set.`);
      value.value = "";
      load();
    } catch (e) { failed(e); }
  } }, keyLabel, valueLabel, h("label", {}, "Secret", secret), h("button", { type: "submit", class: "primary" }, "Set variable"));

  const [connId, connIdLabel] = field("Connection id", { required: true, pattern: "[A-Za-z0-9_.\\-]{1,250}", id: "connection-id" });
  const [uri, uriLabel] = field("URI", { required: true, type: "password", id: "connection-uri", autocomplete: "off",
                                         placeholder: "postgresql://login:password@host:5432/db" });
  const connectionForm = h("form", { "data-needs": "admin", onsubmit: async (event) => {
    event.preventDefault();
    try {
      await send("PUT", `/api/v1/connections/${enc(connId.value)}`, { uri: uri.value });
      done(`Connection ${connId.value} set.`);
      uri.value = "";
      load();
    } catch (e) { failed(e); }
  } }, connIdLabel, uriLabel, h("button", { type: "submit", class: "primary" }, "Set connection"));

  await load();
  clear(main, h("div", { class: "settings" }, h("h1", {}, "Settings"), message,
    h("h2", {}, "Variables"), variableForm, variables, h("h2", {}, "Connections"), connectionForm, connections));
  return {};
}
