// A DAG's versions: each with when it was first seen and its file, and what changed between
// two of them (a unified diff of their files' texts, added and removed lines marked).

import { get } from "../api.js";
import { clear, enc, h, when } from "../dom.js";

export function shortVersion(version) {
  return version ? version.slice(0, 8) : "–";
}

export function versionsPanel(dagId) {
  const base = `/api/v1/dags/${enc(dagId)}/versions`;
  const listBox = h("div", { class: "scroll" });
  const diffBox = h("div");
  const from = h("select", { "aria-label": "compare from version" });
  const to = h("select", { "aria-label": "compare to version" });
  const compare = async () => {
    if (!from.value || !to.value || from.value === to.value) {
      clear(diffBox, h("p", { class: "muted" }, "Pick two versions to compare."));
      return;
    }
    const detail = await get(`${base}/${enc(to.value)}?diff_from=${enc(from.value)}`);
    const lines = (detail.diff || "").split("\n").filter((l) => l !== "");
    clear(diffBox, lines.length
      ? h("pre", { class: "log diff", "aria-label": "diff between versions" },
          lines.map((line) => h("span", { class: lineClass(line) }, `${line}\n`)))
      : h("p", { class: "muted" }, "The two versions' texts are the same."));
  };
  from.addEventListener("change", compare);
  to.addEventListener("change", compare);

  async function load() {
    const versions = await get(`${base}?limit=100`);
    const rows = versions.map((v) => h("tr", {},
      h("td", {}, h("code", { title: v.version }, shortVersion(v.version)), v.is_latest ? " (latest)" : ""),
      h("td", {}, when(v.first_seen)), h("td", {}, String(v.task_count)), h("td", {}, v.fileloc || "–")));
    clear(listBox, h("table", { "aria-label": "versions" },
      h("thead", {}, h("tr", {}, ["version", "first seen", "tasks", "file"].map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows)));
    const options = (select) => clear(select, versions.map((v) =>
      h("option", { value: v.version }, `${shortVersion(v.version)} · ${when(v.first_seen)}`)));
    options(from);
    options(to);
    if (versions.length > 1) {
      from.value = versions[1].version;
      to.value = versions[0].version;
    }
    await compare();
  }

  const element = h("section", { "aria-label": "DAG versions" },
    listBox, h("p", {}, "Compare ", from, " with ", to), diffBox);
  return { element, load };
}

function lineClass(line) {
  if (line.startsWith("+++") || line.startsWith("---")) return "diff-file";
  if (line.startsWith("+")) return "diff-add";
  if (line.startsWith("-")) return "diff-del";
  if (line.startsWith("@@")) return "diff-hunk";
  return null;
}
