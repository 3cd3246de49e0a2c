// Tenants: look one up, disable or enable it, create one (its Kafka password is shown once).
import { api } from "./api.js";
import { byId, el, formatTime } from "./dom.js";
import { announce, page, reportError, tenantPicker } from "./layout.js";

function details(pairs) {
  return el("dl", { class: "details" }, pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

async function setDisabled(tenant, disabled) {
  const updated = await api(`/v1/admin/tenants/${encodeURIComponent(tenant.tenant_id)}`,
    { method: "PATCH", body: { disabled }, admin: true });
  announce(`${updated.tenant_id} is now ${updated.disabled ? "disabled" : "enabled"}.`);
  showTenant(updated);
}

function showTenant(tenant) {
  const toggle = el("button", {
    type: "button", class: tenant.disabled ? "" : "danger",
    onclick: () => setDisabled(tenant, !tenant.disabled).catch(reportError),
  }, tenant.disabled ? "Enable tenant" : "Disable tenant");
  byId("tenant").replaceChildren(details([
    ["Id", tenant.tenant_id], ["Name", tenant.name], ["Rate limit", tenant.rate_limit || "default"],
    ["IP allowlist", tenant.ip_allowlist.join(", ") || "any address"], ["Created", formatTime(tenant.created_at)],
    ["Disabled", tenant.disabled ? "yes" : "no"],
    ["Max key lifetime", tenant.max_key_lifetime_s ? `${tenant.max_key_lifetime_s} s` : "none"],
  ]), toggle);
}

async function lookUp(tenantId) {
  showTenant(await api(`/v1/admin/tenants/${encodeURIComponent(tenantId)}`, { admin: true }));
}

async function create(event) {
  event.preventDefault();
  const body = { tenant_id: byId("new-tenant-id").value.trim(), name: byId("new-tenant-name").value.trim() };
  const created = await api("/v1/admin/tenants", { method: "POST", body, admin: true });
  const kafka = created.kafka;
  byId("created-tenant").replaceChildren(el("p", {}, `Created ${created.tenant_id}.`), kafka
    ? details([["Kafka user", kafka.username], ["Kafka password (shown only now)", el("code", {}, kafka.password)],
      ["Bootstrap servers", kafka.bootstrap_servers]])
    : el("p", {}, "Kafka provisioning is off on this gateway."));
  announce(`Tenant ${created.tenant_id} created.`);
}

page(async () => {
  byId("picker").append(tenantPicker(lookUp));
  byId("create-tenant").addEventListener("submit", (event) => create(event).catch(reportError));
  await lookUp(byId("tenant-id").value);
}, { admin: true });
