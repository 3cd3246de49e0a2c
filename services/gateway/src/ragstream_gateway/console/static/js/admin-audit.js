// A tenant's audit log, newest first, and the verification of its hash chain.
import { api } from "./api.js";
import { byId, el, formatTime, table } from "./dom.js";
import { announce, chosenTenant, page, reportError, tenantPicker } from "./layout.js";

let entries = [];
let before = null;

const auditPath = (tenantId) => `/v1/admin/tenants/${encodeURIComponent(tenantId)}/audit`;

function render(tenantId) {
  byId("entries").replaceChildren(entries.length ? table(`Audit log of ${tenantId}`, [
    ["#", (e) => String(e.seq)],
    ["When", (e) => formatTime(e.at)],
    ["Actor", (e) => e.actor],
    ["Action", (e) => e.action],
    ["Resource", (e) => e.resource],
    ["Outcome", (e) => e.outcome],
    ["Client", (e) => e.client_ip],
  ], entries) : el("p", {}, "No entries."));
  byId("older").hidden = before === null || before === undefined;
}

async function load(tenantId, older = false) {
  const query = new URLSearchParams({ limit: "50" });
  if (older && before) query.set("before", String(before));
  const pageOfEntries = await api(`${auditPath(tenantId)}?${query}`, { admin: true });
  entries = older ? entries.concat(pageOfEntries.items) : pageOfEntries.items;
  before = pageOfEntries.next_before;
  render(tenantId);
}

async function verify() {
  const result = await api(`${auditPath(chosenTenant())}/verify`, { admin: true });
  const text = result.valid
    ? `Intact: ${result.entries} entries chain correctly.`
    : `Broken at entry ${result.first_bad_seq} (id ${result.first_bad_id}): ${result.problem}`;
  byId("verify-result").textContent = text;
  announce(text, result.valid ? "info" : "error");
}

page(async () => {
  byId("picker").append(tenantPicker((tenantId) => load(tenantId)));
  byId("verify").addEventListener("click", () => verify().catch(reportError));
  byId("older").addEventListener("click", () => load(chosenTenant(), true).catch(reportError));
  await load(chosenTenant());
}, { admin: true });
