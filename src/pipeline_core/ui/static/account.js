// Who the page acts as: the token's account (GET /whoami). The page carries its role as
// ``data-role`` on <body>; actions marked ``data-needs="operator"`` or ``"admin"`` are
// hidden from an account below that role (the server refuses them anyway, with a 403).

import { get } from "./api.js";

const RANK = { viewer: 0, operator: 1, admin: 2 };
let role = "admin";

export function can(needed) {
  return RANK[role] >= RANK[needed];
}

export async function loadAccount() {
  const who = document.getElementById("who");
  try {
    const account = await get("/api/v1/whoami");
    role = account.role;
    document.body.dataset.role = role;
    who.textContent = account.auth_required
      ? `${account.name} · ${role}${account.dags_tag ? ` · ${account.dags_tag}` : ""}` : "";
  } catch (error) {
    who.textContent = "";
  }
}
